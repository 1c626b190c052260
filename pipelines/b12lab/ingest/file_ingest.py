"""Ingest one export file into the lake: read, type, map, convert, account for every row.

The row-level work is SQL (b12lab/ingest/sql/<kind>_rows.sql) run by DuckDB over the whole file at once;
this module runs one file through the steps, each in a module of its own, and moves the outcome into the lake.
The file is read into the temp table raw_file (csv_reader.py; fhir_reader.py for FHIR NDJSON and Bundles),
the kind's row model turns raw_file into parsed_rows (with the macros of macros.py and, for labs, the keys of
deduplication.py), file-level reasons quarantine the whole file (accounting.py), and the accepted rows, the
quarantined ones and the out-of-scope codes are written to the lake, uncommitted, before the file's account
is returned.

Damaged input never stops the run with a traceback. A file that cannot be read at all (a truncated or
corrupt gzip, a PDF or zip named *.csv) is not an error either: every record that could be read is
quarantined as `unreadable_file`, and the file's one-line problem is kept in its FileAccount and printed
(file name and problem only, never row content). Only a failure that is not about the file's content (the
file vanished, the disk is full) stops the run, as an IngestError.
"""
from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb

from b12lab.common.duck import load_reference_tables, out_of_memory_message, reraise_interrupt
from b12lab.common.faults import crash_point
from b12lab.common.paths import INGEST_SQL_DIR, read_sql
from b12lab.common.settings import load_settings
from b12lab.ingest.accounting import (FileAccount, ReconciliationError, SuspectedCode, file_account,
                                      quarantine_whole_file, record_file_problems)
from b12lab.ingest.contract import (EXPORT_KINDS, LAB_COLUMNS, ExportFile, discover_exports, export_kind_of,
                                    fhir_resource_of, read_manifest)
from b12lab.ingest.csv_reader import load_csv_file, load_mapped_file
from b12lab.ingest.deduplication import has_table, register_existing_lab_keys
from b12lab.ingest.fhir_reader import load_fhir_file
from b12lab.ingest.macros import create_macros
from b12lab.lake.lake import Lake

# Other packages import these from here; they are kept until they import them from b12lab.ingest.
__all__ = [
    "EXPORT_KINDS", "LAB_COLUMNS", "ExportFile", "FileAccount", "IngestError", "ReconciliationError",
    "discover_exports", "export_kind_of", "fhir_resource_of", "ingest_file", "read_manifest",
]


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
        raise IngestError(f"{export.display_name}: could not be ingested: {error.strerror or error}") from error
    except duckdb.OutOfMemoryException as error:
        raise IngestError(f"{export.display_name}: could not be ingested: "
                          f"{out_of_memory_message(load_settings().memory_limit)}; nothing was committed") from error
    except (duckdb.Error, csv.Error) as error:
        reraise_interrupt(error)
        raise IngestError(f"{export.display_name}: could not be ingested ({type(error).__name__}); nothing was committed") \
            from error


