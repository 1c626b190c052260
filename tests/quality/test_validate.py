"""Great Expectations validation in batches: the combined outcomes are the outcomes of the whole table."""
from __future__ import annotations

import json
import re
import shutil
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from b12lab.lake.lake import Lake
from b12lab.common.paths import EXPECTATIONS_DIR
from b12lab.quality.validation import (BATCH_ROWS_VARIABLE, ExpectationOutcome, expectation_parameters, prepare_context,
                                validate_lake_files, validate_tables)

INGEST_DAY = date(2026, 3, 14)
ROWS = 40
TINY_BATCH = 7  # 40 rows: six batches of 7 and one of 5


def lab_results(rows: int = ROWS) -> pd.DataFrame:
    """Valid lab rows, to be broken on purpose by the tests."""
    return pd.DataFrame({
        "patient_id": [f"P{i % 9}" for i in range(rows)],
        "analyte": ["b12"] * rows,
        "collected_at": pd.Series([datetime(2026, 1, 1, 8) + timedelta(hours=i) for i in range(rows)],
                                  dtype="datetime64[us]"),
        "status": ["F"] * rows,
        "value_raw": [str(200 + i) for i in range(rows)],
        "comparator": [None] * rows,
        "value_si": [200.0 + i for i in range(rows)],
        "unit_si": ["pmol/L"] * rows,
        "value_text": [None] * rows,
        "source_file": ["labs.csv"] * rows,
        "source_row": list(range(1, rows + 1)),
        "source_hash": ["h1"] * rows,
        "ingest_run": ["run-1"] * rows,
    })


def patients(rows: int = 12) -> pd.DataFrame:
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(rows)],
        "birth_date": [date(1950, 1, 1) + timedelta(days=400 * i) for i in range(rows)],
        "sex": ["F"] * rows,
        "practice": ["north"] * rows,
        "source_file": ["patients.csv"] * rows,
        "source_row": list(range(1, rows + 1)),
        "source_hash": ["h2"] * rows,
        "ingest_run": ["run-1"] * rows,
    })


def broken_tables() -> dict[str, pd.DataFrame]:
    """Failures of each kind, spread over the tiny batches (batch = row // 7)."""
    labs = lab_results()
    labs.loc[[3, 30], "patient_id"] = None                      # critical, batches 0 and 4
    labs.loc[[9, 38], "status"] = "X"                           # critical, batches 1 and 5
    labs.loc[16, "collected_at"] = datetime(2026, 3, 15)        # critical: after the ingest day (batch 2)
    labs.loc[[5, 33], "value_si"] = 20_000.0                    # warning: implausible B12, batches 0 and 4
    labs.loc[[36], "analyte"] = "folate"                        # critical: folate is in the suite's set...
    labs.loc[36, "value_si"] = 500.0                            # ...and a warning: folate above 100
    # A duplicate source row whose two copies are in different batches (0 and 5): unique within each batch.
    labs.loc[39, ["source_hash", "source_row"]] = ["h1", 2]
    # Three comparators, all in batch 2: 3 of 7 fails that batch's `mostly: 0.9`, 3 of 40 passes the table's.
    labs.loc[[14, 15, 17], "comparator"] = "<"
    people = patients()
    people.loc[7, "sex"] = "?"                                  # warning
    people.loc[[2, 9], "practice"] = None                       # warning: 2 of 12 breaks mostly 0.95
    return {"lab_results": labs, "patients": people}


def gx_on_the_whole_table(table: str, frame: pd.DataFrame, gx_dir) -> dict[str, tuple[bool, int | None]]:
    """GX's own verdict, the whole frame in one batch and the full suite: the reference for batching."""
    context = prepare_context(gx_dir)
    suite = context.suites.get(table)
    gx_frame = frame.copy()
    for column in gx_frame.columns:
        values = gx_frame[column].dropna()
        if gx_frame[column].dtype == object and len(values) and isinstance(values.iloc[0], date):
            gx_frame[column] = pd.to_datetime(gx_frame[column])
        if str(gx_frame[column].dtype).startswith("datetime64"):
            gx_frame[column] = gx_frame[column].astype("datetime64[ns]")
    batch = (context.data_sources.add_pandas(name="reference").add_dataframe_asset(name=table)
             .add_batch_definition_whole_dataframe(table).get_batch(batch_parameters={"dataframe": gx_frame}))
    result = batch.validate(suite, expectation_parameters=expectation_parameters(INGEST_DAY), result_format="BASIC")
    by_id = {item.expectation_config.id: item for item in result.results}
    return {expectation.id: (bool(by_id[expectation.id].success), by_id[expectation.id].result.get("unexpected_count"))
            for expectation in suite.expectations}


