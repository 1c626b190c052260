"""A FHIR export's resources into the temp table raw_file, on the columns of their export kind.

A FHIR Bulk Data NDJSON file is read line by line (blank lines too, so a record number is its line number)
into fhir_lines; a FHIR Bundle's entries of the export's resource type likewise, numbered by their position in
the Bundle. A SQL model (b12lab/ingest/sql/fhir_<resource>_fields.sql; MedicationRequest and
MedicationStatement share fhir_medication_fields.sql) then flattens each line into the same raw_file columns a
CSV file of the kind gives, so that from raw_file on both take the same path. The
resources that records may reference (Medication, Organization) are gathered into fhir_references, for the
fields models to join.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from b12lab.common.paths import INGEST_SQL_DIR, read_sql
from b12lab.ingest.contract import REFERENCE_FILE_NAME, REFERENCED_RESOURCES, ExportFile, is_ndjson_name
from b12lab.ingest.decoding import GZIP_ERRORS, compression_of, open_bytes, read_json_document, read_text

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
    with open_bytes(path, compression_of(path)) as stream:
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
        except GZIP_ERRORS:
            problems.append("the gzip stream is truncated or corrupt")
    if numbers:
        yield _line_batch(numbers, lines)


def _line_batch(numbers: list[int], lines: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(numbers, pa.int64()), pa.array(lines, pa.string())],
                                      schema=_LINE_SCHEMA)


# The fields model of each resource type whose model is not fhir_<resource>_fields.sql: the two medication
# resources differ only in where the dosage and the dates are, and one model reads both.
_SHARED_FIELDS_MODELS = {"MedicationRequest": "fhir_medication_fields.sql",
                         "MedicationStatement": "fhir_medication_fields.sql"}


def fields_model(resource_type: str) -> Path:
    """The SQL model that flattens the resource type's lines into raw_file; it is run with $resource_type."""
    return INGEST_SQL_DIR / _SHARED_FIELDS_MODELS.get(resource_type, f"fhir_{resource_type.lower()}_fields.sql")


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
            with open_bytes(path, compression_of(path)) as stream:
                for data in stream:
                    try:
                        resource = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(resource, dict) and resource.get("resourceType") in REFERENCED_RESOURCES \
                            and resource.get("id"):
                        rows.append((f"{resource['resourceType']}/{resource['id']}", resource["resourceType"],
                                     json.dumps(resource)))
        except GZIP_ERRORS:
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


def salvage_bundle(text: str) -> dict:
    """What can be read of a Bundle whose JSON ends early or is damaged: its entries up to the first that is
    not whole (their records are then quarantined as unreadable_file, not lost without a count)."""
    decoder = json.JSONDecoder()
    start = re.search(r'"entry"\s*:\s*\[', text)
    entries = []
    position = start.end() if start else len(text)
    while position < len(text):
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            entry, position = decoder.raw_decode(text, position)
        except ValueError:
            break
        entries.append(entry)
    return {"resourceType": "Bundle", "entry": entries}


def _bundle_records(bundles: Iterator[list | str], resource_type: str
                    ) -> tuple[pa.Table, list[tuple[str, str, str]]]:
    """The entries of the export's resource type of one or more Bundles (each as _resolve_bundle gives its
    entries) as numbered lines (source_row: the entry's 1-based position, counted through the Bundles in
    order), and the Bundles' referenced resources. A text instead of a Bundle (an NDJSON line that is not
    JSON) is one record as it is."""
    numbers, lines, references = [], [], []
    position = 0
    for bundle in bundles:
        if isinstance(bundle, str):
            position += 1
            numbers.append(position)
            lines.append(bundle)
            continue
        for resource in bundle:
            position += 1
            if resource is None:
                continue
            if resource.get("resourceType") == resource_type:
                numbers.append(position)
                lines.append(json.dumps(resource))
            if resource.get("resourceType") in REFERENCED_RESOURCES and resource.get("id"):
                references.append((f"{resource['resourceType']}/{resource['id']}", resource["resourceType"],
                                   json.dumps(resource)))
    table = pa.Table.from_arrays([pa.array(numbers, pa.int64()), pa.array(lines, pa.string())],
                                 schema=_LINE_SCHEMA)
    return table, references


def _bundle_lines(export: ExportFile, problems: list[str]) -> tuple[pa.Table, list[tuple[str, str, str]]]:
    """A Bundle file's entries of the export's resource type (source_row: the entry's position in the Bundle).
    A Bundle that cannot be read whole (truncated, damaged) gives the entries that can be read, and its
    problem."""
    entries, problem = _resolved_bundle_file(export.path)
    if problem:
        problems.append(problem)
    return _bundle_records(iter([entries]), export.fhir_resource)


# The resolved entries of the small Bundle files read last, by (path, size, mtime). A Bundle is an export per
# resource type it holds, which one task reads one after another: parsed and resolved once, not once per
# resource type (a third of a night of per-patient Bundles' ingest). Bounded: files of at most
# _RESOLVED_FILE_BYTES, the last _RESOLVED_FILES of them.
_RESOLVED_FILES = 16
_RESOLVED_FILE_BYTES = 1 << 20
_resolved_files: dict[tuple[str, int, int], tuple[list, str]] = {}
_resolved_lock = threading.Lock()  # the lab files and the others are ingested by two threads at once


