"""The run's log file, OUTPUT/logs/<run_id>.log, and what the terminal is spared.

Everything the run logs (Prefect's flow and task logs, every print of a task) goes to the run's log file,
with full tracebacks; a failing run writes its traceback there and names the file in its one-line message.
The terminal gets the same lines without tracebacks (`ConsoleFormatter`, set in `logging.yml`, which the
command line hands to Prefect), except the detail lines (`NOT_ON_TERMINAL`, dbt's line per model and test):
those go to the log file and the Prefect UI only, so that a night fits on a screen.
"""
from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager
from pathlib import Path

from prefect.logging.formatters import PrefectFormatter

LOG_FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"
# `logger.info(line, extra=NOT_ON_TERMINAL)`: a detail line for the run's log file and the Prefect UI only.
NOT_ON_TERMINAL = {"b12lab_terminal": False}


class TerminalFilter(logging.Filter):
    """The console handler's filter (logging.yml): leaves out the records marked NOT_ON_TERMINAL, and each
    task's "Finished in state Completed()" (a dozen a night, saying nothing the next line does not; a task
    that fails or crashes still says so)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "b12lab_terminal", True):
            return False
        return not (record.name == "prefect.task_runs"
                    and record.getMessage().startswith("Finished in state Completed"))


class ConsoleFormatter(PrefectFormatter):
    """Prefect's console format, with no traceback: the cause is in the message, the trace in the log file."""

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        return ""

    def formatStack(self, stack_info) -> str:  # noqa: N802
        return ""

    def format(self, record: logging.LogRecord) -> str:
        # The exception text is cached on the record: keep the log file's copy of it intact.
        cached = record.exc_text
        record.exc_text = ""
        try:
            return super().format(record).rstrip()
        finally:
            record.exc_text = cached


class RunLog:
    def __init__(self, path: Path, handler: logging.FileHandler):
        self.path = path
        self._handler = handler

    def write_traceback(self, error: BaseException) -> None:
        """The full trace of what ended the run, in the log file only."""
        self._handler.acquire()
        try:
            self._handler.stream.write("".join(traceback.format_exception(error)))
            self._handler.flush()
        finally:
            self._handler.release()


@contextmanager
def run_log(path: Path):
    """Send every log record of the run (root logger and Prefect's) to `path` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield RunLog(path, handler)
    finally:
        root.removeHandler(handler)
        handler.close()
