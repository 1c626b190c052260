"""The `b12lab` and `prefect` commands as separate processes, as an operator or a scheduler runs them."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrefectServer:
    """`prefect server start` in its own home: the API an operator points PREFECT_API_URL at."""

    def __init__(self, home: Path):
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.env = command_env({"PREFECT_HOME": home, "PREFECT_API_URL": self.api_url,
                                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"})
        self.log = open(home / "server.log", "w")
        self.process = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("prefect server did not start in 120 s")

    def get(self, path: str) -> dict | list:
        return self._request("GET", path)

    def post(self, path: str, payload: dict) -> dict | list:
        return self._request("POST", path, payload)

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict | list:
        """One API call, retried as Prefect's own client retries it: a busy server (its database locked while
        the suite loads both cores) answers 503 or 429 for a moment."""
        for attempt in range(6):
            response = httpx.request(method, f"{self.api_url}{path}", json=payload, timeout=30)
            if response.status_code not in (429, 502, 503) or attempt == 5:
                break
            time.sleep(0.5 * 2 ** attempt)
        response.raise_for_status()
        return response.json()

    def flow_runs(self, **filters) -> list[dict]:
        return self.post("/flow_runs/filter", {"sort": "EXPECTED_START_TIME_DESC", **filters})

    def wait_for_final_state(self, flow_run_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/flow_runs/{flow_run_id}")
            if run["state"] and run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(1)
        raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s: {run['state']}")

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self.log.close()
