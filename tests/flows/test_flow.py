"""The nightly flow under one Prefect test harness: publication, accounting, idempotence, failure modes."""
from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from b12lab.flows.nightly import RunFailed, nightly, run_pipeline
from b12lab.ingest import EXPORT_KINDS
from b12lab.common.layout import OutputLayout
from b12lab.lake.locking import RunInProgress, run_lock
from b12lab.common.paths import EXPECTATIONS_DIR
from tests.helpers.exports import lab_row, write_csv, write_labs
from tests.helpers.fixtures import PublishedNight, copy_night

pytestmark = pytest.mark.usefixtures("prefect_harness")
AS_OF = date(2025, 6, 1)

# The output contract (README.md, "Output: what analysts query"): each table and at least these columns.
CONTRACT = {
    "lab_results": ["patient_id", "analyte", "collected_at", "value_si", "unit_si", "comparator", "value_raw",
                    "unit_raw", "status", "source_file", "source_row"],
    "quarantine": ["source_file", "source_row", "reason", "raw"],
    "result_classification": ["patient_id", "analyte", "collected_at", "value_si", "category", "rule_id"],
    "patient_status": ["patient_id", "status", "rule_id", "index_analyte", "index_value", "index_unit", "index_date",
                       "has_pa", "on_b12"],
    "cohort_deficient": ["patient_id", "rule_id", "index_value", "index_unit", "index_date", "treatment"],
    "cohort_borderline": ["patient_id", "rule_id", "index_value", "index_unit", "index_date", "mma_status"],
    "cohort_under_monitored": ["patient_id", "reason", "detail"],
    "patient_flags": ["patient_id", "flag", "flag_date", "detail"],
    "worklist": ["practice", "patient_id", "item", "urgency", "next_action", "detail", "open_since"],
    "worklist_deficient": ["position", "patient_id", "practice", "rule_id", "treatment", "index_value", "next_action"],
    "worklist_borderline": ["position", "patient_id", "practice", "rule_id", "mma_status", "index_value"],
    "worklist_under_monitored": ["position", "patient_id", "practice", "reasons", "priority", "next_action"],
    "worklist_flagged": ["position", "patient_id", "practice", "flags", "priority", "next_action"],
    "runs": ["run_id", "as_of", "started_at", "finished_at", "rules_version", "rows_read", "rows_accepted",
             "rows_quarantined", "rows_dropped"],
}


def make_exports(folder: Path) -> Path:
    write_labs(folder / "labs_site_a.csv", [
        lab_row(patient_id="P001", accession="A1", result_value="120", collected_at="2025-03-01"),
        lab_row(patient_id="P002", accession="A2", result_value="200", collected_at="2025-03-01"),
        lab_row(patient_id="P003", accession="A3", result_value="450", collected_at="2025-03-01"),
        lab_row(patient_id="P003", accession="A3", result_value="450", collected_at="2025-03-01"),  # duplicate
        lab_row(patient_id="P004", accession="A4", result_value="hemolyzed"),                        # quarantined
        lab_row(patient_id="P005", accession="A5", status="X", result_value=""),                     # cancelled
    ])
    write_csv(folder / "patients.csv", EXPORT_KINDS["patients"].columns, [
        ["P001", "1950-01-01", "F", "Riverside"], ["P002", "1960-01-01", "M", "Hillview"],
        ["P003", "1970-01-01", "F", "Riverside"], ["P006", "1980-01-01", "F", "Hillview"],
    ])
    write_csv(folder / "diagnoses.csv", EXPORT_KINDS["diagnoses"].columns, [["P001", "ICD10", "D51.0", "2025-03-05"]])
    write_csv(folder / "medications.csv", EXPORT_KINDS["medications"].columns, [
        ["P001", "Hydroxocobalamin 1mg injection", "B03BA03", "IM", "1 mg", "2025-03-06", ""]])
    return folder


def read(warehouse: Path, query: str, params=None):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(query, params or {}).fetchall()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_night(prefect_harness, tmp_path_factory) -> PublishedNight:
    """One night of make_exports, published once for the module: tests read it or run later nights on a copy."""
    root = tmp_path_factory.mktemp("small-night")
    inputs, output = make_exports(root / "in"), root / "out"
    record = nightly(input_dir=inputs, output_dir=output, as_of=AS_OF)
    return PublishedNight(inputs, output, record)


