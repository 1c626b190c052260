"""Great Expectations validation of the rows a run is about to add to the lake.

GX's own objects do the work: one suite per lake table (expectations/expectations/<table>.json), one
ValidationDefinition per table (that table's new rows against its suite), one Checkpoint that runs them all,
and GX's Data Docs of the stored results. The committed GX project is copied into the run's output
folder and loaded with `gx.get_context(context_root_dir=...)`, so validation results and the HTML Data Docs
land next to the run's other outputs. Each failed expectation is judged by its own severity: `critical` stops
the run before publication, anything else is reported.

Bounded memory. GX validates in SQL, through its SQLite data source: the night's new rows are copied from
the lake's Parquet files into a scratch SQLite database (DuckDB streams them as Arrow record batches of
`COPY_BATCH_ROWS` rows), and GX's SQL execution engine computes every expectation as queries over all of a
table's new rows: counts, the up to 20 unexpected values of BASIC results, and the whole-table checks
(uniqueness, row counts, means) as SQL aggregates that SQLite evaluates on disk. No table is ever held in
Python. (GX's DuckDB route needs the `duckdb_engine` SQLAlchemy dialect; SQLite's ships with Python and
SQLAlchemy.) The scratch database lives in the run's temporary folder and is deleted when validation ends.

SQLite has no time type: a lake TIMESTAMP or DATE is stored in a DATETIME column as text in the form
SQLAlchemy's SQLite dialect writes a datetime (`2026-03-14 08:05:00.000000`). GX binds the suites' date-time
bounds (`1900-01-01T00:00:00`, the `end_of_ingest_day` parameter) as datetimes, which the dialect writes in
that same form, and text of one form and width sorts as time does: the comparisons are exact.

Time. Memory is bought with time: measured with `python -m benchmarks.validate_bench` on a 20,000-patient
synthetic night (227k lab rows) and on ten copies of it, against validation in pandas batches: 26 s and 120 MiB
above the process's baseline (pandas: 5 s, 210 MiB) and 169 s and 133 MiB (37 s, 500 MiB), on a busy
machine. Of the time, about a third is the copy (Python hands each value to SQLite), a third SQLite's scans
(GX sends about 20 queries per table, each a pass over its rows), the rest GX's own planning and the Data
Docs. `python -m benchmarks.validate_bench OUTPUT --per-expectation lab_results` shows each part.

Row conditions must be GX's own (`{"type": "comparison", "column": {"name": "analyte"}, ...}`): SQL has no
pandas query. A site suite written with the pandas form `column=="value"` is translated to it when the
project is copied into the run; any other pandas condition is refused before validation starts.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import duckdb

from b12lab.common.duck import connect
from b12lab.common.paths import EXPECTATIONS_DIR

SUITE_FILES = ("lab_results", "quarantine", "patients", "diagnoses", "medications", "unmapped_codes")
CRITICAL = "critical"
CHECKPOINT_NAME = "new_rows"
# BASIC: counts and up to 20 unexpected values per expectation; enough for the report and the Data Docs.
RESULT_FORMAT = "BASIC"
# Rows per Arrow record batch copied into SQLite: what bounds the copy's memory. Measured on 227k lab rows:
# 80 MiB above the process's baseline at 10,000 rows (most of it DuckDB reading Parquet), 133 MiB at 30,000,
# 270 MiB at 100,000, and no faster (the time is SQLite's and Python's per value).
COPY_BATCH_ROWS = 10_000
# DuckDB only reads the Parquet files and formats values here.
VALIDATION_DUCKDB_MEMORY = "512MB"
# SQLAlchemy's SQLite storage form of a datetime, in DuckDB's strftime (%f: six digits of microseconds).
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
# A pandas row condition GX's SQL engine can run once translated: `column=="value"` (or 'value').
_PANDAS_EQUALITY = re.compile(r"""^\s*`?(\w+)`?\s*==\s*(?:"([^"]*)"|'([^']*)')\s*$""")


@dataclass(frozen=True)
class ExpectationOutcome:
    table: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int | None
    # The rows it is about, when not all (`analyte==b12`): two expectations on one column tell apart.
    condition: str | None = None

    @property
    def description(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        subset = f" where {self.condition}" if self.condition else ""
        count = "" if self.unexpected_count is None else f" ({self.unexpected_count} rows)"
        return f"{where}: {self.expectation}{subset}{count}"


@dataclass
class ValidationReport:
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    data_docs_index: Path | None = None

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == CRITICAL]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity != CRITICAL]

    @property
    def evaluated(self) -> int:
        return len(self.outcomes)


class CriticalExpectationFailed(RuntimeError):
    pass


class UnsupportedRowCondition(ValueError):
    pass


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def expectations_dir() -> Path:
    """The committed GX project, or a site's own (B12LAB_EXPECTATIONS_DIR), for example with tighter suites."""
    return Path(os.environ.get("B12LAB_EXPECTATIONS_DIR") or EXPECTATIONS_DIR)


