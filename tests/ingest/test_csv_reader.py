"""csv_reader's Python reader (the one a file with malformed quoting goes to): records numbered in file order
across its batches, short records padded, long ones keeping their extra fields."""
from __future__ import annotations

import duckdb

from b12lab.common.duck import connect
from b12lab.ingest import csv_reader
from b12lab.ingest.contract import discover_exports
from tests.helpers.exports import lab_row, write_labs


def test_the_python_reader_numbers_pads_and_keeps_overflow_across_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_reader, "_PYTHON_BATCH_RECORDS", 2)
    path = tmp_path / "labs.csv"
    path.write_text('a,b,c\n1,x,y\n2,"q""uoted",z\n\n3,short\n4,x,y,extra,more\n"5\nsplit",x,\x1e\n6,x,y\n',
                    encoding="utf-8")
    columns = {"a": "VARCHAR", "b": "VARCHAR", "c": "VARCHAR", "_overflow": "VARCHAR"}
    con = duckdb.connect()
    csv_reader._load_raw_file_with_python(con, path, columns, ",")
    assert con.execute("select * from raw_file order by source_row").fetchall() == [
        (1, "1", "x", "y", None),
        (2, "2", 'q"uoted', "z", None),
        (3, "3", "short", None, None),  # the blank line is no record
        (4, "4", "x", "y", "extra,more"),
        (5, "5\nsplit", "x", None, None),  # the one value never in data reads as missing, as DuckDB's reader
        (6, "6", "x", "y", None),
    ]


def test_a_well_formed_file_larger_than_the_memory_limit_is_read_by_duckdb(tmp_path, monkeypatch):
    # DuckDB's CSV buffer is the line limit, not the whole file: a file larger than the memory limit does not
    # run out of memory and go to the (much slower) Python reader.
    row = lab_row()
    write_labs(tmp_path / "in" / "labs_site.csv", [row] * 400_000)
    [export], _ = discover_exports(tmp_path / "in", None)
    assert export.path.stat().st_size > 32 << 20  # larger than the memory limit below
    monkeypatch.setattr(csv_reader, "_MAX_LINE_BYTES", 8 << 20)

    def python_reader(*args):
        raise AssertionError("read by the Python reader")

    monkeypatch.setattr(csv_reader, "_load_raw_file_with_python", python_reader)
    (tmp_path / "scratch").mkdir()
    with connect(temp_dir=tmp_path / "tmp", memory_limit="32MB") as con:
        missing, repeated, problem = csv_reader.load_csv_file(con, export, tmp_path / "scratch")
        assert (missing, repeated, problem) == ([], "", "")
        assert con.execute("select count(*), max(source_row) from raw_file").fetchall() == [(400_000, 400_000)]
