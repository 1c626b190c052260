"""The `ingest` fixture: run one export file through ingest into a lake under tmp_path."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pytest

from b12lab.ingest import discover_exports, ingest_file
from b12lab.lake.lake import Lake


class Ingested:
    def __init__(self, account, lake: Lake, table: str, source_hash: str):
        self.account = account
        self.lake = lake
        self.table = table
        self.source_hash = source_hash

    def rows(self, table: str | None = None) -> list[dict]:
        path = self.lake.data_file(table or self.table, self.source_hash)
        with duckdb.connect() as con:
            order = "code_system, code" if table == "unmapped_codes" else "source_row"
            relation = con.execute(f"select * from read_parquet($p) order by {order}", {"p": str(path)})
            names = [d[0] for d in relation.description]
            return [dict(zip(names, values)) for values in relation.fetchall()]

    def quarantine(self) -> list[dict]:
        return self.rows("quarantine")

    def reasons(self) -> dict[int, str]:
        return {row["source_row"]: row["reason"] for row in self.quarantine()}


@pytest.fixture
def ingest(tmp_path):
    """ingest(path) -> Ingested: run one export file through ingest into a lake under tmp_path."""
    lake = Lake(tmp_path / "lake")

    def run(path: Path, earlier_lab_files=(), ingest_date: date = date(2026, 1, 1)) -> Ingested:
        exports, _ = discover_exports(path.parent)
        export = next(e for e in exports if e.path == path)
        with duckdb.connect() as con:
            account = ingest_file(con, export, lake, "test-run", ingest_date, list(earlier_lab_files))
        return Ingested(account, lake, export.kind.table, export.source_hash)

    return run



@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` (scheduler and all services), as an operator runs it for `b12lab serve`.
    One per test file that needs it, stopped when the file's tests are done: idle, its services still poll
    their database (about 2 s of CPU a minute), which a server kept to the end of the session would spend
    on the other files' time."""
    from tests.helpers.processes import PrefectServer

    server = PrefectServer(tmp_path_factory.mktemp("prefect-server-home"))
    yield server
    server.stop()


# --- a published night, run once per session and copied by the tests that build on it --------------------

@dataclass(frozen=True)
class PublishedNight:
    drop: Path
    output: Path
    result: subprocess.CompletedProcess | None  # the `b12lab run` process that published it, if one did


def copy_night(night: PublishedNight, to: Path) -> tuple[Path, Path]:
    """A private copy of a published night's drop and output folders (links kept, as `cp -a` does): the
    output folder is relocatable, so the copy is an output folder of its own."""
    drop, output = to / "drop", to / "out"
    shutil.copytree(night.drop, drop, symlinks=True)
    shutil.copytree(night.output, output, symlinks=True)
    return drop, output


@pytest.fixture(scope="session")
def published_sample_night(tmp_path_factory) -> PublishedNight:
    """`b12lab run` on a copy of data/sample as of SAMPLE_AS_OF, as `make run` runs it on a fresh machine: the
    process, without a Prefect API (no PREFECT_API_URL), so it starts a temporary server of its own. A full
    night costs about half a minute, so it runs once for the whole `make test`; tests read it (`sample_output`)
    or take a copy to run later nights on (`sample_night`). Nobody writes to these folders.

    Under pytest-xdist the first worker to need it runs it, holding a lock, in the folder the workers share
    (the session's base temporary folder, unique to this `make test`); a worker that needs it later reads the
    folders and the process's exit status and output, as recorded then."""
    import fcntl
    import json
    import os

    from tests.helpers.processes import SAMPLE, SAMPLE_AS_OF, b12lab

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    root = shared / "published-sample"
    drop, output, recorded = root / "drop", root / "out", root / "command.json"
    with open(shared / "published-sample.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if recorded.is_file():
            saved = json.loads(recorded.read_text())
            result = subprocess.CompletedProcess(saved["args"], saved["returncode"], saved["stdout"], saved["stderr"])
        else:
            shutil.rmtree(root, ignore_errors=True)  # a run whose worker stopped before it was recorded
            shutil.copytree(SAMPLE, drop)
            result = b12lab("run", "--input", drop, "--output", output, "--as-of", SAMPLE_AS_OF,
                            env={"B12LAB_PSEUDONYM_KEY": None})  # no key: no pseudonymised mart
            recorded.write_text(json.dumps({"args": [str(arg) for arg in result.args], "returncode": result.returncode,
                                            "stdout": result.stdout, "stderr": result.stderr}))
    assert result.returncode == 0, result.stderr
    return PublishedNight(drop, output, result)


@pytest.fixture
def sample_night(published_sample_night, tmp_path) -> tuple[Path, Path]:
    """(drop, output): a copy of the published sample night, for a test that runs the next night on it."""
    return copy_night(published_sample_night, tmp_path)
