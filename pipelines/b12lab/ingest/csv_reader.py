"""A CSV export's records into the temp table raw_file, every field as text, numbered in file order.

DuckDB's CSV reader reads the file when its strict reading agrees; otherwise Python's csv module, slower and
exact, does (malformed quoting, a record over DuckDB's line limit). Damage is handled before: a gzip file is
decompressed (what could be read of a truncated or corrupt stream is kept, with the file's problem), a file
that is not text is read as no record, a UTF-16 or not-UTF-8 file is converted (b12lab/ingest/decoding.py).
A file that cannot be read at all is not an error: its problem is returned, to quarantine every record that
could be read as unreadable_file.

Every field of the header gets a column of raw_file: a column of the kind keeps its name, any other field
(and a repeated one) a private name; a spare column, _overflow, catches records with more fields than the
header. A lab CSV in a site's own layout is read the same way, then translated into the contract's columns
through its mapping (load_mapped_file).
"""
from __future__ import annotations

import codecs
import csv
import re
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pyarrow as pa

from b12lab.common.duck import reraise_interrupt
from b12lab.ingest.contract import ExportFile, ExportKind
from b12lab.ingest.decoding import (NOT_TEXT_SIGNATURES, compression_of, decompress, ends_with_line_break,
                                    first_bytes, read_header, sniff_delimiter, to_utf8)
from b12lab.ingest.mapping import MappingError, raw_file_sql

# The raw_file fields that only a FHIR resource fills (b12lab/ingest/sql/fhir_*_fields.sql).
FHIR_ONLY_FIELDS = ("record_status", "deceased", "route_terms")

# A character that never occurs in a CSV field: the reader's "null string". Short records are padded with
# null, while empty fields stay '', so the SQL can tell a missing field from an empty one.
_NEVER_IN_DATA = "\x1e"

# DuckDB's CSV reader refuses a record longer than this (a longer one is read by Python's csv module instead):
# far above any real record, which the row models quarantine as oversized_row beyond 64 KiB. It is also the
# reader's buffer (which must hold the longest record): left to itself DuckDB reads up to 16 times that at once,
# a whole file of up to 2 GiB, so at the default 768 MB limit every CSV over about 730 MB ran out of memory and
# went to the Python reader (a 770 MB lab file's ingest: 93 s, against 45 s read by DuckDB).
_MAX_LINE_BYTES = 128 << 20


def _raw_columns(header: list[str], kind: ExportKind) -> tuple[dict[str, str], list[str]]:
    """The raw_file column of each field of the header, and the kind's columns the header names twice.

    A column of the kind keeps its name (its first occurrence); every other field gets a private name, so that
    no header can shift fields by repeating a name, nor collide with source_row, _overflow or record_status.
    """
    columns: dict[str, str] = {}
    repeated = []
    for position, name in enumerate(header):
        if name in kind.raw_columns and name not in columns:
            columns[name] = "VARCHAR"
        else:
            if name in kind.raw_columns:
                repeated.append(name)
            columns[f"_field_{position + 1}"] = "VARCHAR"
    # One spare column catches records with more fields than the header: those are malformed.
    columns["_overflow"] = "VARCHAR"
    return columns, repeated


