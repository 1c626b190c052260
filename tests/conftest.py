"""Test session set-up: no telemetry, a private Prefect home, one Prefect API for the whole session."""
from __future__ import annotations

import os
import tempfile

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="b12lab-prefect-home-"))
# One dbt work folder for every run of the session (in process or not): the runs share dbt's parse of the
# project instead of each parsing it again (about 3 s a run), as the nights of one output folder do.
os.environ.setdefault("B12LAB_DBT_WORK_DIR", tempfile.mkdtemp(prefix="b12lab-dbt-"))

import sys  # noqa: E402

import pytest  # noqa: E402

# The ingest and Prefect server fixtures, for every test folder.
pytest_plugins = ["tests.helpers.fixtures"]

_session_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _session_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without the interpreter's final teardown, as the CLI does (see b12lab.cli.main): after Prefect
    tasks ran in a process that used DuckDB, that teardown prints pages of binding "leaked" noise below
    pytest's summary line. Everything, the report included, is written by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_session_status["code"])


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's ephemeral API takes ~15 s to start here: start it once per session, for the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


SAMPLE_AS_OF = "2026-10-31"


@pytest.fixture(scope="session")
def sample_output(prefect_harness, tmp_path_factory):
    """One nightly run of the flow on data/sample (as of SAMPLE_AS_OF), shared by the tests that read its outputs."""
    from datetime import date
    from pathlib import Path

    from b12lab.flows.nightly import nightly

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    output = tmp_path_factory.mktemp("sample-output")
    nightly(input_dir=sample, output_dir=output, as_of=date.fromisoformat(SAMPLE_AS_OF))
    return output
