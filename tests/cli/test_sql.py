"""`b12lab sql` as an analyst runs it, through the process: every row and column in four formats, a result
written to a file, and the interactive prompt driven through its standard input."""
from __future__ import annotations

import csv
import io
import json
import stat
import subprocess

import duckdb
import pytest

from tests.helpers.processes import BIN, b12lab, command_env


@pytest.fixture(scope="module")
def warehouse_facts(published_sample_night):
    with duckdb.connect(str(published_sample_night.output / "warehouse.duckdb"), read_only=True) as con:
        lab_rows = con.execute("select count(*) from lab_results").fetchone()[0]
        lab_columns = [row[0] for row in con.execute("describe lab_results").fetchall()]
    assert lab_rows > 1000 and len(lab_columns) > 10  # more than any display would show
    return published_sample_night.output, lab_rows, lab_columns


def sql(output, *args, **kwargs) -> subprocess.CompletedProcess:
    result = b12lab("sql", *args, "--output", output, **kwargs)
    assert result.returncode == 0, result.stderr
    return result


def test_table_shows_every_row_and_column(warehouse_facts):
    output, rows, columns = warehouse_facts
    lines = sql(output, "select * from lab_results order by source_file, source_row").stdout.splitlines()
    assert lines[0].split() == columns
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == rows + 3 and lines[-1] == f"({rows} rows)"
    assert "…" not in "\n".join(lines) and "..." not in lines[0]


def test_csv_json_and_markdown_hold_every_row_and_column(warehouse_facts):
    output, rows, columns = warehouse_facts
    query = "select * from lab_results order by source_file, source_row"
    parsed = list(csv.reader(io.StringIO(sql(output, query, "--format", "csv").stdout)))
    assert parsed[0] == columns and len(parsed) == rows + 1
    objects = json.loads(sql(output, query, "--format", "json").stdout)
    assert len(objects) == rows and list(objects[0]) == columns
    markdown = sql(output, query, "--format", "markdown").stdout.splitlines()
    assert markdown[0] == "| " + " | ".join(columns) + " |" and len(markdown) == rows + 2


def test_out_writes_the_result_to_a_file(warehouse_facts, tmp_path):
    output, rows, _ = warehouse_facts
    target = tmp_path / "labs.csv"
    result = sql(output, "select * from lab_results", "--format", "csv", "--out", target)
    assert result.stdout == "" and result.stderr.splitlines() == [f"wrote {target}"]
    assert len(list(csv.reader(target.open()))) == rows + 1


def test_an_unknown_format_is_a_usage_error(warehouse_facts):
    output, _, _ = warehouse_facts
    result = b12lab("sql", "select 1", "--output", output, "--format", "xml")
    assert result.returncode == 2 and "Invalid value for '--format'" in result.stderr


def test_the_prompt_lists_tables_shows_a_schema_switches_mode_and_keeps_history(warehouse_facts, tmp_path):
    output, _, _ = warehouse_facts
    typed = "\n".join([
        ".tables",
        ".schema runs",
        ".mode json",
        "select status, count(*) as patients",
        "from patient_status group by status order by status;",
        "select no_such_column;",
        ".mode nope",
        ".quit",
    ]) + "\n"
    session = subprocess.run([str(BIN / "b12lab"), "sql", "--output", str(output)], input=typed, text=True,
                             capture_output=True, timeout=120, env=command_env({"HOME": tmp_path}))
    assert session.returncode == 0, session.stderr
    assert session.stderr == ""
    shown = session.stdout
    assert "cohort_deficient" in shown and "worklist_items" in shown                        # .tables
    assert "int_status_on_date" not in shown  # the incremental build's working tables are not listed
    assert "finished_at" in shown and "When the run ended" in shown                          # .schema runs
    statuses = json.loads(shown[shown.index("["):shown.index("]") + 1])                       # .mode json
    assert {row["status"] for row in statuses} >= {"deficient", "normal"}
    assert sum(row["patients"] for row in statuses) == 500
    assert "error: Binder Error" in shown and "error: .mode takes one of table, csv, json, markdown" in shown

    history = tmp_path / ".b12lab_sql_history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    entries = history.read_text().splitlines()
    assert "select status, count(*) as patients from patient_status group by status order by status;" in entries
    assert ".schema runs" in entries


def test_the_prompt_ends_at_end_of_input(warehouse_facts, tmp_path):
    output, _, _ = warehouse_facts
    session = subprocess.run([str(BIN / "b12lab"), "sql", "--output", str(output)], input="select 42 as answer;\n",
                             text=True, capture_output=True, timeout=120, env=command_env({"HOME": tmp_path}))
    assert session.returncode == 0 and "42" in session.stdout and session.stderr == ""
