"""Great Expectations validation of the rows a run is about to add to the lake.

GX's own objects do the work: one suite per lake table (expectations/expectations/<table>.json), one
ValidationDefinition per table (that table's new rows against its suite), one Checkpoint that runs them all,
and GX's Data Docs of the stored results. The committed GX project is copied into the run's output
folder and loaded with `gx.get_context(context_root_dir=...)`, so validation results and the HTML Data Docs
land next to the run's other outputs. Each failed expectation is judged by its own severity: `critical` stops
the run before publication, anything else is reported.

Bounded memory, no copy of a large night. GX validates in SQL, in DuckDB: a scratch DuckDB database in the
run's temporary folder holds one view per table over the night's new Parquet files (`read_parquet`: the rows
stay in the files; many small files are copied into a table there once, see create_new_rows_database), and GX's
generic SQL data source (`context.data_sources.add_sql`) reads it through the SQLAlchemy dialect of `duckdb-
engine`, read-only and under the run's DuckDB memory limit (B12LAB_MEMORY_LIMIT), spilling to the scratch
folder beyond it. GX's SQL execution engine computes every expectation as queries over all of a table's new
rows: counts, the up to 20 unexpected values of BASIC results, and the whole-table checks (uniqueness, row
counts, means) as SQL aggregates. No table is ever held in Python. The scratch database is deleted when
validation ends. Two things of duckdb-engine are adapted in `duckdb_dialect.py` (GX's metric queries would come
back empty; GX would refuse regular expressions and LIKE patterns): see there.

Dates and times keep their types: a lake TIMESTAMP or DATE is one in the view, and GX binds the suites'
date-time bounds (`1900-01-01T00:00:00`, the `end_of_ingest_day` parameter) as datetimes, which DuckDB
compares as timestamps (a DATE as its midnight): exact to the microsecond.

Time. Measured with `python -m benchmarks.validate_bench` on a 20,000-patient synthetic night (227k lab rows)
and on ten copies of it, one after the other with GX in SQLite after a copy of the rows, on a busy 2-core
machine: 9 s (SQLite 29-49 s) and 10-15 s (146 s); peak memory 100 MiB above the process's baseline and
370-520 MiB at ten copies (SQLite 110 and 140 MiB), most of it DuckDB's buffers under its memory limit for the
uniqueness check of 2.27M rows (at B12LAB_MEMORY_LIMIT=256MB: 280 MiB, 28 s). On the 5,600 rows of
data/sample DuckDB is the slower, 9-10 s against 6-8 s: each of GX's ~140 queries costs DuckDB a few
milliseconds to plan and read Parquet, and duckdb-engine reflects each table's columns through DuckDB's
emulation of PostgreSQL's catalog (about 0.2 s a table). The rest is GX's own planning and the Data Docs;
`python -m benchmarks.validate_bench OUTPUT --per-expectation lab_results` shows each expectation's time.

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
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from b12lab.common.duck import connect
from b12lab.common.paths import EXPECTATIONS_DIR
from b12lab.common.settings import load_settings
from b12lab.quality import duckdb_dialect

SUITE_FILES = ("lab_results", "quarantine", "patients", "diagnoses", "medications", "unmapped_codes",
               "unreadable_fields")
CRITICAL = "critical"
CHECKPOINT_NAME = "new_rows"
# BASIC: counts and up to 20 unexpected values per expectation; enough for the report and the Data Docs.
RESULT_FORMAT = "BASIC"
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
    # GX reflects every column of a table; SQLAlchemy knows no type for DuckDB's lists (medications.route_terms)
    # and says so once per column. No suite validates such a column, so the words would only reach the terminal.
    warnings.filterwarnings("ignore", message="Did not recognize type", module="duckdb_engine")


def expectations_dir() -> Path:
    """The committed GX project, or a site's own (B12LAB_EXPECTATIONS_DIR), for example with tighter suites."""
    return load_settings().expectations_dir or EXPECTATIONS_DIR


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


# --- the night's new rows in DuckDB ----------------------------------------------------------------------


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# A table's new rows are copied into the validation database when they come in more files than this, of
# this many bytes at most together; otherwise GX reads them where they are.
COPIED_FILES = 32
COPIED_BYTES = 256 << 20


def create_new_rows_database(database_path: Path, files: dict[str, list[Path]],
                             temp_dir: Path | None = None) -> list[str]:
    """A DuckDB database at database_path with one relation per table over that table's new Parquet files,
    named as the table; the tables that have new rows, the ones to validate. A view copies nothing: each of
    GX's queries reads the files. Many small files (a night of per-patient FHIR Bundles writes thousands) are
    copied into a table of the database, on disk, once: each query would otherwise open every file (12 s
    against 3 s for the same rows in six files)."""
    tables = []
    with connect(database_path, temp_dir=temp_dir) as con:
        for table, paths in files.items():
            if not paths:
                continue
            # A view's text cannot hold bound parameters: the paths (hash-named files this program wrote) are
            # written in as quoted literals.
            listed = ", ".join(_quote_literal(str(path)) for path in paths)
            copied = len(paths) > COPIED_FILES and sum(path.stat().st_size for path in paths) <= COPIED_BYTES
            con.execute(f"create {'table' if copied else 'view'} {_quote_identifier(table)} as "
                        f"select * from read_parquet([{listed}], union_by_name = true)")
            if con.execute(f"select exists (select 1 from {_quote_identifier(table)})").fetchone()[0]:
                tables.append(table)
    return tables


def add_new_rows_source(context, name: str, database_path: Path, temp_dir: Path | None = None):
    """GX's SQL data source over the database of create_new_rows_database: read-only, through the dialect of
    duckdb_dialect, under the memory limit of every other DuckDB connection of the run (spilling to temp_dir)."""
    duckdb_dialect.register()
    config = {"memory_limit": load_settings().memory_limit}
    if temp_dir is not None:
        config["temp_directory"] = str(temp_dir)
    return context.data_sources.add_sql(
        name=name, connection_string=f"{duckdb_dialect.SCHEME}:///{database_path}", create_temp_table=False,
        kwargs={"connect_args": {"read_only": True, "config": config}})


def close_source(source) -> None:
    """Close GX's connections to the scratch database: DuckDB's memory is freed and the file can go."""
    source.get_execution_engine().close()
    source.get_engine().dispose()


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


def _run_checkpoint(context, database_path: Path, tables: list[str], parameters: dict, temp_dir: Path):
    """A ValidationDefinition per table (its new rows, its suite; running it stores its result) and the
    Checkpoint that runs them; the suites and GX's result of each table.

    The Checkpoint has no UpdateDataDocsAction: that action rebuilds the whole Data Docs site once per
    validation result (six times a night, half of validation's time on the sample); the caller builds it
    once instead."""
    import great_expectations as gx

    source = add_new_rows_source(context, "new_rows", database_path, temp_dir)
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
        close_source(source)
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
        database_path = Path(scratch) / "new_rows.duckdb"
        spill_dir = Path(scratch) / "spill"  # DuckDB's, when a query outgrows the memory limit
        tables = create_new_rows_database(database_path, files, spill_dir)
        if tables:
            for table, suite, result in _run_checkpoint(context, database_path, tables,
                                                        expectation_parameters(today), spill_dir):
                report.outcomes += _outcomes(table, suite, result)
    context.build_data_docs()  # GX's HTML of the stored results (an empty site after a night without rows)
    index = gx_dir / "data_docs" / "index.html"
    report.data_docs_index = index if index.exists() else None
    return report
