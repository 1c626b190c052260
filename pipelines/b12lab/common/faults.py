"""Named crash points, so that tests can kill a real run with SIGKILL at an exact step.

Set B12LAB_CRASH_AT to one of CRASH_POINTS and the run kills itself there, as `kill -9` would: no clean-up,
no exception handler, no exit handler runs. Unset (always, in production) it costs one dictionary look-up.
"""
from __future__ import annotations

import os
import signal

CRASH_POINTS = ("ingest", "classify", "publish")


def crash_point(name: str) -> None:
    if os.environ.get("B12LAB_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