@pytest.fixture
def next_night(small_night, tmp_path) -> tuple[Path, Path]:
    """(inputs, output): a private copy of the small night, for a test that runs the next night on it."""
    return copy_night(small_night, tmp_path)


def test_run_publishes_every_contract_table_with_comments(small_night):
    output, record = small_night.output, small_night.result
    warehouse = output / "warehouse.duckdb"
    assert record["status"] == "published" and warehouse.exists()
    for table, columns in CONTRACT.items():
        found = [name for (name,) in read(warehouse, "select column_name from duckdb_columns() where table_name = $t",
                                          {"t": table})]
        assert set(columns) <= set(found), f"{table} lacks {set(columns) - set(found)}"
        assert (output / "current" / f"{table}.parquet").exists() or table in (
            "lab_results", "quarantine", "runs")
    uncommented = read(warehouse, """
        select table_name || '.' || column_name from duckdb_columns()
        where table_name in ('lab_results', 'quarantine', 'runs', 'result_classification', 'patient_status',
                             'cohort_deficient', 'cohort_borderline', 'cohort_under_monitored', 'patient_flags',
                             'worklist', 'worklist_deficient', 'worklist_borderline', 'worklist_under_monitored',
                             'worklist_flagged', 'worklist_tiers', 'rules_settings')
          and comment is null""")
    assert uncommented == []
    assert read(warehouse, "select count(*) from duckdb_tables() where table_name = 'patient_status' and comment is not null") == [(1,)]


def test_every_row_is_accounted_for(small_night):
    output, record = small_night.output, small_night.result
    warehouse = output / "warehouse.duckdb"
    files = read(warehouse, """select source_file, rows_read, rows_accepted, rows_quarantined, rows_dropped
                               from ingested_files order by source_file""")
    assert [f[0] for f in files] == ["diagnoses.csv", "labs_site_a.csv", "medications.csv", "patients.csv"]
    assert all(read_ == a + q + d for _, read_, a, q, d in files)
    assert ("labs_site_a.csv", 6, 3, 1, 2) in files
    assert (record["rows_read"], record["rows_accepted"], record["rows_quarantined"], record["rows_dropped"]) == (
        12, 9, 1, 2)
    assert read(warehouse, "select reason, source_row from quarantine") == [("unparseable_value", 5)]
    assert sorted(read(warehouse, "select outcome, reason, rows from ingest_outcomes where source_file = 'labs_site_a.csv'")) == [
        ("accepted", "", 3), ("dropped", "cancelled", 1), ("dropped", "duplicate", 1), ("quarantined", "unparseable_value", 1)]
    summary = json.loads((output / "run_summary.json").read_text())
    assert summary["rows_read"] == 12 and summary["status"] == "published"


def test_rerun_on_the_same_folder_adds_nothing_and_a_grown_folder_adds_only_the_new_file(next_night):
    inputs, output = next_night
    again = nightly(input_dir=inputs, output_dir=output, as_of=AS_OF)
    assert (again["files_ingested"], again["files_skipped"], again["rows_read"]) == (0, 4, 0)
    warehouse = output / "warehouse.duckdb"
    assert read(warehouse, "select count(*) from lab_results") == [(3,)]

    write_labs(inputs / "labs_site_a_2.csv", [lab_row(patient_id="P006", accession="B1", collected_at="2025-04-01"),
                                              lab_row(patient_id="P001", accession="A1", result_value="120",
                                                      collected_at="2025-03-01")])  # already in the lake
    grown = nightly(input_dir=inputs, output_dir=output, as_of=AS_OF)
    assert (grown["files_ingested"], grown["files_skipped"], grown["rows_accepted"], grown["rows_dropped"]) == (1, 4, 1, 1)
    assert read(warehouse, "select count(*) from lab_results") == [(4,)]
    assert read(warehouse, "select count(*) from runs") == [(3,)]
    assert read(warehouse, "select distinct rules_version is not null from runs") == [(True,)]


