"""Ingest within DuckDB's memory limit: a step that runs out of memory on every thread runs again on one."""
from __future__ import annotations

import duckdb
import pytest

from b12lab.common.duck import connect
from b12lab.ingest.contract import discover_exports
from b12lab.ingest.file_ingest import _within_memory
from tests.helpers.exports import lab_row, write_labs


@pytest.fixture()
def export(tmp_path):
    write_labs(tmp_path / "in" / "labs_site.csv", [lab_row()])
    exports, _ = discover_exports(tmp_path / "in", None)
    return exports[0]


def test_a_step_out_of_memory_on_every_thread_runs_again_on_one_and_says_so(tmp_path, export, capsys, monkeypatch):
    monkeypatch.setenv("B12LAB_MEMORY_LIMIT", "64MB")
    attempts = []

    def step(con):
        threads = con.execute("select current_setting('threads')").fetchall()[0][0]
        attempts.append(threads)
        if threads > 1:  # as DuckDB does when every thread holds its share of a sort or a Parquet row group
            raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate data of size 256.0 KiB")

    with connect(temp_dir=tmp_path / "tmp") as con:
        con.execute("set threads = 2")
        _within_memory(con, export.display_name, "the lake file of its accepted rows", lambda: step(con))
        assert con.execute("select current_setting('threads')").fetchall()[0][0] > 1  # reset afterwards
    assert attempts == [2, 1]
    assert capsys.readouterr().out.splitlines() == [
        "labs_site.csv: the lake file of its accepted rows needed more than the memory limit (64MB) on 2 "
        "threads; run again on one thread"]


def test_a_step_out_of_memory_on_one_thread_too_is_raised(tmp_path, export):
    def step():
        raise duckdb.OutOfMemoryException("Out of Memory Error")

    with connect(temp_dir=tmp_path / "tmp", memory_limit="64MB") as con:
        with pytest.raises(duckdb.OutOfMemoryException):
            _within_memory(con, export.display_name, "the row model", step)
        assert con.execute("select current_setting('threads')").fetchall()[0][0] > 1