def expectation_parameters(ingest_day: date) -> dict[str, str]:
    """Values of the suites' $PARAMETERs.

    `end_of_ingest_day` is the midnight after the ingest day, used with `strict_max: true`: exact for any
    timestamp precision (the old inclusive bound, 23:59:59, failed a result taken at 23:59:59.5).
    `today`, the bound of suites written before it, is the last microsecond of the ingest day: inclusive, and
    exact too, because lake timestamps are DuckDB TIMESTAMPs (microseconds): nothing lies between it and
    midnight.
    """
    next_midnight = datetime.combine(ingest_day + timedelta(days=1), time())
    return {
        "end_of_ingest_day": next_midnight.isoformat(),
        "today": (next_midnight - timedelta(microseconds=1)).isoformat(timespec="microseconds"),
    }


# --- the GX project of the run ---------------------------------------------------------------------------


def _sql_row_condition(condition, where: str):
    """A suite's row condition in a form GX's SQL engine runs: GX's own conditions as they are, the pandas
    `column=="value"` as GX's comparison condition."""
    if not condition or (isinstance(condition, dict) and condition.get("type") != "pass_through"):
        return condition
    text = condition["pass_through_filter"] if isinstance(condition, dict) else str(condition)
    match = _PANDAS_EQUALITY.match(text)
    if not match:
        raise UnsupportedRowCondition(
            f"{where}: the row condition {text!r} is pandas syntax, which validation in SQL cannot run; write it "
            'as a GX condition, for example {"type": "comparison", "column": {"name": "analyte"}, '
            '"operator": "==", "parameter": "b12"}')
    column, double_quoted, single_quoted = match.groups()
    return {"type": "comparison", "column": {"name": column}, "operator": "==",
            "parameter": double_quoted if double_quoted is not None else single_quoted}


def _copy_suite(source: Path, target: Path) -> None:
    """A suite into the run's project, in the form GX runs in SQL. Ids are what GX's results are matched to
    expectations by (and a suite without one cannot be validated): one a site left out is made up here."""
    suite = json.loads(source.read_text(encoding="utf-8"))
    suite.setdefault("id", str(uuid.uuid4()))
    for expectation in suite.get("expectations", []):
        expectation.setdefault("id", str(uuid.uuid4()))
        kwargs = expectation.get("kwargs", {})
        if kwargs.get("row_condition"):
            where = f"{source.name}: {expectation['type']}"
            kwargs["row_condition"] = _sql_row_condition(kwargs["row_condition"], where)
            kwargs.pop("condition_parser", None)
    target.write_text(json.dumps(suite, indent=2), encoding="utf-8")


def prepare_context(gx_dir: Path, project_dir: Path | None = None):
    """A file-backed GX context in gx_dir holding a copy of the GX project and its suites."""
    _quiet_gx()
    project_dir = project_dir or expectations_dir()
    import great_expectations as gx

    if gx_dir.exists():
        shutil.rmtree(gx_dir)
    # Plain copies: the package's file modes must not override the run's private umask.
    (gx_dir / "expectations").mkdir(parents=True)
    for suite in (project_dir / "expectations").glob("*.json"):
        _copy_suite(suite, gx_dir / "expectations" / suite.name)
    shutil.copyfile(project_dir / "great_expectations.yml", gx_dir / "great_expectations.yml")
    return gx.get_context(context_root_dir=str(gx_dir))


# --- the night's new rows in SQLite ----------------------------------------------------------------------


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sqlite_column(name: str, duckdb_type: str) -> tuple[str, str]:
    """The SQLite declared type of a lake column, and the DuckDB expression that gives its values.

    Declared types matter to GX: it refuses to compare TEXT columns with bounds, so timestamps are DATETIME
    (of text, see the module's docstring)."""
    quoted = _quote_identifier(name)
    kind = duckdb_type.upper()
    if kind.startswith(("TIMESTAMP", "DATE")):
        return "DATETIME", f"strftime(cast({quoted} as timestamp), '{SQLITE_DATETIME}')"
    if kind in {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}:
        return "INTEGER", quoted
    if kind in {"BOOLEAN"}:
        return "BOOLEAN", f"cast({quoted} as integer)"
    if kind in {"FLOAT", "DOUBLE", "REAL"} or kind.startswith(("DECIMAL", "HUGEINT", "UBIGINT")):
        return "REAL", f"cast({quoted} as double)"
    return "TEXT", f"cast({quoted} as varchar)"


def _copy_to_sqlite(con: duckdb.DuckDBPyConnection, view: str, database: sqlite3.Connection, table: str) -> int:
    """The view's rows as a table of the SQLite database, COPY_BATCH_ROWS at a time; the number of rows."""
    columns = [(name, *_sqlite_column(name, kind))
               for name, kind, *_ in con.execute(f"describe select * from {view}").fetchall()]
    database.execute(f"create table {_quote_identifier(table)} ("
                     + ", ".join(f"{_quote_identifier(name)} {declared}" for name, declared, _ in columns) + ")")
    insert = (f"insert into {_quote_identifier(table)} values ({', '.join('?' for _ in columns)})")
    select = ", ".join(f"{expression} as {_quote_identifier(name)}" for name, _, expression in columns)
    rows = 0
    for batch in con.sql(f"select {select} from {view}").to_arrow_reader(COPY_BATCH_ROWS):
        database.executemany(insert, zip(*(column.to_pylist() for column in batch.columns)))
        rows += batch.num_rows
    database.commit()
    return rows


