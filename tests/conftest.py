"""Test session set-up: no telemetry, a private Prefect home, one Prefect API for the whole session."""
from __future__ import annotations

import os
import shutil
import tempfile

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
# `make test` runs the suite on two pytest-xdist workers; each worker process is a session of its own, with its
# own Prefect home (its own temporary API and database) and dbt work folder, never shared with the other
# worker: two Prefect servers or two dbt parses writing one folder break each other.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_SESSION_FOLDERS: set[str] = set()  # made here, removed when the session ends


def _session_folder(variable: str, prefix: str, replace: bool) -> None:
    if replace or variable not in os.environ:
        os.environ[variable] = tempfile.mkdtemp(prefix=prefix)
        _SESSION_FOLDERS.add(os.environ[variable])


_session_folder("PREFECT_HOME", f"b12lab-prefect-home-{_WORKER or 'main'}-", replace=bool(_WORKER))
# One dbt work folder for every run of the session (in process or not): the runs share dbt's parse of the
# project instead of each parsing it again (about 3 s a run), as the nights of one output folder do.
_session_folder("B12LAB_DBT_WORK_DIR", f"b12lab-dbt-{_WORKER or 'main'}-", replace=bool(_WORKER))
# The machine's cache (dbt's parse and catalogue for new output folders) is the session's, not the user's.
_session_folder("B12LAB_CACHE_DIR", f"b12lab-cache-{_WORKER or 'main'}-", replace=bool(_WORKER))

import atexit  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from tests.helpers.processes import SAMPLE_AS_OF  # noqa: E402,F401  (the sample night's date, for the tests)

# The ingest and Prefect server fixtures, for every test folder.
pytest_plugins = ["tests.helpers.fixtures"]

_session_status = {"code": 0}

# A test that runs a night of the pipeline, a Prefect API, the b12lab process or a browser is `slow`: left out
# of `make test-fast` (the inner loop). It is found by the fixtures it uses or the names its body calls.
_SLOW_FIXTURES = {"prefect_harness", "prefect_server", "published_sample_night", "sample_output", "sample_night",
                  "browser", "browser_page"}
_SLOW_CALLS = {"b12lab", "B12LAB", "subprocess", "nightly", "run_pipeline", "flow_night"}


def _is_slow(item) -> bool:
    if _SLOW_FIXTURES & set(item.fixturenames) or item.get_closest_marker("process") or item.get_closest_marker("browser"):
        return True
    code = getattr(getattr(item, "function", None), "__code__", None)
    return code is not None and bool(_SLOW_CALLS & set(code.co_names))


# The test files that take longest, heaviest first (seconds of one worker, measured with a per-test timeline of a
# `make test`, their module fixtures included). pytest-xdist hands files (--dist loadfile) to whichever worker is
# free, in collection order (the Makefile's --no-loadscope-reorder: by default it would sort them by their number
# of tests, which sent the longest files, of few tests each, last): a long file handed out last keeps one worker
# busy while the other has nothing left. Started first, they overlap the many short files instead. The rest keep
# their order.
HEAVIEST_FILES = (
    "tests/cli/test_operations.py",          # 143 s
    "tests/publish/test_faults.py",          # 129 s
    "tests/benchmarks/test_harness_smoke.py",  # 122 s
    "tests/publish/test_incremental.py",     # 115 s
    "tests/transforms/test_dbt_project.py",  # 98 s
    "tests/ingest/test_bad_input.py",        # 93 s
    "tests/flows/test_serve.py",             # 91 s
    "tests/flows/test_cluster.py",           # 90 s
    "tests/test_analyst_guide.py",           # 56 s, most of it the session's published sample night
    "tests/report/test_report.py",           # 56 s
    "tests/cli/test_notify.py",              # 55 s
    "tests/publish/test_security.py",        # 52 s
    "tests/report/test_measures.py",         # 50 s
    "tests/flows/test_flow.py",              # 50 s
    "tests/ingest/test_ingest_fhir_real.py",  # 45 s
    "tests/cli/test_zero_record_files.py",   # 38 s
    "tests/ingest/test_ingest_properties.py",  # 33 s
    "tests/ingest/test_mapping.py",          # 31 s
    "tests/transforms/test_trend.py",        # 30 s
    "tests/test_wheel.py",                   # 28 s
    "tests/synth/test_synth_fhir.py",        # 27 s
    "tests/ingest/test_unmapped_analytes.py",  # 27 s
    "tests/ingest/test_object_store.py",     # 26 s
    "tests/ingest/test_site_feeds.py",       # 23 s
)


def _file_rank(item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return HEAVIEST_FILES.index(path) if path in HEAVIEST_FILES else len(HEAVIEST_FILES)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
            # A Prefect task or flow run in this process without an API starts a temporary server of its own,
            # which then idles beside the session's for the rest of the worker's session (about 10 s of CPU
            # each): every test that may run one uses the session's API instead. A `b12lab` process is given
            # it too (tests.helpers.processes.session_api_url), except where a test is about running without.
            if "prefect_harness" not in item.fixturenames:
                item.fixturenames.append("prefect_harness")
    items.sort(key=_file_rank)  # stable: within a file, and among the other files, the order is kept


def pytest_sessionfinish(session, exitstatus):
    _session_status["code"] = int(exitstatus)


def _remove_session_folders() -> None:
    """The session's Prefect home, dbt work folder and cache (made above), gone with the session."""
    for variable in ("PREFECT_HOME", "B12LAB_DBT_WORK_DIR", "B12LAB_CACHE_DIR"):
        folder = os.environ.get(variable, "")
        if folder in _SESSION_FOLDERS:
            shutil.rmtree(folder, ignore_errors=True)


def _silence_teardown() -> None:
    """A worker's last exit handler (registered first, run last): its stderr closed before the interpreter's
    final teardown, whose DuckDB binding "leaked" pages would otherwise land among pytest's summary lines. Every
    result and report is with the controller by then."""
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)


if _WORKER:
    atexit.register(_silence_teardown)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without the interpreter's final teardown, as the CLI does (see b12lab.cli.main): after Prefect
    tasks ran in a process that used DuckDB, that teardown prints pages of binding "leaked" noise below
    pytest's summary line. Everything, the report included, is written by now."""
    if _WORKER:
        # A worker's results are with the controller by now; leaving early could cut its last message, so it
        # exits as usual, its stderr closed first: the same teardown noise would otherwise follow the summary.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        _remove_session_folders()
        return
    _remove_session_folders()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_session_status["code"])


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's ephemeral API takes ~15 s to start here: start it once per session, for the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sample_output(published_sample_night):
    """The output folder of the session's published sample night (as of 2026-10-31), for tests that only read it."""
    return published_sample_night.output