def test_tiny_batches_give_the_outcomes_of_one_batch(tmp_path, monkeypatch):
    tables = broken_tables()
    whole = validate_tables(tables, tmp_path / "whole", INGEST_DAY, batch_rows=1_000_000)
    monkeypatch.setenv(BATCH_ROWS_VARIABLE, str(TINY_BATCH))
    batched = validate_tables(tables, tmp_path / "batched", INGEST_DAY)

    assert batched.outcomes == whole.outcomes
    # Every kind of failure made it: critical and warning, spread over batches, and the cross-batch ones.
    failed = {(o.table, o.expectation, o.column, o.severity, o.unexpected_count) for o in batched.outcomes
              if not o.success}
    assert failed == {
        ("lab_results", "expect_column_values_to_not_be_null", "patient_id", "critical", 2),
        ("lab_results", "expect_column_values_to_be_in_set", "status", "critical", 2),
        ("lab_results", "expect_column_values_to_be_between", "collected_at", "critical", 1),
        ("lab_results", "expect_compound_columns_to_be_unique", None, "critical", 2),
        ("lab_results", "expect_column_values_to_be_between", "value_si", "warning", 2),  # b12
        ("lab_results", "expect_column_values_to_be_between", "value_si", "warning", 1),  # folate
        ("patients", "expect_column_values_to_be_in_set", "sex", "warning", 1),
        ("patients", "expect_column_values_to_not_be_null", "practice", "warning", 2),
    }
    comparator_mostly = next(o for o in batched.outcomes if o.expectation == "expect_column_values_to_be_null")
    assert comparator_mostly.success and comparator_mostly.unexpected_count == 3

    # And both are GX's verdict on the whole table, expectation by expectation.
    for table, frame in tables.items():
        reference = gx_on_the_whole_table(table, frame, tmp_path / f"reference-{table}")
        ours = [(o.success, o.unexpected_count) for o in batched.outcomes if o.table == table]
        assert ours == list(reference.values()), table


def test_the_data_docs_show_the_combined_outcomes(tmp_path):
    report = validate_tables(broken_tables(), tmp_path / "gx", INGEST_DAY, batch_rows=TINY_BATCH)

    assert report.data_docs_index is not None and report.data_docs_index.exists()
    stored = {json.loads(path.read_text())["suite_name"]: json.loads(path.read_text())
              for path in (tmp_path / "gx" / "validations").rglob("*.json")}
    assert set(stored) == {"lab_results", "patients"}  # one result per table, not one per batch
    labs = stored["lab_results"]
    assert labs["meta"]["validation_batches"] == 6 and labs["meta"]["rows_validated"] == ROWS
    counts = [(r["success"], r["result"].get("unexpected_count")) for r in labs["results"]]
    assert counts == [(o.success, o.unexpected_count) for o in report.outcomes if o.table == "lab_results"]
    assert labs["statistics"]["unsuccessful_expectations"] == 6
    page = next((tmp_path / "gx" / "data_docs" / "validations" / "lab_results").rglob("*.html")).read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Unsuccessful Expectations 6" in text
    assert "2 unexpected values found. 5% of 40 total rows." in text  # the duplicate, counted over all batches


def test_lake_files_are_validated_in_batches(tmp_path):
    lake = Lake(tmp_path / "lake")
    labs = broken_tables()["lab_results"]
    (lake.table_dir("lab_results")).mkdir(parents=True)
    halves = [lake.data_file("lab_results", "a"), lake.data_file("lab_results", "b")]
    labs.iloc[:25].to_parquet(halves[0])
    labs.iloc[25:].to_parquet(halves[1])

    from_files = validate_lake_files({"lab_results": halves}, tmp_path / "gx-files", INGEST_DAY, batch_rows=4)
    in_memory = validate_tables({"lab_results": labs}, tmp_path / "gx-memory", INGEST_DAY, batch_rows=1_000)

    assert from_files.outcomes == in_memory.outcomes
    assert {o.expectation for o in from_files.critical_failures} >= {"expect_compound_columns_to_be_unique"}