def _open_scratch_database(path: Path) -> sqlite3.Connection:
    database = sqlite3.connect(path)
    # A scratch copy, rebuilt by any new run: no journal, no waiting for the disk.
    database.execute("pragma journal_mode = off")
    database.execute("pragma synchronous = off")
    return database


# --- validation --------------------------------------------------------------------------------------------


def _row_condition_text(condition) -> str | None:
    """A suite's row condition as plain text (`analyte==b12`), from GX's comparison condition, its pandas
    pass-through filter or a string."""
    if not condition:
        return None
    if hasattr(condition, "dict"):
        condition = condition.dict()
    if isinstance(condition, dict):
        if condition.get("type") == "comparison":
            condition = f"{condition['column']['name']}{condition['operator']}{condition['parameter']}"
        else:
            condition = condition.get("pass_through_filter") or condition.get("condition") or str(condition)
    return str(condition).replace('"', "")


def _severity(expectation) -> str:
    return str(getattr(expectation.severity, "value", expectation.severity))


def _outcomes(table: str, suite, result) -> list[ExpectationOutcome]:
    """One outcome per expectation of the suite, in suite order (GX returns results in an order of its own)."""
    by_id = {item.expectation_config.id: item for item in result.results}
    if len(by_id) != len(suite.expectations) or any(e.id not in by_id for e in suite.expectations):
        raise RuntimeError(f"GX's results of {table} do not match its expectations one to one")
    outcomes = []
    for expectation in suite.expectations:
        item = by_id[expectation.id]
        kwargs = expectation.configuration.kwargs
        outcomes.append(ExpectationOutcome(
            table=table,
            expectation=expectation.expectation_type,
            column=kwargs.get("column"),
            severity=_severity(expectation),
            success=bool(item.success),
            unexpected_count=(item.result or {}).get("unexpected_count"),
            condition=_row_condition_text(kwargs.get("row_condition")),
        ))
    return outcomes


def _run_checkpoint(context, database_path: Path, tables: list[str], parameters: dict):
    """A ValidationDefinition per table (its new rows, its suite; running it stores its result) and the
    Checkpoint that runs them; the suites and GX's result of each table.

    The Checkpoint has no UpdateDataDocsAction: that action rebuilds the whole Data Docs site once per
    validation result (six times a night, half of validation's time on the sample); the caller builds it
    once instead."""
    import great_expectations as gx

    source = context.data_sources.add_sqlite(name="new_rows", connection_string=f"sqlite:///{database_path}")
    definitions, suites = [], {}
    for table in tables:
        suites[table] = context.suites.get(table)
        batch_definition = source.add_table_asset(name=table, table_name=table).add_batch_definition_whole_table(table)
        definitions.append(context.validation_definitions.add(
            gx.ValidationDefinition(name=table, data=batch_definition, suite=suites[table])))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=CHECKPOINT_NAME, validation_definitions=definitions, result_format=RESULT_FORMAT))
    try:
        result = checkpoint.run(expectation_parameters=parameters)
    finally:
        source.get_engine().dispose()  # closes GX's connections to the scratch database before it is deleted
    by_suite = {item.suite_name: item for item in result.run_results.values()}
    return [(table, suites[table], by_suite[table]) for table in tables]


def validate_lake_files(files: dict[str, list[Path]], gx_dir: Path, today: date, *,
                        project_dir: Path | None = None, temp_dir: Path | None = None) -> ValidationReport:
    """Validate each table's Parquet files (a run's new lake files) against its suite with GX's Checkpoint;
    build Data Docs; return every outcome. A table without new rows is not validated."""
    context = prepare_context(gx_dir, project_dir)
    report = ValidationReport()
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="validation-", dir=temp_dir) as scratch:
        database_path = Path(scratch) / "new_rows.sqlite"
        tables = []
        with connect(temp_dir=temp_dir, memory_limit=VALIDATION_DUCKDB_MEMORY) as con:
            database = _open_scratch_database(database_path)
            try:
                for table, paths in files.items():
                    if not paths:
                        continue
                    # A view's text cannot hold bound parameters: the paths (hash-named files this program
                    # wrote) are written in as quoted literals.
                    listed = ", ".join(_quote_literal(str(path)) for path in paths)
                    view = f"new_{table}"
                    con.execute(f"create temp view {view} as "
                                f"select * from read_parquet([{listed}], union_by_name = true)")
                    if _copy_to_sqlite(con, view, database, table):
                        tables.append(table)
            finally:
                database.close()
        if tables:
            for table, suite, result in _run_checkpoint(context, database_path, tables,
                                                        expectation_parameters(today)):
                report.outcomes += _outcomes(table, suite, result)
    context.build_data_docs()  # GX's HTML of the stored results (an empty site after a night without rows)
    index = gx_dir / "data_docs" / "index.html"
    report.data_docs_index = index if index.exists() else None
    return report
