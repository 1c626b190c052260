"""Smoke tests of the performance harness (benchmarks/): it runs end to end at a tiny size and reports every
contender. Nothing here asserts a duration or a memory figure: those belong to `make bench`, not to CI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import harness

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ROWS = 2000
# Not a timing assertion: only a guard so that a hung Prefect server cannot hang the test session.
HANG_GUARD_S = 600


@pytest.fixture(scope="module")
def export_cache(tmp_path_factory) -> Path:
    """One cache of generated exports for the module's harness runs: the same rows and seed, generated once."""
    return tmp_path_factory.mktemp("harness-cache")


def run_harness(tmp_path: Path, cache: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--rows", str(ROWS), "--out", str(out),
         "--cache-dir", str(cache), "--work-dir", str(tmp_path / "work"), *options],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed, json.loads(out.read_text())


@pytest.mark.bench_smoke
@pytest.mark.process  # the harness runs the pipeline in processes of its own
def test_every_contender_is_measured_and_the_two_nights_profiled(tmp_path, export_cache):
    completed, result = run_harness(tmp_path, export_cache, "--profile")

    assert set(result["contenders"]) == {"floor", "pandas", "run", "delta", "idle"}
    for name, contender in result["contenders"].items():
        assert contender["exit_code"] == 0, (name, contender.get("log_tail"))
        assert contender["wall_s"] > 0, name
        assert contender["peak_rss_bytes"] > 0, name
        assert contender["ratio_to_floor"] > 0, name
        if name != "idle":  # the night with no new file reads no lab row
            assert contender["rows_per_s"] > 0, name
            assert contender["lab_rows"] > 0, name
    assert result["contenders"]["idle"]["lab_rows"] == 0
    assert result["contenders"]["floor"]["ratio_to_floor"] == 1.0
    assert result["input"]["lab_rows"] == result["contenders"]["run"]["lab_rows"]
    # The delta is about 1 % more lab rows, in labs_delta_* files.
    delta = result["contenders"]["delta"]
    assert delta["lab_rows"] < result["input"]["lab_rows"]
    assert all(name.startswith("labs_delta_") for name in delta["delta_files"])
    # ... added to the first night's drop folder: the files ingested then are not read again.
    said = re.search(r"sha256 read for (\d+) files? new or changed since last hashed, remembered for (\d+) unchanged",
                     (tmp_path / "work" / "logs" / "delta-1.log").read_text())
    assert said and int(said[1]) == len(delta["delta_files"]) and int(said[2]) > 0, said
    assert result["prefect_server"]["startup_s"] > 0 and result["prefect_server"]["started_here"]
    # Stage times read back from the Prefect API.
    tasks = {task["task"].split()[0] for task in result["contenders"]["run"]["prefect"]["tasks"]}
    assert {"validate_new_rows", "build_models", "write_report", "switch_in"} <= tasks
    assert tasks & {"ingest_export", "ingest_small_exports"}  # the smoke exports are small: several to a task
    assert any(stage.get("peak_rss_bytes") for stage in result["contenders"]["run"]["prefect"]["stages"])
    assert {check["target"] for check in result["targets"]}  # every target evaluated (pass or fail)
    # The aligned table on stdout names every contender.
    for title in harness.CONTENDER_TITLES.values():
        assert title in completed.stdout
    # --profile: the full night and the 1 % night carry the stage timers' tree, printed under their titles.
    for name in ("run", "delta"):
        steps = {step["stage"] for step in result["contenders"][name]["steps"]}
        assert {"task validate_new_rows", "task build_models", "task write_report"} <= steps, name
        assert any(step.startswith(("task ingest_export labs_", "task ingest_small_exports ")) for step in steps)
        assert f"{harness.CONTENDER_TITLES[name]}: steps inside the flow" in completed.stdout
    assert "SQL models (dbt build)" in {step["stage"] for step in result["contenders"]["run"]["steps"]}
    assert "steps" not in result["contenders"]["floor"]


@pytest.mark.bench_smoke
@pytest.mark.process
def test_workers_report_each_workers_peak_memory(tmp_path, export_cache):
    from tests.helpers.processes import session_api_url

    # Against the session's API (--prefect-api, a server already running): the first test starts the harness's own.
    completed, result = run_harness(tmp_path, export_cache, "--workers", "2", "--skip", "floor", "pandas", "delta",
                                    "idle", "--prefect-api", session_api_url())
    assert result["prefect_server"] == {"startup_s": 0.0, "api_url": session_api_url().rstrip("/"),
                                        "started_here": False}
    assert "Prefect API server start-up" not in completed.stdout

    run = result["contenders"]["run"]
    assert result["workers"] == 2 and run["exit_code"] == 0
    assert run["command"][-2:] == ["--workers", "2"]
    assert len(run["worker_peak_rss_bytes"]) == 2  # the local cluster's two worker processes, each measured
    assert all(0 < peak < run["peak_rss_bytes"] for peak in run["worker_peak_rss_bytes"])
    assert "on 2 Dask workers (--workers 2): peak RSS per worker" in completed.stdout


def test_a_dask_worker_is_told_from_the_rest_of_the_tree():
    import multiprocessing
    import os

    import psutil

    worker = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30,))
    worker.start()
    try:
        # until the child has exec'd, its command line is still this process's
        deadline = time.monotonic() + 20
        while not harness.is_dask_worker(psutil.Process(worker.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert harness.is_dask_worker(psutil.Process(worker.pid))
        assert not harness.is_dask_worker(psutil.Process(os.getpid()))
        assert list(harness.worker_rss(psutil.Process(os.getpid()), {})) == [worker.pid]
    finally:
        worker.kill()
        worker.join()


def test_exports_are_generated_once_and_keyed_by_synth_source(tmp_path):
    first = harness.cached_export(tmp_path, "labs", patients=3, seed=1, log=lambda message: None)
    second = harness.cached_export(tmp_path, "labs", patients=3, seed=1, log=lambda message: None)

    assert first.generated_seconds is not None and second.generated_seconds is None
    assert first.folder == second.folder and first.rows == second.rows
    assert harness.synth_hash() in first.folder.parent.name
    assert first.lab_rows == sum(rows for name, rows in first.rows.items() if name.startswith("labs"))
    assert sorted(p.name for p in first.folder.iterdir()) == sorted(first.rows)


def test_stage_tree_shows_time_not_covered_by_children():
    events = [
        {"path": ["task a", "read"], "seconds": 1.0},
        {"path": ["task a", "write"], "seconds": 2.0},
        {"path": ["task a"], "seconds": 4.0},
        {"path": ["task b"], "seconds": 0.5},
    ]
    rows = [(row["depth"], row["stage"], row["seconds"]) for row in harness.stage_tree(events)]

    assert rows == [(0, "task a", 4.0), (1, "read", 1.0), (1, "write", 2.0), (1, "(other)", 1.0),
                    (0, "task b", 0.5)]


def test_a_profiled_night_that_fails_exits_as_the_command_does(tmp_path):
    """The profiled night is the console script itself: its failure is the harness's failed contender."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile_run", str(tmp_path / "timings.json"), "run",
         "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S)

    assert completed.returncode == 1
    assert completed.stderr.splitlines() == [f"b12lab: error: input folder not found: {tmp_path / 'missing'}"]
    assert (tmp_path / "timings.json").is_file()
