"""NHANES serum B12 and MMA (CDC public-use laboratory files) as test input, and the expected status counts
computed from the raw survey values with plain pandas, independently of the pipeline.

Every participant of a cycle's B12 and MMA lab files becomes a patient; a participant's non-missing B12 and
MMA values become one result each, collected on the same day (NHANES measures both on one blood draw).
Participants without values stay in the patient file and have no result: their status is not_tested.

Files: tests/data/nhanes/ (see its README.md; B12LAB_NHANES_DIR points at another folder). Units as published: B12
in pg/mL in every cycle used here, MMA in umol/L up to 2004 and in nmol/L from 2011.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# The NHANES files ship with the tests (tests/data/nhanes); B12LAB_NHANES_DIR overrides the folder.
NHANES_DIR = Path(
    os.environ.get("B12LAB_NHANES_DIR")
    or Path(__file__).resolve().parents[1] / "data" / "nhanes"
)

LAB_COLUMNS = ["patient_id", "accession", "loinc", "local_code", "test_name", "result_value", "unit",
               "reference_range", "abnormal_flag", "status", "collected_at", "resulted_at", "performing_lab"]
PATIENT_COLUMNS = ["patient_id", "birth_date", "sex", "practice"]

# The seed's values, written here on purpose rather than read from the rules file: this is the independent
# computation the pipeline is compared with (docs/models.md, Result categories and Patient status).
B12_DEFICIENT_BELOW_PG_ML = 203.0
B12_BORDERLINE_MAX_PG_ML = 350.0
MMA_ELEVATED_ABOVE_UMOL_L = 0.40


@dataclass(frozen=True)
class Cycle:
    code: str  # short code used in patient ids
    b12_file: str
    b12_column: str
    mma_file: str
    mma_column: str
    mma_unit: str  # as published: "umol/L" or "nmol/L"
    demo_file: str


CYCLES = {
    "1999-2000": Cycle("A", "LAB06.csv", "LBXB12", "LAB06.csv", "LBXMMA", "umol/L", "DEMO_SUBSET.csv"),
    "2001-2002": Cycle("B", "L06_B.csv", "LBXB12", "L06_B.csv", "LBXMMA", "umol/L", "DEMO_B_SUBSET.csv"),
    "2003-2004": Cycle("C", "L06NB_C.csv", "LBXB12", "L06MH_C.csv", "LBXMMA", "umol/L", "DEMO_C_SUBSET.csv"),
    "2011-2012": Cycle("G", "VITB12_G.csv", "LBXB12", "MMA_G.csv", "LBXMMASI", "nmol/L", "DEMO_G_SUBSET.csv"),
}
MMA_UMOL_PER_UNIT = {"umol/L": 1.0, "nmol/L": 0.001}


def participants(cycle: str = "2003-2004") -> pd.DataFrame:
    """One row per participant of the cycle's B12 or MMA file: seqn, patient_id, b12_pg_ml, mma (in the
    published unit), mma_umol_l, sex, age_years."""
    spec = CYCLES[cycle]
    b12 = pd.read_csv(NHANES_DIR / spec.b12_file, usecols=["SEQN", spec.b12_column])
    mma = pd.read_csv(NHANES_DIR / spec.mma_file, usecols=["SEQN", spec.mma_column])
    demo = pd.read_csv(NHANES_DIR / spec.demo_file, usecols=["SEQN", "RIAGENDR", "RIDAGEYR"])
    people = (
        b12.merge(mma, on="SEQN", how="outer")
        .merge(demo, on="SEQN", how="left")
        .rename(columns={"SEQN": "seqn", spec.b12_column: "b12_pg_ml", spec.mma_column: "mma",
                         "RIAGENDR": "sex_code", "RIDAGEYR": "age_years"})
        .sort_values("seqn", ignore_index=True)
    )
    people["seqn"] = people["seqn"].astype("int64")
    people["patient_id"] = [f"NH{spec.code}-{seqn}" for seqn in people["seqn"]]
    people["mma_umol_l"] = people["mma"] * MMA_UMOL_PER_UNIT[spec.mma_unit]
    people["sex"] = people["sex_code"].map({1.0: "M", 2.0: "F"})
    return people


def _number(value: float) -> str:
    """The value as a lab would print it: no trailing .0, no exponent."""
    return format(float(value), ".10g")


def lab_rows(cycle: str = "2003-2004", collected_on: dt.date = dt.date(2004, 6, 15)) -> list[dict]:
    """The participants' results in the input contract (labs*.csv columns), B12 then MMA per participant."""
    spec = CYCLES[cycle]
    collected_at = f"{collected_on.isoformat()}T08:30:00"
    resulted_at = f"{(collected_on + dt.timedelta(days=1)).isoformat()}T12:00:00"
    rows = []
    for person in participants(cycle).itertuples(index=False):
        common = {"patient_id": person.patient_id, "reference_range": "", "abnormal_flag": "", "status": "F",
                  "collected_at": collected_at, "resulted_at": resulted_at,
                  "performing_lab": f"NHANES {cycle} (CDC)"}
        if pd.notna(person.b12_pg_ml):
            rows.append({**common, "accession": f"{person.patient_id}-B12", "loinc": "2132-9", "local_code": "B12",
                         "test_name": "Vitamin B12, serum", "result_value": _number(person.b12_pg_ml),
                         "unit": "pg/mL"})
        if pd.notna(person.mma):
            rows.append({**common, "accession": f"{person.patient_id}-MMA", "loinc": "13964-2", "local_code": "MMA",
                         "test_name": "Methylmalonic acid, serum", "result_value": _number(person.mma),
                         "unit": spec.mma_unit})
    return rows


