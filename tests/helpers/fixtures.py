"""The `ingest` fixture: run one export file through ingest into a lake under tmp_path."""
from __future__ import annotations

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



@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` (scheduler and all services), as an operator runs it for `b12lab serve`."""
    from tests.helpers.processes import PrefectServer

    server = PrefectServer(tmp_path_factory.mktemp("prefect-server-home"))
    yield server
    server.stop()
