"""Ingest one export file into the lake: read, type, map, convert, account for every row.

The row-level work is SQL (transforms/ingest/<kind>_rows.sql) run by DuckDB over the whole file at once;
this module only finds the files, reads their header, and moves the outcome into the lake.

Two input formats feed the same machinery. A CSV file is read as text fields into the temp table raw_file.
A FHIR Bulk Data NDJSON file is read line by line into fhir_lines, and a SQL model
(transforms/ingest/fhir_<resource>_fields.sql) flattens each line into the same raw_file columns. From
raw_file on, both take the same path: the kind's row model, the lake files and the accounting.

Damaged input never stops the run with a traceback. A CSV file is read as gzip when its first bytes say so
(whatever its name), with the delimiter its header is written with (comma, semicolon, tab or bar, when the
header names every column of the kind with it), and as UTF-8; a file that is not valid UTF-8 (an old LIS
writing Latin-1) is re-read line by line, each line that is not valid UTF-8 decoded as Latin-1, so 0xB5 is
the micro sign, and a UTF-16 file (Excel's "Unicode text") is converted. A file that cannot be read at all
(a truncated or corrupt gzip, a PDF or zip named *.csv) is not an error either: every record that could be
read is quarantined as `unreadable_file`, and the file's one-line problem is kept in its FileAccount and
printed (file name and problem only, never row content).
"""
from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.duck import load_reference_tables, reraise_interrupt
from pipelines.faults import crash_point
from pipelines.lake import Lake
from pipelines.mapping import LabMapping, MappingError, raw_file_sql
from pipelines.paths import INGEST_SQL_DIR, read_sql

# A character that never occurs in a CSV field: the reader's "null string". Short records are padded with
# null, while empty fields stay '', so the SQL can tell a missing field from an empty one.
_NEVER_IN_DATA = "\x1e"

# The file-level quarantine reasons (set in Python; the row models set the row-level ones).
UNREADABLE_FILE = "unreadable_file"
DUPLICATE_COLUMNS = "duplicate_columns"

# DuckDB's CSV reader refuses a record longer than this (a longer one is read by Python's csv module instead):
# far above any real record, which the row models quarantine as oversized_row beyond 64 KiB.
_MAX_LINE_BYTES = 128 << 20

# Delimiters a header may be written with. Comma is the contract; another is used only when the header names
# every column of the export kind with it, so nothing is guessed.
_DELIMITERS = (",", ";", "\t", "|")

# First bytes of files that get renamed *.csv by mistake: not text, so not one record can be read from them.
_NOT_TEXT_SIGNATURES = {
    b"%PDF-": "a PDF document",
    b"PK\x03\x04": "a zip archive or an Office Open XML workbook",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "an old Office document (.xls)",
    b"\x1f\x8b": "gzip data inside gzip",
}

# ISO 8601 dates and date-times, the only ones the exports may use (an offset is allowed and dropped: see
# docs/data-model.md). DuckDB's cast alone is looser: it reads 'epoch' as 1970-01-01 and 'infinity' as a date,
# and ignores what follows a time ('9:00 PM' is 09:00, '09:00 garbage' is 09:00), so text is matched first.
_ISO_TIMESTAMP_MACRO = r"""
create or replace temp macro iso_timestamp(text) as try_cast(
    case when regexp_full_match(
        text,
        '[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([T ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?\s?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?'
    ) then text end as timestamp)
"""

# FHIR dates may be partial: a year (2019) or a year and month (2019-07). Read as the first day of the period
# they name, with the precision ('year', 'month', 'day') kept beside the date; anything else is left as it is
# for iso_timestamp to judge.
_PARTIAL_DATE_MACROS = (
    r"""
create or replace temp macro partial_date(text) as case
    when regexp_full_match(trim(text), '[0-9]{4}') then trim(text) || '-01-01'
    when regexp_full_match(trim(text), '[0-9]{4}-[0-9]{2}') then trim(text) || '-01'
    else text
end
""",
    r"""
create or replace temp macro date_precision(text) as case
    when nullif(trim(text), '') is null then null
    when regexp_full_match(trim(text), '[0-9]{4}') then 'year'
    when regexp_full_match(trim(text), '[0-9]{4}-[0-9]{2}') then 'month'
    else 'day'
end
""",
)

# A patient id as the export wrote it, less the whitespace around it (tabs, line breaks and no-break spaces
# too, which trim() keeps); spaces inside and leading zeros are part of the identifier. Empty is null. One
# definition for the row models and for the duplicate check, which must match ids exactly as they do.
_CLEAN_IDENTIFIER_MACRO = r"""
create or replace temp macro clean_identifier(text) as nullif(
    regexp_replace(text, '^[\s\p{Z}\x{0b}\x{1c}-\x{1f}\x{85}]+|[\s\p{Z}\x{0b}\x{1c}-\x{1f}\x{85}]+$', '', 'g'), '')
"""

