"""`b12lab run` with timers around the pipeline's stages, without changing pipeline code.

    python -m benchmarks.profile_run TIMINGS.json run --input DIR --output DIR [other `b12lab run` options]

Before the command line runs, the functions the flow calls are wrapped (by name, in the modules that look
them up) with timers: the flow's call and every Prefect task (wrapped as Prefect creates them, so the flow's
module is never imported here: the command line imports it), the steps inside them (reading the CSV, the row model,
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


def _wrap_great_expectations(validate) -> None:
    """validate_lake_files, split into: importing GX (lazy, on the first validation), the context, the
    scratch DuckDB database of views of the new rows, and GX's Checkpoint (its validations and the Data Docs).
    GX's own classes are wrapped once the pipeline has imported GX. Wrapped in its module before the flow's
    module imports it by name."""
    original = getattr(validate, "validate_lake_files", None)
    if original is None:
        MISSING.append("b12lab.quality.validation.validate_lake_files")
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

    validate.validate_lake_files = validate_lake_files
    wrap(validate, "prepare_context", "GX context and suites")
    wrap(validate, "create_new_rows_database", "views of the new rows in DuckDB")
    wrap(validate, "_run_checkpoint", "GX Checkpoint (validations in SQL)")


def _task_label(name: str):
    if name == "ingest_export":
        return lambda export, *a, **k: f"task ingest_export {export.name}"
    if name == "ingest_small_exports":
        return lambda exports, *a, **k: f"task ingest_small_exports {exports[0].name} and {len(exports) - 1} more"
    return f"task {name}"


def _time_prefect_tasks_and_flows() -> None:
    """Every Prefect task created from now on has its `.fn` (what the engine calls) timed; every flow call is
    timed as a whole. The flow's own function is left alone (Prefect validates its parameters against the
    annotations of `.fn`, resolved in the module the function was defined in)."""
    from prefect import Flow, Task

    create_task = Task.__init__

    @functools.wraps(create_task)
    def timed_task(self, *args, **kwargs):
        create_task(self, *args, **kwargs)
        if not getattr(self.fn, "_profiled", False):  # with_options makes a task of a timed function
            self.fn = timed(_task_label(self.name))(self.fn)
            self.fn._profiled = True

    Task.__init__ = timed_task
    call_flow = Flow.__call__

    @functools.wraps(call_flow)
    def timed_flow(self, *args, **kwargs):
        with _Timer(f"flow: {self.name}"):
            return call_flow(self, *args, **kwargs)

    Flow.__call__ = timed_flow


def install() -> None:
    # First, before any module of the package looks them up: every later `from ... import connect` and every
    # task the flow's module creates when the command line imports it gets the timed version.
    import b12lab.common.duck as duck

    duck.connect = _timed_connect(duck.connect)
    _time_prefect_tasks_and_flows()
    import b12lab.ingest.digests as ingest_digests
    import b12lab.ingest.csv_reader as csv_reader
    import b12lab.ingest.batched_ingest as batched_ingest
    import b12lab.ingest.file_ingest as ingest
    import b12lab.lake.lake as lake
    import b12lab.publish.publication as publish
    import b12lab.quality.validation as validate
    import b12lab.publish.dbt_build as transforms_runner

    MARKS["imports_done"] = time.perf_counter() - PROCESS_STARTED

    wrap(ingest_digests, "content_hash", "sha256 of export files")
    wrap(ingest, "load_reference_tables", "reference tables")
    wrap(csv_reader, "read_header", "read header")
    wrap(csv_reader, "_load_raw_file", "read CSV into raw_file")
    wrap(ingest, "load_fhir_file", "read NDJSON into raw_file")
    wrap(ingest, "register_existing_lab_keys", "existing lab keys (duplicates against the lake)")
    wrap(batched_ingest, "read_bundle", "read a Bundle (JSON)")
    wrap(batched_ingest, "load_bundles", "Bundles of one resource type into raw_file")
    wrap(ingest, "file_accounts", "row accounting")
    wrap(lake.Lake, "write_query_per_file", "lake: write a read's files")
    wrap(lake.Lake, "committed_hashes", "lake: read commit records")
    wrap(lake.Lake, "remove_uncommitted", "lake: remove uncommitted files")
    _wrap_great_expectations(validate)
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
        from b12lab.cli.main import entry_point

        MARKS["cli_started"] = time.perf_counter() - PROCESS_STARTED
        # The console script itself, so that the run's outcome is its exit status as for `b12lab run` (the
        # command's exit handler ends the process with that status).
        sys.argv = ["b12lab", *argv[1:]]
        try:
            entry_point()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        MARKS["cli_finished"] = time.perf_counter() - PROCESS_STARTED
        timings_file.parent.mkdir(parents=True, exist_ok=True)
        timings_file.write_text(json.dumps({"events": EVENTS, "marks": MARKS, "missing": MISSING}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
