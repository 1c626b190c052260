"""Where the nightly flow's tasks run: in process (the default), on a local Dask cluster (--workers N) or on an
existing one (--dask-address / B12LAB_DASK_ADDRESS); the same night publishes the same tables wherever it ran."""
from __future__ import annotations

import cloudpickle
import pytest

from b12lab.flows.cluster import Placement, flow_for, local_cluster, on_cluster, task_runner
from b12lab.flows.nightly import nightly
from benchmarks.harness import free_port
from tests.helpers.processes import SAMPLE_AS_OF, b12lab, session_api_url


def test_no_option_runs_the_flow_as_it_is():
    assert Placement().in_process and task_runner(Placement()) is None
    assert flow_for(nightly, Placement()) is nightly
    assert not on_cluster()  # outside a flow run: nothing is submitted anywhere


def test_workers_make_a_local_cluster_of_single_threaded_processes():
    from prefect_dask import DaskTaskRunner

    runner = task_runner(Placement(workers=3))
    assert isinstance(runner, DaskTaskRunner) and runner.address is None
    assert runner.cluster_class == "b12lab.flows.cluster.local_cluster"  # distributed.LocalCluster
    assert runner.cluster_kwargs == {"n_workers": 3, "processes": True, "threads_per_worker": 1,
                                     "scheduler_port": 0, "dashboard_address": ":0",
                                     "preload": ["b12lab.flows.cluster"],
                                     "config": {"distributed.worker.profile.enabled": False}}
    assert task_runner(Placement(address="tcp://10.0.0.5:8786")).address == "tcp://10.0.0.5:8786"


@pytest.mark.process
def test_a_local_clusters_workers_do_not_sample_their_stacks():
    """Dask's profiler (sys._current_frames every 10 ms) can deadlock a CPython 3.11 worker mid-task: the
    workers the command starts run without it, with the command's preload."""
    from distributed import Client

    kwargs = task_runner(Placement(workers=1)).cluster_kwargs
    with local_cluster(**kwargs) as cluster, Client(cluster, set_as_default=False) as client:
        [callbacks] = client.run(lambda dask_worker: sorted(dask_worker.periodic_callbacks)).values()
    assert "profile" not in callbacks and "profile-cycle" not in callbacks
    assert "heartbeat" in callbacks  # the worker's callbacks were read: it is otherwise a plain worker


def test_the_served_flow_carries_its_task_runner_to_the_nights_process():
    # `serve` hands the flow object to a spawned process for each night: it must survive pickling, runner and all.
    served = cloudpickle.loads(cloudpickle.dumps(flow_for(nightly, Placement(workers=2))))
    assert served.name == nightly.name
    assert served.task_runner.cluster_kwargs["n_workers"] == 2


@pytest.mark.parametrize("placement", [dict(workers=0), dict(workers=-2), dict(workers=2, address="tcp://h:1")])
def test_a_placement_no_run_can_have_is_refused(placement):
    with pytest.raises(ValueError):
        Placement(**placement)


@pytest.mark.parametrize("options, message", [
    (["--workers", "0"], "Error: Invalid value for '--workers': 0 is not in the range x>=1."),
    (["--workers", "-1"], "Error: Invalid value for '--workers': -1 is not in the range x>=1."),
    (["--workers", "2", "--dask-address", "tcp://127.0.0.1:8786"],
     "Error: --workers (a local cluster) and --dask-address (an existing one) exclude each other"),
    (["--dask-address", "10.0.0.5:8786"],
     "Error: Invalid value for '--dask-address': '10.0.0.5:8786' is not a Dask scheduler address "
     "(for example tcp://10.0.0.5:8786)"),
    (["--buckets", "0"], "Error: Invalid value for '--buckets': 0 is not in the range 1<=x<=4096."),
])
@pytest.mark.parametrize("command", ["run", "serve"])
def test_bad_cluster_options_are_usage_errors(tmp_path, command, options, message):
    result = b12lab(command, "--input", tmp_path, "--output", tmp_path / "out", *options,
                    env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == message and "Traceback" not in result.stderr


def test_a_scheduler_that_does_not_answer_is_one_line_and_exit_1(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    result = b12lab("run", "--input", tmp_path, "--output", tmp_path / "out", "--dask-address", address)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"b12lab: error: cannot connect to the Dask scheduler at {address}: ")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_scheduler_address_setting_it_cannot_take_is_named(tmp_path):
    result = b12lab("run", "--input", tmp_path, "--output", tmp_path / "out", env={"B12LAB_DASK_ADDRESS": "nope"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "b12lab: error: B12LAB_DASK_ADDRESS: 'nope' is not a Dask scheduler address (for example tcp://10.0.0.5:8786)"]


def file_lines(stdout: str) -> list[str]:
    """The flow's line per export file (`labs_valley.csv: read 1392, accepted ...`), without time or run name."""
    return [line.split(" - ", 1)[1] for line in stdout.splitlines() if "Flow run" in line and ": read " in line]


@pytest.mark.process
def test_a_local_cluster_publishes_the_same_tables_as_a_run_in_process(published_sample_night, tmp_path):
    """The sample on a real local Dask cluster (two worker processes started by the `b12lab` process), its
    patients in 16 buckets built by the workers, gives every published table row for row as the session's
    in-process night of the same files and date, in one bucket."""
    from benchmarks.compare_publications import compare

    output = tmp_path / "out"
    result = b12lab("run", "--input", published_sample_night.drop, "--output", output, "--as-of", SAMPLE_AS_OF,
                    "--workers", "2", "--buckets", "16", env={"PREFECT_API_URL": session_api_url()})
    assert result.returncode == 0, result.stderr
    assert "ingest, validation and the patients' buckets run on a local Dask cluster of 2 worker processes" in result.stdout
    assert result.stderr == ""
    # The cluster starts at the first task submitted to it: the ingest tasks went to its workers.
    assert "Creating a new Dask cluster with `b12lab.flows.cluster.local_cluster`" in result.stdout
    # The accounts in discovery order, as in process.
    assert file_lines(result.stdout) == file_lines(published_sample_night.result.stdout)
    assert len(file_lines(result.stdout)) == 6
    assert "buckets: 500 patients built in 16 of 16 buckets (on the cluster;" in result.stdout
    assert not (output / ".tmp" / "buckets").exists()  # the buckets' files, removed once read
    assert compare(published_sample_night.output, output) == 0


@pytest.mark.process
def test_ctrl_c_stops_a_run_on_a_local_cluster_with_one_line(tmp_path):
    """A Ctrl-C at the terminal reaches the whole process group, the cluster's workers too: the command stops
    the run and the cluster and says so in one line; no worker prints a traceback of its own."""
    import os
    import signal
    import time

    from tests.helpers.processes import SAMPLE, start_b12lab

    run = start_b12lab("run", "--input", SAMPLE, "--output", tmp_path / "out", "--as-of", SAMPLE_AS_OF,
                       "--workers", "2", env={"PREFECT_API_URL": session_api_url()})
    try:
        for line in run.stdout:
            if "The Dask dashboard is available" in line:  # the cluster is up: its workers are ingesting
                break
        time.sleep(3)
        os.killpg(run.pid, signal.SIGINT)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
    assert run.returncode == 130
    assert stderr.splitlines() == ["b12lab: interrupted (SIGINT): nothing half-done was published; the next run "
                                   "carries on"]
    assert "Traceback" not in stdout and not (tmp_path / "out" / "current").exists()