# What the gzip module raises on a gzip stream that ends early or is corrupt.
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


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
        lake_columns=("patient_id", "birth_date", "birth_date_precision", "sex", "practice"),
    ),
    "diagnoses": ExportKind(
        name="diagnoses",
        table="diagnoses",
        columns=("patient_id", "code_system", "code", "recorded_at"),
        sql_file="diagnosis_rows.sql",
        lake_columns=("patient_id", "code_system", "code", "code_normalised", "recorded_at", "recorded_at_precision"),
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
    # A lab CSV in a site's own layout: the mapping that translates it into the lab contract.
    mapping: LabMapping | None = None
    # A FHIR Bundle (one JSON document) holds several resource types: each is an export of its own, named
    # <file>#<resource type>, whose records are the Bundle's entries of that type.
    bundle: bool = False

    @property
    def name(self) -> str:
        return f"{self.path.name}#{self.fhir_resource}" if self.bundle else self.path.name

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
    # Why the file as a whole could not be read (one line, no row content); empty for a readable file.
    problem: str = ""
    # The columns the file's header lacks (every record then quarantined as missing_columns).
    missing_columns: list[str] = field(default_factory=list)

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


# Resources that other resources reference and that are read only for that: a MedicationRequest's
# medicationReference, a Patient's managingOrganization. Their NDJSON files are not exports of their own.
_REFERENCED_RESOURCES = ("Medication", "Organization")
_REFERENCE_FILE_NAME = re.compile(
    rf"^({'|'.join(_REFERENCED_RESOURCES)})(?![a-z]).*[.]ndjson(?:[.]gz)?$", re.IGNORECASE
)
_BUNDLE_FILE_NAME = re.compile(r".*[.]json(?:[.]gz)?$", re.IGNORECASE)
MANIFEST_NAME = "manifest.json"


def _read_json_document(path: Path) -> object | None:
    """A whole JSON file (plain or gzip), or None when it is not one."""
    try:
        with _open_bytes(path, _compression_of(path)) as stream:
            return json.loads(stream.read().decode("utf-8-sig"))
    except (ValueError, OSError, *_GZIP_ERRORS):
        return None


def _bundle_resource_types(path: Path) -> list[str]:
    """The resource types of FHIR_RESOURCES that a Bundle file holds, in FHIR_RESOURCES order; [] when the
    file is not a Bundle."""
    document = _read_json_document(path)
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        return []
    present = {(entry.get("resource") or {}).get("resourceType")
               for entry in document.get("entry") or [] if isinstance(entry, dict)}
    return [resource for resource in FHIR_RESOURCES if resource in present]


def read_manifest(input_dir: Path) -> dict | None:
    """The Bulk Data $export manifest of a drop folder: the file names it lists and its transactionTime;
    None when there is none (or it is not a manifest)."""
    path = input_dir / MANIFEST_NAME
    document = _read_json_document(path) if path.is_file() else None
    if not isinstance(document, dict) or not isinstance(document.get("output"), list):
        return None
    names = [str(item.get("url", "")).rstrip("/").rsplit("/", 1)[-1]
             for item in document["output"] if isinstance(item, dict)]
    return {"files": [name for name in names if name], "transaction_time": document.get("transactionTime")}


def discover_exports(input_dir: Path, mapping: LabMapping | None = None) -> tuple[list[ExportFile], list[Path]]:
    """The export files of a drop folder in name order, and the files that are not exports.

    With a mapping (--mapping), the files its pattern names are lab exports in the site's layout, and its
    dictionary file is read with them (neither an export nor ignored); a dictionary that is nowhere to be
    found is refused before any data is read (MappingError).

    A FHIR Bundle (*.json) gives one export per resource type it holds. Medication and Organization NDJSON
    files are read for references only (neither an export nor ignored). When the folder holds a $export
    manifest.json, the NDJSON files it does not list are not part of that export and are ignored.
    """
    manifest = read_manifest(input_dir)
    listed = set(manifest["files"]) if manifest else None
    dictionary = mapping.dictionary_path(input_dir) if mapping is not None else None
    exports, ignored = [], []
    for path in sorted(p for p in input_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        if path.name == MANIFEST_NAME and manifest is not None:
            continue
        if dictionary is not None and path.resolve() == dictionary.resolve():
            continue
        if mapping is not None and mapping.matches(path):
            if mapping.dictionary is not None and dictionary is None:
                raise MappingError(f"mapping {mapping.name}: key 'dictionary.file': {mapping.dictionary.file} "
                                   "is neither in the drop folder nor beside the mapping")
            exports.append(ExportFile(path=path, kind=EXPORT_KINDS["labs"], source_hash=content_hash(path),
                                      mapping=mapping))
            continue
        is_ndjson = fhir_resource_of(path) is not None or _REFERENCE_FILE_NAME.match(path.name)
        if listed is not None and is_ndjson and path.name not in listed:
            ignored.append(path)
            continue
        if _REFERENCE_FILE_NAME.match(path.name):
            continue
        kind = export_kind_of(path)
        if kind is None and _BUNDLE_FILE_NAME.match(path.name):
            resources = _bundle_resource_types(path)
            if resources:
                file_hash = content_hash(path)
                for resource in resources:
                    part_hash = hashlib.sha256(f"{file_hash}:{resource}".encode()).hexdigest()
                    exports.append(ExportFile(path=path, kind=EXPORT_KINDS[FHIR_RESOURCES[resource]],
                                              source_hash=part_hash, fhir_resource=resource, bundle=True))
                continue
        if kind is None:
            ignored.append(path)
        else:
            exports.append(ExportFile(path=path, kind=kind, source_hash=content_hash(path),
                                      fhir_resource=fhir_resource_of(path)))
    return exports, ignored


def _compression_of(path: Path) -> str:
    """'gzip' when the file starts with the gzip magic number, whatever its name; else 'none'."""
    with path.open("rb") as stream:
        return "gzip" if stream.read(2) == b"\x1f\x8b" else "none"


def _open_bytes(path: Path, compression: str):
    return gzip.open(path, "rb") if compression == "gzip" else path.open("rb")


def _ends_with_line_break(path: Path) -> bool:
    with path.open("rb") as stream:
        if stream.seek(0, 2) == 0:
            return True
        stream.seek(-1, 2)
        return stream.read(1) in (b"\n", b"\r")


def _first_bytes(path: Path, size: int = 1 << 12) -> bytes:
    with path.open("rb") as stream:
        return stream.read(size)


def read_header(path: Path, delimiter: str = ",", compression: str | None = None) -> list[str]:
    """The header's column names, lower-cased, BOM and surrounding spaces and quotes removed."""
    compression = compression or _compression_of(path)
    with _open_bytes(path, compression) as raw:
        stream = codecs.getreader("utf-8-sig")(raw, errors="replace")
        try:
            first_line = stream.readline()
        except _GZIP_ERRORS:
            first_line = ""
    return [name.strip().strip('"').strip().lower() for name in first_line.rstrip("\r\n").split(delimiter)]


def _sniff_delimiter(path: Path, kind: ExportKind, compression: str) -> str:
    """The delimiter with which the header names every column of the kind; comma if none does."""
    for delimiter in _DELIMITERS:
        if set(kind.columns) <= set(read_header(path, delimiter, compression)):
            return delimiter
    return ","


def _raw_columns(header: list[str], kind: ExportKind) -> tuple[dict[str, str], list[str]]:
    """The raw_file column of each field of the header, and the kind's columns the header names twice.

    A column of the kind keeps its name (its first occurrence); every other field gets a private name, so that
    no header can shift fields by repeating a name, nor collide with source_row, _overflow or record_status.
    """
    columns: dict[str, str] = {}
    repeated = []
    for position, name in enumerate(header):
        if name in kind.columns and name not in columns:
            columns[name] = "VARCHAR"
        else:
            if name in kind.columns:
                repeated.append(name)
            columns[f"_field_{position + 1}"] = "VARCHAR"
    # One spare column catches records with more fields than the header: those are malformed.
    columns["_overflow"] = "VARCHAR"
    return columns, repeated


_READ_CSV = """
    read_csv(
        $path, columns = $columns, header = true, auto_detect = false, delim = $delim, quote = '"', escape = '"',
        null_padding = true, strict_mode = {strict}, parallel = false, nullstr = $null, compression = 'none',
        max_line_size = $max_line, new_line = '\\n'
    )
"""


def _load_raw_file(con: duckdb.DuckDBPyConnection, path: Path, kind: ExportKind, columns: dict[str, str],
                   delimiter: str) -> None:
    """Every data record of the (uncompressed) file as text, numbered in file order, into the temp table
    raw_file.

    DuckDB's lenient reader (strict_mode false) is what reads short and long records; but its reading of
    malformed quoting is approximate: a closing quote followed by text loses a character ("P00"12 reads as
    P001, another patient), and a file ending inside a quote loses its last byte. So its records are kept only
    when the strict reader, which refuses such quoting, reads as many; otherwise Python's csv module, slower
    and exact, reads the file.
    """
    # new_line '\n' makes LF, CRLF and a lone CR each end a record. Left to detection, a CRLF file with one lone
    # CR loses the first character of the record after it (a patient id P001 read as 001).
    params = {"path": str(path), "columns": columns, "null": _NEVER_IN_DATA, "delim": delimiter,
              "max_line": _MAX_LINE_BYTES}
    con.execute(f"create or replace temp table raw_file as select row_number() over () as source_row, * "
                f"from {_READ_CSV.format(strict='false')}", params)
    try:
        strict_records = con.execute(f"select count(*) from {_READ_CSV.format(strict='true')}", params).fetchone()[0]
    except duckdb.Error as error:
        reraise_interrupt(error)
        strict_records = None
    if strict_records != con.execute("select count(*) from raw_file").fetchone()[0]:
        _load_raw_file_with_python(con, path, columns, delimiter)
    _finish_raw_file(con, kind, delimiter)


def _finish_raw_file(con: duckdb.DuckDBPyConnection, kind: ExportKind, delimiter: str) -> None:
    """Whichever reader filled raw_file: every column of the kind present, swallowed records flagged."""
    _complete_raw_file(con, kind)
    _flag_swallowed_records(con, kind, delimiter)


_PYTHON_BATCH_RECORDS = 50_000


def _load_raw_file_with_python(con: duckdb.DuckDBPyConnection, path: Path, columns: dict[str, str],
                               delimiter: str) -> None:
    """raw_file as _load_raw_file makes it, read by Python's csv module: a quote that opens a field closes it
    (text after it is kept), blank lines are not records, a record with more fields than the header keeps
    them all in _overflow."""
    names = list(columns)
    width = len(names) - 1  # the fields of the header; _overflow is last
    schema = pa.schema([("source_row", pa.int64()), *((name, pa.string()) for name in names)])
    con.execute("create or replace temp table raw_file (source_row bigint, "
                + ", ".join(f'"{name}" varchar' for name in names) + ")")
    csv.field_size_limit(2**31 - 1)

    def insert(batch: list[list]) -> None:
        table = pa.Table.from_arrays([pa.array(column, type) for column, type in
                                      zip(zip(*batch), schema.types)], schema=schema)
        con.register("raw_batch", table)
        try:
            con.execute("insert into raw_file select * from raw_batch")
        finally:
            con.unregister("raw_batch")

    with path.open(newline="", encoding="utf-8", errors="replace") as stream:
        reader = csv.reader(stream, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
        next(reader, None)  # the header
        batch: list[list] = []
        number = 0
        for record in reader:
            if not record:
                continue
            number += 1
            fields = [None if value == _NEVER_IN_DATA else value for value in record[:width]]
            fields += [None] * (width - len(fields))
            batch.append([number, *fields, delimiter.join(record[width:]) if len(record) > width else None])
            if len(batch) == _PYTHON_BATCH_RECORDS:
                insert(batch)
                batch = []
        if batch:
            insert(batch)


def _flag_swallowed_records(con: duckdb.DuckDBPyConnection, kind: ExportKind, delimiter: str) -> None:
    """Flag as having more fields than the header (so malformed_row) a record one of whose fields holds a line
    break and at least a whole record's worth of delimiters: an unbalanced quote that swallowed the records
    after it. They stay in that record's raw text, in quarantine, instead of vanishing into an accepted field."""
    condition = " or ".join(
        f"((contains({_quoted(name)}, chr(10)) or contains({_quoted(name)}, chr(13)))"
        f" and length({_quoted(name)}) - length(replace({_quoted(name)}, $delim, '')) >= $fields)"
        for name in kind.columns
    )
    con.execute(f"update raw_file set _overflow = coalesce(_overflow, '') where {condition}",
                {"delim": delimiter, "fields": len(kind.columns) - 1})


def _quoted(name: str) -> str:
    """A column name as a SQL identifier (a mapped layout's columns may hold spaces)."""
    return '"' + name.replace('"', '""') + '"'


def _complete_raw_file(con: duckdb.DuckDBPyConnection, kind: ExportKind) -> None:
    for missing in kind.columns:
        con.execute(f"alter table raw_file add column if not exists {_quoted(missing)} varchar")
    # The record's own status exists only in FHIR resources; CSV registries have none.
    con.execute("alter table raw_file add column if not exists record_status varchar")


def _empty_raw_file(con: duckdb.DuckDBPyConnection, kind: ExportKind) -> None:
    con.execute("create or replace temp table raw_file (source_row bigint, _overflow varchar)")
    _complete_raw_file(con, kind)


def _decompress(source: Path, target: Path) -> str:
    """Decompress a gzip file to `target`; return a one-line problem, or '' when the whole stream was sound.

    Here rather than in DuckDB, which does not check the gzip CRC: a stream damaged in the middle reads as
    garbage records there (patient ids among them). A stream that ends early or is corrupt stops the copy;
    what was decompressed before is kept, to be quarantined.
    """
    with gzip.open(source, "rb") as stream, target.open("wb") as out:
        try:
            # read1: a failing read then loses nothing that was decompressed before it.
            while block := stream.read1(1 << 20):
                out.write(block)
        except _GZIP_ERRORS:
            return "the gzip stream is truncated or corrupt"
    return ""


def _to_utf8(source: Path, target: Path, utf16: bool) -> None:
    """Copy a text file to `target` as UTF-8.

    Line by line: a line that is valid UTF-8 is copied as it is, any other line is decoded as Latin-1 (every
    byte is a Latin-1 character, so nothing is dropped; a file mixing both keeps each line right). A file
    starting with a UTF-16 byte order mark is decoded as UTF-16.
    """
    with source.open("rb") as stream, target.open("wb") as out:
        if utf16:
            text = codecs.getreader("utf-16")(stream, errors="replace")
            for chunk in iter(lambda: text.read(1 << 20), ""):
                out.write(chunk.encode("utf-8"))
            return
        for number, line in enumerate(stream):
            if number == 0 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                line = line.decode("latin-1").encode("utf-8")
            out.write(line)


def _reader_failure(error: Exception) -> str:
    """A one-line description of a CSV reader error, without the record text DuckDB quotes in its message."""
    line = re.search(r"CSV Error on Line: (\d+)", str(error))
    return f"the CSV reader failed ({type(error).__name__}" + (f" at line {line.group(1)})" if line else ")")


def _load_csv_file(con: duckdb.DuckDBPyConnection, export: ExportFile, scratch: Path,
                   delimiter: str | None = None) -> tuple[list[str], str, str]:
    """The CSV file's records into raw_file. Returns the kind's columns the header lacks, the column the
    header repeats (if any), and the file's problem ('' when it was read). `delimiter`: the one the file is
    known to be written with (a mapping's); else the one the header is written with."""
    kind = export.kind
    path, problem = export.path, ""
    if _compression_of(path) == "gzip":
        path = scratch / "decompressed.csv"
        problem = _decompress(export.path, path)
    head = _first_bytes(path)
    for signature, what in _NOT_TEXT_SIGNATURES.items():
        if head.startswith(signature):
            _empty_raw_file(con, kind)
            return [], "", problem or f"not a CSV text file: {what}"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        _to_utf8(path, scratch / "utf8.csv", utf16=True)
        path = scratch / "utf8.csv"
    if not _ends_with_line_break(path):
        # DuckDB drops the last byte of a file that ends inside a quote that never closes ('"P001' at the very
        # end reads as 'P00'); after a final line break nothing is lost.
        if path == export.path:
            shutil.copyfile(path, scratch / "terminated.csv")
            path = scratch / "terminated.csv"
        with path.open("ab") as out:
            out.write(b"\n")
    delimiter = delimiter or _sniff_delimiter(path, kind, "none")
    header = read_header(path, delimiter, "none")
    columns, repeated = _raw_columns(header, kind)
    try:
        _load_raw_file(con, path, kind, columns, delimiter)
    except duckdb.Error as error:
        reraise_interrupt(error)
        # Most likely not UTF-8. Found out from the bytes, not from DuckDB's message, which quotes the record
        # (and so may hold a patient id).
        _to_utf8(path, scratch / "utf8-lines.csv", utf16=False)
        path = scratch / "utf8-lines.csv"
        header = read_header(path, delimiter, "none")
        columns, repeated = _raw_columns(header, kind)
        try:
            _load_raw_file(con, path, kind, columns, delimiter)
        except duckdb.Error as error:
            reraise_interrupt(error)
            # Valid UTF-8 now, and still refused (a record over the line limit, a quote DuckDB cannot resolve):
            # Python's csv module reads it.
            try:
                _load_raw_file_with_python(con, path, columns, delimiter)
                _finish_raw_file(con, kind, delimiter)
            except (csv.Error, duckdb.Error) as error:
                reraise_interrupt(error)
                problem = problem or _reader_failure(error)
                _empty_raw_file(con, kind)
    missing = [name for name in kind.columns if name not in header]
    return missing, (repeated[0] if repeated else ""), problem


def _load_mapped_file(con: duckdb.DuckDBPyConnection, export: ExportFile, scratch: Path) -> tuple[list[str], str, str]:
    """A lab CSV in a site's layout into raw_file, through its mapping: read as any CSV (the same damage
    handling) with the mapping's source columns as the layout, then translated into the contract's fields
    (pipelines/mapping.py). Returns the source columns the header lacks, the one it repeats, the problem."""
    mapping = export.mapping
    source_columns = tuple(dict.fromkeys(column.lower() for column in mapping.source_columns()))
    layout = ExportKind(name=f"mapping {mapping.name}", table="lab_results", columns=source_columns,
                        sql_file="", lake_columns=())
    missing, repeated, problem = _load_csv_file(con, replace(export, kind=layout, mapping=None), scratch,
                                                delimiter=mapping.delimiter)
    con.execute("create or replace temp table mapped_source as select * from raw_file")
    dictionary_path = mapping.dictionary_path(export.path.parent)
    if mapping.dictionary is not None:
        if dictionary_path is None:
            raise MappingError(f"mapping {mapping.name}: key 'dictionary.file': {mapping.dictionary.file} "
                               "is neither in the drop folder nor beside the mapping")
        header = read_header(dictionary_path, mapping.dictionary.delimiter)
        wanted = [mapping.dictionary.key, *(column for _, column in mapping.dictionary.columns)]
        absent = [column for column in wanted if column.lower() not in header]
        if absent:
            raise MappingError(f"mapping {mapping.name}: key 'dictionary': {dictionary_path.name} has no column "
                               f"{', '.join(absent)}")
        fields = ", ".join(f"max(nullif(trim({_quoted(column.lower())}), '')) as {_quoted(field)}"
                           for field, column in mapping.dictionary.columns)
        con.execute(
            f"create or replace temp table mapped_dictionary as select trim({_quoted(mapping.dictionary.key.lower())}) "
            f"as dictionary_key, {fields} from read_csv($path, header = true, all_varchar = true, "
            "auto_detect = false, delim = $delim, quote = '\"', escape = '\"', normalize_names = false, "
            "columns = $columns) group by 1",
            {"path": str(dictionary_path), "delim": mapping.dictionary.delimiter,
             "columns": {name: "VARCHAR" for name in header}})
    con.execute("create or replace temp table mapped_local_codes (code varchar, analyte varchar)")
    if mapping.local_codes:
        con.execute("insert into mapped_local_codes select unnest($codes), unnest($analytes)",
                    {"codes": [code for code, _ in mapping.local_codes],
                     "analytes": [analyte for _, analyte in mapping.local_codes]})
    names = {name: name for name in source_columns}
    con.execute("create or replace temp table raw_file as "
                + raw_file_sql(mapping, names, has_dictionary=mapping.dictionary is not None))
    return missing, repeated, problem


# NDJSON lines are handed to DuckDB in Arrow batches of about this many bytes.
_LINE_BATCH_BYTES = 8 << 20
_LINE_SCHEMA = pa.schema([("source_row", pa.int64()), ("line", pa.string())])


def _ndjson_line_batches(path: Path, problems: list[str]) -> Iterator[pa.RecordBatch]:
    """Every line of an NDJSON file (plain or gzip), blank ones included, with its 1-based line number.

    Read here rather than with DuckDB's CSV reader because that reader skips empty lines, and then a record
    number is no longer the line number. Bytes that are not UTF-8 are kept as backslash escapes (\\xff):
    `\\x` is no JSON escape, so such a line fails json_valid (unless a stray backslash precedes the byte) and
    is quarantined with its bytes visible, instead of being silently altered. A gzip stream that ends early or
    is corrupt ends the lines (the incomplete last one is not a record) and adds its problem to `problems`.
    """
    numbers: list[int] = []
    lines: list[str] = []
    size = 0
    with _open_bytes(path, _compression_of(path)) as stream:
        try:
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
        except _GZIP_ERRORS:
            problems.append("the gzip stream is truncated or corrupt")
    if numbers:
        yield _line_batch(numbers, lines)


def _line_batch(numbers: list[int], lines: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(numbers, pa.int64()), pa.array(lines, pa.string())],
                                      schema=_LINE_SCHEMA)


_REFERENCE_SCHEMA = pa.schema([("reference", pa.string()), ("resource_type", pa.string()), ("line", pa.string())])
# The referenced resources of NDJSON files, by (path, size, mtime): read once per process, not once per file.
_reference_cache: dict[tuple[str, int, int], list[tuple[str, str, str]]] = {}


def _references_of_ndjson(path: Path) -> list[tuple[str, str, str]]:
    """(Type/id, type, JSON line) of every Medication or Organization of an NDJSON file; damaged lines are
    skipped (such a file is no export: nothing of it is accounted)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _reference_cache:
        rows = []
        try:
            with _open_bytes(path, _compression_of(path)) as stream:
                for data in stream:
                    try:
                        resource = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(resource, dict) and resource.get("resourceType") in _REFERENCED_RESOURCES \
                            and resource.get("id"):
                        rows.append((f"{resource['resourceType']}/{resource['id']}", resource["resourceType"],
                                     json.dumps(resource)))
        except _GZIP_ERRORS:
            pass
        _reference_cache[key] = rows
    return _reference_cache[key]


def _resolve_bundle(bundle: dict) -> list[dict]:
    """The Bundle's entries' resources, each reference to another entry by its fullUrl (urn:uuid:...) or by
    a conditional reference that names its identifier rewritten as Type/id (a resource without an id takes
    the uuid of its fullUrl). Entries that are not objects are kept as None, so entry positions stay."""
    resources: list = []
    targets: dict[str, str] = {}
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            resources.append(None)
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        if not resource.get("id") and full_url:
            resource = {**resource, "id": full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]}
        if full_url and resource.get("resourceType") and resource.get("id"):
            targets[full_url] = f"{resource['resourceType']}/{resource['id']}"
        for identifier in resource.get("identifier") or []:
            if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
                targets[f"{resource.get('resourceType')}?identifier={identifier['system']}|{identifier['value']}"] = \
                    f"{resource.get('resourceType')}/{resource.get('id')}"
        resources.append(resource)

    def rewrite(value):
        if isinstance(value, dict):
            return {k: (targets.get(v, v) if k == "reference" and isinstance(v, str) else rewrite(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        return value

    return [rewrite(resource) if resource is not None else None for resource in resources]


def _bundle_lines(export: ExportFile, problems: list[str]) -> tuple[pa.Table, list[tuple[str, str, str]]]:
    """The Bundle's entries of the export's resource type as numbered lines (source_row: the entry's 1-based
    position in the Bundle), and the Bundle's referenced resources."""
    document = _read_json_document(export.path)
    resources = _resolve_bundle(document) if isinstance(document, dict) else []
    if not isinstance(document, dict):
        problems.append("not a JSON document any more")
    numbers, lines, references = [], [], []
    for position, resource in enumerate(resources, start=1):
        if resource is None:
            continue
        if resource.get("resourceType") == export.fhir_resource:
            numbers.append(position)
            lines.append(json.dumps(resource))
        if resource.get("resourceType") in _REFERENCED_RESOURCES and resource.get("id"):
            references.append((f"{resource['resourceType']}/{resource['id']}", resource["resourceType"],
                               json.dumps(resource)))
    table = pa.Table.from_arrays([pa.array(numbers, pa.int64()), pa.array(lines, pa.string())],
                                 schema=_LINE_SCHEMA)
    return table, references


def _load_fhir_references(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, str]]) -> None:
    """The temp table fhir_references (reference Type/id, resource_type, line) the fields models join."""
    table = pa.Table.from_arrays([pa.array(list(column), pa.string()) for column in zip(*rows)]
                                 if rows else [pa.array([], pa.string())] * 3, schema=_REFERENCE_SCHEMA)
    con.register("fhir_reference_rows", table)
    try:
        con.execute("create or replace temp table fhir_references as "
                    "select distinct on (reference) * from fhir_reference_rows")
    finally:
        con.unregister("fhir_reference_rows")


