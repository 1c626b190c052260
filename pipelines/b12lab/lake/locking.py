"""One run at a time per output folder, and what a killed run left unfinished."""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

class RunInProgress(RuntimeError):
    pass


class RunLock:
    """The held lock. While a run holds it, the file names the run (pid, run id, Prefect flow run id); a run
    that finishes, however it fails, empties it. So a next run that finds it filled knows that the run named
    there was killed (kill -9, power loss) and can close what it left open."""

    def __init__(self, handle, previous: dict | None):
        self._handle = handle
        self.previous = previous

    def record(self, **holder) -> None:
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(json.dumps({"pid": os.getpid(), **holder}))
        self._handle.flush()

    def clear(self) -> None:
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.flush()


def _read_holder(text: str) -> dict | None:
    if not text.strip():
        return None
    try:
        holder = json.loads(text)
    except ValueError:  # an older version wrote the pid alone
        return {"pid": text.strip()}
    return holder if isinstance(holder, dict) else None


def _in_use(path: Path) -> RunInProgress:
    return RunInProgress(f"another b12lab run is using {path.parent}; try again when it has finished")


def check_unlocked(path: Path) -> None:
    """Raise RunInProgress if a run holds the lock file `path` (OUTPUT/.b12lab.lock) now; leave it as it is."""
    if not path.exists():
        return
    with open(path) as handle:  # read only: a read-only folder is for the run to name, not this look
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(path) from None


@contextmanager
def run_lock(path: Path):
    """Hold an exclusive lock on the lock file `path` (OUTPUT/.b12lab.lock) for the whole run; refuse if
    another run holds it.

    The kernel releases an flock when its process dies, so a run killed with kill -9 never leaves a
    stale lock behind (only its name in the file, which `RunLock.previous` reports).
    """
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(path) from None
        handle.seek(0)
        lock = RunLock(handle, _read_holder(handle.read()))
        lock.record()
        try:
            yield lock
        finally:
            lock.clear()
    finally:
        handle.close()
