"""The `b12lab` and `prefect` commands as separate processes, as an operator or a scheduler runs them."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import PrefectServer as HarnessServer

BIN = Path(sys.executable).parent
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
SAMPLE_AS_OF = "2026-10-31"  # the as-of date of the session's published sample night


def command_env(extra: dict | None = None) -> dict:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    # The test session's own Prefect settings (a temporary API) must not leak into the command.
    env.pop("PREFECT_API_URL", None)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def session_api_url() -> str:
    """The test session's Prefect API (the `prefect_harness` fixture), for a command to report its flow run to:
    a command without one starts a temporary server of its own (about 10 s of CPU)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def b12lab(*args, env: dict | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `b12lab ARGS` to the end; stdout and stderr as text."""
    return subprocess.run([str(BIN / "b12lab"), *map(str, args)], env=command_env(env), capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def start_b12lab(*args, env: dict | None = None) -> subprocess.Popen:
    """Start `b12lab ARGS` in a session of its own (as a terminal or a scheduler would)."""
    return subprocess.Popen([str(BIN / "b12lab"), *map(str, args)], env=command_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


class PrefectServer(HarnessServer):
    """The benchmark harness's `prefect server start` (benchmarks/harness.py), started at once in its own home
    without the UI: the API an operator points PREFECT_API_URL at, with the calls the tests make."""

    def __init__(self, home: Path):
        super().__init__(home, home / "server.log")
        self.start()

    def env(self) -> dict:
        return {**super().env(), "PREFECT_UI_ENABLED": "false"}

    def flow_runs(self, **filters) -> list[dict]:
        return self.post("/flow_runs/filter", {"sort": "EXPECTED_START_TIME_DESC", **filters})

    def delete(self, path: str) -> None:
        self._request("DELETE", path)

    def wait_for_final_state(self, flow_run_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/flow_runs/{flow_run_id}")
            if run["state"] and run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(1)
        raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s: {run['state']}")
