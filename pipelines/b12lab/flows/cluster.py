"""Where the nightly flow's tasks run: in the command's own process (the default), on a local Dask cluster of
N worker processes (`--workers N`), or on an existing Dask cluster (`--dask-address` / B12LAB_DASK_ADDRESS).

Prefect's Dask task runner does the distribution; nothing here schedules work. The flow submits the ingest of
each batch of export files and the validation to its task runner only when that runner is Dask's
(`on_cluster`); without one it calls them in its own process exactly as it always did. The dbt build, the
report and the switch always run in the driver (the flow's process): they read and write the one publication.

`prefect_dask` (and with it `distributed`) is imported only when a cluster is asked for: an in-process run
does not pay for the import.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

# A local worker's own log lines, as the command's (b12lab/cli/logging.yml) but naming the worker process.
WORKER_LOG_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s (worker %(process)d) - %(message)s"
# How long the command waits for an existing cluster's scheduler to answer before saying it cannot connect.
CONNECT_TIMEOUT_SECONDS = 10
# The Dask configuration a local cluster's workers start with. Dask's statistical profiler samples every
# thread's stack (`sys._current_frames()`) every 10 ms; on CPython 3.11 a garbage collection that starts inside
# that call can wait forever for a lock the call itself holds, and the worker's task then never finishes (a
# night that hung at its buckets). The night does not read the profiles; without the sampler it cannot hang so.
# A dotted key: the nanny adds it to a copy of its own configuration (a shallow merge, which a nested
# {"distributed": ...} would replace whole) and the worker process sets the keys in that order.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


class ClusterUnreachable(RuntimeError):
    """The scheduler of --dask-address / B12LAB_DASK_ADDRESS did not answer: one line naming the address."""


@dataclass(frozen=True)
class Placement:
    """Where the tasks run: `workers` local worker processes, the cluster at `address`, or (neither) in process."""

    workers: int | None = None
    address: str | None = None

    def __post_init__(self):
        if self.workers is not None and self.address is not None:
            raise ValueError("a local cluster (--workers) and an existing one (--dask-address) exclude each other")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers {self.workers}: a cluster needs at least 1 worker")

    @property
    def in_process(self) -> bool:
        return self.workers is None and self.address is None

    def describe(self) -> str:
        if self.address:
            return f"on the Dask cluster at {self.address}"
        if self.workers:
            return f"on a local Dask cluster of {self.workers} worker processes"
        return "in process"


def task_runner(placement: Placement) -> Any:
    """The Dask task runner of `placement` (None in process).

    A local cluster has one thread per worker process: a task's DuckDB connection already uses the cores it
    is given, and each connection holds up to the memory limit (B12LAB_MEMORY_LIMIT), so one task per process
    keeps a worker's memory to one limit's worth. Its scheduler and dashboard take free ports (two runs on one
    host must not collide on Dask's 8787); Prefect logs the dashboard's address."""
    if placement.in_process:
        return None
    from prefect_dask import DaskTaskRunner

    if placement.address:
        return DaskTaskRunner(address=placement.address)
    return DaskTaskRunner(cluster_class=f"{__name__}.local_cluster",
                          cluster_kwargs={"n_workers": placement.workers, "processes": True,
                                          "threads_per_worker": 1, "scheduler_port": 0, "dashboard_address": ":0",
                                          "preload": [__name__],  # dask_setup, below
                                          "config": WORKER_CONFIG})  # each worker's, merged over Dask's


def local_cluster(**cluster_kwargs: Any) -> Any:
    """`distributed.LocalCluster(**cluster_kwargs)`, with Dask's exit handler for clusters left open made quiet.

    After a Ctrl-C the task runner's close of the cluster can fail (a worker stopped by force in the middle of
    a task) and Dask's exit handler, closing it again, prints its traceback below the command's one line. The
    run has ended and said how; ours closes what is left and says nothing."""
    from distributed import LocalCluster
    from distributed.deploy import spec

    atexit.unregister(spec.close_clusters)
    atexit.unregister(_close_clusters_quietly)
    atexit.register(_close_clusters_quietly)
    # The workers start with SIGINT ignored, a disposition a new process inherits: a Ctrl-C while they import
    # would stop one half-started, with a traceback, before dask_setup (below) takes it out of the terminal's
    # process group. For those seconds the command ignores it too (press again once the cluster is up).
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    try:
        return LocalCluster(**cluster_kwargs)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


def _close_clusters_quietly() -> None:
    from distributed.deploy.spec import SpecCluster

    for cluster in list(SpecCluster._instances):
        with contextlib.suppress(Exception):
            cluster.close(timeout=10)


def dask_setup(worker: Any) -> None:
    """Run by each worker of a local cluster as it starts (Dask's `preload` of this module). The workers are
    started in the command's terminal and process group.

    A Ctrl-C at the terminal is the command's to handle (it stops the run and the cluster with one line); a
    worker that took it too would print a traceback of its own, so the worker leaves the process group. Dask's
    own lines of a worker (a task cancelled, a scheduler gone, as the cluster stops) go to standard output in
    the run's format, without their traceback, as the command's own lines do: standard error holds only the
    command's one line."""
    from b12lab.flows.run_log import ConsoleFormatter

    os.setpgid(0, 0)  # out of the terminal's process group: its Ctrl-C is for the command alone
    loggers = [logging.getLogger(), *(logger for logger in logging.root.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for handler in (handler for logger in loggers for handler in logger.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(sys.stdout)
            handler.setFormatter(ConsoleFormatter(WORKER_LOG_FORMAT, datefmt="%H:%M:%S"))


def flow_for(flow: Any, placement: Placement) -> Any:
    """`flow` with the task runner of `placement` (the flow itself in process)."""
    runner = task_runner(placement)
    return flow if runner is None else flow.with_options(task_runner=runner)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Connect to the scheduler at `address` once, before Prefect starts, so that a wrong address or a cluster
    that is down costs seconds and one line, not a failed night half-way. A plain TCP address whose port
    refuses the connection (no scheduler there) is said at once: Dask's client would retry until its timeout."""
    from distributed import Client

    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if address.startswith("tcp://") and host and port.isdigit():
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except ConnectionRefusedError:
            raise ClusterUnreachable(f"cannot connect to the Dask scheduler at {address}: connection refused") \
                from None
        except OSError:
            pass  # unreachable in another way: the client below says how, after its own attempts
    try:
        with Client(address, timeout=timeout, set_as_default=False):
            pass
    except (OSError, TimeoutError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ClusterUnreachable(f"cannot connect to the Dask scheduler at {address}: {reason}") from None


def in_flow_run() -> bool:
    """Whether a Prefect flow run is in progress, whose task runner can take submitted tasks (run_pipeline
    called on its own, as the test suite does, has none: its tasks run as plain calls)."""
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def on_cluster() -> bool:
    """Whether the flow run in progress hands its tasks to a Dask cluster."""
    dask_runner = sys.modules.get("prefect_dask")  # not imported: no run of this process asked for a cluster
    if dask_runner is None:
        return False
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is not None and isinstance(context.task_runner, dask_runner.DaskTaskRunner)
