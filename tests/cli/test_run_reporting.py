"""What a run tells its operator, through the `b12lab` process: a terminal that fits on a screen with the
details in the log file, a `runs.finished_at` that is when the run ended, and a failed run that calls
nothing "accepted" that never reached the lake."""
from __future__ import annotations

import json
import os
from datetime import datetime

import duckdb
import pytest

from tests.helpers.exports import lab_row, write_labs
from tests.helpers.processes import b12lab

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_a_sample_night_fits_on_a_screen_and_its_log_file_keeps_every_model_line(published_sample_night):
    result, output = published_sample_night.result, published_sample_night.output
    lines = result.stdout.splitlines()
    assert len(lines) <= 30, "\n".join(lines)
    assert not [line for line in lines if " - dbt: " in line]
    assert any(" - models built: " in line and "data tests passed" in line for line in lines)
    [log_file] = (output / "logs").glob("*.log")
    logged = log_file.read_text().splitlines()
    dbt_lines = [line for line in logged if " - dbt: " in line]
    assert any("OK created sql table model main.cohort_deficient" in line for line in dbt_lines)
    assert any("PASS " in line for line in dbt_lines)
    assert len(dbt_lines) > 100  # every seed, model and test: the sample builds about 200


def test_finished_at_is_when_the_night_ended_the_same_in_warehouse_lake_and_summary(published_sample_night):
    output = published_sample_night.output
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        [(run_id, started, finished)] = con.execute("select run_id, started_at, finished_at from runs").fetchall()
    with duckdb.connect() as con:
        [(in_lake,)] = con.execute("select finished_at from read_parquet($p)",
                                   {"p": str(output / "lake" / "runs" / f"{run_id}.parquet")}).fetchall()
    summary = json.loads((output / "run_summary.json").read_text())
    assert finished == in_lake == datetime.fromisoformat(summary["finished_at"])
    # After everything the publication holds was written (the report is its last product), before the
    # latest summary, written once the publication is live.
    report_written = datetime.fromtimestamp(os.stat(output / "report" / "index.html").st_mtime)
    summary_written = datetime.fromtimestamp(os.stat(output / "run_summary.json").st_mtime)
    assert started < report_written <= finished <= summary_written


def test_a_failed_run_calls_the_rows_it_did_not_commit_valid_not_accepted(tmp_path):
    from prefect.settings import PREFECT_API_URL

    drop, output = tmp_path / "drop", tmp_path / "out"
    rows = [lab_row(patient_id=f"Q{i}", accession=f"Q{i}", unit="furlongs" if i < 3 else "pmol/L") for i in range(10)]
    write_labs(drop / "labs_changed_layout.csv", rows)
    result = b12lab("run", "--input", drop, "--output", output, env={"PREFECT_API_URL": PREFECT_API_URL.value()})
    assert result.returncode == 1
    assert "nothing was committed" in result.stderr
    account_lines = [line for line in result.stdout.splitlines() if "labs_changed_layout.csv: read" in line]
    assert [line.split(" - ", 1)[1] for line in account_lines] == [
        "labs_changed_layout.csv: read 10, valid 7, quarantined 3, dropped 0: not committed"]
    assert " accepted " not in result.stdout

    summary = json.loads((output / "run_summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["rows_accepted"] is None and summary["rows_valid_not_committed"] == 7
    [account] = summary["files"]
    assert account["committed"] is False and "rows_accepted" not in account
    assert account["rows_valid_not_committed"] == 7 and account["rows_quarantined"] == 3
    with duckdb.connect() as con:
        [(accepted, status)] = con.execute("select rows_accepted, status from read_parquet($p)",
                                           {"p": str(output / "lake" / "runs" / "*.parquet")}).fetchall()
    assert accepted is None and status == "failed"
