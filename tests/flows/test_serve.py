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
