"""Ingest one export file into the lake: read, type, map, convert, account for every row.

The row-level work is SQL (b12lab/ingest/sql/<kind>_rows.sql) run by DuckDB over the whole file at once;
this module runs one file through the steps, each in a module of its own, and moves the outcome into the lake.
The file is read into the temp table raw_file (csv_reader.py; fhir_reader.py for FHIR NDJSON and Bundles),
the kind's row model turns raw_file into parsed_rows (with the macros of macros.py and, for labs, the keys of
deduplication.py), file-level reasons quarantine the whole file (accounting.py), and the accepted rows, the
quarantined ones and the out-of-scope codes are written to the lake, uncommitted, before the file's account
is returned. From raw_file on (store_records) the steps take one file or several small ones read at once
(batched_ingest.py): each file's records are told apart by record_file, and each file gets its own lake files
and account.

Damaged input never stops the run with a traceback. A file that cannot be read at all (a truncated or
corrupt gzip, a PDF or zip named *.csv) is not an error either: every record that could be read is
quarantined as `unreadable_file`, and the file's one-line problem is kept in its FileAccount and printed
(file name and problem only, never row content). Only a failure that is not about the file's content (the
file vanished, the disk is full) stops the run, as an IngestError.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb

from b12lab.common.duck import load_reference_tables, out_of_memory_message, reraise_interrupt
from b12lab.common.faults import crash_point
from b12lab.common.paths import INGEST_SQL_DIR, read_sql
from b12lab.common.settings import load_settings
from b12lab.ingest.accounting import (FileAccount, ReconciliationError, SuspectedCode, file_accounts,
                                      quarantine_whole_file, record_file_problems)
from b12lab.ingest.contract import (EXPORT_KINDS, LAB_COLUMNS, ExportFile, discover_exports, export_kind_of,
                                    fhir_resource_of, files_label, read_manifest)
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
    with ingest_errors(export.display_name):
        prepare_connection(con)
        repeated_column = ""
        if export.format == "ndjson":
            missing_columns = []  # the fields model always gives every column of the kind
            problem = load_fhir_file(con, export)
        else:
            missing_columns, repeated_column, problem = load_csv_export(con, export, lake)
        return store_records(con, [export], lake, run_id, ingest_date, earlier_lab_files,
                             missing_columns, repeated_column, problem)[0]


def load_csv_export(con: duckdb.DuckDBPyConnection, export: ExportFile, lake: Lake) -> tuple[list[str], str, str]:
    """A CSV export's records into raw_file (through its mapping, if it has one), with a scratch folder for its
    decompressed or re-encoded copies; returns the columns its header lacks, the one it repeats, its problem."""
    with lake.scratch("ingest-") as scratch:
        if export.mapping is not None:
            return load_mapped_file(con, export, scratch)
        return load_csv_file(con, export, scratch)


@contextmanager
def ingest_errors(name: str) -> Iterator[None]:
    """A failure that is not about a file's content, as one line naming the file (or files): an IngestError."""
    try:
        yield
    except OSError as error:
        raise IngestError(f"{name}: could not be ingested: {error.strerror or error}") from error
    except duckdb.OutOfMemoryException as error:
        raise IngestError(f"{name}: could not be ingested: "
                          f"{out_of_memory_message(load_settings().memory_limit)}; nothing was committed") from error
    except (duckdb.Error, csv.Error) as error:
        reraise_interrupt(error)
        raise IngestError(f"{name}: could not be ingested ({type(error).__name__}); nothing was committed") \
            from error


def prepare_connection(con: duckdb.DuckDBPyConnection) -> None:
    if not has_table(con, "ref_units"):
        # once per connection: a task of small files shares one (the macros never change between files)
        load_reference_tables(con)
        create_macros(con)


