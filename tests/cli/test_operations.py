"""What a night meets, through the `b12lab` process: exit status, the one line on stderr, the log file,
the Prefect flow run's state, and the next night.

Each run is the console script in its own process, reporting to the session's Prefect API (a server
subprocess); signals and kills are real. The night after one, checked by what it leaves in the output folder,
is the nightly flow in the test's process (tests/helpers/nights.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from b12lab.ingest import LAB_COLUMNS
from tests.helpers.exports import lab_row, write_csv, write_labs
from tests.helpers.nights import flow_night
from tests.helpers.processes import BIN, SAMPLE, b12lab, command_env, start_b12lab

pytestmark = pytest.mark.usefixtures("prefect_harness")
LIVE_AS_OF = "2026-10-31"


def api_env(**extra) -> dict:
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value(), **extra}


def run(input_dir: Path, output_dir: Path, *args, **env) -> subprocess.CompletedProcess:
    return b12lab("run", "--input", input_dir, "--output", output_dir, *args, env=api_env(**env))


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("b12lab: error: ")
    return line


def log_file_named_in(line: str) -> Path:
    assert "(details: " in line and line.endswith(".log)")
    path = Path(line.rsplit("(details: ", 1)[1][:-1])
    assert path.is_file() and path.parent.name == "logs"
    return path


def flow_run_state(flow_run_id: str) -> str:
    import asyncio

    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).state.type.value

    return asyncio.run(read())


def sample_drop(tmp_path: Path) -> Path:
    drop = tmp_path / "drop"
    shutil.copytree(SAMPLE, drop)
    return drop


# --- exit 0 only for a publication; one line otherwise --------------------------------------------------


def test_a_published_run_exits_0_and_says_where_everything_is(published_sample_night):
    output, result = published_sample_night.output, published_sample_night.result
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert any(line.startswith("published run ") and "(nightly) as of 2026-10-31: read 7274" in line for line in lines)
    for label, path in (("warehouse:", output / "warehouse.duckdb"), ("report:", output / "report" / "index.html")):
        assert f"{label}".ljust(13) + str(path.absolute()) in lines
    # Each warning once, and no packaging or traceback noise.
    assert len(lines) == len(set(line.split(" | ", 1)[-1] for line in lines))
    assert "Traceback" not in result.stdout and "Warning" not in result.stdout


def test_an_empty_drop_folder_is_an_alarm_and_publishes_nothing(tmp_path):
    drop, output = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    (drop / "README.txt").write_text("not an export")
    result = run(drop, output)
    line = one_error_line(result)
    assert result.returncode == 1
    assert f"no export files in {drop}: is the share mounted?" in line
    log = log_file_named_in(line)
    assert "NoExportFiles" in log.read_text()  # the trace is in the log file, not on the terminal
    assert not (output / "warehouse.duckdb").exists() and not (output / "report").exists()


def test_a_night_with_only_files_already_ingested_publishes_as_usual(sample_night):
    drop, output = sample_night
    quiet = run(drop, output, "--as-of", LIVE_AS_OF)
    assert quiet.returncode == 0, quiet.stderr
    assert "0 new export files, 6 already ingested (sha256 read for " in quiet.stdout
    # each file's digest read again or remembered since the night before, and counted in the run summary
    digests = json.loads((output / "run_summary.json").read_text())["export_digests"]
    assert sorted(digests) == ["computed", "remembered"] and sum(digests.values()) == 6
    # the page says so, with the date data was last received, instead of reading as a good night
    banner = (output / "report" / "index.html").read_text(encoding="utf-8")
    assert 'id="banner"' in banner and "No new data was received in this run." in banner
    assert "Data was last received on " in banner
    assert query(output / "warehouse.duckdb", "select max(as_of) from runs where status = 'published'") == [
        (date(2026, 10, 31),)]


def test_a_file_mostly_quarantined_stops_the_run_and_commits_nothing(sample_night):
    drop, output = sample_night
    before = digest(output / "warehouse.duckdb")
    rows = [lab_row(patient_id=f"Q{i}", accession=f"Q{i}", unit="furlongs" if i < 3 else "pmol/L") for i in range(10)]
    write_labs(drop / "labs_changed_layout.csv", rows)
    result = run(drop, output, "--as-of", LIVE_AS_OF)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "labs_changed_layout.csv: 3 of 10 records in scope quarantined (30%, mostly unknown_unit)" in line
    assert "more than the 20% allowed (B12LAB_MAX_QUARANTINE_SHARE): nothing was committed" in line
    assert digest(output / "warehouse.duckdb") == before
    # A site that accepts more sets the share; the file is retried and committed.
    allowed = flow_night(drop, output, LIVE_AS_OF, max_quarantine_share=0.5)
    assert allowed["status"] == "published"
    assert query(output / "warehouse.duckdb",
                 "select rows_quarantined from ingested_files where source_file = 'labs_changed_layout.csv'") == [(3,)]


def test_a_b12_test_under_an_unknown_code_is_named_and_can_fail_the_run(sample_night):
    """A site's nightly extract with B12 under a local code nobody mapped (SB12, "Serum vitamin B12"), written
    as LIS exports are (BOM, CRLF), beside a second file of the same feed with one record in a unit nobody knows."""
    import json

    drop, output = sample_night
    before = digest(output / "warehouse.duckdb")
    rows = [lab_row(patient_id=f"N{i}", accession=f"N{i}", loinc="", local_code="SB12", test_name="Serum vitamin B12",
                    collected_at="2026-10-30T08:15:00", resulted_at="2026-10-30T14:02:00") for i in range(5)]
    rows += [lab_row(patient_id=f"C{i}", accession=f"C{i}", loinc="", local_code="CHOL", test_name="Cholesterol",
                     result_value="5.2", unit="mmol/L") for i in range(2)]
    rows += [lab_row(patient_id=f"G{i}", accession=f"G{i}", collected_at="2026-10-30T08:15:00") for i in range(20)]
    write_csv(drop / "labs_north_20261030.csv", LAB_COLUMNS, rows, bom=True, line_terminator="\r\n")
    write_csv(drop / "labs_north_20261030-2.csv", LAB_COLUMNS,
              [lab_row(patient_id="T1", accession="T1", unit="furlongs")], bom=True, line_terminator="\r\n")
    named = ('suspected unmapped analyte b12: code (local) SB12 "Serum vitamin B12", 5 rows in '
             'labs_north_20261030.csv dropped as out_of_scope; to read them: local_codes: {"SB12": b12}')

    failed = run(drop, output, "--as-of", LIVE_AS_OF, B12LAB_FAIL_ON_SUSPECTED_UNMAPPED="true")
    assert failed.returncode == 1
    line = one_error_line(failed)
    assert named in line and "B12LAB_FAIL_ON_SUSPECTED_UNMAPPED is set: nothing was committed" in line
    assert digest(output / "warehouse.duckdb") == before

    published = run(drop, output, "--as-of", LIVE_AS_OF)
    assert published.returncode == 0, published.stderr
    assert named in published.stdout
    # one tiny file beyond the share cannot fail its feed (1 of 21 records in scope), but it is named
    assert ("labs_north_20261030-2.csv: 1 of 1 records in scope quarantined (100%), more than the 20% allowed; "
            "its feed labs_north* (2 files) is within it (5%), so the run goes on") in published.stdout
    # analytes of the earlier night that this night's lab files did not bring are named
    assert "analyte folate: none accepted in this night's 2 lab files" in published.stdout
    assert "analyte b12: none accepted" not in published.stdout
    summary = json.loads((output / "run_summary.json").read_text())
    [suspect] = summary["suspected_unmapped_analytes"]
    assert (suspect["code"], suspect["suggested_analyte"], suspect["rows"], suspect["mapping_line"]) == (
        "SB12", "b12", 5, 'local_codes: {"SB12": b12}')
    assert (summary["rows_out_of_scope"], summary["rows_in_scope"]) == (7, 21)
    [feed] = [f for f in summary["feeds"] if f["feed"] == "labs_north*"]
    assert (feed["rows_in_scope"], feed["rows_quarantined"], feed["files_over_share"]) == (
        21, 1, ["labs_north_20261030-2.csv"])
    assert "folate" in {m["analyte"] for m in summary["analytes_missing"]}
    warehouse = output / "warehouse.duckdb"
    assert query(warehouse, "select code, rows, suggested_analyte from unmapped_codes "
                            "where source_file = 'labs_north_20261030.csv' order by code") == [
        ("CHOL", 2, None), ("SB12", 5, "b12")]
    first = query(warehouse, "select section, code, analyte, this_run from data_quality limit 1")
    assert first == [("suspected_unmapped", "SB12", "b12", 5)]
    assert ("missing_analyte", "folate") in query(warehouse, "select section, analyte from data_quality")
    page = (output / "report" / "index.html").read_text(encoding="utf-8")
    quality = page[page.index('<section id="quality">'):]
    assert quality.index('id="table-suspected-unmapped"') < quality.index('id="table-missing-analytes"') \
        < quality.index('id="table-accounting"')


def test_a_mapping_reading_the_wrong_column_is_quarantined_over_the_records_in_scope(tmp_path):
    """94 % of a hospital extract is out of scope; the B12 column read from the wrong place must still fail the
    night, over the records in scope, not be diluted by the lipid panels."""
    import yaml

    drop = tmp_path / "drop"
    header = ["MRN", "TEST_CODE", "TEST_NAME", "RESULT", "UNITS", "FLAG", "COLLECTED"]
    records = [[f"{1000 + i}", "CHOL", "Cholesterol", "5.1", "mmol/L", "N", "2026-10-30 08:00:00"] for i in range(470)]
    records += [[f"{2000 + i}", "B12", "Vitamin B12", "245", "pmol/L", "N", "2026-10-30 08:00:00"] for i in range(30)]
    write_csv(drop / "EXTRACT_20261030.csv", header, records, line_terminator="\r\n")
    mapping = tmp_path / "hospital.yaml"
    mapping.write_text(yaml.safe_dump({
        "files": "EXTRACT_*.csv", "date_format": "%Y-%m-%d %H:%M:%S", "status_default": "F",
        "columns": {"patient_id": "MRN", "local_code": "TEST_CODE", "test_name": "TEST_NAME",
                    "result_value": "FLAG", "unit": "UNITS", "collected_at": "COLLECTED"}}))
    result = run(drop, tmp_path / "out", "--as-of", LIVE_AS_OF, "--mapping", mapping)
    assert result.returncode == 1
    line = one_error_line(result)
    assert ("EXTRACT_20261030.csv: 30 of 30 records in scope quarantined (100%, mostly unparseable_value; 470 more "
            "out of scope), more than the 20% allowed (B12LAB_MAX_QUARANTINE_SHARE): nothing was committed") in line
    assert not (tmp_path / "out" / "warehouse.duckdb").exists()


def read_only(path: Path):
    """`path` made read-only for this process: a read-only bind mount as root (who ignores file modes),
    file modes otherwise."""
    if os.geteuid() != 0:
        for folder, _, files in os.walk(path):
            os.chmod(folder, 0o555)
        return lambda: [os.chmod(folder, 0o755) for folder, _, _ in os.walk(path)]
    mounted = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    remounted = subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True)
    if mounted.returncode or remounted.returncode:
        if not mounted.returncode:
            subprocess.run(["umount", str(path)])
        pytest.skip("cannot make a read-only folder here (root without mount)")
    return lambda: subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_output_folder_fails_with_one_line(sample_night):
    drop, output = sample_night
    (drop / "labs_extra.csv").write_bytes((SAMPLE / "labs_valley.csv").read_bytes().replace(b"\n", b" \n", 1))
    undo = read_only(output)
    try:
        result = run(drop, output, "--as-of", LIVE_AS_OF)
        synth = b12lab("synth", "--patients", "3", "--out", output / "synthetic")
    finally:
        undo()
    assert result.returncode == 1
    assert one_error_line(result).startswith(f"b12lab: error: cannot write to the output folder {output}")
    assert synth.returncode == 1
    assert one_error_line(synth).startswith(f"b12lab: error: cannot write the synthetic exports to {output / 'synthetic'}")
    # The next night, with the folder writable again, publishes.
    assert flow_night(drop, output, LIVE_AS_OF)["status"] == "published"


def test_a_damaged_commit_record_stops_the_run_in_one_line_and_keeps_the_previous_publication(sample_night):
    drop, output = sample_night
    warehouse, report = digest(output / "warehouse.duckdb"), digest(output / "report" / "index.html")
    [record] = (output / "lake" / "ingested_files").glob("*.parquet")
    record.write_bytes(b"not parquet")  # damaged on disk
    result = run(drop, output, "--as-of", LIVE_AS_OF)
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"lake file ingested_files/{record.name} is damaged" in line
    log_file_named_in(line)
    assert digest(output / "warehouse.duckdb") == warehouse
    assert digest(output / "report" / "index.html") == report


def test_damaged_headline_history_is_set_aside_and_the_night_publishes(sample_night):
    drop, output = sample_night
    [saved] = (output / "lake" / "run_metrics").glob("*.parquet")
    saved.write_bytes(b"not parquet")
    result = run(drop, output, "--as-of", LIVE_AS_OF)
    assert result.returncode == 0, result.stderr
    assert f"{saved.name} is damaged" in result.stdout
    assert (saved.parent / f"{saved.name}.damaged").is_file()
    page = (output / "report" / "index.html").read_text(encoding="utf-8")
    assert "Changes are since the previous published run" not in page  # nothing left to compare with
    assert flow_night(drop, output, LIVE_AS_OF)["status"] == "published"

# --- --as-of never hijacks the live publication ---------------------------------------------------------


def test_an_earlier_as_of_is_a_reproduction_beside_the_live_publication(sample_night):
    drop, output = sample_night
    live = {name: digest(output / name) for name in ("warehouse.duckdb", "report/index.html", "run_summary.json")}
    metrics = sorted(p.name for p in (output / "lake" / "run_metrics").iterdir())
    worklists = sorted(str(p.relative_to(output)) for p in (output / "report" / "worklists").rglob("*.csv"))

    result = run(drop, output, "--as-of", "2026-06-30")
    assert result.returncode == 0, result.stderr
    reproduction = output / "as-of" / "2026-06-30"
    assert f"warehouse:   {(reproduction / 'warehouse.duckdb').absolute()}" in result.stdout
    assert (reproduction / "report" / "index.html").is_file()
    assert query(reproduction / "warehouse.duckdb", "select distinct as_of from patient_status") == [
        (date(2026, 6, 30),)]
    assert {name: digest(output / name) for name in live} == live
    assert sorted(p.name for p in (output / "lake" / "run_metrics").iterdir()) == metrics
    assert sorted(str(p.relative_to(output)) for p in (output / "report" / "worklists").rglob("*.csv")) == worklists

    # The next nightly run compares itself with the live one, not with the reproduction.
    later = flow_night(drop, output, "2026-11-30")
    assert later["status"] == "published"
    nightly_runs = query(output / "warehouse.duckdb", "select run_id, as_of from runs "
                         "where kind = 'nightly' and status = 'published' order by started_at")
    assert [str(as_of) for _, as_of in nightly_runs] == ["2026-10-31", "2026-11-30"]
    page = (output / "report" / "index.html").read_text(encoding="utf-8")
    assert f"Changes are since the previous published run <code>{nightly_runs[0][0]}</code>" in page


# --- interrupts and kills -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_drop(tmp_path_factory) -> Path:
    """Enough exports that a run is still ingesting when the signal comes."""
    drop = tmp_path_factory.mktemp("large-drop")
    result = b12lab("synth", "--patients", "15000", "--out", drop)
    assert result.returncode == 0, result.stderr
    return drop


def start_and_wait_for(drop: Path, output: Path, text: str, **env) -> subprocess.Popen:
    """Start a run and return once its log file shows `text`."""
    process = start_b12lab("run", "--input", drop, "--output", output, env=api_env(**env))
    deadline = time.monotonic() + 120
    while True:
        logs = list((output / "logs").glob("*.log")) if (output / "logs").is_dir() else []
        if logs and text in logs[0].read_text(errors="replace"):
            return process
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run did not get there in 120 s"
        time.sleep(0.05)


ENGINE_FAILING_ON_A_SIGTERM = """
import sys, click
from prefect.exceptions import TerminationSignal
import b12lab.cli.main as cli

