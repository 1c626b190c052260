"""Hand-built lake rows for the SQL model tests.

Rows are plain dicts made by `lab`, `patient`, `diagnosis` and `medication` with sensible defaults; dates are
given as a day offset from the as-of date (`day=-10` is ten days before as-of). `build` creates the lake
tables with the exact columns of docs/data-model.md in an in-memory DuckDB, installs the rules and builds
every model.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import duckdb

from tests.helpers.models import build_models
from b12lab.lake.lake import table_ddl
from b12lab.rules.rules_file import Rules, install_rules, load_rules

AS_OF = dt.date(2025, 6, 30)
from b12lab.common.paths import REFERENCE_DIR  # noqa: E402

LINEAGE = {"source_file": "VARCHAR", "source_row": "BIGINT", "source_hash": "VARCHAR", "ingest_run": "VARCHAR"}
LAKE_COLUMNS: dict[str, dict[str, str]] = {
    "lab_results": {
        "patient_id": "VARCHAR", "accession": "VARCHAR", "analyte": "VARCHAR", "loinc": "VARCHAR",
        "local_code": "VARCHAR", "test_name": "VARCHAR", "collected_at": "TIMESTAMP", "resulted_at": "TIMESTAMP",
        "value_raw": "VARCHAR", "unit_raw": "VARCHAR", "comparator": "VARCHAR", "value_reported": "DOUBLE",
        "unit_reported": "VARCHAR", "value_si": "DOUBLE", "unit_si": "VARCHAR", "value_text": "VARCHAR",
        "reference_range": "VARCHAR", "abnormal_flag": "VARCHAR", "ref_low_si": "DOUBLE", "ref_high_si": "DOUBLE",
        "status": "VARCHAR", "performing_lab": "VARCHAR", **LINEAGE,
    },
    "patients": {"patient_id": "VARCHAR", "birth_date": "DATE", "sex": "VARCHAR", "practice": "VARCHAR",
                 "death_date": "DATE", "deceased": "BOOLEAN", **LINEAGE},
    "diagnoses": {
        "patient_id": "VARCHAR", "code_system": "VARCHAR", "code": "VARCHAR", "code_normalised": "VARCHAR",
        "recorded_at": "DATE", **LINEAGE,
    },
    "medications": {
        "patient_id": "VARCHAR", "drug": "VARCHAR", "atc_code": "VARCHAR", "route": "VARCHAR", "route_terms": "VARCHAR[]",
        "dose": "VARCHAR",
        "start_date": "DATE", "end_date": "DATE", **LINEAGE,
    },
}  # fmt: skip

BOOKKEEPING_TABLES = ("quarantine", "unmapped_codes", "unreadable_fields", "ingested_files", "ingest_outcomes", "runs")
B12_DRUG = {"drug": "hydroxocobalamin 1 mg/mL injection", "atc_code": "B03BA03", "route": "IM", "dose": "1 mg"}
FOLIC_ACID = {"drug": "folic acid 5 mg tablets", "atc_code": "B03BB01", "route": "oral", "dose": "5 mg"}
_counter = itertools.count(1)


@lru_cache(maxsize=1)
def _units() -> dict[tuple[str, str], tuple[str, float]]:
    with (REFERENCE_DIR / "ref_units.csv").open(encoding="utf-8") as stream:
        return {
            (row["analyte"], row["unit"]): (row["unit_canonical_spelling"], float(row["factor_to_canonical"]))
            for row in csv.DictReader(stream)
        }


@lru_cache(maxsize=1)
def _canonical_units() -> dict[str, str]:
    with (REFERENCE_DIR / "ref_analytes.csv").open(encoding="utf-8") as stream:
        return {row["analyte"]: row["canonical_unit"] for row in csv.DictReader(stream)}


def on(day: int, as_of: dt.date = AS_OF) -> dt.date:
    """The date `day` days after as-of (negative: before)."""
    return as_of + dt.timedelta(days=day)


def lab(
    analyte: str = "b12",
    value: float | None = None,
    unit: str | None = None,
    *,
    patient: str = "P1",
    day: int = -10,
    at: str = "09:00",
    comparator: str | None = None,
    text: str | None = None,
    status: str = "F",
    accession: str | None = "auto",
    resulted_day: int | None = None,
    ref_high_si: float | None = None,
    source_file: str = "labs_a.csv",
    source_row: int | None = None,
    as_of: dt.date = AS_OF,
) -> dict:
    """One lake lab result; value in `unit` (default: the analyte's canonical unit), converted to SI here."""
    canonical = _canonical_units()[analyte]
    unit = unit or canonical or None
    value_si = unit_si = None
    if value is not None:
        spelling, factor = _units()[(analyte, unit.lower())]
        unit = spelling
        value_si = value * factor
        unit_si = canonical
    collected = dt.datetime.combine(on(day, as_of), dt.time.fromisoformat(at))
    resulted = collected + dt.timedelta(hours=6) if resulted_day is None else dt.datetime.combine(
        on(resulted_day, as_of), dt.time(18, 0))
    number = next(_counter)
    return {
        "patient_id": patient,
        "accession": f"ACC{number}" if accession == "auto" else accession,
        "analyte": analyte,
        "loinc": None,
        "local_code": analyte.upper(),
        "test_name": analyte,
        "collected_at": collected,
        "resulted_at": resulted,
        "value_raw": text if value is None else f"{comparator or ''}{value:g}",
        "unit_raw": unit,
        "comparator": comparator,
        "value_reported": value,
        "unit_reported": unit if value is not None else None,
        "value_si": value_si,
        "unit_si": unit_si,
        "value_text": text,
        "reference_range": None,
        "abnormal_flag": None,
        "ref_low_si": None,
        "ref_high_si": ref_high_si,
        "status": status,
        "performing_lab": "LabA",
        "source_file": source_file,
        "source_row": number if source_row is None else source_row,
        "source_hash": f"hash-{source_file}",
        "ingest_run": "run-1",
    }


def patient(patient_id: str = "P1", *, practice: str = "Practice A", birth_date: dt.date = dt.date(1960, 1, 1),
            sex: str = "F") -> dict:
    number = next(_counter)
    return {"patient_id": patient_id, "birth_date": birth_date, "sex": sex, "practice": practice,
            "source_file": "patients_a.csv", "source_row": number, "source_hash": "hash-p", "ingest_run": "run-1"}


def diagnosis(code_system: str = "ICD-10", code: str = "D51.0", *, patient: str = "P1", day: int | None = -400,
              as_of: dt.date = AS_OF) -> dict:
    number = next(_counter)
    return {"patient_id": patient, "code_system": code_system, "code": code,
            "code_normalised": code.upper().replace(".", "").replace(" ", ""),
            "recorded_at": None if day is None else on(day, as_of),
            "source_file": "diagnoses_a.csv", "source_row": number, "source_hash": "hash-d", "ingest_run": "run-1"}


def medication(kind: dict | None = None, *, patient: str = "P1", start: int | None = -400, end: int | None = None,
               as_of: dt.date = AS_OF, **fields) -> dict:
    """A medication record; `kind` is B12_DRUG (default) or FOLIC_ACID, `fields` override drug/atc_code/..."""
    number = next(_counter)
    return {"patient_id": patient, **(kind or B12_DRUG), **fields,
            "start_date": None if start is None else on(start, as_of),
            "end_date": None if end is None else on(end, as_of),
            "source_file": "medications_a.csv", "source_row": number, "source_hash": "hash-m", "ingest_run": "run-1"}


@lru_cache(maxsize=8)
def rules_for(profile: str | None = None) -> Rules:
    return load_rules(profile=profile)


def create_lake(con: duckdb.DuckDBPyConnection, tables: dict[str, Iterable[dict]]) -> None:
    for table, columns in LAKE_COLUMNS.items():
        con.execute(f"create or replace table {table} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
        rows = [[row.get(column) for column in columns] for row in tables.get(table, ())]
        if rows:
            con.executemany(f"insert into {table} values ({', '.join('?' for _ in columns)})", rows)
    # The lake's bookkeeping (the mart data_quality reads it), empty with the publication's columns.
    for table in BOOKKEEPING_TABLES:
        con.execute(f"create or replace table {table} ({table_ddl(table)})")


def build(
    labs: Iterable[dict] = (),
    patients: Iterable[dict] = (),
    diagnoses: Iterable[dict] = (),
    medications: Iterable[dict] = (),
    *,
    as_of: dt.date = AS_OF,
    profile: str | None = None,
    rules: Rules | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake tables, the rules and every model built."""
    con = duckdb.connect()
    create_lake(con, {"lab_results": labs, "patients": patients, "diagnoses": diagnoses, "medications": medications})
    install_rules(con, rules or rules_for(profile), as_of)
    build_models(con, as_of=as_of)
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [description[0] for description in cursor.description]
    return [dict(zip(names, values)) for values in cursor.fetchall()]


def one(con: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> dict | None:
    found = rows(con, sql, params)
    assert len(found) <= 1, f"expected at most one row, got {len(found)}"
    return found[0] if found else None


def collect_cases(cases) -> dict[str, list[dict]]:
    """The rows of many independent cases: `cases` maps a patient id to a function that returns that
    patient's rows as {"labs": [...], "patients": [...], "diagnoses": [...], "medications": [...]}."""
    tables: dict[str, list[dict]] = {"labs": [], "patients": [], "diagnoses": [], "medications": []}
    for patient_id, make_rows in cases.items():
        for table, table_rows in make_rows(patient_id).items():
            tables[table].extend(table_rows)
    return tables


def build_cases(cases, *, as_of: dt.date = AS_OF, profile: str | None = None,
                rules: Rules | None = None) -> duckdb.DuckDBPyConnection:
    """One build holding many independent cases (see collect_cases), each a patient of its own."""
    return build(**collect_cases(cases), as_of=as_of, profile=profile, rules=rules)