def store_records(con: duckdb.DuckDBPyConnection, exports: list[ExportFile], lake: Lake, run_id: str,
                  ingest_date: date, earlier_lab_files: list[Path], missing_columns: list[str] | None = None,
                  repeated_column: str = "", problem: str = "") -> list[FileAccount]:
    """The records in raw_file, of one file or of several small files of one kind read at once (numbered
    as load_bundles numbers them), through the kind's row model into the lake: each file's accepted rows,
    quarantined rows, out-of-scope codes and unreadable fields in lake files of its own, as if each had been
    ingested on its own. Returns each file's account, in the order of `exports`. The file-level reasons
    (missing_columns, repeated_column, problem) are those of a file read on its own."""
    kind = exports[0].kind
    name = files_label(exports)
    missing_columns = missing_columns or []
    if len(exports) == 1 and con.execute("select max(record_file(source_row)) from raw_file").fetchall()[0][0]:
        # record numbers past 2^32 would read as another file's (record_file); no export comes near it
        raise IngestError(f"{name}: more than 4,294,967,295 records: split the file; nothing was committed")
    _register_files(con, exports, run_id)
    if kind.name == "labs":
        register_existing_lab_keys(con, earlier_lab_files)
        if exports[0].mapping is None:
            con.execute("create or replace temp table mapped_local_codes (code varchar, analyte varchar)")
    sql = read_sql(INGEST_SQL_DIR / kind.sql_file)
    params = {"ingest_date": ingest_date} if "$ingest_date" in sql else {}
    _create_parsed_rows(con, name, f"create or replace temp table parsed_rows as {sql}", params)
    if kind.name == "labs":  # the later copies of a record within the read (lab_rows.sql leaves them)
        _within_memory(con, name, "the duplicates within the file",
                       lambda: con.execute(read_sql(INGEST_SQL_DIR / "lab_duplicates.sql")))
    # File-level reasons, strongest last: every record of the file goes to quarantine.
    quarantine_whole_file(con, missing_columns, repeated_column, problem)
    # A trailer line (Total rows: 10, END OF REPORT) after the last record is no record: dropped by a rule.
    con.execute("update parsed_rows set outcome = 'dropped', reason = 'trailer' "
                "where source_row in (select source_row from trailer_rows)")
    # Quarantine keeps of a FHIR resource only what the row model read (its `raw`: the flattened fields, as for
    # a CSV record), never the whole resource with its address, telecom or free-text notes. A line of which no
    # field could be read is described, not kept: it may be any part of any resource.
    if exports[0].format == "ndjson":
        con.execute(
            "update parsed_rows set raw = case when not json_valid(fhir_lines.line) "
            "    then 'not valid JSON (' || length(fhir_lines.line) || ' characters)' "
            "    else coalesce(json_extract_string(fhir_lines.line, '$.resourceType') || ' resource', "
            "                  'JSON without a resource type') || ' where ' || $resource_type || ' was expected' end "
            "from fhir_lines where fhir_lines.source_row = parsed_rows.source_row "
            "and parsed_rows.outcome = 'quarantined' and coalesce(parsed_rows.raw, '') = ''",
            {"resource_type": exports[0].fhir_resource})
    if kind.name == "labs":
        # Out of scope is counted per code, and its text is kept nowhere: not even when a file-level reason
        # quarantines the whole file (a survey answer or an address has no place in a B12 pipeline's lake).
        con.execute("update parsed_rows set raw = null where outcome = 'quarantined' and analyte is null "
                    "and (loinc is not null or local_code is not null)")

    accepted_columns = ", ".join(kind.lake_columns)
    # In parsed_rows' order, runs of the file's (_create_parsed_rows): not sorted by source_row.
    _within_memory(con, name, "the lake file of its accepted rows", lambda: _write_per_file(
        con, lake, kind.table, exports,
        f"select {accepted_columns}, {{lineage}} from parsed_rows {{files}} "
        "where outcome = 'accepted'", run_id=run_id))
    crash_point("ingest")
    _within_memory(con, name, "the lake file of its quarantined rows", lambda: _write_per_file(
        con, lake, "quarantine", exports,
        "select {lineage}, $table_name as table_name, reason, raw "
        "from parsed_rows {files} where outcome = 'quarantined' order by parsed_rows.source_row",
        {"table_name": kind.table}, run_id=run_id))
    accounts = file_accounts(con, exports)
    if kind.name == "labs":
        suspected = _write_unmapped_codes(con, exports, lake)
        accepted = _per_file(con.execute(
            "select record_file(source_row), analyte, count(*) from parsed_rows where outcome = 'accepted' "
            "group by all order by all").fetchall())
        for index, account in enumerate(accounts):
            account.suspected_unmapped = suspected.get(index, [])
            account.accepted_by_analyte = dict(accepted.get(index, []))
    if len(exports) == 1:
        record_file_problems(accounts[0], exports[0], missing_columns, problem)
    unreadable = _write_unreadable_fields(con, exports, lake)
    for index, account in enumerate(accounts):
        account.unreadable_fields = unreadable.get(index, {})
    return accounts


# Where a row of parsed_rows came from: the file it was read from, its own record number, the run. A file read
# alone names them as parameters (nothing to join: a large file's write costs no more than it did); files read
# together, from batch_files by record_file, with the index of the lake file each row goes to.
_LINEAGE_ALONE_SQL = ("$source_file as source_file, parsed_rows.source_row, $source_hash as source_hash, "
                      "$ingest_run as ingest_run")
