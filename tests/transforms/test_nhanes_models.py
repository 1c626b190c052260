"""The models on real survey data: NHANES B12 and MMA, turned into lake rows directly (no ingest, no flow),
must give exactly the status counts computed from the raw values with pandas (tests/helpers/nhanes.py)."""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from tests.helpers.models import build_models
from b12lab.rules.rules_file import install_rules
from tests.helpers import nhanes
from tests.transforms.lake import LAKE_COLUMNS, create_lake, rules_for

COLLECTED_ON = dt.date(2004, 6, 15)
AS_OF = dt.date(2004, 7, 15)
SI_FACTOR = {("b12", "pg/mL"): 0.7378, ("mma", "umol/L"): 1.0, ("mma", "nmol/L"): 0.001}
SI_UNIT = {"b12": "pmol/L", "mma": "umol/L"}

pytestmark = pytest.mark.skipif(not nhanes.NHANES_DIR.is_dir(), reason="NHANES reference data not available")


def lake_frames(cycle: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The input-contract rows of the helper, shaped as the lake's lab_results and patients."""
    labs = pd.DataFrame(nhanes.lab_rows(cycle, COLLECTED_ON))
    labs["analyte"] = labs["local_code"].str.lower()
    labs["value_raw"] = labs["result_value"]
    labs["unit_raw"] = labs["unit"]
    labs["value_reported"] = labs["result_value"].astype(float)
    labs["unit_reported"] = labs["unit"]
    labs["value_si"] = labs["value_reported"] * [SI_FACTOR[key] for key in zip(labs["analyte"], labs["unit"])]
    labs["unit_si"] = labs["analyte"].map(SI_UNIT)
    labs["collected_at"] = pd.to_datetime(labs["collected_at"])
    labs["resulted_at"] = pd.to_datetime(labs["resulted_at"])
    labs["source_file"] = "labs_nhanes.csv"
    labs["source_row"] = range(1, len(labs) + 1)
    for column in ("comparator", "value_text", "ref_low_si", "ref_high_si", "source_hash", "ingest_run"):
        labs[column] = None
    patients = pd.DataFrame(nhanes.patient_rows(cycle, COLLECTED_ON))
    patients["birth_date"] = pd.to_datetime(patients["birth_date"].replace("", None)).dt.date
    patients["source_file"] = "patients_nhanes.csv"
    patients["source_row"] = range(1, len(patients) + 1)
    return labs, patients


def build_nhanes(cycle: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    create_lake(con, {})
    labs, patients = lake_frames(cycle)
    for table, frame in (("lab_results", labs), ("patients", patients)):
        columns = [column for column in LAKE_COLUMNS[table] if column in frame.columns]
        con.register("frame", frame[columns])
        con.execute(f"insert into {table} by name select * from frame")
        con.unregister("frame")
    install_rules(con, rules_for(None), AS_OF)
    build_models(con, as_of=AS_OF)
    return con


@pytest.mark.parametrize("cycle", list(nhanes.CYCLES))
def test_nhanes_status_counts_match_the_direct_computation(cycle):
    con = build_nhanes(cycle)
    expected = nhanes.expected_status_counts(cycle)
    assert nhanes.status_counts(con) == expected
    assert expected["total"] == len(nhanes.participants(cycle))
    # extreme but real values are classified, never dropped
    assert con.execute("select count(*) from result_classification").fetchone()[0] == len(nhanes.lab_rows(cycle))
    assert con.execute("select count(*) from result_classification where category is null").fetchone() == (0,)


def test_nhanes_functional_deficiency_is_found():
    con = build_nhanes("2003-2004")
    rule_counts = dict(con.execute("select rule_id, count(*) from cohort_deficient group by rule_id").fetchall())
    people = nhanes.participants("2003-2004")
    borderline = people["b12_pg_ml"].between(nhanes.B12_DEFICIENT_BELOW_PG_ML, nhanes.B12_BORDERLINE_MAX_PG_ML)
    assert rule_counts["FUNCTIONAL_MMA"] == int((borderline & (people["mma_umol_l"] > 0.40)).sum())
    assert rule_counts["B12_DEFICIENT"] == int((people["b12_pg_ml"] < 203).sum())