def _load_fhir_file(con: duckdb.DuckDBPyConnection, export: ExportFile) -> str:
    """The file's lines into fhir_lines, then flattened by fhir_<resource>_fields.sql into raw_file. Returns
    the file's problem ('' when all of it was read).

    The resources that records may reference (fhir_references) are the Bundle's own entries, or for an NDJSON
    file the Medication and Organization NDJSON files beside it (the same $export)."""
    problems: list[str] = []
    if export.bundle:
        lines, references = _bundle_lines(export, problems)
        con.register("ndjson_line_batches", lines)
    else:
        references = [row for path in sorted(export.path.parent.iterdir())
                      if path.is_file() and _REFERENCE_FILE_NAME.match(path.name)
                      for row in _references_of_ndjson(path)]
        batches = pa.RecordBatchReader.from_batches(_LINE_SCHEMA, _ndjson_line_batches(export.path, problems))
        con.register("ndjson_line_batches", batches)
    try:
        con.execute("create or replace temp table fhir_lines as select source_row, line from ndjson_line_batches")
    finally:
        con.unregister("ndjson_line_batches")
    _load_fhir_references(con, references)
    sql = read_sql(INGEST_SQL_DIR / f"fhir_{export.fhir_resource.lower()}_fields.sql")
    con.execute(f"create or replace temp table raw_file as {sql}")
    return problems[0] if problems else ""


