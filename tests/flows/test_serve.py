"""The nightly schedule as an operator runs it: a real Prefect server, `b12lab serve` as a separate process
configured by environment variables, a run of the deployment triggered through the API, and the scheduler
creating the cron's runs."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import duckdb
import pytest

from tests.helpers.processes import BIN, SAMPLE, command_env


def _deployment(server, name: str) -> dict | None:
    found = server.post("/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    return found[0] if found else None


def test_the_served_deployment_runs_on_demand_and_publishes_and_its_cron_is_scheduled(tmp_path, prefect_server):
    drop, output = tmp_path / "drop", tmp_path / "out"
    shutil.copytree(SAMPLE, drop)
    env = command_env({"PREFECT_API_URL": prefect_server.api_url, "PREFECT_HOME": tmp_path / "serve-home",
                       "B12LAB_INPUT_DIR": drop, "B12LAB_OUTPUT_DIR": output,
                       "B12LAB_CRON": "30 2 * * *", "B12LAB_TIMEZONE": "Europe/London"})
    serve = subprocess.Popen([str(BIN / "b12lab"), "serve", "--name", "nightly-test"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deployment, deadline = None, time.monotonic() + 120
        while deployment is None and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(1)
            deployment = _deployment(prefect_server, "nightly-test")
        assert deployment is not None, serve.stdout.read() if serve.poll() is not None else "not registered"
        [schedule] = deployment["schedules"]
        assert schedule["schedule"]["cron"] == "30 2 * * *"
        assert schedule["schedule"]["timezone"] == "Europe/London"
        assert deployment["parameters"]["input_dir"] == str(drop.resolve())
        assert deployment["parameters"]["output_dir"] == str(output.resolve())

        # The scheduler service creates the cron's runs (it failed every minute with SQLAlchemy 2.1).
        scheduled, deadline = [], time.monotonic() + 90
        while not scheduled and time.monotonic() < deadline:
            scheduled = prefect_server.flow_runs(
                deployments={"id": {"any_": [deployment["id"]]}}, flow_runs={"state": {"type": {"any_": ["SCHEDULED"]}}})
            time.sleep(2)
        assert scheduled, "the scheduler created no run for the deployment's cron"
        assert all(run["expected_start_time"][11:16] in ("02:30", "01:30") for run in scheduled)  # 02:30 London

        # What `prefect deployment run 'b12lab-nightly/nightly-test'` does: a run now, through the API.
        flow_run = prefect_server.post(f"/deployments/{deployment['id']}/create_flow_run", {})
        finished = prefect_server.wait_for_final_state(flow_run["id"], timeout=300)
        assert finished["state"]["type"] == "COMPLETED", finished["state"]
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()

    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        runs = con.execute("select flow_run_id, status, kind from runs").fetchall()
        patients = con.execute("select count(*) from patient_status").fetchone()[0]
    assert runs == [(flow_run["id"], "published", "nightly")]
    assert patients == 500
    assert (output / "report" / "index.html").is_file()


def _start_serve(tmp_path, prefect_server, name: str) -> tuple[subprocess.Popen, dict]:
    """`b12lab serve` in a session of its own, once its deployment is registered: (process, deployment)."""
    drop = tmp_path / "drop"
    shutil.copytree(SAMPLE, drop)
    env = command_env({"PREFECT_API_URL": prefect_server.api_url, "PREFECT_HOME": tmp_path / "serve-home",
                       "B12LAB_INPUT_DIR": drop, "B12LAB_OUTPUT_DIR": tmp_path / "out"})
    serve = subprocess.Popen([str(BIN / "b12lab"), "serve", "--name", name], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    deployment, deadline = None, time.monotonic() + 120
    while deployment is None and time.monotonic() < deadline and serve.poll() is None:
        time.sleep(1)
        deployment = _deployment(prefect_server, name)
    assert deployment is not None, serve.communicate(timeout=30) if serve.poll() is not None else "not registered"
    return serve, deployment


def _stop(serve: subprocess.Popen, signum: int) -> tuple[int, str, str, float]:
    """Send `signum` to serve alone, as `kill` or a service manager does: (status, stdout, stderr, seconds)."""
    started = time.monotonic()
    serve.send_signal(signum)
    try:
        stdout, stderr = serve.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(serve.pid, signal.SIGKILL)
        serve.communicate()
        raise AssertionError(f"serve did not stop within 30 s of {signal.Signals(signum).name}")
    return serve.returncode, stdout, stderr, time.monotonic() - started


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_idle_serve_stops_on_a_signal_with_one_line_and_status_0(tmp_path, prefect_server, signum):
    serve, _ = _start_serve(tmp_path, prefect_server, f"idle-{signum}")
    status, stdout, stderr, seconds = _stop(serve, signum)
    assert seconds < 10
    assert status == 0, stderr
    assert stderr.splitlines() == [f"b12lab: serve stopped ({signal.Signals(signum).name}); no run was in progress"]
    assert "Traceback" not in stdout


def test_a_signal_while_serve_registers_its_deployment_stops_it_cleanly(tmp_path, prefect_server):
    """SIGTERM as soon as serve says it is serving: the deployment is still being registered and Prefect's
    runner has not started; serve still stops as an idle serve does."""
    drop = tmp_path / "drop"
    shutil.copytree(SAMPLE, drop)
    env = command_env({"PREFECT_API_URL": prefect_server.api_url, "PREFECT_HOME": tmp_path / "serve-home",
                       "B12LAB_INPUT_DIR": drop, "B12LAB_OUTPUT_DIR": tmp_path / "out"})
    serve = subprocess.Popen([str(BIN / "b12lab"), "serve", "--name", "early"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert serve.stdout.readline().startswith("serving ")
    status, stdout, stderr, seconds = _stop(serve, signal.SIGTERM)
    assert status == 0, stderr
    assert stderr.splitlines() == ["b12lab: serve stopped (SIGTERM); no run was in progress"]


def test_serve_stopped_during_a_night_exits_143_and_the_night_is_recorded_interrupted(tmp_path, prefect_server):
    serve, deployment = _start_serve(tmp_path, prefect_server, "busy")
    flow_run = prefect_server.post(f"/deployments/{deployment['id']}/create_flow_run", {})
    deadline = time.monotonic() + 120
    while prefect_server.get(f"/flow_runs/{flow_run['id']}")["state"]["type"] != "RUNNING":
        assert time.monotonic() < deadline, "the triggered run never started"
        time.sleep(0.5)
    status, stdout, stderr, seconds = _stop(serve, signal.SIGTERM)
    assert seconds < 10
    assert status == 143, stderr
    assert stderr.splitlines() == [
        "b12lab: interrupted (SIGTERM): nothing half-done was published; the next run carries on"]
    assert "Traceback" not in stdout
    finished = prefect_server.wait_for_final_state(flow_run["id"], timeout=60)
    assert finished["state"]["type"] in ("CANCELLED", "CRASHED")
    assert not (tmp_path / "out" / "current").exists()  # nothing was published