def _ingest_file(con: duckdb.DuckDBPyConnection, export: ExportFile, lake: Lake, run_id: str,
                 ingest_date: date, earlier_lab_files: list[Path]) -> FileAccount:
    if not has_table(con, "ref_units"):
        # once per connection: a task of small files shares one (the macros never change between files)
        load_reference_tables(con)
        create_macros(con)
    repeated_column = ""
    if export.format == "ndjson":
        missing_columns = []  # the fields model always gives every column of the kind
        problem = load_fhir_file(con, export)
    else:
        scratch_root = lake.root.parent / ".tmp"
        scratch_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch_root, prefix="ingest-") as scratch:
            if export.mapping is not None:
                missing_columns, repeated_column, problem = load_mapped_file(con, export, Path(scratch))
            else:
                missing_columns, repeated_column, problem = load_csv_file(con, export, Path(scratch))
    if export.kind.name == "labs":
        register_existing_lab_keys(con, earlier_lab_files)
        if export.mapping is None:
            con.execute("create or replace temp table mapped_local_codes (code varchar, analyte varchar)")
    sql = read_sql(INGEST_SQL_DIR / export.kind.sql_file)
    params = {"ingest_date": ingest_date} if "$ingest_date" in sql else {}
    _create_parsed_rows(con, export, f"create or replace temp table parsed_rows as {sql}", params)
    # File-level reasons, strongest last: every record of the file goes to quarantine.
    quarantine_whole_file(con, missing_columns, repeated_column, problem)
    # A trailer line (Total rows: 10, END OF REPORT) after the last record is no record: dropped by a rule.
    con.execute("update parsed_rows set outcome = 'dropped', reason = 'trailer' "
                "where source_row in (select source_row from trailer_rows)")
    # Quarantine keeps of a FHIR resource only what the row model read (its `raw`: the flattened fields, as for
    # a CSV record), never the whole resource with its address, telecom or free-text notes. A line of which no
    # field could be read is described, not kept: it may be any part of any resource.
    if export.format == "ndjson":
        con.execute(
            "update parsed_rows set raw = case when not json_valid(fhir_lines.line) "
            "    then 'not valid JSON (' || length(fhir_lines.line) || ' characters)' "
            "    else coalesce(json_extract_string(fhir_lines.line, '$.resourceType') || ' resource', "
            "                  'JSON without a resource type') || ' where ' || $resource_type || ' was expected' end "
            "from fhir_lines where fhir_lines.source_row = parsed_rows.source_row "
            "and parsed_rows.outcome = 'quarantined' and coalesce(parsed_rows.raw, '') = ''",
            {"resource_type": export.fhir_resource})
    if export.kind.name == "labs":
        # Out of scope is counted per code, and its text is kept nowhere: not even when a file-level reason
        # quarantines the whole file (a survey answer or an address has no place in a B12 pipeline's lake).
        con.execute("update parsed_rows set raw = null where outcome = 'quarantined' and analyte is null "
                    "and (loinc is not null or local_code is not null)")

    lineage = {"source_file": export.name, "source_hash": export.source_hash, "ingest_run": run_id}
    lineage_sql = "$source_file as source_file, source_row, $source_hash as source_hash, $ingest_run as ingest_run"
    accepted_columns = ", ".join(export.kind.lake_columns)
    _within_memory(con, export, "the lake file of its accepted rows", lambda: lake.write_query(
        con,
        f"select {accepted_columns}, {lineage_sql} from parsed_rows where outcome = 'accepted' order by source_row",
        lineage,
        lake.data_file(export.kind.table, export.source_hash),
    ))
    crash_point("ingest")
    _within_memory(con, export, "the lake file of its quarantined rows", lambda: lake.write_query(
        con,
        f"select {lineage_sql}, $table_name as table_name, reason, raw "
        "from parsed_rows where outcome = 'quarantined' order by source_row",
        {**lineage, "table_name": export.kind.table},
        lake.data_file("quarantine", export.source_hash),
    ))
    account = file_account(con, export)
    if export.kind.name == "labs":
        account.suspected_unmapped = _write_unmapped_codes(con, export, lake, lineage)
        account.accepted_by_analyte = dict(con.execute(
            "select analyte, count(*) from parsed_rows where outcome = 'accepted' group by analyte order by analyte"
        ).fetchall())
    record_file_problems(account, export, missing_columns, problem)
    account.unreadable_fields = _write_unreadable_fields(con, export, lake, lineage)
    return account


def _create_parsed_rows(con: duckdb.DuckDBPyConnection, export: ExportFile, statement: str, params: dict) -> None:
    """The row model over the whole file. Nothing reads parsed_rows in insertion order (every writer orders by
    source_row), so DuckDB need not buffer the result to keep it."""
    con.execute("set preserve_insertion_order = false")
    try:
        _within_memory(con, export, "the row model", lambda: con.execute(statement, params))
    finally:
        con.execute("set preserve_insertion_order = true")  # raw_file's numbering is file order


def _within_memory(con: duckdb.DuckDBPyConnection, export: ExportFile, step: str, action: Callable[[], object]) -> None:
    """Run a step of the file's ingest; if DuckDB runs out of memory, run it again on one thread.

    A large file can need more than the memory limit on every thread at once, though it spills: the row model
    of a 3M-row lab file whose duplicate check reads millions of the lake's keys (768 MB on 2 threads), or the
    sorted Parquet write of a 500k-row file at a 128 MB limit. On one thread it stays within the limit at the
    cost of time, and the run's log says so. Out of memory on one thread too is the caller's one-line error."""
    try:
        action()
    except duckdb.OutOfMemoryException:
        threads = con.execute("select current_setting('threads')").fetchall()[0][0]
        print(f"{export.display_name}: {step} needed more than the memory limit "
              f"({load_settings().memory_limit}) on {threads} threads; run again on one thread")
        con.execute("set threads = 1")
        try:
            action()
        finally:
            con.execute("reset threads")