def test_the_last_instant_of_the_ingest_day_is_today_and_midnight_is_tomorrow(tmp_path):
    labs = lab_results(3)
    labs.loc[0, "collected_at"] = datetime.combine(INGEST_DAY, datetime.max.time())  # 23:59:59.999999
    labs.loc[1, "collected_at"] = datetime.combine(INGEST_DAY, datetime.min.time()) + timedelta(seconds=86399.5)
    people = patients(2)
    people.loc[0, "birth_date"] = INGEST_DAY

    report = validate_tables({"lab_results": labs, "patients": people}, tmp_path / "gx", INGEST_DAY)
    assert report.critical_failures == []

    labs.loc[2, "collected_at"] = datetime.combine(INGEST_DAY + timedelta(days=1), datetime.min.time())
    people.loc[1, "birth_date"] = INGEST_DAY + timedelta(days=1)
    report = validate_tables({"lab_results": labs, "patients": people}, tmp_path / "gx", INGEST_DAY)
    assert sorted(o.description for o in report.critical_failures) == [
        "lab_results.collected_at: expect_column_values_to_be_between (1 rows)",
        "patients.birth_date: expect_column_values_to_be_between (1 rows)",
    ]


def test_a_site_suite_written_for_the_inclusive_today_bound_keeps_working(tmp_path, monkeypatch):
    """Suites copied before `end_of_ingest_day` compare with `today`: now the day's last microsecond."""
    site = tmp_path / "site_gx"
    shutil.copytree(EXPECTATIONS_DIR, site)
    suite_path = site / "expectations" / "lab_results.json"
    suite = json.loads(suite_path.read_text())
    for expectation in suite["expectations"]:
        if expectation["kwargs"].get("column") == "collected_at" and "max_value" in expectation["kwargs"]:
            expectation["kwargs"]["max_value"] = {"$PARAMETER": "today"}
            del expectation["kwargs"]["strict_max"]
    suite_path.write_text(json.dumps(suite))
    monkeypatch.setenv("B12LAB_EXPECTATIONS_DIR", str(site))
    labs = lab_results(2)
    labs.loc[0, "collected_at"] = datetime.combine(INGEST_DAY, datetime.min.time()) + timedelta(seconds=86399.5)

    assert validate_tables({"lab_results": labs}, tmp_path / "gx", INGEST_DAY).critical_failures == []
    labs.loc[1, "collected_at"] = datetime.combine(INGEST_DAY + timedelta(days=1), datetime.min.time())
    assert [o.column for o in validate_tables({"lab_results": labs}, tmp_path / "gx", INGEST_DAY)
            .critical_failures] == ["collected_at"]


def test_a_timestamp_outside_the_nanosecond_range_is_still_compared(tmp_path):
    labs = lab_results(4)
    labs.loc[1, "collected_at"] = datetime(1500, 6, 1)  # before 1678: no datetime64[ns] for it
    report = validate_tables({"lab_results": labs}, tmp_path / "gx", INGEST_DAY, batch_rows=2)
    assert [o.description for o in report.critical_failures] == [
        "lab_results.collected_at: expect_column_values_to_be_between (1 rows)"]


def test_a_site_suite_with_expectations_about_the_whole_table(tmp_path, monkeypatch):
    """Row counts and single-column uniqueness are not per-batch properties either."""
    site = tmp_path / "site_gx"
    shutil.copytree(EXPECTATIONS_DIR, site)
    suite_path = site / "expectations" / "patients.json"
    suite = json.loads(suite_path.read_text())
    suite["expectations"] += [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 10}, "severity": "warning"},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "patient_id"}, "severity": "critical"},
        {"type": "expect_column_max_to_be_between", "kwargs": {"column": "source_row", "max_value": 11},
         "severity": "warning"},
    ]
    suite_path.write_text(json.dumps(suite))
    monkeypatch.setenv("B12LAB_EXPECTATIONS_DIR", str(site))
    people = patients(12)
    people.loc[11, "patient_id"] = "P0"  # duplicates row 0, five batches away

    report = validate_tables({"patients": people, "lab_results": lab_results()}, tmp_path / "gx", INGEST_DAY,
                             batch_rows=2)

    added = [o for o in report.outcomes if o.table == "patients"][-3:]
    assert [(o.expectation, o.success, o.unexpected_count) for o in added] == [
        ("expect_table_row_count_to_be_between", False, None),
        ("expect_column_values_to_be_unique", False, 2),
        ("expect_column_max_to_be_between", False, None),
    ]
    assert ExpectationOutcome("patients", "expect_column_values_to_be_unique", "patient_id", "critical", False,
                              2) in report.critical_failures


def test_the_batch_size_variable_must_be_a_number_of_rows(tmp_path, monkeypatch):
    monkeypatch.setenv(BATCH_ROWS_VARIABLE, "lots")
    with pytest.raises(ValueError, match=BATCH_ROWS_VARIABLE):
        validate_tables({"patients": patients()}, tmp_path / "gx", INGEST_DAY)
