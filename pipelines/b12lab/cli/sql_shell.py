"""Read-only SQL access to the warehouse for analysts: `b12lab sql "QUERY"` or an interactive prompt.

Every row and every column of a result is printed (DuckDB's own display elides both), in one of the formats
`table` (aligned text), `csv`, `json` (a list of objects) or `markdown` (a pipe table). The prompt keeps a
history of its statements across sessions (readline) in HISTORY_NAME under the user's home folder: queries
can hold a patient identifier, so it is readable by its owner only, and never written into the output folder,
which the group reads.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TextIO

import duckdb

FORMATS = ("table", "csv", "json", "markdown")
HISTORY_NAME = ".b12lab_sql_history"
HISTORY_LENGTH = 1000
HELP = """.tables             list the tables
.schema [TABLE]     the columns of every table, or of TABLE, with their types and descriptions
.mode FORMAT        table, csv, json or markdown
.help               this text
.quit               leave (or Ctrl-D)
Statements end with ';' and may span lines."""


def open_read_only(warehouse: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(warehouse), read_only=True)


class Result:
    """A statement's outcome: its columns and every row, or None for a statement that returns no rows."""

    def __init__(self, columns: list[str], rows: list[tuple]):
        self.columns = columns
        self.rows = rows


def execute(con: duckdb.DuckDBPyConnection, statement: str) -> Result | None:
    relation = con.sql(statement)
    if relation is None:
        return None
    return Result(list(relation.columns), relation.fetchall())


def run_query(warehouse: Path, query: str, output_format: str = "table") -> str:
    """The whole result of one query in `output_format`; "ok" for a statement without rows."""
    with open_read_only(warehouse) as con:
        result = execute(con, query)
    return "ok" if result is None else render(result, output_format)


# --- formats ----------------------------------------------------------------------------------------------

def render(result: Result, output_format: str) -> str:
    renderers = {"table": _table, "csv": _csv, "json": _json, "markdown": _markdown}
    return renderers[output_format](result.columns, result.rows)


def _text(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _numeric(rows: Sequence[tuple], column: int) -> bool:
    """A column of numbers (NULLs aside), aligned right."""
    values = [row[column] for row in rows if row[column] is not None]
    return bool(values) and all(_is_number(value) for value in values)


def _table(columns: Sequence[str], rows: Sequence[tuple]) -> str:
    texts = [[_text(value) for value in row] for row in rows]
    widths = [max([len(name)] + [len(row[i]) for row in texts]) for i, name in enumerate(columns)]
    numeric = [_numeric(rows, i) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(width) if right else cell.ljust(width)
                         for cell, width, right in zip(cells, widths, numeric)).rstrip()

    body = [line(columns), line(["-" * width for width in widths]), *(line(row) for row in texts)]
    body.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(body)


def _csv(columns: Sequence[str], rows: Sequence[tuple]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    return buffer.getvalue().rstrip("\n")


def _json_value(value: object) -> object:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _json(columns: Sequence[str], rows: Sequence[tuple]) -> str:
    return json.dumps([{name: _json_value(value) for name, value in zip(columns, row)} for row in rows],
                      indent=2, ensure_ascii=False)


def _markdown(columns: Sequence[str], rows: Sequence[tuple]) -> str:
    def cell(value: object) -> str:
        return _text(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(name) for name in columns) + " |",
             "|" + "|".join("---:" if _numeric(rows, i) else "---" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


# --- the prompt -------------------------------------------------------------------------------------------

def history_file() -> Path:
    return Path.home() / HISTORY_NAME


class _History:
    """readline's history of whole statements and dot commands, kept in history_file() between sessions."""

    def __init__(self):
        try:
            import readline
        except ImportError:  # a Python without readline: the prompt works, without history
            self._readline = None
            return
        self._readline = readline
        readline.set_auto_history(False)  # a statement of several lines is one entry, added whole
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.read_history_file(history_file())
        except (FileNotFoundError, PermissionError, OSError):
            pass

    def add(self, entry: str) -> None:
        if self._readline is not None and entry.strip():
            self._readline.add_history(entry)

    def save(self) -> None:
        if self._readline is None:
            return
        path = history_file()
        try:
            path.touch(mode=0o600, exist_ok=True)
            os.chmod(path, 0o600)
            self._readline.write_history_file(path)
        except OSError:  # a read-only home: the session's history is lost, the session is not
            pass


def _schema(con: duckdb.DuckDBPyConnection, table: str | None) -> Result:
    return execute_params(con, """
        select table_name, column_name, data_type, coalesce(comment, '') as description
        from duckdb_columns()
        where $table is null or table_name = $table
        order by table_name, column_index""", {"table": table})


def execute_params(con: duckdb.DuckDBPyConnection, statement: str, parameters: dict) -> Result:
    relation = con.execute(statement, parameters)
    return Result([column[0] for column in relation.description], relation.fetchall())


def interactive(warehouse: Path, output_format: str = "table", out: TextIO | None = None) -> None:
    """The prompt: statements end with ';'; dot commands (HELP) take one line; `.quit` or Ctrl-D leaves."""
    import sys

    out = out or sys.stdout
    history = _History()

    def show(text: str) -> None:
        print(text, file=out, flush=True)

    with open_read_only(warehouse) as con:
        show(f"{warehouse} (read-only), output as {output_format}. End statements with ';'. "
             ".help lists the commands, .quit leaves.")
        buffer: list[str] = []
        try:
            while True:
                try:
                    line = input("b12lab> " if not buffer else "   ...> ")
                except EOFError:
                    show("")
                    return
                except KeyboardInterrupt:  # Ctrl-C drops the statement being typed, as in psql
                    show("")
                    buffer = []
                    continue
                command = line.strip()
                if not buffer and command.startswith("."):
                    history.add(command)
                    name, _, argument = command.partition(" ")
                    argument = argument.strip()
                    if name in (".quit", ".exit"):
                        return
                    if name == ".help":
                        show(HELP)
                    elif name == ".tables":
                        # schema main: the analysts' tables (schema incremental holds the next night's working tables)
                        show(render(execute(con, "select table_name, table_type from information_schema.tables "
                                                 "where table_schema = 'main' order by table_name"), output_format))
                    elif name == ".schema":
                        result = _schema(con, argument or None)
                        show(render(result, output_format) if result.rows else f"error: no table named {argument}")
                    elif name == ".mode":
                        if argument in FORMATS:
                            output_format = argument
                            show(f"output as {output_format}")
                        else:
                            show(f"error: .mode takes one of {', '.join(FORMATS)}")
                    else:
                        show(f"error: unknown command {name}; .help lists the commands")
                    continue
                if not buffer and not command:
                    continue
                buffer.append(line)
                if line.rstrip().endswith(";"):
                    statement, buffer = "\n".join(buffer), []
                    history.add(" ".join(part.strip() for part in statement.splitlines()))  # one entry, one line
                    try:
                        result = execute(con, statement)
                        show("ok" if result is None else render(result, output_format))
                    except duckdb.Error as error:
                        show(f"error: {str(error).strip().splitlines()[0]}")
        finally:
            history.save()
