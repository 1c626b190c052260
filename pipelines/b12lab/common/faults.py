"""Named crash points, so that tests can kill a real run with SIGKILL at an exact step.

Set B12LAB_CRASH_AT (the crash_at setting) to one of CRASH_POINTS and the run kills itself there, as `kill -9` would: no clean-up,
no exception handler, no exit handler runs. Unset (always, in production) it costs one dictionary look-up.
"""
from __future__ import annotations

import os
import signal
from typing import get_args

from b12lab.common.settings import CrashPoint, load_settings

CRASH_POINTS = get_args(CrashPoint)


def crash_point(name: str) -> None:
    if load_settings().crash_at == name:
        os.kill(os.getpid(), signal.SIGKILL)
