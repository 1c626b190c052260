"""`b12lab run` with timers around the pipeline's stages, without changing pipeline code.

    python -m benchmarks.profile_run TIMINGS.json run --input DIR --output DIR [other `b12lab run` options]

Before the command line runs, the functions the flow calls are wrapped (by name, in the modules that look
them up) with timers: every Prefect task of the flow, the steps inside them (reading the CSV, the row model,
the duplicate keys, writing the lake, Great Expectations (the views of the new rows in DuckDB, the Checkpoint),
each SQL model, the mart Parquet files, ...) and the DuckDB statements that create tables or write Parquet. Timers nest: each event is recorded
with the path of the timers open around it, and the time of a step not covered by its children shows as
"(other)" when the harness prints the tree (benchmarks/harness.py). The events are written to TIMINGS.json
when the command ends, whatever its outcome.

A wrapper that no longer finds its target (the pipeline code moved on) is skipped with a note on stderr and
listed under "missing" in the timings file: the run itself is never affected.
"""
from __future__ import annotations

import time

PROCESS_STARTED = time.perf_counter()

import functools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

EVENTS: list[dict] = []
MISSING: list[str] = []
MARKS: dict[str, float] = {}
_local = threading.local()


def _stack() -> list[str]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


class _Timer:
    def __init__(self, label: str):
        self.label = label

    def __enter__(self):
        _stack().append(self.label)
        self.path = list(_stack())
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        seconds = time.perf_counter() - self.started
        _stack().pop()
        EVENTS.append({"path": self.path, "seconds": seconds})
        return False


def timed(label) -> callable:
    """Decorator: time every call under `label` (a string, or a function of the call's arguments)."""
    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            name = label(*args, **kwargs) if callable(label) else label
            with _Timer(name):
                return function(*args, **kwargs)
        return wrapper
    return decorate


def wrap(owner, attribute: str, label, optional: bool = False) -> None:
    original = getattr(owner, attribute, None)
    if original is None:
        if optional:
            return
        where = f"{getattr(owner, '__name__', owner)}.{attribute}"
        MISSING.append(where)
        print(f"profile_run: {where} not found; not timed", file=sys.stderr)
        return
    setattr(owner, attribute, timed(label)(original))


# DuckDB statements worth a timer of their own; anything else counts towards the step around it.
_CREATE = re.compile(r"^\s*create\s+or\s+replace\s+(temp\s+|temporary\s+)?table\s+(\w+)", re.IGNORECASE)
_COPY = re.compile(r"^\s*copy\b", re.IGNORECASE)
_UPDATE = re.compile(r"^\s*update\s+(\w+)", re.IGNORECASE)
_CHECKPOINT = re.compile(r"^\s*checkpoint\b", re.IGNORECASE)


def _statement_label(sql: str, params) -> str | None:
    if match := _CREATE.match(sql):
        return f"sql: table {match.group(2)}"
    if _COPY.match(sql):
        target = Path(str((params or {}).get("target", "?")) if isinstance(params, dict) else "?")
        if "lake" in target.parts:
            return f"sql: write Parquet lake/{target.parent.name}"
        return f"sql: write Parquet {target.name.split('.')[0]}"
    if match := _UPDATE.match(sql):
        return f"sql: update {match.group(1)}"
    if _CHECKPOINT.match(sql):
        return "sql: checkpoint"
    return None


class TimedConnection:
    """A DuckDB connection whose table-creating, Parquet-writing and checkpoint statements are timed."""

    def __init__(self, connection):
        self._connection = connection

    def execute(self, sql, parameters=None, *args, **kwargs):
        label = _statement_label(sql, parameters) if isinstance(sql, str) else None
        call = functools.partial(self._connection.execute, sql, *(() if parameters is None else (parameters,)),
                                 *args, **kwargs)
        if label is None:
            return call()
        with _Timer(label):
            return call()

    def __enter__(self):
        self._connection.__enter__()
        return self

    def __exit__(self, *exc):
        return self._connection.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._connection, name)


def _timed_connect(connect):
    @functools.wraps(connect)
    def wrapper(*args, **kwargs):
        return TimedConnection(connect(*args, **kwargs))
    return wrapper


