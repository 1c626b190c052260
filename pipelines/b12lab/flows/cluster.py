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

import sys
from dataclasses import dataclass
from typing import Any

# How long the command waits for an existing cluster's scheduler to answer before saying it cannot connect.
CONNECT_TIMEOUT_SECONDS = 10


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
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": placement.workers, "processes": True,
                                          "threads_per_worker": 1, "scheduler_port": 0, "dashboard_address": ":0"})


def flow_for(flow: Any, placement: Placement) -> Any:
    """`flow` with the task runner of `placement` (the flow itself in process)."""
    runner = task_runner(placement)
    return flow if runner is None else flow.with_options(task_runner=runner)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Connect to the scheduler at `address` once, before Prefect starts, so that a wrong address or a cluster
    that is down costs seconds and one line, not a failed night half-way."""
    from distributed import Client

    try:
        with Client(address, timeout=timeout, set_as_default=False):
            pass
    except (OSError, TimeoutError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ClusterUnreachable(f"cannot connect to the Dask scheduler at {address}: {reason}") from None


def on_cluster() -> bool:
    """Whether the flow run in progress hands its tasks to a Dask cluster."""
    dask_runner = sys.modules.get("prefect_dask")  # not imported: no run of this process asked for a cluster
    if dask_runner is None:
        return False
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is not None and isinstance(context.task_runner, dask_runner.DaskTaskRunner)
