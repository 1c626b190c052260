"""Read-only SQL access to the warehouse for analysts."""
from __future__ import annotations

from pathlib import Path

import duckdb


def open_read_only(warehouse: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(warehouse), read_only=True)


def run_query(warehouse: Path, query: str, max_rows: int = 10_000) -> str:
    """The result of one query as a text table (at most max_rows rows shown)."""
    with open_read_only(warehouse) as con:
        relation = con.sql(query)
        if relation is None:
            return "ok"
        return relation.limit(max_rows).__str__() if hasattr(relation, "limit") else str(relation)


def interactive(warehouse: Path) -> None:
    """A small prompt: statements end with ';'; `.tables` lists the tables; `.quit` or Ctrl-D leaves."""
    with open_read_only(warehouse) as con:
        print(f"{warehouse} (read-only). End statements with ';'. .tables lists tables, .quit leaves.")
        buffer: list[str] = []
        while True:
            try:
                line = input("b12lab> " if not buffer else "   ...> ")
            except (EOFError, KeyboardInterrupt):
                print()
                return
            if not buffer and line.strip() in (".quit", ".exit"):
                return
            if not buffer and line.strip() == ".tables":
                print(con.sql("select table_name, table_type from information_schema.tables order by 1"))
                continue
            buffer.append(line)
            if line.rstrip().endswith(";"):
                statement, buffer = "\n".join(buffer), []
                try:
                    result = con.sql(statement)
                    if result is not None:
                        print(result)
                except duckdb.Error as error:
                    print(f"error: {error}")
