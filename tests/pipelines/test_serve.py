"""`b12lab serve` registers the nightly deployment with its cron schedule in the Prefect API."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def _deployment(name: str):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        try:
            return await client.read_deployment_by_name(name)
        except Exception:  # not registered yet
            return None


def test_serve_registers_a_scheduled_deployment(tmp_path):
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "in").mkdir()
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "B12LAB_INPUT_DIR": str(tmp_path / "in"),
           "B12LAB_OUTPUT_DIR": str(tmp_path / "out"), "B12LAB_CRON": "30 2 * * *", "B12LAB_TIMEZONE": "Europe/London"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "b12lab"), "serve", "--name", "nightly-test"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deployment = None
        deadline = time.monotonic() + 90
        while deployment is None and time.monotonic() < deadline and server.poll() is None:
            time.sleep(1)
            deployment = asyncio.run(_deployment("b12lab-nightly/nightly-test"))
        assert deployment is not None, server.stdout.read().decode(errors="replace")[-2000:] if server.poll() else ""
        [schedule] = deployment.schedules
        assert schedule.schedule.cron == "30 2 * * *"
        assert schedule.schedule.timezone == "Europe/London"
        assert deployment.parameters["input_dir"] == str((tmp_path / "in").resolve())
        assert deployment.parameters["output_dir"] == str((tmp_path / "out").resolve())
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
