"""Named crash points, so that tests can kill a real run with SIGKILL at an exact step.

Set B12LAB_CRASH_AT (the crash_at setting) to one of CRASH_POINTS and the run kills itself there, as `kill -9` would: no clean-up,
no exception handler, no exit handler runs. Unset (always, in production) it costs one dictionary look-up: the
environment variable is read directly, not through load_settings, which checks every setting (about 5 ms,
paid once per export file; the command line has already checked the value when the run started).
"""
from __future__ import annotations

import os
import signal
from typing import get_args

from b12lab.common.settings import CrashPoint, variable

CRASH_POINTS = get_args(CrashPoint)


def crash_point(name: str) -> None:
    if os.environ.get(variable("crash_at")) == name:
        os.kill(os.getpid(), signal.SIGKILL)
