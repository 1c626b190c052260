"""Ingest one export file into the lake: read, type, map, convert, account for every row.

The row-level work is SQL (transforms/ingest/<kind>_rows.sql) run by DuckDB over the whole file at once;
this module only finds the files, reads their header, and moves the outcome into the lake.

Two input formats feed the same machinery. A CSV file is read as text fields into the temp table raw_file.
A FHIR Bulk Data NDJSON file is read line by line into fhir_lines, and a SQL model
(transforms/ingest/fhir_<resource>_fields.sql) flattens each line into the same raw_file columns. From
raw_file on, both take the same path: the kind's row model, the lake files and the accounting.
"""
from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.duck import load_reference_tables
from pipelines.faults import crash_point
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

# FHIR Bulk Data ($export) writes one resource type per NDJSON file, named after it (Observation.ndjson,
# Observation-2.ndjson.gz). Each resource type is flattened onto the columns of one export kind.
FHIR_RESOURCES: dict[str, str] = {
    "Observation": "labs",
    "Patient": "patients",
    "Condition": "diagnoses",
    "MedicationRequest": "medications",
    "MedicationStatement": "medications",
}
# The resource type is the start of the name, followed by anything but a letter (so ObservationDefinition
# is not an Observation file).
_FHIR_FILE_NAME = re.compile(
    rf"^({'|'.join(FHIR_RESOURCES)})(?![a-z]).*[.]ndjson(?:[.]gz)?$", re.IGNORECASE
)



@dataclass(frozen=True)
class ExportFile:
    path: Path
    kind: ExportKind
    source_hash: str
    # NDJSON files only: the FHIR resource type the file holds. None for a CSV file.
    fhir_resource: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def format(self) -> str:
        return "csv" if self.fhir_resource is None else "ndjson"


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


def fhir_resource_of(path: Path) -> str | None:
    """Observation*.ndjson[.gz] -> Observation, ...; None for any other file."""
    match = _FHIR_FILE_NAME.match(path.name)
    if match is None:
        return None
    return next(resource for resource in FHIR_RESOURCES if resource.lower() == match.group(1).lower())


def export_kind_of(path: Path) -> ExportKind | None:
    """labs*.csv[.gz] -> labs, patients*.csv -> patients, ..., Observation*.ndjson[.gz] -> labs, ...;
    anything else is not an export file."""
    resource = fhir_resource_of(path)
    if resource is not None:
        return EXPORT_KINDS[FHIR_RESOURCES[resource]]
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
            exports.append(ExportFile(path=path, kind=kind, source_hash=content_hash(path),
                                      fhir_resource=fhir_resource_of(path)))
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
    # The record's own status exists only in FHIR resources; CSV registries have none.
    con.execute("alter table raw_file add column if not exists record_status varchar")


# NDJSON lines are handed to DuckDB in Arrow batches of about this many bytes.
_LINE_BATCH_BYTES = 8 << 20
_LINE_SCHEMA = pa.schema([("source_row", pa.int64()), ("line", pa.string())])


def _ndjson_line_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Every line of an NDJSON file (plain or gzip), blank ones included, with its 1-based line number.

    Read here rather than with DuckDB's CSV reader because that reader skips empty lines, and then a record
    number is no longer the line number. Bytes that are not UTF-8 are kept as backslash escapes (\\xff):
    `\\x` is no JSON escape, so such a line fails json_valid (unless a stray backslash precedes the byte) and
    is quarantined with its bytes visible, instead of being silently altered.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    numbers: list[int] = []
    lines: list[str] = []
    size = 0
    with opener(path, "rb") as stream:
        for number, data in enumerate(stream, start=1):
            data = data.rstrip(b"\r\n")
            if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            numbers.append(number)
            lines.append(data.decode("utf-8", errors="backslashreplace"))
            size += len(data)
            if size >= _LINE_BATCH_BYTES:
                yield _line_batch(numbers, lines)
                numbers, lines, size = [], [], 0
    if numbers:
        yield _line_batch(numbers, lines)


def _line_batch(numbers: list[int], lines: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(numbers, pa.int64()), pa.array(lines, pa.string())],
                                      schema=_LINE_SCHEMA)


def _load_fhir_file(con: duckdb.DuckDBPyConnection, export: ExportFile) -> None:
    """The file's lines into fhir_lines, then flattened by fhir_<resource>_fields.sql into raw_file."""
    batches = pa.RecordBatchReader.from_batches(_LINE_SCHEMA, _ndjson_line_batches(export.path))
    con.register("ndjson_line_batches", batches)
    try:
        con.execute("create or replace temp table fhir_lines as select source_row, line from ndjson_line_batches")
    finally:
        con.unregister("ndjson_line_batches")
    sql = read_sql(INGEST_SQL_DIR / f"fhir_{export.fhir_resource.lower()}_fields.sql")
    con.execute(f"create or replace temp table raw_file as {sql}")


def ingest_file(con: duckdb.DuckDBPyConnection, export: ExportFile, lake: Lake, run_id: str,
                ingest_date: date, earlier_lab_files: list[Path]) -> FileAccount:
    """Parse one export file and write its accepted and quarantined rows to the lake (uncommitted)."""
    load_reference_tables(con)
    if export.format == "ndjson":
        missing_columns = []  # the fields model always gives every column of the kind
        _load_fhir_file(con, export)
    else:
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
    if export.format == "ndjson":
        # An NDJSON record is its line: quarantine keeps the resource as it came, not the flattened fields.
        con.execute(
            "update parsed_rows set raw = fhir_lines.line from fhir_lines "
            "where fhir_lines.source_row = parsed_rows.source_row and parsed_rows.outcome = 'quarantined'"
        )

    lineage = {"source_file": export.name, "source_hash": export.source_hash, "ingest_run": run_id}
    lineage_sql = "$source_file as source_file, source_row, $source_hash as source_hash, $ingest_run as ingest_run"
    accepted_columns = ", ".join(export.kind.lake_columns)
    lake.write_query(
        con,
        f"select {accepted_columns}, {lineage_sql} from parsed_rows where outcome = 'accepted' order by source_row",
        lineage,
        lake.data_file(export.kind.table, export.source_hash),
    )
    crash_point("ingest")
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
