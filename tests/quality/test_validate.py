"""Great Expectations validation of a run's new lake files: GX's Checkpoint over the rows in SQL gives GX's verdict
on the whole table, whatever the files the rows are spread over."""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import astuple
from datetime import date, datetime, timedelta

import duckdb
import pandas as pd
import pytest

from b12lab.lake.lake import Lake
from b12lab.common.paths import EXPECTATIONS_DIR
from b12lab.quality import validation
from b12lab.quality.validation import (COPIED_FILES, ExpectationOutcome, UnsupportedRowCondition, add_new_rows_source,
                                       close_source, create_new_rows_database, expectation_parameters,
                                       prepare_context, validate_lake_files)

INGEST_DAY = date(2026, 3, 14)
ROWS = 40


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
        "death_date": pd.Series([None] * rows, dtype="datetime64[us]"),  # the lake's column: none died
        "source_file": ["patients.csv"] * rows,
        "source_row": list(range(1, rows + 1)),
        "source_hash": ["h2"] * rows,
        "ingest_run": ["run-1"] * rows,
    })


def broken_tables() -> dict[str, pd.DataFrame]:
    """Failures of each kind, spread over the files the rows are written to (see validate)."""
    labs = lab_results()
    labs.loc[[3, 30], "patient_id"] = None                      # critical, in both files
    labs.loc[[9, 38], "status"] = "X"                           # critical, in both files
    labs.loc[16, "collected_at"] = datetime(2026, 3, 15)        # critical: after the ingest day
    labs.loc[[5, 33], "value_si"] = 20_000.0                    # warning: implausible B12, in both files
    labs.loc[[36], "analyte"] = "folate"                        # critical: folate is in the suite's set...
    labs.loc[36, "value_si"] = 500.0                            # ...and a warning: folate above 100
    # A duplicate source row whose two copies are in different files: unique within each file.
    labs.loc[39, ["source_hash", "source_row"]] = ["h1", 2]
    # Three comparators, all in the first file's rows 14-17: 3 of 7 would fail `mostly: 0.9`, 3 of 40 pass it.
    labs.loc[[14, 15, 17], "comparator"] = "<"
    people = patients()
    people.loc[7, "sex"] = "?"                                  # warning
    people.loc[[2, 9], "practice"] = None                       # warning: 2 of 12 breaks mostly 0.95
    return {"lab_results": labs, "patients": people}


