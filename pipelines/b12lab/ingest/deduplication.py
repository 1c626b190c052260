"""Duplicates against the lake: the keys of the lab results already there, for the duplicate check.

A duplicate is dropped, not stored twice. Within a file, each kind's row model (b12lab/ingest/sql/<kind>_rows.sql)
finds them (for lab results lab_duplicates.sql, straight after it); a lab result is also a duplicate of one
already in the lake (or ingested earlier in the run), which lab_rows.sql finds in the view existing_lab_keys
that this module builds. The keys of small lake files are kept
in a module-global cache, _key_cache, for the life of the process (see below): a lake file never changes once
written, and a drop of thousands of small files would otherwise read every earlier file once per file.
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

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


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the connection already holds the table (a connection that ingests file after file keeps some)."""
    # fetchall, not fetchone: DuckDB 2.0 counts a result as unfinished until a fetch returns no rows, and an
    # unfinished result stops the next register() on the connection
    return bool(con.execute("select count(*) from duckdb_tables() where table_name = $name",
                            {"name": name}).fetchall()[0][0])


def register_existing_lab_keys(con: duckdb.DuckDBPyConnection, lab_files: list[Path]) -> None:
    """The duplicate keys of lab results already in the lake (or ingested earlier in this run) that the file in
    raw_file can repeat, as the view existing_lab_keys.

    Small lake files come from the in-process cache into existing_small_lab_keys, which a connection that
    ingests file after file keeps, adding only the files it does not hold yet (listed in
    existing_lab_key_files): a task of thousands of small files would otherwise gather every earlier file's
    keys once per file. Large files are read again for each file, only the rows of the patients the file
    names: a night's file repeats no one else's results, and the lake's history need not be held in memory."""
    wanted = [str(path) for path in lab_files]
    loaded = ({path for (path,) in con.execute("select path from existing_lab_key_files").fetchall()}
              if has_table(con, "existing_lab_key_files") else None)
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
