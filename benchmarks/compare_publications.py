"""Compare the published tables of two output folders row for row (a refactoring must not change them).

    python -m benchmarks.compare_publications BEFORE_OUTPUT AFTER_OUTPUT

Every table the two warehouses share is compared as a multiset of rows (EXCEPT ALL both ways) on the
columns they share, leaving out the columns that differ by nature between two runs (run ids, timestamps of
the run, file-commit times). Tables in one warehouse only are listed. Exit status 1 when any shared table
differs. Used for the move of the models to dbt: sample and a 100k-patient synthetic set under each profile
gave identical tables (the closing note of that change has the figures).
"""
from __future__ import annotations

import sys
from pathlib import Path

import duckdb

# Differ between any two runs of the same data: when and as which run a row was written.
RUN_COLUMNS = {"ingest_run", "run_id", "flow_run_id", "started_at", "finished_at", "committed_at", "message",
               "log_file"}
# Bookkeeping that describes the run itself rather than the data.
RUN_TABLES = {"runs", "run_metrics"}


def tables(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for table, column in con.execute(
            "select table_name, column_name from duckdb_columns() where database_name = $d and schema_name = 'main' "
            "order by table_name, column_index", {"d": database}).fetchall():
        found.setdefault(table, []).append(column)
    return found


def compare(before: Path, after: Path) -> int:
    con = duckdb.connect()
    con.execute("attach $p as before (read_only)", {"p": str(before / "warehouse.duckdb")})
    con.execute("attach $p as after (read_only)", {"p": str(after / "warehouse.duckdb")})
    old, new = tables(con, "before"), tables(con, "after")
    differing = 0
    for table in sorted(set(old) & set(new) - RUN_TABLES):
        columns = [c for c in old[table] if c in new[table] and c not in RUN_COLUMNS]
        listed = ", ".join(f'"{c}"' for c in columns)
        rows = con.execute(f"select count(*) from before.main.{table}").fetchone()[0]
        gone = con.execute(f"select count(*) from (select {listed} from before.main.{table} except all "
                           f"select {listed} from after.main.{table})").fetchone()[0]
        added = con.execute(f"select count(*) from (select {listed} from after.main.{table} except all "
                            f"select {listed} from before.main.{table})").fetchone()[0]
        dropped_columns = sorted(set(old[table]) - set(new[table]) - RUN_COLUMNS)
        new_columns = sorted(set(new[table]) - set(old[table]) - RUN_COLUMNS)
        same = gone == 0 and added == 0 and not dropped_columns
        differing += not same
        print(f"{'same' if same else 'DIFFERENT':9} {table}: {rows} rows; only before {gone}, only after {added}"
              + (f"; columns gone {dropped_columns}" if dropped_columns else "")
              + (f"; columns new {new_columns}" if new_columns else ""))
    for table in sorted(set(old) - set(new)):
        print(f"only before: {table}")
    for table in sorted(set(new) - set(old)):
        print(f"only after:  {table}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(compare(Path(sys.argv[1]), Path(sys.argv[2])))