def _wrap_great_expectations(flow, validate) -> None:
    """validate_lake_files, split into: importing GX (lazy, on the first validation), the context, the
    scratch DuckDB database of views of the new rows, and GX's Checkpoint (its validations and the Data Docs).
    GX's own classes are wrapped once the pipeline has imported GX."""
    original = getattr(flow, "validate_lake_files", None)
    if original is None:
        MISSING.append("b12lab.flows.nightly.validate_lake_files")
        return

    @functools.wraps(original)
    def validate_lake_files(*args, **kwargs):
        with _Timer("Great Expectations"):
            with _Timer("import great_expectations"):
                from great_expectations.data_context import AbstractDataContext
            if not getattr(AbstractDataContext.build_data_docs, "_profiled", False):
                build = timed("Data Docs (HTML)")(AbstractDataContext.build_data_docs)
                build._profiled = True
                AbstractDataContext.build_data_docs = build
            return original(*args, **kwargs)

    flow.validate_lake_files = validate_lake_files
    wrap(validate, "prepare_context", "GX context and suites")
    wrap(validate, "create_new_rows_database", "views of the new rows in DuckDB")
    wrap(validate, "_run_checkpoint", "GX Checkpoint (validations in SQL)")


def install() -> None:
    import b12lab.flows.nightly as flow
    import b12lab.ingest.contract as ingest_contract
    import b12lab.ingest.csv_reader as csv_reader
    import b12lab.ingest.file_ingest as ingest
    import b12lab.lake.lake as lake
    import b12lab.publish.publication as publish
    import b12lab.quality.validation as validate
    import b12lab.publish.dbt_build as transforms_runner
    from prefect import Task

    MARKS["imports_done"] = time.perf_counter() - PROCESS_STARTED

    # Every Prefect task: the engine calls `.fn`, so that is what is wrapped. The flow's own function is left
    # alone (Prefect validates its parameters against the annotations of `.fn`, resolved in the module the
    # function was defined in); what it calls, run_pipeline, is timed instead.
    for name in dir(flow):
        value = getattr(flow, name)
        if isinstance(value, Task):
            if value.name == "ingest_export":
                label = lambda export, *a, **k: f"task ingest_export {export.name}"
            elif value.name == "ingest_small_exports":
                label = lambda exports, *a, **k: f"task ingest_small_exports {exports[0].name} and {len(exports) - 1} more"
            else:
                label = f"task {value.name}"
            value.fn = timed(label)(value.fn)
    wrap(flow, "run_pipeline", "flow: run_pipeline")

    for module in (flow, publish):
        if hasattr(module, "connect"):
            module.connect = _timed_connect(module.connect)
        else:
            MISSING.append(f"{module.__name__}.connect")

    wrap(ingest_contract, "content_hash", "sha256 of export files")
    wrap(ingest, "load_reference_tables", "reference tables")
    wrap(csv_reader, "read_header", "read header")
    wrap(csv_reader, "_load_raw_file", "read CSV into raw_file")
    wrap(ingest, "load_fhir_file", "read NDJSON into raw_file")
    wrap(ingest, "register_existing_lab_keys", "existing lab keys (duplicates against the lake)")
    wrap(ingest, "file_account", "row accounting")
    wrap(lake.Lake, "committed_hashes", "lake: read commit records")
    wrap(lake.Lake, "remove_uncommitted", "lake: remove uncommitted files")
    _wrap_great_expectations(flow, validate)
    wrap(publish, "commit_files", "commit records")
    wrap(publish, "record_run", "runs record")
    wrap(publish, "create_lake_views", "lake views")
    wrap(publish, "install_rules", "rules tables")
    wrap(transforms_runner, "build", "SQL models (dbt build)")
    wrap(transforms_runner, "docs", "dbt docs generate")
    wrap(publish, "finish_warehouse", "mart Parquet, drop working tables, comments")
    wrap(publish, "_point_current_at", "switch current")
    wrap(publish, "_prune_publications", "prune old publications")
    wrap(publish, "write_summary", "run summary")

    # The HTML report and worklists (b12lab/report/page.py), where present.
    try:
        import b12lab.report.page as report
    except ImportError:
        return
    if hasattr(report, "connect"):
        report.connect = _timed_connect(report.connect)
    for name, label in (("gather", "report: figures from the warehouse"),
                        ("previous_metrics", "report: previous run's figures"),
                        ("write_worklists", "report: worklists"),
                        ("render_page", "report: render HTML"),
                        ("write_page", "report: write page")):
        wrap(report, name, label, optional=True)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    timings_file = Path(argv[0])
    code = 0
    try:
        install()
        from b12lab.cli.main import main as cli

        MARKS["cli_started"] = time.perf_counter() - PROCESS_STARTED
        try:
            cli.main(args=argv[1:], prog_name="b12lab", standalone_mode=True)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        MARKS["cli_finished"] = time.perf_counter() - PROCESS_STARTED
        timings_file.parent.mkdir(parents=True, exist_ok=True)
        timings_file.write_text(json.dumps({"events": EVENTS, "marks": MARKS, "missing": MISSING}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
