"""Ingest one export file into the lake: read, type, map, convert, account for every row.

The row-level work is SQL (transforms/ingest/<kind>_rows.sql) run by DuckDB over the whole file at once;
this module only finds the files, reads their header, and moves the outcome into the lake.
"""
from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from pipelines.duck import load_reference_tables
from pipelines.lake import Lake
from pipelines.paths import INGEST_SQL_DIR, read_sql

# A character that never occurs in a CSV field: the reader's "null string". Short records are padded with
# null, while empty fields stay '', so the SQL can tell a missing field from an empty one.
_NEVER_IN_DATA = "\x1e"


@dataclass(frozen=True)
class ExportKind:
    name: str
    table: str
    columns: tuple[str, ...]
    sql_file: str
    # The lake columns written for accepted rows, in order, after which lineage columns follow.
    lake_columns: tuple[str, ...]


LAB_COLUMNS = (
    "patient_id", "accession", "loinc", "local_code", "test_name", "result_value", "unit",
    "reference_range", "abnormal_flag", "status", "collected_at", "resulted_at", "performing_lab",
)

EXPORT_KINDS: dict[str, ExportKind] = {
    "labs": ExportKind(
        name="labs",
        table="lab_results",
        columns=LAB_COLUMNS,
        sql_file="lab_rows.sql",
        lake_columns=(
            "patient_id", "accession", "analyte", "loinc", "local_code", "test_name", "collected_at",
            "resulted_at", "value_raw", "unit_raw", "comparator", "value_reported", "unit_reported",
            "value_si", "unit_si", "value_text", "reference_range", "ref_low_si", "ref_high_si",
            "abnormal_flag", "status", "performing_lab",
        ),
    ),
    "patients": ExportKind(
        name="patients",
        table="patients",
        columns=("patient_id", "birth_date", "sex", "practice"),
        sql_file="patient_rows.sql",
        lake_columns=("patient_id", "birth_date", "sex", "practice"),
    ),
    "diagnoses": ExportKind(
        name="diagnoses",
        table="diagnoses",
        columns=("patient_id", "code_system", "code", "recorded_at"),
        sql_file="diagnosis_rows.sql",
        lake_columns=("patient_id", "code_system", "code", "code_normalised", "recorded_at"),
    ),
    "medications": ExportKind(
        name="medications",
        table="medications",
        columns=("patient_id", "drug", "atc_code", "route", "dose", "start_date", "end_date"),
        sql_file="medication_rows.sql",
        lake_columns=("patient_id", "drug", "atc_code", "route", "dose", "start_date", "end_date"),
    ),
}

DROP_RULES = ("cancelled", "entered_in_error", "duplicate")


@dataclass(frozen=True)
class ExportFile:
    path: Path
    kind: ExportKind
    source_hash: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class FileAccount:
    """What happened to every row of one file. read = accepted + quarantined + dropped, always."""

    source_file: str
    source_hash: str
    kind: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_dropped: int = 0
    by_reason: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_quarantined + self.rows_dropped


class ReconciliationError(RuntimeError):
    pass


