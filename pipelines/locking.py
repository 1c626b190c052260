"""One run at a time per output folder."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


class RunInProgress(RuntimeError):
    pass


@contextmanager
def run_lock(output_dir: Path):
    """Hold an exclusive lock on OUTPUT/.b12lab.lock for the whole run; refuse if another run holds it.

    The kernel releases an flock when its process dies, so a run killed with kill -9 never leaves a
    stale lock behind.
    """
    path = output_dir / ".b12lab.lock"
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgress(f"another b12lab run is using {output_dir}; try again when it has finished") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