class IngestError(RuntimeError):
    """An export file could not be ingested for a reason other than its content (which is never an error)."""


def ingest_file(con: duckdb.DuckDBPyConnection, export: ExportFile, lake: Lake, run_id: str,
                ingest_date: date, earlier_lab_files: list[Path]) -> FileAccount:
    """Parse one export file and write its accepted and quarantined rows to the lake (uncommitted).

    Damaged content is accounted for, never raised. Anything else that fails (the file vanished, the disk is
    full) stops the run with one line naming the file; DuckDB's own message is left out, since it may quote a
    record and with it a patient id.
    """
    try:
        return _ingest_file(con, export, lake, run_id, ingest_date, earlier_lab_files)
    except OSError as error:
        raise IngestError(f"{export.name}: could not be ingested: {error.strerror or error}") from error
    except (duckdb.Error, csv.Error) as error:
        reraise_interrupt(error)
        raise IngestError(f"{export.name}: could not be ingested ({type(error).__name__}); nothing was committed") \
            from error


def _ingest_file(con: duckdb.DuckDBPyConnection, export: ExportFile, lake: Lake, run_id: str,
                 ingest_date: date, earlier_lab_files: list[Path]) -> FileAccount:
    if not _has_table(con, "ref_units"):
        load_reference_tables(con)  # once per connection: a task of small files shares one
    con.execute(_ISO_TIMESTAMP_MACRO)
    con.execute(_CLEAN_IDENTIFIER_MACRO)
    for macro in _PARTIAL_DATE_MACROS:
        con.execute(macro)
    repeated_column = ""
    if export.format == "ndjson":
        missing_columns = []  # the fields model always gives every column of the kind
        problem = _load_fhir_file(con, export)
    else:
        scratch_root = lake.root.parent / ".tmp"
        scratch_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch_root, prefix="ingest-") as scratch:
            if export.mapping is not None:
                missing_columns, repeated_column, problem = _load_mapped_file(con, export, Path(scratch))
            else:
                missing_columns, repeated_column, problem = _load_csv_file(con, export, Path(scratch))
    if export.kind.name == "labs":
        _register_existing_lab_keys(con, earlier_lab_files)
        if export.mapping is None:
            con.execute("create or replace temp table mapped_local_codes (code varchar, analyte varchar)")
    sql = read_sql(INGEST_SQL_DIR / export.kind.sql_file)
    params = {"ingest_date": ingest_date} if "$ingest_date" in sql else {}
    con.execute(f"create or replace temp table parsed_rows as {sql}", params)
    # File-level reasons, strongest last: every record of the file goes to quarantine.
    if missing_columns:
        # Not the expected layout: no field can be trusted, so every record goes to quarantine.
        con.execute("update parsed_rows set outcome = 'quarantined', reason = 'missing_columns'")
    elif repeated_column:
        # Two columns of the same name: which one holds the value is anybody's guess.
        con.execute(f"update parsed_rows set outcome = 'quarantined', reason = '{DUPLICATE_COLUMNS}'")
    if problem:
        # Damaged: the records that could be read are kept, in quarantine, and none is trusted.
        con.execute(f"update parsed_rows set outcome = 'quarantined', reason = '{UNREADABLE_FILE}'")
    if export.format == "ndjson":
        # An NDJSON record is its line: quarantine keeps the resource as it came, not the flattened fields.
        con.execute(
            "update parsed_rows set raw = fhir_lines.line from fhir_lines "
            "where fhir_lines.source_row = parsed_rows.source_row and parsed_rows.outcome = 'quarantined'"
        )
    if export.kind.name == "labs":
        # Out of scope is counted per code, and its text is kept nowhere: not even when a file-level reason
        # quarantines the whole file (a survey answer or an address has no place in a B12 pipeline's lake).
        con.execute("update parsed_rows set raw = null where outcome = 'quarantined' and analyte is null "
                    "and (loinc is not null or local_code is not null)")

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
    if export.kind.name == "labs":
        _write_unmapped_codes(con, export, lake, lineage)
    account = _account(con, export)
    if missing_columns:
        account.missing_columns = list(missing_columns)
        print(f"{export.name}: missing columns {', '.join(missing_columns)}: {account.rows_read} records, "
              "all quarantined as missing_columns")
    if problem:
        account.problem = problem
        # Recorded even when not one record could be read, so the accounting names the reason.
        account.by_reason.setdefault(("quarantined", UNREADABLE_FILE), 0)
        print(f"{export.name}: unreadable file ({problem}): {account.rows_read} records read, "
              f"all quarantined as {UNREADABLE_FILE}")
    return account


