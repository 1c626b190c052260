"""DuckDB connections and the reference tables every SQL step joins."""
import ctypes
import ctypes.util
from pathlib import Path

import duckdb

from b12lab.common.paths import REFERENCE_DIR
from b12lab.common.settings import load_settings

# Every value set of seeds/reference/, by its seed (table) name: ref_units from ref_units.csv.
REFERENCE_TABLES = {path.stem: path.name for path in sorted(REFERENCE_DIR.glob("ref_*.csv"))}


def is_interrupt(error: BaseException) -> bool:
    """DuckDB answers a Ctrl-C that arrives during a query by ending the query with an error of its own
    (duckdb 2.0 raises it as RuntimeError "Query interrupted"), not with KeyboardInterrupt."""
    return isinstance(error, duckdb.InterruptException) or (
        isinstance(error, RuntimeError) and str(error) == "Query interrupted")


def interrupt_behind(error: BaseException) -> BaseException | None:
    """The interrupt that `error` is, or that it was raised while handling: a Ctrl-C (KeyboardInterrupt or
    DuckDB's "Query interrupted"), a SIGTERM (Prefect's TerminationSignal) or any other BaseException that is
    neither an Exception nor SystemExit. Prefect's task engine can itself fail while handling a signal that
    lands as it creates a task run ("Task run is not set"), so the interrupt may be the context of the error
    that reaches us."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if not isinstance(error, (Exception, SystemExit)) or is_interrupt(error):
            return error
        error = error.__cause__ or error.__context__
    return None


def reraise_interrupt(error: BaseException) -> None:
    """Raise KeyboardInterrupt when `error` is DuckDB's word for a Ctrl-C or SIGTERM: a handler that reads a
    DuckDB error as a fact about the file (not UTF-8, a quote it cannot resolve) must never take an interrupt
    for one, or a stopped run would carry on, or fail as an error instead of stopping as interrupted."""
    if is_interrupt(error):
        raise KeyboardInterrupt from error


def out_of_memory_message(memory_limit: str) -> str:
    """What to say when DuckDB ran out of memory anyway: the limit it had and the setting that raises it."""
    return (f"out of memory: DuckDB could not finish within its memory limit ({memory_limit}) even spilling to "
            "disk; raise B12LAB_MEMORY_LIMIT")


def connect(database: str | Path = ":memory:", *, temp_dir: Path | None = None,
            memory_limit: str | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection bounded by `memory_limit` (default: the memory_limit setting), spilling to
    `temp_dir`."""
    con = duckdb.connect(str(database), read_only=read_only)
    con.execute("set memory_limit = $limit", {"limit": memory_limit or load_settings().memory_limit})
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