_LINEAGE_TOGETHER_SQL = ("batch_files.source_file, record_position(parsed_rows.source_row) as source_row, "
                         "batch_files.source_hash, batch_files.ingest_run")
_JOIN_FILES_SQL = "join batch_files on batch_files.file_index = record_file(parsed_rows.source_row)"


def _register_files(con: duckdb.DuckDBPyConnection, exports: list[ExportFile], run_id: str) -> None:
    """The temp table batch_files: each file of the read, by its index (record_file), with its lineage."""
    con.execute("create or replace temp table batch_files as select unnest($indexes) as file_index, "
                "unnest($names) as source_file, unnest($hashes) as source_hash, $run as ingest_run",
                {"indexes": list(range(len(exports))), "names": [export.name for export in exports],
                 "hashes": [export.source_hash for export in exports], "run": run_id})


def _write_per_file(con: duckdb.DuckDBPyConnection, lake: Lake, table: str, exports: list[ExportFile], query: str,
                    params: dict | None = None, run_id: str = "") -> None:
    """A query's rows into the table's lake file of each file of the read (one with no row: a file of none).
    `query` over parsed_rows places {lineage} where the lineage columns go and {files} after its from; one
    over a table with a file_index column (the out-of-scope codes, the unreadable fields) places
    {file_index} where that column goes when there are several files."""
    targets = [lake.data_file(table, export.source_hash) for export in exports]
    if len(exports) == 1:
        [export] = exports
        lineage = {"source_file": export.name, "source_hash": export.source_hash, "ingest_run": run_id}
        sql = query.format(lineage=_LINEAGE_ALONE_SQL, files="", file_index="")
        lake.write_query(con, sql, {**(params or {}), **(lineage if "$source_file" in sql else {})}, targets[0])
    else:
        sql = query.format(lineage=_LINEAGE_TOGETHER_SQL + ", file_index", files=_JOIN_FILES_SQL,
                           file_index=", file_index")
        lake.write_query_per_file(con, sql, params or {}, targets)


def _per_file(rows: list[tuple]) -> dict[int, list[tuple]]:
    """Rows whose first value is a file index, grouped by it (the rest of each row kept)."""
    grouped: dict[int, list[tuple]] = {}
    for index, *rest in rows:
        grouped.setdefault(index, []).append(tuple(rest))
    return grouped


def _create_parsed_rows(con: duckdb.DuckDBPyConnection, name: str, statement: str, params: dict) -> None:
    """The row model over the whole file, its rows kept in the order DuckDB's threads give them: runs of the
    file's order (a row model sorts nothing: the duplicates within a file are lab_duplicates.sql's). The lake
    file of accepted rows is written in that order, not sorted: rows that come about as the file had them (by
    patient and date, as an export lists them) compress far better in the warehouse. Its `lab_results` of the
    10M set's 11.6M rows: 489 MiB and a checkpoint of 4 s; without keeping the order, 582 MiB and 7.5 s; sorted
    by record number, 374 MiB and none, but the sort was 12 s of a 5M-row file's 61 s."""
    _within_memory(con, name, "the row model", lambda: con.execute(statement, params))


def _within_memory(con: duckdb.DuckDBPyConnection, name: str, step: str, action: Callable[[], object]) -> None:
    """Run a step of the file's ingest; if DuckDB runs out of memory, run it again on one thread.

    A large file can need more than the memory limit on every thread at once, though it spills: the row model
    of a 3M-row lab file whose duplicate check reads millions of the lake's keys (768 MB on 2 threads), or the
    sorted Parquet write of a 500k-row file at a 128 MB limit. On one thread it stays within the limit at the
    cost of time, and the run's log says so. Out of memory on one thread too is the caller's one-line error."""
    try:
        action()
    except duckdb.OutOfMemoryException:
        threads = con.execute("select current_setting('threads')").fetchall()[0][0]
        print(f"{name}: {step} needed more than the memory limit "
              f"({load_settings().memory_limit}) on {threads} threads; run again on one thread")
        con.execute("set threads = 1")
        try:
            action()
        finally:
            con.execute("reset threads")