# The code system of a lab row's local code: FHIR names it (the coding's system URL); a CSV export does not.
_UNMAPPED_CODES_SQL = """
    select
        $source_file as source_file, $source_hash as source_hash, $ingest_run as ingest_run,
        case when parsed_rows.loinc is not null then 'http://loinc.org'
             else coalesce(nullif({local_system}, ''), 'local') end as code_system,
        coalesce(parsed_rows.loinc, parsed_rows.local_code) as code,
        min(parsed_rows.test_name) as display,
        count(*) as rows,
        min(cast(parsed_rows.collected_at as date)) as first_seen,
        max(cast(parsed_rows.collected_at as date)) as last_seen
    from parsed_rows
    join raw_file on raw_file.source_row = parsed_rows.source_row
    where parsed_rows.reason = 'out_of_scope'
    group by all
    order by rows desc, code_system, code
"""


def _write_unmapped_codes(con: duckdb.DuckDBPyConnection, export: ExportFile, lake: Lake, lineage: dict) -> None:
    """The file's out-of-scope codes, one row per code system and code, into lake/unmapped_codes/."""
    has_system = bool(con.execute(
        "select count(*) from duckdb_columns() where table_name = 'raw_file' and column_name = 'local_code_system'"
    ).fetchone()[0])
    sql = _UNMAPPED_CODES_SQL.format(local_system="raw_file.local_code_system" if has_system else "null")
    lake.write_query(con, sql, lineage, lake.data_file("unmapped_codes", export.source_hash))


