"""Test session set-up: no telemetry, a private Prefect home, one Prefect API for the whole session."""
from __future__ import annotations

import os
import tempfile

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="b12lab-prefect-home-"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's ephemeral API takes ~15 s to start here: start it once per session, for the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
