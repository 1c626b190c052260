"""Run the dbt project in this folder in process (dbt-core's dbtRunner, adapter dbt-duckdb) against a warehouse.

The warehouse file must already hold the sources (models/sources.yml): the lake tables and the rules tables.
`build` runs `dbt build`: the seeds, then each model in dependency order with its data tests straight after it,
so that a mart whose error-severity test fails stops the build before anything is published. The column
comments of the warehouse come from the `.yml` beside each model (persist_docs). `docs` writes dbt's static,
self-contained catalogue with lineage.

dbt reads its profile (profiles.yml here) from environment variables, its interface, which `_dbt_environment`
sets for the length of one invocation: B12LAB_WAREHOUSE_FILE, the warehouse's file name, relative to the
warehouse's folder, which is the working directory for the invocation (so the profile is the same every night
and dbt's parse of the project is reused: about 3 s saved per run), and B12LAB_DUCKDB_MEMORY_LIMIT, DuckDB's
memory limit (the memory_limit setting unless the caller names one). The run's as-of date reaches the models
as the dbt variable `as_of`, whose default is B12LAB_RUN_AS_OF, set here: dbt parses the whole project again
whenever `--vars` change (every night, about 3-4 s), but re-parses only the one file that reads an environment
variable whose value changed. A person running dbt by hand passes `--vars '{as_of: ...}'`. All three are written
here, never read. Its own files (the compiled SQL, the parse cache) go to a work folder the caller names; its log file is switched off, and every model's, seed's and test's result is
handed to `log` as one line instead (the flow's logger).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from b12lab.common.duck import out_of_memory_message
from b12lab.common.paths import TRANSFORMS_DIR as PROJECT_DIR
from b12lab.common.settings import load_settings

MODELS_DIR = PROJECT_DIR / "models"
# The analyst tables (the output contract) are the models of the marts folder.
MART_TABLES = tuple(sorted(path.stem for path in (MODELS_DIR / "marts").glob("*.sql")))
# Staging and intermediate models are steps: the publication drops them once the marts are built.
WORKING_MODELS = tuple(sorted(path.stem for layer in ("staging", "intermediate")
                              for path in (MODELS_DIR / layer).glob("*.sql")))
# dbt's events that report one node's result: a line each in the run's log.
_RESULT_EVENTS = {"LogModelResult", "LogSeedResult", "LogTestResult", "LogNodeResult"}
# A quoted value in a database error: 'text' (SQL literal) or "text" (DuckDB's conversion errors).
_QUOTED_VALUE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
# DuckDB's words for a query that needed more memory than its limit and could not spill.
_OUT_OF_MEMORY = re.compile(r"out of memory|OutOfMemory", re.IGNORECASE)
_invocation_lock = threading.Lock()  # dbt's flags and adapters are process-global: one invocation at a time
# The data tests of the seeds' .yml files, tagged in dbt_project.yml: they test the project's CSV files, not a
# night's data. (Not `path:seeds`: dbt's eager selection would take with the seeds every test that reads one, the
# lake's relationships test to the reference tables among them.)
SEED_TESTS = "tag:project_files"
BUILD_MANIFEST = Path("target") / "manifest.json"  # written by a build with write_manifest, in a work folder
CATALOGUE_CACHE = "catalogue"  # in a work folder: the catalogue page last generated, named by its key


class ModelError(RuntimeError):
    """A model, seed or error-severity test failed; the message is one line naming it, never a value."""


class InvocationOutOfMemory(ModelError):
    """dbt stopped before or between its nodes (a hook: the project's on-run-start) for lack of memory."""


@dataclass
class BuildResult:
    built: list[str] = field(default_factory=list)       # models and seeds, in build order
    tests_passed: int = 0
    warnings: list[str] = field(default_factory=list)   # warn-severity tests that found rows
    seconds: float = 0.0
    retried_on_one_thread: list[str] = field(default_factory=list)  # models that ran out of memory, then passed


@contextmanager
def _dbt_environment(warehouse: Path, memory_limit: str, as_of: date | None,
                     threads: int | None = None) -> Iterator[None]:
    values = {"B12LAB_WAREHOUSE_FILE": warehouse.name, "B12LAB_DUCKDB_MEMORY_LIMIT": memory_limit,
              "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    if as_of is not None:
        values["B12LAB_RUN_AS_OF"] = as_of.isoformat()
    if threads is not None:  # read by the project's on-run-start (macros/duckdb_threads.sql); unset: every core
        values["B12LAB_DUCKDB_THREADS"] = str(threads)
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    working_dir = os.getcwd()
    os.chdir(warehouse.parent)
    try:
        yield
    finally:
        os.chdir(working_dir)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _invoke(command: list[str], warehouse: Path, work_dir: Path, log: Callable[[str], None],
            memory_limit: str | None, as_of: date | None = None, threads: int | None = None) -> object:
    from dbt.cli.main import dbtRunner

    def on_event(event) -> None:
        if event.info.name in _RESULT_EVENTS and event.info.msg:
            log(f"dbt: {event.info.msg.strip()}")

    work_dir = work_dir.absolute()
    warehouse = warehouse.absolute()
    work_dir.mkdir(parents=True, exist_ok=True)
    arguments = [*command, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
                 "--target-path", str(work_dir / "target"), "--log-path", str(work_dir / "logs"),
                 "--log-level-file", "none", "--log-level", "none", "--no-use-colors",
                 "--no-send-anonymous-usage-stats", "--no-version-check"]
    memory_limit = memory_limit or load_settings().memory_limit
    with _invocation_lock, _dbt_environment(warehouse, memory_limit, as_of, threads):
        try:
            outcome = dbtRunner(callbacks=[on_event]).invoke(arguments)
        finally:
            _close_dbt_database()
    if outcome.exception is not None:
        if isinstance(outcome.exception, KeyboardInterrupt):
            raise outcome.exception
        said = f"dbt {command[0]} could not run: {_first_line(outcome.exception)}"
        if _OUT_OF_MEMORY.search(str(outcome.exception)):  # the first line says only "Runtime Error"
            raise InvocationOutOfMemory(f"{said}: {out_of_memory_message(memory_limit)}") from outcome.exception
        raise ModelError(said) from outcome.exception
    return outcome


def _close_dbt_database() -> None:
    """dbt-duckdb keeps its DuckDB database open in the process after an invocation; close it, or the next
    reader of the warehouse (the report, read-only) cannot open the file with another configuration."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
            DuckDBConnectionManager._ENV = None


def build(warehouse: Path, work_dir: Path, as_of: date, *, log: Callable[[str], None] = print,
          all_tests: bool = False, data_tests: bool = True, select: list[str] | None = None,
          exclude: list[str] | None = None, memory_limit: str | None = None,
          write_manifest: bool = False) -> BuildResult:
    """`dbt build` of every seed and model in `warehouse` as of the run's date `as_of` (the dbt variable as_of),
    with the data tests of the marts and sources; `all_tests` adds the unit tests and the data tests of the
    staging and intermediate models, which test the SQL rather than the night's data, and those of the seeds,
    which test the project's own CSV files, the same on every machine and every night (the test suite runs them;
    a night would spend seconds on them: 63 tests, 1.1 s of the sample's first night); `data_tests` False builds
    without any test (a comparison build of the test suite); `select` and `exclude`, dbt's node selection (every
    node when None), `exclude` added to the tests left out. dbt writes no manifest.json and run_results.json
    (`--no-write-json`: writing them is about a third of a small build's time) unless `write_manifest`: a night
    whose catalogue must be generated afresh lets `docs` reuse the build's manifest, with every node it compiled,
    instead of compiling the project again. A manifest.json of an earlier build is removed first, so one in the
    work folder is always this build's. Raises ModelError naming the first node that failed or the first
    error-severity test that found rows."""
    if isinstance(as_of, datetime) or not isinstance(as_of, date):
        raise ModelError(f"as_of: expected a date, got {type(as_of).__name__}")
    excluded = [] if all_tests else ["test_type:unit", "resource_type:test,path:models/staging",
                                     "resource_type:test,path:models/intermediate", SEED_TESTS]
    if not data_tests:
        excluded = ["resource_type:test", "resource_type:unit_test"]
    excluded += exclude or []
    (work_dir.absolute() / BUILD_MANIFEST).unlink(missing_ok=True)
    command = ["build", *([] if write_manifest else ["--no-write-json"]),
               *(["--exclude", *excluded] if excluded else [])]
    selected = ["--select", *select] if select else []
    memory_limit = memory_limit or load_settings().memory_limit
    seed_parse(work_dir)
    try:
        outcome = _invoke(command + selected, warehouse, work_dir, log, memory_limit, as_of)
    except InvocationOutOfMemory:  # in a hook, before any node: the whole build again on one thread
        log("dbt: out of memory in the project's hooks on every core: run again on one thread")
        outcome = _invoke(command + selected, warehouse, work_dir, log, memory_limit, as_of, threads=1)
    result = BuildResult()
    failures, out_of_memory = _collect(outcome, result)
    if out_of_memory:
        # DuckDB spills, but some operators need memory on every thread at once: a model that did not fit in
        # the limit on all cores fits on one (int_under_monitored at 30M lab rows, 768 MB: out of memory after
        # 219 s on 2 threads, built in 354 s on one). As `dbt retry` would, the run again builds every node that
        # failed (out of memory or not) and the nodes after them, skipped the first time, and nothing else.
        failed = out_of_memory
        log(f"dbt: out of memory in {', '.join(failed)} on every core: run again on one thread")
        again = retry_selection(_not_successful(outcome), select)
        try:
            retried = _invoke(command + ["--select", *again], warehouse, work_dir, log, memory_limit, as_of,
                              threads=1)
        except ModelError:
            log("dbt: the run again on one thread could not start (its hooks need memory too)")
        else:  # the first build's failures stand unless the retry replaces them
            result.built = [name for name in result.built if name not in failed]
            outcome = retried
            failures, out_of_memory = _collect(outcome, result)
            if outcome.success and not failures:
                result.retried_on_one_thread = failed
            # the retry's manifest has compiled only what it built: the catalogue compiles the project itself
            (work_dir.absolute() / BUILD_MANIFEST).unlink(missing_ok=True)
    if failures or not outcome.success:
        first = failures[0] if failures else "dbt build failed"
        if out_of_memory:  # dbt's first line says only "Runtime Error"; the cause is further down
            first += ": " + out_of_memory_message(memory_limit)
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise ModelError(first + more)
    remember_parse(work_dir)
    return result


def _not_successful(outcome) -> list[str]:
    """The names of the nodes of an invocation that neither succeeded, passed, warned nor were skipped: those
    that failed, whose descendants dbt skipped."""
    return sorted({result.node.name for result in outcome.result.results
                   if str(result.status) not in ("success", "pass", "warn", "skipped")})


def retry_selection(failed: list[str], select: list[str] | None) -> list[str]:
    """dbt's selection of the failed nodes and everything after them (`name+`), within the build's own
    selection (`name+,selector`: dbt's intersection) when it had one."""
    return [f"{name}+,{selector}" for name in failed for selector in select] if select else \
        [f"{name}+" for name in failed]


def _collect(outcome, result: BuildResult) -> tuple[list[str], list[str]]:
    """Add an invocation's results to `result`; return its failures (a line each) and the models and seeds
    that ran out of memory."""
    failures, source_failures = [], []
    out_of_memory = []
    for node_result in outcome.result.results:
        node = node_result.node
        status = str(node_result.status)
        result.seconds += node_result.execution_time or 0.0
        if node.resource_type in ("model", "seed"):
            if status == "success":
                result.built.append(node.name)
            else:
                failures.append(f"{node.resource_type} {node.name} {status}: {_first_line(node_result.message)}")
                if _OUT_OF_MEMORY.search(str(node_result.message or "")):
                    out_of_memory.append(node.name)
        elif node.resource_type in ("test", "unit_test"):
            if status == "pass":
                result.tests_passed += 1
            elif status == "warn":
                result.warnings.append(f"{node.name}: {node_result.message}")
            elif status != "skipped":
                failure = f"test {node.name} {status}: {_first_line(node_result.message)}"
                if _tests_a_source(node):
                    source_failures.append(failure)
                else:
                    failures.append(failure)
    # A failed test of a source (the lake's rows) is named first: whatever failed after it follows from it, and
    # dbt runs the tests of a source as soon as the seeds they compare with are built, not necessarily first.
    return source_failures + failures, out_of_memory


def _tests_a_source(node) -> bool:
    return any(parent.startswith("source.") for parent in getattr(node.depends_on, "nodes", None) or [])


PARSE_CACHE = Path("target") / "partial_parse.msgpack"  # dbt's parse of the project, in a work folder


def parse(work_dir: Path, warehouse: Path, as_of: date) -> Path | None:
    """dbt's parse of the project in `work_dir`, made now if there is none yet; returns its file (None when
    dbt wrote none). One that is out of date is still returned: dbt re-parses what changed when it is used."""
    cache = work_dir.absolute() / PARSE_CACHE
    seed_parse(work_dir)
    if not cache.is_file():
        _invoke(["parse"], warehouse, work_dir, log=lambda line: None, memory_limit=None, as_of=as_of)
    if cache.is_file():
        remember_parse(work_dir)
    return cache if cache.is_file() else None


def reuse_parse(cache: Path | None, work_dir: Path) -> None:
    """Start `work_dir` with the parse `cache` (another work folder's), so that dbt's first invocation there
    does not parse the whole project (about 3 s): the profile, variables and project are the same, so dbt
    takes it as its own."""
    if cache is not None and cache.is_file():
        reuse_file(cache, work_dir.absolute() / PARSE_CACHE)


def reuse_file(source: Path, target: Path) -> None:
    """`source` copied to `target`, which appears whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def machine_cache() -> Path:
    """This project's (and dbt version's) folder of the machine's cache (the cache_dir setting): dbt's parse of
    the project and its catalogue pages, which hold no patient data and are the same for every output folder.
    A first night in a new output folder (a new site, a reproduction, `make run`) starts from them instead of
    parsing the project (about 3 s) and generating the catalogue (about 1.5 s). Keyed by where the project is as
    well: dbt's parse records the project's absolute paths, and a parse made by another checkout of the same
    version, since removed (a clone in a temporary folder), failed every seed of a night in this one."""
    where = hashlib.sha256(str(PROJECT_DIR.resolve()).encode()).hexdigest()[:8]
    return load_settings().cache_dir / "dbt" / f"{project_digest()}-{where}"


def seed_parse(work_dir: Path) -> None:
    """Start a work folder without a parse of its own from the machine's (dbt checks it as its own and parses
    again whatever file differs: a stale one costs only that; machine_cache is this checkout's alone)."""
    if not (work_dir.absolute() / PARSE_CACHE).is_file():
        reuse_parse(machine_cache() / PARSE_CACHE.name, work_dir)


def remember_parse(work_dir: Path) -> None:
    """Keep a work folder's parse in the machine's cache when the cache has none for this project yet."""
    parse_file = work_dir.absolute() / PARSE_CACHE
    if parse_file.is_file():
        _keep(parse_file, machine_cache() / PARSE_CACHE.name)


def _keep(source: Path, kept: Path) -> None:
    """Copy `source` to `kept` in the machine's cache unless it is there, whole or not at all (reuse_file), so
    that concurrent runs never read half a file. A cache that cannot be
    written (a read-only home) costs the next new output folder its seconds and nothing else."""
    if kept.is_file():
        return
    try:
        reuse_file(source, kept)
    except OSError as error:
        print(f"dbt: the parse and catalogue cache {kept.parent} cannot be written ({error.strerror or error}); "
              "a first night in a new output folder will parse the project again")


def docs(warehouse: Path, work_dir: Path, target: Path, *, log: Callable[[str], None] = print,
         memory_limit: str | None = None) -> Path:
    """dbt's catalogue of the project (every model, column, test and the lineage graph) as one self-contained
    HTML file, `dbt docs generate --static`, written to `target`.

    The page depends on the project's files, dbt's version and the warehouse's tables, columns, types and
    comments, not on its rows: a night with the same of those (most nights) copies the page generated for them
    before (kept in work_dir/catalogue/), which saves dbt's two seconds of parsing and reading the catalogue.
    A page generated afresh after a build that wrote its manifest (build's `write_manifest`) takes the nodes
    and their compiled SQL from it (`--no-compile`: about 1 s, where compiling every node again took 5 s)."""
    schema = _schema_digest(warehouse)
    key = f"{project_digest()}-{schema}"
    cache = work_dir.absolute() / CATALOGUE_CACHE
    cached = cache / f"{key}.html"
    machines = machine_cache() / CATALOGUE_CACHE / f"{schema}.html"
    if not cached.is_file() and machines.is_file():
        reuse_file(machines, cached)
    if not cached.is_file():
        reuse = (work_dir.absolute() / BUILD_MANIFEST).is_file()
        outcome = _invoke(["docs", "generate", "--static", *(["--no-compile"] if reuse else [])], warehouse,
                          work_dir, log, memory_limit)
        if not outcome.success:
            raise ModelError("dbt docs generate failed")
        cache.mkdir(parents=True, exist_ok=True)
        for old in cache.glob("*.html"):  # one page is enough: the project and schema change rarely
            old.unlink(missing_ok=True)
        os.replace(work_dir.absolute() / "target" / "static_index.html", cached)
        _keep(cached, machines)
    reuse_file(cached, target)
    return target


def catalogue_cached(work_dir: Path) -> bool:
    """Whether work_dir holds a catalogue page of this project and dbt version (for some warehouse schema): a
    night without one will generate it, and its build should write its manifest for that (build's
    `write_manifest`)."""
    return any((work_dir.absolute() / CATALOGUE_CACHE).glob(f"{project_digest()}-*.html")) \
        or any((machine_cache() / CATALOGUE_CACHE).glob("*.html"))


def project_digest() -> str:
    """A digest of dbt's version and the project's files: what the catalogue shows besides the schema."""
    import dbt.version

    digest = hashlib.sha256(str(dbt.version.__version__).encode())
    for path in sorted(p for p in PROJECT_DIR.rglob("*") if p.is_file() and p.suffix in (".sql", ".yml", ".csv")):
        digest.update(str(path.relative_to(PROJECT_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _schema_digest(warehouse: Path) -> str:
    """A digest of the warehouse's tables, columns, types and comments."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        schema = con.execute("""
            select table_name, column_name, data_type, coalesce(comment, '') from duckdb_columns()
            union all
            select table_name, '', '', coalesce(comment, '') from duckdb_tables()
            order by all""").fetchall()
    return hashlib.sha256(repr(schema).encode()).hexdigest()[:16]


def source_tables(schema: str = "main") -> tuple[str, ...]:
    """The tables the models read as sources (models/sources.yml) in `schema` of the warehouse."""
    import yaml

    sources = yaml.safe_load((MODELS_DIR / "sources.yml").read_text())["sources"]
    return tuple(table["name"] for source in sources if source.get("schema", source["name"]) == schema
                 for table in source["tables"])


def _first_line(message: object) -> str:
    """The message's first line with quoted values masked: a database error can quote the value it failed on,
    which could be a patient identifier, and messages end up in logs."""
    text = str(message or "").strip()
    first = text.splitlines()[0] if text else "no message"
    return _QUOTED_VALUE.sub(lambda quoted: quoted.group(0)[0] + "..." + quoted.group(0)[0], first)