# The duplicate keys of small lake files, kept for the life of the process. A lake file never changes once
# written (it is named by the hash of its export), and without this a drop of thousands of small files reads
# every earlier file once per file: 1000 one-row files took 4 minutes, most of it here. Bounded: a file of more
# than _KEY_CACHE_FILE_ROWS rows, or any file once _KEY_CACHE_ROWS rows are held, is read from Parquet each time.
_KEY_SCHEMA = pa.schema([
    ("patient_id", pa.string()), ("analyte", pa.string()), ("collected_at", pa.timestamp("us")),
    ("accession", pa.string()), ("status", pa.string()), ("comparator", pa.string()), ("value_si", pa.float64()),
    ("value_text", pa.string()),
])
_KEY_COLUMNS_SQL = ("patient_id varchar, analyte varchar, collected_at timestamp, accession varchar, "
                    "status varchar, comparator varchar, value_si double, value_text varchar")
_KEY_CACHE_FILE_ROWS = 10_000
_KEY_CACHE_ROWS = 500_000
_key_cache: dict[tuple[str, int, int], pa.Table] = {}


def _cached_lab_keys(path: Path) -> pa.Table | None:
    """The file's duplicate keys from the cache (read and kept if the file is small), or None."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)  # a file rewritten under the same name is another entry
    if key not in _key_cache:
        rows = pq.read_metadata(path).num_rows
        held = sum(table.num_rows for table in _key_cache.values())
        if rows > _KEY_CACHE_FILE_ROWS or held + rows > _KEY_CACHE_ROWS:
            return None
        _key_cache[key] = pq.read_table(path, columns=_KEY_SCHEMA.names).cast(_KEY_SCHEMA)
    return _key_cache[key]


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the connection already holds the table (a connection that ingests file after file keeps some)."""
    return bool(con.execute("select count(*) from duckdb_tables() where table_name = $name",
                            {"name": name}).fetchone()[0])


