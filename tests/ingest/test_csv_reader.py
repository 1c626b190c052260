"""csv_reader's Python reader (the one a file with malformed quoting goes to): records numbered in file order
across its batches, short records padded, long ones keeping their extra fields."""
from __future__ import annotations

import duckdb

from b12lab.ingest import csv_reader


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