def patient_rows(cycle: str = "2003-2004", collected_on: dt.date = dt.date(2004, 6, 15)) -> list[dict]:
    """The participants in the input contract (patients*.csv columns). NHANES publishes age in years only, so
    the birth date is the collection date minus the age (an approximation nothing here depends on)."""
    rows = []
    for person in participants(cycle).itertuples(index=False):
        birth_date = ""
        if pd.notna(person.age_years):
            birth_date = collected_on.replace(year=collected_on.year - int(person.age_years)).isoformat()
        rows.append({"patient_id": person.patient_id, "birth_date": birth_date,
                     "sex": person.sex if isinstance(person.sex, str) else "", "practice": f"NHANES {cycle}"})
    return rows


def write_input_files(directory: Path, cycle: str = "2003-2004",
                      collected_on: dt.date = dt.date(2004, 6, 15)) -> tuple[Path, Path]:
    """Write labs_nhanes.csv and patients_nhanes.csv (the input contract) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, columns, rows in (("labs_nhanes.csv", LAB_COLUMNS, lab_rows(cycle, collected_on)),
                                ("patients_nhanes.csv", PATIENT_COLUMNS, patient_rows(cycle, collected_on))):
        path = directory / name
        with path.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    return written[0], written[1]


def expected_status_counts(cycle: str = "2003-2004") -> dict[str, int]:
    """Patient counts per status computed directly from the raw values (nobody is on supplements, and B12 and
    MMA share a collection date, so the MMA is always in the MMA window):
      deficient              B12 < 203 pg/mL, or 203-350 pg/mL with MMA > 0.40 umol/L (FUNCTIONAL_MMA)
      borderline_mma_normal  B12 203-350 pg/mL with MMA <= 0.40 umol/L
      borderline_needs_mma   B12 203-350 pg/mL without an MMA value
      normal                 B12 > 350 pg/mL
      not_tested             no B12 value
    plus "borderline" (the two borderline statuses) and "total"."""
    people = participants(cycle)
    b12, mma = people["b12_pg_ml"], people["mma_umol_l"]
    tested = b12.notna()
    low = tested & (b12 < B12_DEFICIENT_BELOW_PG_ML)
    borderline_range = tested & (b12 >= B12_DEFICIENT_BELOW_PG_ML) & (b12 <= B12_BORDERLINE_MAX_PG_ML)
    mma_elevated = mma.notna() & (mma > MMA_ELEVATED_ABOVE_UMOL_L)
    mma_normal = mma.notna() & (mma <= MMA_ELEVATED_ABOVE_UMOL_L)
    counts = {
        "deficient": int((low | (borderline_range & mma_elevated)).sum()),
        "borderline_mma_normal": int((borderline_range & mma_normal).sum()),
        "borderline_needs_mma": int((borderline_range & mma.isna()).sum()),
        "normal": int((tested & (b12 > B12_BORDERLINE_MAX_PG_ML)).sum()),
        "not_tested": int((~tested).sum()),
    }
    counts["borderline"] = counts["borderline_mma_normal"] + counts["borderline_needs_mma"]
    counts["total"] = len(people)
    return counts


def status_counts(con, table: str = "patient_status") -> dict[str, int]:
    """The same counts read from a patient_status table (a DuckDB connection that holds it)."""
    counts = dict(con.execute(f"select status, count(*) from {table} group by status").fetchall())
    result = {status: int(counts.get(status, 0)) for status in
              ("deficient", "borderline_mma_normal", "borderline_needs_mma", "normal", "not_tested")}
    result["borderline"] = result["borderline_mma_normal"] + result["borderline_needs_mma"]
    result["total"] = int(sum(counts.values()))
    return result