_READ_CSV = """
    read_csv(
        $path, columns = $columns, header = true, auto_detect = false, delim = $delim, quote = '"', escape = '"',
        null_padding = true, strict_mode = {strict}, parallel = false, nullstr = $null, compression = 'none',
        max_line_size = $max_line, buffer_size = $max_line, new_line = '\\n'
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
    them all in _overflow. Records are handed to DuckDB as Arrow columns, a batch at a time; only a record whose
    field count is not the header's is touched one by one (the 5.1M records of a 770 MB file: 27 s, against 32 s
    when every value was; the rest is the csv module's and Arrow's)."""
    names = list(columns)
    width = len(names) - 1  # the fields of the header; _overflow is last
    con.execute("create or replace temp table raw_file (source_row bigint, "
                + ", ".join(f'"{name}" varchar' for name in names) + ")")
    # as DuckDB's reader does (nullstr): the one value never in data is a missing field
    select = ", ".join(["source_row", *(f"nullif(\"{name}\", chr(30))" for name in names[:-1]), f'"{names[-1]}"'])
    csv.field_size_limit(2**31 - 1)
    first_number = 1

    def insert(batch: list[list[str]], overflow: dict[int, str]) -> None:
        fields = [pa.array(column, pa.string()) for column in zip(*batch)]
        extra = [None] * len(batch)
        for index, text in overflow.items():
            extra[index] = text
        table = pa.Table.from_arrays(
            [pa.array(range(first_number, first_number + len(batch)), pa.int64()), *fields,
             pa.array(extra, pa.string())],
            names=["source_row", *names])
        con.register("raw_batch", table)
        try:
            con.execute(f"insert into raw_file select {select} from raw_batch")
        finally:
            con.unregister("raw_batch")

    with path.open(newline="", encoding="utf-8", errors="replace") as stream:
        reader = csv.reader(stream, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
        next(reader, None)  # the header
        batch: list[list[str]] = []
        overflow: dict[int, str] = {}  # position in the batch -> the fields past the header's, joined
        for record in reader:
            if len(record) != width:
                if not record:
                    continue
                if len(record) > width:
                    overflow[len(batch)] = delimiter.join(record[width:])
                    record = record[:width]
                else:
                    record = record + [_NEVER_IN_DATA] * (width - len(record))
            batch.append(record)
            if len(batch) == _PYTHON_BATCH_RECORDS:
                insert(batch, overflow)
                first_number += len(batch)
                batch, overflow = [], {}
        if batch:
            insert(batch, overflow)


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
    for missing in kind.raw_columns:
        con.execute(f"alter table raw_file add column if not exists {_quoted(missing)} varchar")
    # Fields only FHIR resources carry; a CSV export has none: the record's own status, a Patient's
    # deceasedBoolean, every term of a coded medication route.
    for fhir_only in FHIR_ONLY_FIELDS:
        con.execute(f"alter table raw_file add column if not exists {fhir_only} varchar")


def _empty_raw_file(con: duckdb.DuckDBPyConnection, kind: ExportKind) -> None:
    con.execute("create or replace temp table raw_file (source_row bigint, _overflow varchar)")
    _complete_raw_file(con, kind)



def _reader_failure(error: Exception) -> str:
    """A one-line description of a CSV reader error, without the record text DuckDB quotes in its message."""
    line = re.search(r"CSV Error on Line: (\d+)", str(error))
    return f"the CSV reader failed ({type(error).__name__}" + (f" at line {line.group(1)})" if line else ")")


def load_csv_file(con: duckdb.DuckDBPyConnection, export: ExportFile, scratch: Path,
                  delimiter: str | None = None) -> tuple[list[str], str, str]:
    """The CSV file's records into raw_file. Returns the kind's columns the header lacks, the column the
    header repeats (if any), and the file's problem ('' when it was read). `delimiter`: the one the file is
    known to be written with (a mapping's); else the one the header is written with."""
    kind = export.kind
    path, problem = export.path, ""
    if compression_of(path) == "gzip":
        path = scratch / "decompressed.csv"
        problem = decompress(export.path, path)
    head = first_bytes(path)
    for signature, what in NOT_TEXT_SIGNATURES.items():
        if head.startswith(signature):
            _empty_raw_file(con, kind)
            mark_trailer_rows(con)
            return [], "", problem or f"not a CSV text file: {what}"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        to_utf8(path, scratch / "utf8.csv", utf16=True)
        path = scratch / "utf8.csv"
    if not ends_with_line_break(path):
        # DuckDB drops the last byte of a file that ends inside a quote that never closes ('"P001' at the very
        # end reads as 'P00'); after a final line break nothing is lost.
        if path == export.path:
            shutil.copyfile(path, scratch / "terminated.csv")
            path = scratch / "terminated.csv"
        with path.open("ab") as out:
            out.write(b"\n")
    delimiter = delimiter or sniff_delimiter(path, kind, "none")
    header = read_header(path, delimiter, "none")
    columns, repeated = _raw_columns(header, kind)
    try:
        _load_raw_file(con, path, kind, columns, delimiter)
    except duckdb.Error as error:
        reraise_interrupt(error)
        # Most likely not UTF-8. Found out from the bytes, not from DuckDB's message, which quotes the record
        # (and so may hold a patient id).
        to_utf8(path, scratch / "utf8-lines.csv", utf16=False)
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
    mark_trailer_rows(con)
    missing = [name for name in kind.columns if name not in header]
    return missing, (repeated[0] if repeated else ""), problem


# What report writers put after the last record: a row count (Total rows: 10, (10 rows), 10 rows selected) or
# an end mark (END OF REPORT, *** END OF FILE ***). Case-insensitive; the whole line, nothing else on it.
TRAILER_PATTERN = (
    r"(?i)\s*[(*]*\s*("
    r"total\s*(rows|records|results)?\s*[:=]?\s*[0-9][0-9,.]*"
    r"|[0-9][0-9,.]*\s+(rows?|records?|results?)(\s+(selected|returned|exported|affected|listed))?"
    r"|end\s+of\s+(the\s+)?(report|file|data|export|extract)"
    r")\s*[)*.]*\s*"
)


def mark_trailer_rows(con: duckdb.DuckDBPyConnection) -> None:
    """The temp table trailer_rows: the records after the last real one that are a trailer line (their
    fields joined back read as TRAILER_PATTERN). Only at the end of the file: the same text between records
    is a damaged record, quarantined as usual."""
    columns = [name for name, in con.execute(
        "select column_name from duckdb_columns() where table_name = 'raw_file' and column_name <> 'source_row' "
        "order by column_index").fetchall()]
    line = f"concat_ws(',', {', '.join(_quoted(name) for name in columns)})" if columns else "''"
    con.execute(f"""
        create or replace temp table trailer_rows as
        with lines as (
            select source_row, regexp_full_match({line}, $pattern) as is_trailer from raw_file
        )
        select source_row from lines
        where is_trailer
          and source_row > coalesce((select max(source_row) from lines where not is_trailer), 0)
    """, {"pattern": TRAILER_PATTERN})


def load_mapped_file(con: duckdb.DuckDBPyConnection, export: ExportFile, scratch: Path) -> tuple[list[str], str, str]:
    """A lab CSV in a site's layout into raw_file, through its mapping: read as any CSV (the same damage
    handling) with the mapping's source columns as the layout, then translated into the contract's fields
    (b12lab/ingest/mapping.py). Returns the source columns the header lacks, the one it repeats, the problem."""
    mapping = export.mapping
    source_columns = tuple(dict.fromkeys(column.lower() for column in mapping.source_columns()))
    layout = ExportKind(name=f"mapping {mapping.name}", table="lab_results", columns=source_columns, sql_file="")
    missing, repeated, problem = load_csv_file(con, replace(export, kind=layout, mapping=None), scratch,
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
