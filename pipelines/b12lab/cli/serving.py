"""`b12lab serve`: Prefect's runner for the nightly deployment, stopped cleanly by SIGTERM or SIGINT.

Prefect's own `Flow.serve` answers SIGTERM with `sys.exit(0)` from inside its event loop (asyncio prints the
traceback of the task it lands in) and a Ctrl-C with a KeyboardInterrupt in whatever coroutine runs. Here
both signals only ask the runner to stop: it cancels a flow run in progress (its process ends Crashed, as an
interrupted `b12lab run` does), pauses the deployment's schedule (as Prefect does: no process is left to run
it), and `serve` returns which signal stopped it and whether a night was running, for the exit status.
"""
from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Stopped:
    """How serving ended: by which signal (None: the runner ended by itself) and whether a run was going."""

    signum: int | None = None
    run_in_progress: bool = False


def serve(flow: Any, *, name: str, schedules: list, parameters: dict, description: str,
          announce: Callable[[], None] = lambda: None) -> Stopped:
    """Register `flow` as the deployment `<flow>/<name>` with its schedules and run its flow runs until a
    SIGTERM or SIGINT; return how it stopped. `announce` says that serving begins, once a signal would stop
    serving cleanly."""
    from prefect.runner import Runner

    stopped = Stopped()
    # A signal that comes before the event loop runs (while the deployment is registered) is kept and acted on
    # once it does: the command's own handlers would otherwise report an interrupted night.
    early: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda received, frame: early.append(received))
    announce()

    class StoppableRunner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            # Prefect installs this for SIGTERM when the runner starts; it runs in the event loop's thread.
            request_stop(signal.SIGTERM)

    runner = StoppableRunner(name=name)
    deployment_id = runner.add_flow(flow, name=name, schedules=schedules, parameters=parameters,
                                    description=description)
    loop: asyncio.AbstractEventLoop | None = None

    async def stop() -> None:
        stopped.run_in_progress = await _has_unfinished_runs(deployment_id)
        # A signal can come while the runner is still starting, and a runner refuses to stop before it has
        # started: wait for it, or it would start afterwards and serve on.
        while not runner.started:
            await asyncio.sleep(0.05)
        await runner.astop()

    def request_stop(signum: int) -> None:
        if stopped.signum is not None or loop is None:
            return
        stopped.signum = signum
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(stop()))

    async def run_until_stopped() -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # Prefect's runner takes SIGTERM over once started
            loop.add_signal_handler(signum, request_stop, signum)
        for signum in early:
            request_stop(signum)
        await runner.start()

    asyncio.run(run_until_stopped())
    return stopped


async def _has_unfinished_runs(deployment_id: Any) -> bool:
    """Whether a flow run of the deployment is pending or running now (asked of the API: the runner's own
    books of its processes are private)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, FlowRunFilter
    from prefect.client.schemas.objects import StateType

    unfinished = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    try:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id={"any_": [deployment_id]}),
                flow_run_filter=FlowRunFilter(state={"type": {"any_": unfinished}}), limit=1)
    except Exception:  # the server went first: nothing can be said of the runs, and the stop goes on
        return False
    return bool(runs)