def validate(tables: dict[str, pd.DataFrame], tmp_path, name: str = "gx", files_per_table: int = 2):
    """validate_lake_files on the tables written as Parquet lake files, each table's rows split over
    files_per_table files."""
    lake = Lake(tmp_path / f"lake-{name}")
    files = {}
    for table, frame in tables.items():
        lake.table_dir(table).mkdir(parents=True, exist_ok=True)
        size = -(-len(frame) // files_per_table)
        files[table] = []
        for part in range(files_per_table):
            files[table].append(lake.data_file(table, f"{name}-{part}"))
            frame.iloc[part * size:(part + 1) * size].to_parquet(files[table][-1])
    return validate_lake_files(files, tmp_path / name, INGEST_DAY, temp_dir=tmp_path / f"tmp-{name}")


def gx_on_the_whole_table(table: str, frame: pd.DataFrame, gx_dir) -> dict[str, tuple[bool, int | None]]:
    """GX's own verdict in pandas, the whole frame in one batch and the full suite: the reference."""
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


def test_the_outcomes_are_gx_verdict_on_all_the_new_rows(tmp_path):
    tables = broken_tables()
    report = validate(tables, tmp_path)

    failed = {(o.table, o.expectation, o.column, o.severity, o.unexpected_count) for o in report.outcomes
              if not o.success}
    assert failed == {
        ("lab_results", "expect_column_values_to_not_be_null", "patient_id", "critical", 2),
        ("lab_results", "expect_column_values_to_be_in_set", "status", "critical", 2),
        ("lab_results", "expect_column_values_to_be_between", "collected_at", "critical", 1),
        ("lab_results", "expect_compound_columns_to_be_unique", None, "critical", 2),  # across the two files
        ("lab_results", "expect_column_values_to_be_between", "value_si", "warning", 2),  # b12
        ("lab_results", "expect_column_values_to_be_between", "value_si", "warning", 1),  # folate
        ("patients", "expect_column_values_to_be_in_set", "sex", "warning", 1),
        ("patients", "expect_column_values_to_not_be_null", "practice", "warning", 2),
    }
    comparator_mostly = next(o for o in report.outcomes if o.expectation == "expect_column_values_to_be_null")
    assert comparator_mostly.success and comparator_mostly.unexpected_count == 3
    folate = next(o for o in report.warnings if o.condition == "analyte==folate")
    assert folate.description == (
        "lab_results.value_si: expect_column_values_to_be_between where analyte==folate (1 rows)")

    # GX in SQL over all the files gives GX's verdict in pandas on the whole table, expectation by expectation.
    # One wording differs: where a row condition leaves no row (no holotc here), SQL counts no unexpected rows
    # as None and pandas as 0.
    for table, frame in tables.items():
        reference = gx_on_the_whole_table(table, frame, tmp_path / f"reference-{table}")
        ours = [(o.success, o.unexpected_count) for o in report.outcomes if o.table == table]
        assert [(success, count or 0) for success, count in ours] == [
            (success, count or 0) for success, count in reference.values()], table


def test_many_small_files_are_validated_from_one_copy_with_the_same_outcomes(tmp_path):
    """A night of per-patient Bundles writes thousands of small files: their rows are copied into a table of
    the validation database once (not read from every file by each of GX's queries), and judged alike."""
    tables = broken_tables()
    few = validate(tables, tmp_path, "few", files_per_table=2)
    many = validate(tables, tmp_path, "many", files_per_table=COPIED_FILES + 1)  # some of them empty

    assert [astuple(o) for o in many.outcomes] == [astuple(o) for o in few.outcomes]
    assert any(not o.success for o in many.outcomes)
    database = tmp_path / "new_rows.duckdb"
    lake = Lake(tmp_path / "lake-many")
    create_new_rows_database(database, {"lab_results": lake.files("lab_results"), "patients": lake.files("patients")[:2]})
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("select table_name from duckdb_tables()").fetchall() == [("lab_results",)]
        assert con.execute("select view_name from duckdb_views() where not internal").fetchall() == [("patients",)]


def test_gx_objects_run_it_and_build_the_data_docs(tmp_path):
    report = validate(broken_tables(), tmp_path)

    gx_dir = tmp_path / "gx"
    assert report.data_docs_index == gx_dir / "data_docs" / "index.html" and report.data_docs_index.exists()
    checkpoint = json.loads((gx_dir / "checkpoints" / "new_rows.json").read_text())
    assert [d["name"] for d in checkpoint["validation_definitions"]] == ["lab_results", "patients"]
    stored = {json.loads(path.read_text())["suite_name"]: json.loads(path.read_text())
              for path in (gx_dir / "validations").rglob("*.json")}
    assert set(stored) == {"lab_results", "patients"}  # one result per table
    labs = stored["lab_results"]
    assert [(r["success"], r["result"].get("unexpected_count")) for r in labs["results"]] != []
    assert labs["statistics"]["unsuccessful_expectations"] == 6
    page = next((gx_dir / "data_docs" / "validations" / "lab_results").rglob("*.html")).read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Unsuccessful Expectations 6" in text
    assert "2 unexpected values found. 5% of 40 total rows." in text  # the duplicate, counted over all files
    # The scratch database of the rows is gone; only GX's project, results and docs remain.
    assert list((tmp_path / "tmp-gx").iterdir()) == []
    assert not [path for path in gx_dir.rglob("*") if path.suffix in {".duckdb", ".wal", ".parquet"}]


def test_a_night_without_new_rows_has_nothing_to_validate(tmp_path):
    report = validate({"lab_results": lab_results().iloc[:0]}, tmp_path, files_per_table=1)
    assert report.outcomes == [] and report.data_docs_index is not None


def test_the_last_instant_of_the_ingest_day_is_today_and_midnight_is_tomorrow(tmp_path):
    labs = lab_results(3)
    labs.loc[0, "collected_at"] = datetime.combine(INGEST_DAY, datetime.max.time())  # 23:59:59.999999
    labs.loc[1, "collected_at"] = datetime.combine(INGEST_DAY, datetime.min.time()) + timedelta(seconds=86399.5)
    people = patients(2)
    people.loc[0, "birth_date"] = INGEST_DAY

    report = validate({"lab_results": labs, "patients": people}, tmp_path, "first")
    assert report.critical_failures == []

    labs.loc[2, "collected_at"] = datetime.combine(INGEST_DAY + timedelta(days=1), datetime.min.time())
    people.loc[1, "birth_date"] = INGEST_DAY + timedelta(days=1)
    report = validate({"lab_results": labs, "patients": people}, tmp_path, "second")
    assert sorted(o.description for o in report.critical_failures) == [
        "lab_results.collected_at: expect_column_values_to_be_between (1 rows)",
        "patients.birth_date: expect_column_values_to_be_between (1 rows)",
    ]


def site_project(tmp_path, monkeypatch, table: str, change) -> None:
    """A site's copy of the GX project (B12LAB_EXPECTATIONS_DIR) with `change` applied to one suite."""
    site = tmp_path / "site_gx"
    shutil.copytree(EXPECTATIONS_DIR, site)
    suite_path = site / "expectations" / f"{table}.json"
    suite = json.loads(suite_path.read_text())
    change(suite["expectations"])
    suite_path.write_text(json.dumps(suite))
    monkeypatch.setenv("B12LAB_EXPECTATIONS_DIR", str(site))


def test_a_site_suite_written_for_the_inclusive_today_bound_keeps_working(tmp_path, monkeypatch):
    """Suites copied before `end_of_ingest_day` compare with `today`: now the day's last microsecond."""
    def inclusive_today(expectations):
        for expectation in expectations:
            if expectation["kwargs"].get("column") == "collected_at" and "max_value" in expectation["kwargs"]:
                expectation["kwargs"]["max_value"] = {"$PARAMETER": "today"}
                del expectation["kwargs"]["strict_max"]

    site_project(tmp_path, monkeypatch, "lab_results", inclusive_today)
    labs = lab_results(2)
    labs.loc[0, "collected_at"] = datetime.combine(INGEST_DAY, datetime.min.time()) + timedelta(seconds=86399.5)

    assert validate({"lab_results": labs}, tmp_path, "first").critical_failures == []
    labs.loc[1, "collected_at"] = datetime.combine(INGEST_DAY + timedelta(days=1), datetime.min.time())
    assert [o.column for o in validate({"lab_results": labs}, tmp_path, "second").critical_failures] == [
        "collected_at"]


def test_a_site_suite_with_pandas_row_conditions(tmp_path, monkeypatch):
    """The pandas form `column=="value"` of suites written for validation in pandas is run as GX's condition;
    any other pandas condition is refused with the suite named, before anything is validated."""
    def pandas_conditions(expectations):
        for expectation in expectations:
            condition = expectation["kwargs"].get("row_condition")
            if condition:
                expectation["kwargs"]["row_condition"] = f'analyte=="{condition["parameter"]}"'
                expectation["kwargs"]["condition_parser"] = "pandas"

    site_project(tmp_path, monkeypatch, "lab_results", pandas_conditions)
    labs = lab_results(4)
    labs.loc[1, ["analyte", "value_si"]] = ["folate", 500.0]
    assert [o.description for o in validate({"lab_results": labs}, tmp_path, "equality").warnings] == [
        "lab_results.value_si: expect_column_values_to_be_between where analyte==folate (1 rows)"]

    site_project(tmp_path / "other", monkeypatch, "lab_results", lambda expectations: expectations.append(
        {"type": "expect_column_values_to_be_between", "kwargs": {
            "column": "value_si", "min_value": 1, "condition_parser": "pandas",
            "row_condition": {"type": "pass_through", "pass_through_filter": "value_si.notnull()"}},
         "severity": "warning"}))
    with pytest.raises(UnsupportedRowCondition, match="lab_results.json.*value_si.notnull"):
        validate({"lab_results": labs}, tmp_path, "refused")


def test_a_timestamp_outside_the_nanosecond_range_is_still_compared(tmp_path):
    labs = lab_results(4)
    labs.loc[1, "collected_at"] = datetime(1500, 6, 1)  # before 1678: no datetime64[ns] for it
    report = validate({"lab_results": labs}, tmp_path)
    assert [o.description for o in report.critical_failures] == [
        "lab_results.collected_at: expect_column_values_to_be_between (1 rows)"]


def test_a_site_suite_with_expectations_about_the_whole_table(tmp_path, monkeypatch):
    """Row counts, single-column uniqueness and maxima are computed by GX over all the new rows."""
    site_project(tmp_path, monkeypatch, "patients", lambda expectations: expectations.extend([
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 10}, "severity": "warning"},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "patient_id"}, "severity": "critical"},
        {"type": "expect_column_max_to_be_between", "kwargs": {"column": "source_row", "max_value": 11},
         "severity": "warning"},
    ]))
    people = patients(12)
    people.loc[11, "patient_id"] = "P0"  # duplicates row 0, in the other file

    report = validate({"patients": people, "lab_results": lab_results()}, tmp_path)

    added = [o for o in report.outcomes if o.table == "patients"][-3:]
    assert [(o.expectation, o.success, o.unexpected_count) for o in added] == [
        ("expect_table_row_count_to_be_between", False, None),
        ("expect_column_values_to_be_unique", False, 2),
        ("expect_column_max_to_be_between", False, None),
    ]
    assert ExpectationOutcome("patients", "expect_column_values_to_be_unique", "patient_id", "critical", False,
                              2) in report.critical_failures