def test_a_failed_critical_expectation_stops_publication(tmp_path, next_night, monkeypatch):
    inputs, output = next_night
    warehouse = output / "warehouse.duckdb"
    before = file_digest(warehouse)

    # A site's suite that admits only B12 results: a folate result breaks a critical expectation.
    strict = tmp_path / "strict_gx"
    shutil.copytree(EXPECTATIONS_DIR, strict)
    suite_path = strict / "expectations" / "lab_results.json"
    suite = json.loads(suite_path.read_text())
    for expectation in suite["expectations"]:
        if expectation["type"] == "expect_column_values_to_be_in_set" and expectation["kwargs"]["column"] == "analyte":
            expectation["kwargs"]["value_set"] = ["b12"]
    suite_path.write_text(json.dumps(suite))
    monkeypatch.setenv("B12LAB_EXPECTATIONS_DIR", str(strict))
    write_labs(inputs / "labs_folate.csv", [lab_row(loinc="2284-8", result_value="20", unit="nmol/L")])

    with pytest.raises(RunFailed, match="lab_results.analyte: expect_column_values_to_be_in_set"):
        nightly(input_dir=inputs, output_dir=output, as_of=AS_OF)
    assert file_digest(warehouse) == before
    assert read(warehouse, "select count(*) from ingested_files where source_file = 'labs_folate.csv'") == [(0,)]
    summary = json.loads((output / "run_summary.json").read_text())
    assert summary["status"] == "failed" and "critical expectation failed" in summary["message"]

    # Fixed suite: the same file is ingested by the next run, since it was never committed.
    monkeypatch.delenv("B12LAB_EXPECTATIONS_DIR")
    record = nightly(input_dir=inputs, output_dir=output, as_of=AS_OF)
    assert record["files_ingested"] == 1 and record["rows_accepted"] == 1


def test_uncommitted_lake_files_of_an_interrupted_run_are_removed(next_night):
    inputs, output = next_night
    orphan = output / "lake" / "lab_results" / ("0" * 64 + ".parquet")
    shutil.copy(next((output / "lake" / "lab_results").glob("*.parquet")), orphan)
    nightly(input_dir=inputs, output_dir=output, as_of=AS_OF)
    assert not orphan.exists()
    assert read(output / "warehouse.duckdb", "select count(*) from lab_results") == [(3,)]


def test_a_second_run_on_the_same_output_is_refused(tmp_path):
    inputs, output = make_exports(tmp_path / "in"), tmp_path / "out"
    output.mkdir()
    with run_lock(OutputLayout.of(output).lock):
        with pytest.raises(RunInProgress, match="another b12lab run"):
            run_pipeline(inputs, output, AS_OF)


def test_sample_data_end_to_end(published_sample_night):
    sample, output = published_sample_night.drop, published_sample_night.output
    record = json.loads((output / "run_summary.json").read_text())
    warehouse = output / "warehouse.duckdb"
    files = read(warehouse, "select rows_read, rows_accepted, rows_quarantined, rows_dropped from ingested_files")
    assert len(files) == len([p for p in sample.iterdir() if p.is_file()])
    assert all(r == a + q + d for r, a, q, d in files)
    assert record["rows_quarantined"] > 0 and record["rows_dropped"] > 0
    reasons = {r for (r,) in read(warehouse, "select distinct reason from quarantine")}
    assert {"missing_patient_id", "unknown_unit", "unparseable_value", "future_date",
            "implausible_value", "malformed_row"} <= reasons
    # A code of no analyte is out of scope: dropped, counted per code in unmapped_codes, not quarantined.
    out_of_scope = read(warehouse, "select sum(rows) from ingest_outcomes where reason = 'out_of_scope'")[0][0]
    assert out_of_scope > 0
    assert read(warehouse, "select sum(rows) from unmapped_codes")[0][0] == out_of_scope
    statuses = dict(read(warehouse, "select status, count(*) from patient_status group by all"))
    assert statuses.get("deficient", 0) > 0 and statuses.get("normal", 0) > 0
    assert read(warehouse, "select count(*) from patient_status") == read(
        warehouse, "select count(distinct patient_id) from patient_status")