@click.command()
def failing():
    try:
        raise TerminationSignal(signal=15)  # what Prefect's SIGTERM handler raises in a flow run
    except TerminationSignal:
        raise ValueError("Task run is not set")  # Prefect's task engine, failing while handling it

cli.main = failing
sys.argv = ["b12lab"]
cli.entry_point()
"""


def test_a_sigterm_that_prefects_task_engine_fails_to_handle_is_still_an_interrupt():
    # A SIGTERM that lands while Prefect creates a task run comes back as its own ValueError, the signal as
    # the error's context: it is still the interrupt, with its status and line, not an error.
    result = subprocess.run([str(BIN / "python"), "-c", ENGINE_FAILING_ON_A_SIGTERM], capture_output=True,
                            text=True, timeout=120, env=command_env())
    assert result.returncode == 143, result.stderr
    assert result.stderr.splitlines() == ["b12lab: interrupted (SIGTERM): nothing half-done was published; the next "
                                          "run carries on"]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_stops_within_10_s_and_the_next_one_recovers(tmp_path, large_drop, signum, code):
    output = tmp_path / "out"
    process = start_and_wait_for(large_drop, output, "new export files")
    run_id = next(p.stem for p in (output / "logs").glob("*.log"))
    sent = time.monotonic()
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)  # Ctrl-C: the terminal signals the whole foreground group
    else:
        os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert process.returncode == code, stderr
    assert stderr.splitlines() == [f"b12lab: interrupted ({signal.Signals(signum).name}): nothing half-done was "
                                   "published; the next run carries on"]
    assert (output / ".b12lab.lock").read_text() == ""
    assert not (output / "warehouse.duckdb").exists()
    [record] = __import__("pyarrow.parquet", fromlist=["read_table"]).read_table(
        output / "lake" / "runs" / f"{run_id}.parquet").to_pylist()
    assert record["status"] == "interrupted"
    assert flow_run_state(record["flow_run_id"]) in ("CRASHED", "CANCELLED")

    # The next night recovers whichever signal stopped this one: run it once, on the sample (the large drop
    # is there only to be interrupted; re-ingesting a half-ingested drop is publish/test_faults.py's).
    if signum == signal.SIGTERM:
        assert flow_night(SAMPLE, output)["status"] == "published"
        assert query(output / "warehouse.duckdb", "select count(*) > 0 from cohort_deficient") == [(True,)]


def test_a_killed_run_is_marked_crashed_by_the_next_run(tmp_path):
    drop, output = sample_drop(tmp_path), tmp_path / "out"
    # killed in its first file's ingest: where it dies is the crash-point tests' business (publish/test_faults.py)
    killed = run(drop, output, "--as-of", LIVE_AS_OF, B12LAB_CRASH_AT="ingest")
    assert killed.returncode == -signal.SIGKILL
    holder = __import__("json").loads((output / ".b12lab.lock").read_text())
    assert flow_run_state(holder["flow_run_id"]) == "RUNNING"  # nobody could report it

    next_night = flow_night(drop, output, LIVE_AS_OF)
    assert next_night["status"] == "published"
    assert flow_run_state(holder["flow_run_id"]) == "CRASHED"
    assert query(output / "warehouse.duckdb", f"select status from runs where run_id = '{holder['run_id']}'") == [
        ("crashed",)]


# --- the warehouse travels ------------------------------------------------------------------------------


def test_a_moved_or_copied_output_folder_reads_its_own_lake(tmp_path, published_sample_night, sample_night):
    drop, output = sample_night  # itself a copy of the folder the night was published in
    expected = query(output / "warehouse.duckdb", "select count(*) from lab_results")
    copy, moved = tmp_path / "copy", tmp_path / "elsewhere" / "moved"
    subprocess.run(["cp", "-a", str(output), str(copy)], check=True)
    moved.parent.mkdir()
    output.rename(moved)
    shutil.rmtree(moved / "lake")  # a copy must not lean on any lake, its own or the original's
    for folder in (copy, moved):
        assert query(folder / "warehouse.duckdb", "select count(*) from lab_results") == expected
        assert query(folder / "warehouse.duckdb", "select count(*) from duckdb_views() where not internal") == [(0,)]
        sql = b12lab("sql", "select count(*) as n from quarantine", "--output", folder)
        assert sql.returncode == 0 and "36" in sql.stdout
    for origin in (tmp_path, published_sample_night.output.parent):
        assert str(origin).encode() not in (copy / "warehouse.duckdb").read_bytes()