def test_a_site_suite_with_regular_expressions_and_like_patterns(tmp_path, monkeypatch):
    """GX writes regex and LIKE conditions only for the dialects it knows; through the run's DuckDB dialect it
    writes PostgreSQL's, which DuckDB runs with the same meaning: an unanchored regex matches anywhere."""
    site_project(tmp_path, monkeypatch, "lab_results", lambda expectations: expectations.extend([
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "patient_id", "regex": "^P[0-9]+$"},
         "severity": "warning"},
        {"type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "value_raw", "regex": "[^0-9.]"},
         "severity": "warning"},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "source_file", "regex": "csv"},
         "severity": "warning"},
        {"type": "expect_column_values_to_match_like_pattern",
         "kwargs": {"column": "unit_si", "like_pattern": "%mol/L"}, "severity": "warning"},
    ]))
    labs = lab_results(6)
    labs.loc[1, "patient_id"] = "xP1"        # not anchored at the start
    labs.loc[2, "patient_id"] = "P1-2"       # not anchored at the end
    labs.loc[3, "value_raw"] = "<150"
    labs.loc[4, "unit_si"] = "g/L"

    added = [o for o in validate({"lab_results": labs}, tmp_path).outcomes][-4:]
    assert [(o.expectation, o.column, o.success, o.unexpected_count) for o in added] == [
        ("expect_column_values_to_match_regex", "patient_id", False, 2),
        ("expect_column_values_to_not_match_regex", "value_raw", False, 1),
        ("expect_column_values_to_match_regex", "source_file", True, 0),  # "labs.csv": found inside the value
        ("expect_column_values_to_match_like_pattern", "unit_si", False, 1),
    ]


def test_gx_reads_the_new_rows_read_only_under_the_run_memory_limit(tmp_path, monkeypatch):
    """GX's connections to the scratch database: read-only, DuckDB's memory limit the run's setting, and each
    query's rows still there to fetch after GX has closed the connection that ran it."""
    import sqlalchemy as sa

    monkeypatch.setenv("B12LAB_MEMORY_LIMIT", "300MB")
    lab_results(5).to_parquet(tmp_path / "labs.parquet")
    database = tmp_path / "new_rows.duckdb"
    assert create_new_rows_database(database, {"lab_results": [tmp_path / "labs.parquet"], "patients": []}) == [
        "lab_results"]
    source = add_new_rows_source(prepare_context(tmp_path / "gx"), "new_rows", database, tmp_path / "spill")
    try:
        engine = source.get_execution_engine()
        settings = engine.execute_query(sa.text(
            "select current_setting('memory_limit'), current_setting('access_mode'), count(*) from lab_results"
        )).fetchall()
        assert settings == [("286.1 MiB", "read_only", 5)]
        with pytest.raises(sa.exc.DBAPIError, match="read-only"):
            engine.execute_query(sa.text("create table written as select 1"))
    finally:
        close_source(source)