def export_kind_of(path: Path) -> ExportKind | None:
    """labs*.csv[.gz] -> labs, patients*.csv -> patients, ...; anything else is not an export file."""
    name = path.name.lower()
    if not (name.endswith(".csv") or name.endswith(".csv.gz")):
        return None
    for prefix, kind in EXPORT_KINDS.items():
        if name.startswith(prefix):
            return kind
    return None


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def discover_exports(input_dir: Path) -> tuple[list[ExportFile], list[Path]]:
    """The export files of a drop folder in name order, and the files that are not exports."""
    exports, ignored = [], []
    for path in sorted(p for p in input_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        kind = export_kind_of(path)
        if kind is None:
            ignored.append(path)
        else:
            exports.append(ExportFile(path=path, kind=kind, source_hash=content_hash(path)))
    return exports, ignored


def read_header(path: Path) -> list[str]:
    """The header's column names, lower-cased, BOM and surrounding spaces and quotes removed."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as stream:
        first_line = stream.readline()
    return [name.strip().strip('"').strip().lower() for name in first_line.rstrip("\r\n").split(",")]


def _load_raw_file(con: duckdb.DuckDBPyConnection, export: ExportFile, header: list[str]) -> None:
    """Every data record of the file as text, numbered in file order, into the temp table raw_file."""
    columns = {name or f"_unnamed_{i}": "VARCHAR" for i, name in enumerate(header)}
    # One spare column catches records with more fields than the header: those are malformed.
    columns["_overflow"] = "VARCHAR"
    con.execute(
        """
        create or replace temp table raw_file as
        select row_number() over () as source_row, *
        from read_csv(
            $path, columns = $columns, header = true, auto_detect = false, delim = ',', quote = '"',
            escape = '"', null_padding = true, strict_mode = false, parallel = false, nullstr = $null
        )
        """,
        {"path": str(export.path), "columns": columns, "null": _NEVER_IN_DATA},
    )
    for missing in (name for name in export.kind.columns if name not in columns):
        con.execute(f"alter table raw_file add column {missing} varchar")


def ingest_file(con: duckdb.DuckDBPyConnection, export: ExportFile, lake: Lake, run_id: str,
                ingest_date: date, earlier_lab_files: list[Path]) -> FileAccount:
    """Parse one export file and write its accepted and quarantined rows to the lake (uncommitted)."""
    load_reference_tables(con)
    header = read_header(export.path)
    missing_columns = [name for name in export.kind.columns if name not in header]
    _load_raw_file(con, export, header)
    if export.kind.name == "labs":
        _register_existing_lab_keys(con, earlier_lab_files)
    sql = read_sql(INGEST_SQL_DIR / export.kind.sql_file)
    params = {"ingest_date": ingest_date} if "$ingest_date" in sql else {}
    con.execute(f"create or replace temp table parsed_rows as {sql}", params)
    if missing_columns:
        # Not the expected layout: no field can be trusted, so every record goes to quarantine.
        con.execute("update parsed_rows set outcome = 'quarantined', reason = 'missing_columns'")

    lineage = {"source_file": export.name, "source_hash": export.source_hash, "ingest_run": run_id}
    lineage_sql = "$source_file as source_file, source_row, $source_hash as source_hash, $ingest_run as ingest_run"
    accepted_columns = ", ".join(export.kind.lake_columns)
    lake.write_query(
        con,
        f"select {accepted_columns}, {lineage_sql} from parsed_rows where outcome = 'accepted' order by source_row",
        lineage,
        lake.data_file(export.kind.table, export.source_hash),
    )
    lake.write_query(
        con,
        f"select {lineage_sql}, $table_name as table_name, reason, raw "
        "from parsed_rows where outcome = 'quarantined' order by source_row",
        {**lineage, "table_name": export.kind.table},
        lake.data_file("quarantine", export.source_hash),
    )
    return _account(con, export)


def _register_existing_lab_keys(con: duckdb.DuckDBPyConnection, lab_files: list[Path]) -> None:
    """The duplicate keys of lab results already in the lake (or ingested earlier in this run)."""
    if lab_files:
        con.execute(
            """
            create or replace temp table existing_lab_keys as
            select patient_id, analyte, collected_at, accession, status, comparator, value_si, value_text
            from read_parquet($files)
            """,
            {"files": [str(path) for path in lab_files]},
        )
    else:
        con.execute(
            """
            create or replace temp table existing_lab_keys (
                patient_id varchar, analyte varchar, collected_at timestamp, accession varchar,
                status varchar, comparator varchar, value_si double, value_text varchar
            )
            """
        )


def _account(con: duckdb.DuckDBPyConnection, export: ExportFile) -> FileAccount:
    account = FileAccount(source_file=export.name, source_hash=export.source_hash, kind=export.kind.name)
    rows = con.execute(
        "select outcome, coalesce(reason, ''), count(*) from parsed_rows group by all order by all"
    ).fetchall()
    for outcome, reason, count in rows:
        account.by_reason[(outcome, reason)] = count
        if outcome == "accepted":
            account.rows_accepted += count
        elif outcome == "quarantined":
            account.rows_quarantined += count
        else:
            account.rows_dropped += count
    account.rows_read = con.execute("select count(*) from raw_file").fetchone()[0]
    return account
