"""A night of the nightly flow in this test's process, for a night a test checks by the output folder it leaves.

The flow is the one `b12lab run` and the served deployment run (b12lab.flows.nightly.nightly), reporting to
the session's Prefect API. A test whose point is what only a process shows (exit status, the one line on
stderr, signals, a kill) runs the `b12lab` command for that night; a night checked by what it leaves (the lake,
the warehouse, the report), the one before a kill or the one after it, runs here: it costs the flow's work
without a new process's start (about 9 s of CPU importing Prefect, Great Expectations and dbt and warming dbt up).
"""
from __future__ import annotations

from datetime import date
from pathlib import Path


def flow_night(drop: Path, output: Path, as_of: date | str | None = None, **parameters) -> dict:
    """The nightly flow on `drop` into `output` as of `as_of` (today when None); its result, the run's record.
    A night that fails raises the one-line RunFailed the command would have printed."""
    from b12lab.flows.nightly import nightly

    if isinstance(as_of, str):
        as_of = date.fromisoformat(as_of)
    return nightly(input_dir=drop, output_dir=output, as_of=as_of, **parameters)