def _resolved_bundle_file(path: Path) -> tuple[list, str]:
    """A Bundle file's entries, resolved (_resolve_bundle), and its problem ('' when it was read whole)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _resolved_lock:
        if key in _resolved_files:
            return _resolved_files[key]
    document, problem = read_json_document(path), ""
    if not isinstance(document, dict):
        problem = "the JSON document is truncated or damaged"
        document = salvage_bundle(read_text(path))
    resolved = (_resolve_bundle(document), problem)
    if stat.st_size <= _RESOLVED_FILE_BYTES:
        with _resolved_lock:
            _resolved_files[key] = resolved
            while len(_resolved_files) > _RESOLVED_FILES:
                del _resolved_files[next(iter(_resolved_files))]
    return resolved


def _bundle_ndjson_lines(export: ExportFile, problems: list[str]) -> tuple[pa.Table, list[tuple[str, str, str]]]:
    """An NDJSON file whose lines are Bundles: every line's entries of the export's resource type, numbered
    through the file. A line that is not a Bundle is taken as one resource; one that is not JSON is kept as
    a record of its own (malformed_row), as in any NDJSON file."""
    def bundles() -> Iterator[list | str]:
        for batch in _ndjson_line_batches(export.path, problems):
            for line in batch.column("line").to_pylist():
                if not line.strip():
                    continue
                try:
                    document = json.loads(line)
                except ValueError:
                    yield line
                    continue
                if isinstance(document, dict) and document.get("resourceType") == "Bundle":
                    yield _resolve_bundle(document)
                else:
                    yield _resolve_bundle({"entry": [{"resource": document}]})

    return _bundle_records(bundles(), export.fhir_resource)


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


@dataclass(frozen=True)
class BundleRead:
    """A Bundle file's records of the export's resource type (source_row: the entry's position), the resources
    they may reference, and why the Bundle could not be read whole ('' when it could)."""

    lines: pa.Table
    references: list[tuple[str, str, str]]
    problem: str


def read_bundle(export: ExportFile) -> BundleRead:
    """The records of a Bundle export (a JSON document, or NDJSON whose lines are Bundles)."""
    problems: list[str] = []
    reader = _bundle_ndjson_lines if is_ndjson_name(export.path) else _bundle_lines
    lines, references = reader(export, problems)
    return BundleRead(lines, references, problems[0] if problems else "")


def load_fhir_file(con: duckdb.DuckDBPyConnection, export: ExportFile) -> str:
    """The file's lines into fhir_lines, then flattened by the resource's fields model into raw_file. Returns
    the file's problem ('' when all of it was read).

    The resources that records may reference (fhir_references) are the Bundle's own entries, or for an NDJSON
    file the Medication and Organization NDJSON files beside it (the same $export)."""
    if export.bundle:
        bundle = read_bundle(export)
        _load_records(con, bundle.lines, bundle.references, export.fhir_resource)
        return bundle.problem
    problems: list[str] = []
    references = [row for path in sorted(export.path.parent.iterdir())
                  if path.is_file() and REFERENCE_FILE_NAME.match(path.name)
                  for row in _references_of_ndjson(path)]
    # the lines are read as DuckDB consumes them: `problems` is complete once the records are loaded
    batches = pa.RecordBatchReader.from_batches(_LINE_SCHEMA, _ndjson_line_batches(export.path, problems))
    _load_records(con, batches, references, export.fhir_resource)
    return problems[0] if problems else ""


def load_bundles(con: duckdb.DuckDBPyConnection, bundles: list[BundleRead], resource_type: str) -> None:
    """Several readable Bundles' records of one resource type at once, as load_fhir_file loads one: the
    record at position p of the i-th Bundle is numbered i * 2^32 + p (macros record_file and record_position,
    b12lab/ingest/macros.py), so the first Bundle's records keep their own numbers. The Bundles' referenced
    resources are pooled: the caller gives Bundles whose references name no resource two of them tell
    differently (b12lab/ingest/batched_ingest.py)."""
    numbered = [bundle.lines.set_column(0, "source_row", pc.add(bundle.lines.column("source_row"), index << 32))
                for index, bundle in enumerate(bundles)]
    references = [row for bundle in bundles for row in bundle.references]
    _load_records(con, pa.concat_tables(numbered), references, resource_type)


def _load_records(con: duckdb.DuckDBPyConnection, lines: pa.Table | pa.RecordBatchReader,
                  references: list[tuple[str, str, str]], resource_type: str) -> None:
    """Numbered lines into fhir_lines and their records flattened by the resource's fields model into raw_file."""
    con.register("ndjson_line_batches", lines)
    try:
        con.execute("create or replace temp table fhir_lines as select source_row, line from ndjson_line_batches")
    finally:
        con.unregister("ndjson_line_batches")
    # A record is a line that is not blank (empty or only whitespace); it keeps its line number as source_row.
    con.execute("create or replace temp view fhir_records as "
                r"select source_row, line from fhir_lines where not regexp_full_match(line, '\s*')")
    _load_fhir_references(con, references)
    sql = read_sql(fields_model(resource_type))
    params = {"resource_type": resource_type} if "$resource_type" in sql else {}
    con.execute(f"create or replace temp table raw_file as {sql}", params)
    con.execute("create or replace temp table trailer_rows (source_row bigint)")  # NDJSON has no trailer line