def _register_existing_lab_keys(con: duckdb.DuckDBPyConnection, lab_files: list[Path]) -> None:
    """The duplicate keys of lab results already in the lake (or ingested earlier in this run) that the file in
    raw_file can repeat, as the view existing_lab_keys.

    Small lake files come from the in-process cache into existing_small_lab_keys, which a connection that
    ingests file after file keeps, adding only the files it does not hold yet (listed in
    existing_lab_key_files): a task of thousands of small files would otherwise gather every earlier file's
    keys once per file. Large files are read again for each file, only the rows of the patients the file
    names: a night's file repeats no one else's results, and the lake's history need not be held in memory."""
    wanted = [str(path) for path in lab_files]
    loaded = ({path for (path,) in con.execute("select path from existing_lab_key_files").fetchall()}
              if _has_table(con, "existing_lab_key_files") else None)
    if loaded is None or not loaded <= set(wanted):
        con.execute(f"create or replace temp table existing_small_lab_keys ({_KEY_COLUMNS_SQL})")
        con.execute("create or replace temp table existing_lab_key_files (path varchar)")
        loaded = set()
    cached, cached_paths, large = [], [], []
    for path in lab_files:
        if str(path) in loaded:
            continue
        keys = _cached_lab_keys(path)
        if keys is None:
            large.append(str(path))
        else:
            cached.append(keys)
            cached_paths.append(str(path))
    if cached:
        # One chunk: DuckDB scans a table of thousands of one-row chunks slowly.
        con.register("cached_lab_keys", pa.concat_tables(cached).combine_chunks())
        try:
            con.execute("insert into existing_small_lab_keys select * from cached_lab_keys")
        finally:
            con.unregister("cached_lab_keys")
        con.execute("insert into existing_lab_key_files select unnest($paths)", {"paths": cached_paths})
    con.execute(f"create or replace temp table existing_large_lab_keys ({_KEY_COLUMNS_SQL})")
    if large:
        con.execute(
            f"insert into existing_large_lab_keys select {', '.join(_KEY_SCHEMA.names)} from read_parquet($files) "
            "where patient_id in (select clean_identifier(raw_file.patient_id) from raw_file)",
            {"files": large},
        )
    con.execute("create or replace temp view existing_lab_keys as "
                "select * from existing_small_lab_keys union all select * from existing_large_lab_keys")


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
