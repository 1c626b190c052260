"""DuckDB connections and the reference tables every SQL step joins."""
import ctypes
import ctypes.util
import os
from pathlib import Path

import duckdb

from b12lab.common.paths import REFERENCE_DIR

# Bounded so that a run's memory does not grow with the size of the lake: DuckDB spills to disk instead.
# 768 MB keeps a run under 2 GiB with Python, Prefect, GX and a validation batch beside it; measured at 10M
# lab rows: 1,956 MiB peak, where 1 GB gave 2,175 MiB and an 11 % faster run (B12LAB_MEMORY_LIMIT to change).
DEFAULT_MEMORY_LIMIT = os.environ.get("B12LAB_MEMORY_LIMIT") or "768MB"

# Every value set of seeds/reference/, by its seed (table) name: ref_units from ref_units.csv.
REFERENCE_TABLES = {path.stem: path.name for path in sorted(REFERENCE_DIR.glob("ref_*.csv"))}


class ConfigurationError(ValueError):
    pass


def is_interrupt(error: BaseException) -> bool:
    """DuckDB answers a Ctrl-C that arrives during a query by ending the query with an error of its own
    (duckdb 2.0 raises it as RuntimeError "Query interrupted"), not with KeyboardInterrupt."""
    return isinstance(error, duckdb.InterruptException) or (
        isinstance(error, RuntimeError) and str(error) == "Query interrupted")


def reraise_interrupt(error: BaseException) -> None:
    """Raise KeyboardInterrupt when `error` is DuckDB's word for a Ctrl-C or SIGTERM: a handler that reads a
    DuckDB error as a fact about the file (not UTF-8, a quote it cannot resolve) must never take an interrupt
    for one, or a stopped run would carry on, or fail as an error instead of stopping as interrupted."""
    if is_interrupt(error):
        raise KeyboardInterrupt from error


def check_memory_limit(limit: str = DEFAULT_MEMORY_LIMIT) -> None:
    """Refuse a memory limit DuckDB would not take, naming the setting, before any data is touched."""
    try:
        with duckdb.connect() as con:
            con.execute("set memory_limit = $limit", {"limit": limit})
    except duckdb.Error:
        raise ConfigurationError(f"B12LAB_MEMORY_LIMIT: {limit!r} is not a memory size (for example 1GB or 1536MB)") \
            from None


def connect(database: str | Path = ":memory:", *, temp_dir: Path | None = None,
            memory_limit: str = DEFAULT_MEMORY_LIMIT, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(database), read_only=read_only)
    con.execute("set memory_limit = $limit", {"limit": memory_limit})
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute("set temp_directory = $dir", {"dir": str(temp_dir)})
    return con


def load_reference_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Reference value sets live as CSV data next to the SQL; load them as typed-as-text tables."""
    for table, file_name in REFERENCE_TABLES.items():
        con.execute(
            f"create or replace table {table} as "
            "select * from read_csv($path, header = true, all_varchar = true)",
            {"path": str(REFERENCE_DIR / file_name)},
        )
    con.execute("alter table ref_units alter factor_to_canonical type double")


def release_freed_memory() -> None:
    """Hand the memory Python has freed back to the operating system (glibc only; elsewhere nothing).

    Validation's pandas batches are freed when it ends, but glibc keeps the freed heap: measured at 10M lab
    rows, the process still held about 1.2 GB through the model build and the report, on top of DuckDB's own
    memory_limit, which took the run's peak past 2 GiB."""
    library = ctypes.util.find_library("c")
    if not library:
        return
    try:
        ctypes.CDLL(library).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        pass