# Each file's out-of-scope codes, one row per file, code system and code. The code system of a lab row's local
# code: FHIR names it (the coding's system URL); a mapped CSV, its mapping; a contract CSV does not ('local').
# suggested_analyte: the analyte of the first pattern of ref_analyte_names (in precedence order) that one of
# the code's names matches, when that pattern is an analyte's and not a false friend's (no analyte); among the
# code's names, the one whose deciding pattern comes first.
_UNMAPPED_CODES_SQL = """
    with out_of_scope as (
        select
            record_file(parsed_rows.source_row) as file_index,
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
        select file_index, code_system, code, min(test_name) as display, count(*) as rows,
            min(collected_on) as first_seen, max(collected_on) as last_seen
        from out_of_scope
        group by file_index, code_system, code
    ),

    names as (
        select distinct file_index, code_system, code, lower(test_name) as name
        from out_of_scope
        where test_name is not null
    ),

    deciding_pattern as (
        -- each name's first matching pattern: an analyte's, or a false friend's (analyte null)
        select names.file_index, names.code_system, names.code, patterns.analyte,
            cast(patterns.precedence as integer) as precedence
        from names
        join ref_analyte_names as patterns on regexp_matches(names.name, patterns.pattern)
        qualify row_number() over (
            partition by names.file_index, names.code_system, names.code, names.name
            order by cast(patterns.precedence as integer), patterns.analyte nulls first, patterns.pattern
        ) = 1
    ),

    suggestions as (
        select file_index, code_system, code, arg_min(analyte, precedence) as suggested_analyte
        from deciding_pattern
        where analyte is not null
        group by file_index, code_system, code
    ),

    final as (
        select
            batch_files.source_file, batch_files.source_hash, batch_files.ingest_run,
            codes.code_system, codes.code, codes.display, codes.rows, codes.first_seen, codes.last_seen,
            suggestions.suggested_analyte, codes.file_index
        from codes
        join batch_files using (file_index)
        left join suggestions using (file_index, code_system, code)
    )

    select * from final
"""


def _write_unmapped_codes(con: duckdb.DuckDBPyConnection, exports: list[ExportFile],
                          lake: Lake) -> dict[int, list[SuspectedCode]]:
    """Each file's out-of-scope codes, one row per code system and code, into lake/unmapped_codes/; returns,
    by file index, those whose name suggests an analyte (suspected unmapped analytes), most rows first."""
    has_system = bool(con.execute(
        "select count(*) from duckdb_columns() where table_name = 'raw_file' and column_name = 'local_code_system'"
    ).fetchone()[0])
    sql = _UNMAPPED_CODES_SQL.format(local_system="raw_file.local_code_system" if has_system else "null")
    con.execute(f"create or replace temp table file_unmapped_codes as {sql}")
    _write_per_file(con, lake, "unmapped_codes", exports,
                    "select * exclude (file_index){file_index} from file_unmapped_codes "
                    "order by file_index, rows desc, code_system, code")
    suspected = con.execute(
        "select file_index, code_system, code, display, suggested_analyte, rows from file_unmapped_codes "
        "where suggested_analyte is not null order by file_index, rows desc, code_system, code"
    ).fetchall()
    return {index: [SuspectedCode(*row) for row in rows] for index, rows in _per_file(suspected).items()}


# The optional fields a row model names in unreadable_fields (given, not read, stored null), counted for the
# accepted rows only: a quarantined or dropped row is accounted for by its reason.
_UNREADABLE_FIELDS_SQL = """
    select
        batch_files.source_file, batch_files.source_hash, batch_files.ingest_run,
        $table_name as table_name, field, count(*) as rows, file_index
    from (
        select record_file(source_row) as file_index, unnest(unreadable_fields) as field
        from parsed_rows
        where outcome = 'accepted'
    )
    join batch_files using (file_index)
    group by all
"""


def _write_unreadable_fields(con: duckdb.DuckDBPyConnection, exports: list[ExportFile],
                             lake: Lake) -> dict[int, dict[str, int]]:
    """Each file's unreadable optional fields into lake/unreadable_fields/ (a kind whose row model names none
    writes no file); returns, by file index, field -> rows, each printed in one line (no row content)."""
    has_column = con.execute(
        "select count(*) from duckdb_columns() where table_name = 'parsed_rows' and column_name = 'unreadable_fields'"
    ).fetchone()[0]
    if not has_column:
        return {}
    con.execute(f"create or replace temp table file_unreadable_fields as {_UNREADABLE_FIELDS_SQL}",
                {"table_name": exports[0].kind.table})
    _write_per_file(con, lake, "unreadable_fields", exports,
                    "select * exclude (file_index){file_index} from file_unreadable_fields order by file_index, field")
    counts = _per_file(con.execute(
        "select file_index, field, rows from file_unreadable_fields order by file_index, field").fetchall())
    for index, rows in counts.items():
        for field_name, count in rows:
            print(f"{exports[index].display_name}: {field_name} given but unreadable in {count} accepted rows "
                  "(stored empty)")
    return {index: dict(rows) for index, rows in counts.items()}