# The file's out-of-scope codes, one row per code system and code. The code system of a lab row's local code:
# FHIR names it (the coding's system URL); a mapped CSV, its mapping; a contract CSV does not ('local').
# suggested_analyte: the analyte of the first pattern of ref_analyte_names (in precedence order) that one of
# the code's names matches, when that pattern is an analyte's and not a false friend's (no analyte); among the
# code's names, the one whose deciding pattern comes first.
_UNMAPPED_CODES_SQL = """
    with out_of_scope as (
        select
            case when parsed_rows.loinc is not null then 'http://loinc.org'
                 else coalesce(nullif({local_system}, ''), 'local') end as code_system,
            coalesce(parsed_rows.loinc, parsed_rows.local_code) as code,
            parsed_rows.test_name,
            cast(parsed_rows.collected_at as date) as collected_on
        from parsed_rows
        join raw_file on raw_file.source_row = parsed_rows.source_row
        where parsed_rows.reason = 'out_of_scope'
    ),

    codes as (
        select code_system, code, min(test_name) as display, count(*) as rows, min(collected_on) as first_seen,
            max(collected_on) as last_seen
        from out_of_scope
        group by code_system, code
    ),

    names as (
        select distinct code_system, code, lower(test_name) as name
        from out_of_scope
        where test_name is not null
    ),

    deciding_pattern as (
        -- each name's first matching pattern: an analyte's, or a false friend's (analyte null)
        select names.code_system, names.code, patterns.analyte, cast(patterns.precedence as integer) as precedence
        from names
        join ref_analyte_names as patterns on regexp_matches(names.name, patterns.pattern)
        qualify row_number() over (
            partition by names.code_system, names.code, names.name
            order by cast(patterns.precedence as integer), patterns.analyte nulls first, patterns.pattern
        ) = 1
    ),

    suggestions as (
        select code_system, code, arg_min(analyte, precedence) as suggested_analyte
        from deciding_pattern
        where analyte is not null
        group by code_system, code
    ),

    final as (
        select
            $source_file as source_file, $source_hash as source_hash, $ingest_run as ingest_run,
            codes.code_system, codes.code, codes.display, codes.rows, codes.first_seen, codes.last_seen,
            suggestions.suggested_analyte
        from codes
        left join suggestions using (code_system, code)
    )

    select * from final
    order by rows desc, code_system, code
"""


def _write_unmapped_codes(con: duckdb.DuckDBPyConnection, export: ExportFile, lake: Lake,
                          lineage: dict) -> list[SuspectedCode]:
    """The file's out-of-scope codes, one row per code system and code, into lake/unmapped_codes/; returns
    those whose name suggests an analyte (suspected unmapped analytes), most rows first."""
    has_system = bool(con.execute(
        "select count(*) from duckdb_columns() where table_name = 'raw_file' and column_name = 'local_code_system'"
    ).fetchone()[0])
    sql = _UNMAPPED_CODES_SQL.format(local_system="raw_file.local_code_system" if has_system else "null")
    target = lake.data_file("unmapped_codes", export.source_hash)
    lake.write_query(con, sql, lineage, target)
    suspected = con.execute(
        "select code_system, code, display, suggested_analyte, rows from read_parquet($path) "
        "where suggested_analyte is not null order by rows desc, code_system, code", {"path": str(target)}
    ).fetchall()
    return [SuspectedCode(*row) for row in suspected]


# The optional fields a row model names in unreadable_fields (given, not read, stored null), counted for the
# accepted rows only: a quarantined or dropped row is accounted for by its reason.
_UNREADABLE_FIELDS_SQL = """
    select
        $source_file as source_file, $source_hash as source_hash, $ingest_run as ingest_run,
        $table_name as table_name, field, count(*) as rows
    from (select unnest(unreadable_fields) as field from parsed_rows where outcome = 'accepted')
    group by field
    order by field
"""


def _write_unreadable_fields(con: duckdb.DuckDBPyConnection, export: ExportFile, lake: Lake,
                             lineage: dict) -> dict[str, int]:
    """The file's unreadable optional fields into lake/unreadable_fields/ (a kind whose row model names none
    writes no file); returns field -> rows, each printed in one line (no row content)."""
    has_column = con.execute(
        "select count(*) from duckdb_columns() where table_name = 'parsed_rows' and column_name = 'unreadable_fields'"
    ).fetchone()[0]
    if not has_column:
        return {}
    params = {**lineage, "table_name": export.kind.table}
    lake.write_query(con, _UNREADABLE_FIELDS_SQL, params, lake.data_file("unreadable_fields", export.source_hash))
    counts = dict(con.execute(
        "select field, count(*) from (select unnest(unreadable_fields) as field from parsed_rows "
        "where outcome = 'accepted') group by field order by field").fetchall())
    for field_name, rows in counts.items():
        print(f"{export.display_name}: {field_name} given but unreadable in {rows} accepted rows (stored empty)")
    return counts
