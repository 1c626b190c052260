"""The models evaluate many as-of dates in one build (the trend's month ends, stg_as_of_dates); each date must
give exactly what a publication build as of that date gives.

Compared per date: the patient status, the under-monitoring reasons, the counted results and the status on
every evaluation date (the rows, not only the counts), and the trend's counts against the per-date reference
of tests/helpers/trend.py. The cases are made to move between month ends: late results, corrections (also
collected on another day than the result they correct), duplicates, medications starting and ending between
month ends, PA appearing, lookbacks running out and patients appearing later; and random lakes of the same
ingredients.
"""
from __future__ import annotations

import datetime as dt
import random

import duckdb
import pytest

from b12lab.report import page as report
from b12lab.publish.dbt_build import ModelError
from tests.helpers.models import build_models
from b12lab.rules.rules_file import install_rules
from tests.helpers.trend import month_ends, trend_by_rebuilding
from tests.transforms.lake import (
    FOLIC_ACID, build, create_lake, diagnosis, lab, medication, patient, rows, rules_for,
)

LAST = dt.date(2024, 12, 31)
MONTH_ENDS = month_ends(LAST, 12)  # 2024-01-31 ... 2024-12-31
RESULT_COLUMNS = (
    "patient_id, analyte, collected_at, value_si, unit_si, comparator, value_reported, unit_reported, censored, "
    "category, at_target, rule_id, value_text, collected_on, compared_value, compared_unit, upper_limit_applied, "
    "accession, status, resulted_at, performing_lab, source_file, source_row"
)


def day(iso: str) -> int:
    """The day offset from LAST that the lake helpers take."""
    return (dt.date.fromisoformat(iso) - LAST).days


def result(analyte="b12", value=None, unit=None, *, on: str, resulted: str | None = None, **fields) -> dict:
    return lab(analyte, value, unit, day=day(on), resulted_day=None if resulted is None else day(resulted),
               as_of=LAST, **fields)


def copy_of(row: dict, source_file: str, source_row: int) -> dict:
    """The same result again in another export file."""
    return {**row, "source_file": source_file, "source_row": source_row, "source_hash": f"hash-{source_file}"}


def crafted_lake() -> dict[str, list[dict]]:
    labs, patients, diagnoses, medications = [], [], [], []

    # Appears in June: a deficient result then, and a preliminary one before that never counts.
    patients.append(patient("LATE", practice="Practice B"))
    labs += [result(value=100, patient="LATE", on="2024-06-15"),
             result(value=90, patient="LATE", on="2024-02-01", status="P")]

    # A borderline result, corrected by results collected on later days (an export quirk): the correction
    # only counts from its collection date, and the most recently resulted correction wins once counted.
    labs += [result(value=200, patient="CORR", on="2024-02-10", accession="A-CORR", resulted="2024-02-11"),
             result(value=120, patient="CORR", on="2024-05-03", accession="A-CORR", status="C",
                    resulted="2024-05-04"),
             result(value=400, patient="CORR", on="2024-08-20", accession="A-CORR", status="C",
                    resulted="2024-08-21"),
             result(value=140, patient="CORR", on="2024-03-01", accession="A-CORR", status="C",
                    resulted="2024-03-02")]
    # The more recent correction is collected first: the older one never counts.
    labs += [result(value=230, patient="CORR2", on="2024-01-15", accession="A-CORR2"),
             result(value=100, patient="CORR2", on="2024-04-01", accession="A-CORR2", status="C",
                    resulted="2024-09-01"),
             result(value=500, patient="CORR2", on="2024-06-01", accession="A-CORR2", status="C",
                    resulted="2024-07-01")]
    # Corrected months later for the same collection: the correction counts from the start.
    labs += [result(value=130, patient="CORR_SAME", on="2024-03-05", accession="A-SAME"),
             result(value=220, patient="CORR_SAME", on="2024-03-05", accession="A-SAME", status="C",
                    resulted="2024-10-01")]

    # Duplicates: in two files, without accession, and duplicates of a result corrected later.
    twice = result(value=145, patient="DUP", on="2024-04-04", accession="A-DUP")
    no_accession = result(value=240, patient="DUP", on="2024-07-07", accession=None)
    corrected_twice = result(value=250, patient="DUP", on="2024-09-09", accession="A-DUP2")
    labs += [twice, copy_of(twice, "labs_b.csv", 1), no_accession, copy_of(no_accession, "labs_b.csv", 2),
             corrected_twice, copy_of(corrected_twice, "labs_b.csv", 3),
             result(value=110, patient="DUP", on="2024-11-11", accession="A-DUP2", status="C")]
    # Without accession nothing is replaced: both count, the more severe wins the tie.
    labs += [result(value=140, patient="NOACC", on="2024-01-20", accession=None),
             result(value=300, patient="NOACC", on="2024-01-20", accession=None, status="C")]

    # PA, B12 started in March and stopped in July (on B12 on the month ends between), results before and
    # after; a record without a start date and one starting after the last month end are not known.
    diagnoses.append(diagnosis(patient="MED", day=day("2023-01-01"), as_of=LAST))
    medications += [medication(patient="MED", start=day("2024-03-15"), end=day("2024-07-10"), as_of=LAST),
                    medication(patient="MED", start=None, as_of=LAST),
                    medication(patient="MED", start=day("2025-02-01"), as_of=LAST)]
    labs += [result(value=280, patient="MED", on="2023-12-01"), result(value=250, patient="MED", on="2024-10-01")]
    # A medication ending on a month end is not active on it.
    medications.append(medication(patient="ENDS", start=day("2024-02-10"), end=day("2024-05-31"), as_of=LAST))
    labs.append(result(value=260, patient="ENDS", on="2024-01-05"))

    # PA from a positive intrinsic factor antibody in April, last monitored early 2023: overdue from then
    # until a result in September.
    labs += [result("if_antibody", text="positive", patient="IFPA", on="2024-04-01"),
             result(value=350, patient="IFPA", on="2023-02-01"), result(value=320, patient="IFPA", on="2024-09-15")]
    # PA without a recorded date and no result: PA, and overdue, on every date.
    diagnoses.append(diagnosis(patient="UNDATED", day=None, as_of=LAST))

    # Borderline, then an elevated MMA in the window: borderline_needs_mma, then deficient (FUNCTIONAL_MMA).
    labs += [result(value=220, patient="BORDER", on="2024-03-01"),
             result("mma", 0.6, patient="BORDER", on="2024-04-20")]
    # Indeterminate holotc, then a normal MMA: needs MMA, then borderline_mma_normal.
    labs += [result("holotc", 50, patient="BORDER2", on="2024-06-10"),
             result("mma", 0.2, patient="BORDER2", on="2024-07-01")]

    # Deficient long ago: the lookback runs out in March.
    labs.append(result(value=100, patient="LOOKBACK", on="2022-03-15"))

    # Folic acid while deficient, B12 later (the status on the folic acid date is evaluated too).
    labs.append(result(value=120, patient="FOLIC", on="2024-02-01"))
    medications += [medication(FOLIC_ACID, patient="FOLIC", start=day("2024-04-10"), as_of=LAST),
                    medication(patient="FOLIC", start=day("2024-05-01"), as_of=LAST)]

    # On B12 throughout, an elevated MMA in July: MMA_ON_SUPPLEMENT from then; SUPPLEMENTED_NO_MMA before.
    medications.append(medication(patient="SUPP", start=day("2023-06-01"), as_of=LAST))
    labs += [result(value=500, patient="SUPP", on="2024-01-05"), result("mma", 0.8, patient="SUPP", on="2024-07-01")]

    # An untested macrocytic MCV (patient_flags reads the status machinery too).
    labs.append(result("mcv", 104, patient="MCV", on="2024-02-02"))
    # In the registry twice: the latest row's practice, on every date.
    patients += [patient("MOVED", practice="Practice A"), patient("MOVED", practice="Practice C")]
    labs.append(result(value=180, patient="MOVED", on="2024-08-08"))
    return {"labs": labs, "patients": patients, "diagnoses": diagnoses, "medications": medications}


def random_lake(seed: int, patients: int = 30) -> dict[str, list[dict]]:
    """A lake of random results, corrections, duplicates, medications and diagnoses around the month ends."""
    pick = random.Random(seed)
    first, span = dt.date(2021, 6, 1), (dt.date(2025, 2, 1) - dt.date(2021, 6, 1)).days
    values = {"b12": (60, 600, "pmol/L"), "holotc": (10, 120, None), "mma": (0.1, 1.0, None), "mcv": (85, 110, None)}

    def some_day() -> str:
        return (first + dt.timedelta(days=pick.randrange(span))).isoformat()

    tables: dict[str, list[dict]] = {"labs": [], "patients": [], "diagnoses": [], "medications": []}
    for number in range(patients):
        patient_id = f"R{seed}-{number}"
        if pick.random() < 0.7:
            tables["patients"].append(patient(patient_id, practice=pick.choice(["Practice A", "Practice B"])))
        for _ in range(pick.randrange(9)):
            analyte = pick.choice(["b12", "b12", "b12", "holotc", "mma", "mma", "if_antibody", "mcv"])
            on = some_day()
            resulted = (dt.date.fromisoformat(on) + dt.timedelta(days=pick.randrange(90))).isoformat()
            accession = None if pick.random() < 0.2 else pick.choice(["A1", "A2", "A3"])
            status = pick.choices(["F", "C", "P"], weights=[75, 20, 5])[0]
            if analyte == "if_antibody":
                row = result(analyte, text=pick.choice(["positive", "negative"]), patient=patient_id, on=on,
                             resulted=resulted, accession=accession, status=status)
            else:
                low, high, unit = values[analyte]
                if analyte == "b12" and pick.random() < 0.2:
                    low, high, unit = 80, 800, "pg/mL"
                value = round(pick.uniform(low, high), 2)
                row = result(analyte, value, unit, patient=patient_id, on=on, resulted=resulted,
                             accession=accession, status=status, at=pick.choice(["09:00", "09:00", "14:30"]))
            tables["labs"].append(row)
            if pick.random() < 0.15:
                tables["labs"].append(copy_of(row, "labs_b.csv", row["source_row"]))
        for _ in range(pick.randrange(3)):
            start = None if pick.random() < 0.1 else some_day()
            end = None if start is None or pick.random() < 0.4 else (
                dt.date.fromisoformat(start) + dt.timedelta(days=pick.randrange(400))).isoformat()
            kind = FOLIC_ACID if pick.random() < 0.3 else None
            tables["medications"].append(medication(
                kind, patient=patient_id, start=None if start is None else day(start),
                end=None if end is None else day(end), as_of=LAST))
        if pick.random() < 0.3:
            recorded = None if pick.random() < 0.3 else day(some_day())
            code = pick.choice([("ICD-10", "D51.0"), ("ICD-10", "D51.0"), ("ICD-10", "E11.9")])
            tables["diagnoses"].append(diagnosis(*code, patient=patient_id, day=recorded, as_of=LAST))
    return tables


def build_many_dates(tables: dict[str, list[dict]], dates: list[dt.date]) -> duckdb.DuckDBPyConnection:
    """Every model, built once with every date as an as-of date (the marts as of the last)."""
    con = duckdb.connect()
    create_lake(con, {"lab_results": tables["labs"], "patients": tables["patients"],
                      "diagnoses": tables["diagnoses"], "medications": tables["medications"]})
    install_rules(con, rules_for(None), max(dates))
    build_models(con, as_of=max(dates), as_of_dates=dates)
    return con


def assert_each_date_equals_its_own_build(tables: dict[str, list[dict]], dates: list[dt.date]) -> None:
    many = build_many_dates(tables, dates)
    for as_of in dates:
        single = build(**tables, as_of=as_of)
        assert rows(many, "select * exclude (as_of) from int_patient_status where as_of = ? order by patient_id",
                    [as_of]) == rows(single, "select * exclude (as_of, rules_version, rules_profile) "
                                             "from patient_status order by patient_id"), as_of
        assert rows(many, "select patient_id, reason, detail, practice, open_since from int_under_monitored where as_of = ? "
                          "order by patient_id, reason", [as_of]) == rows(
            single, "select * from cohort_under_monitored order by patient_id, reason"), as_of
        assert rows(many, f"select {RESULT_COLUMNS} from int_classified_results "
                          "where ? between counted_from and counted_through "
                          "order by patient_id, collected_at, analyte, source_file, source_row", [as_of]) == rows(
            single, f"select {RESULT_COLUMNS} from result_classification "
                    "order by patient_id, collected_at, analyte, source_file, source_row"), as_of
        assert rows(many, "select * from int_status_on_date where as_of = ? order by patient_id, evaluated_on",
                    [as_of]) == rows(single, "select * from int_status_on_date order by patient_id, evaluated_on"), \
            as_of
        single.close()
    many.close()


def test_each_month_end_of_the_crafted_case_equals_its_own_build():
    assert_each_date_equals_its_own_build(crafted_lake(), MONTH_ENDS)


def test_each_date_of_a_random_lake_equals_its_own_build():
    """Three random lakes (seeds 1 to 3: patient ids and source rows apart) as one lake, so each date is one
    build for all their patients: a build's cost is its statements, not these few rows."""
    lake: dict[str, list[dict]] = {}
    for seed in (1, 2, 3):
        for table, table_rows in random_lake(seed).items():
            lake.setdefault(table, []).extend(table_rows)
    # Month ends and a few days in between: the as-of date of a run need not be a month end.
    dates = [*MONTH_ENDS, dt.date(2024, 3, 15), dt.date(2024, 7, 10), dt.date(2024, 11, 11)]
    assert_each_date_equals_its_own_build(lake, dates)


def test_the_trend_of_the_crafted_case_equals_the_per_date_reference():
    tables = crafted_lake()
    lake_tables = {"lab_results": tables["labs"], "patients": tables["patients"],
                   "diagnoses": tables["diagnoses"], "medications": tables["medications"]}

    def open_lake() -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        create_lake(con, lake_tables)
        return con

    expected = trend_by_rebuilding(open_lake, rules_for(None), MONTH_ENDS)
    with build_many_dates(tables, MONTH_ENDS) as con:
        assert report.read_trend(con) == expected
    # The case moves: every count changes at least once over the year.
    for count in ("deficient", "borderline", "under_monitored"):
        assert len({getattr(point, count) for point in expected}) > 1, count


def test_the_crafted_case_moves_as_intended():
    """A few of the crafted patients, checked by hand, so the comparison above compares something."""
    con = build_many_dates(crafted_lake(), MONTH_ENDS)
    status = {(row["patient_id"], row["as_of"]): row for row in rows(con, "select * from int_patient_status")}

    def status_on(patient_id: str, iso: str) -> str:
        return status[(patient_id, dt.date.fromisoformat(iso))]["status"]

    assert [status_on("CORR", d) for d in ("2024-01-31", "2024-02-29", "2024-03-31", "2024-05-31", "2024-08-31")] \
        == ["not_tested", "borderline_needs_mma", "deficient", "deficient", "normal"]
    assert status[("CORR", dt.date(2024, 5, 31))]["index_value"] == 120
    assert status[("CORR2", dt.date(2024, 6, 30))]["index_value"] == 100  # the later-collected one never counts
    assert status_on("CORR_SAME", "2024-03-31") == "borderline_needs_mma"
    assert status_on("LATE", "2024-05-31") == "not_tested" and status_on("LATE", "2024-06-30") == "deficient"
    assert status_on("LOOKBACK", "2024-02-29") == "deficient" and status_on("LOOKBACK", "2024-03-31") == "not_tested"
    assert status_on("BORDER", "2024-03-31") == "borderline_needs_mma"
    assert status_on("BORDER", "2024-04-30") == "deficient"  # FUNCTIONAL_MMA once the MMA is counted
    assert [status[("MED", d)]["on_b12"] for d in (dt.date(2024, 2, 29), dt.date(2024, 3, 31), dt.date(2024, 7, 31))] \
        == [False, True, False]
    assert status[("ENDS", dt.date(2024, 5, 31))]["on_b12"] is False
    assert status[("ENDS", dt.date(2024, 4, 30))]["on_b12"] is True
    assert [status[("IFPA", d)]["has_pa"] for d in (dt.date(2024, 3, 31), dt.date(2024, 4, 30))] == [False, True]
    reasons = {(row["patient_id"], row["as_of"], row["reason"])
               for row in rows(con, "select * from int_under_monitored")}
    assert ("UNDATED", MONTH_ENDS[0], "PA_OVERDUE_ANNUAL_B12") in reasons
    assert [("IFPA", d, "PA_OVERDUE_ANNUAL_B12") in reasons for d in (
        dt.date(2024, 3, 31), dt.date(2024, 4, 30), dt.date(2024, 8, 31), dt.date(2024, 9, 30))] == [
        False, True, True, False]
    assert ("MED", dt.date(2024, 9, 30), "PA_NO_POST_TREATMENT_RECHECK") in reasons
    assert ("MED", dt.date(2024, 10, 31), "TREATED_BELOW_TARGET") in reasons
    assert ("BORDER", dt.date(2024, 3, 31), "BORDERLINE_NO_MMA") in reasons
    assert ("MED", dt.date(2024, 4, 30), "SUPPLEMENTED_NO_MMA") in reasons
    assert ("MED", dt.date(2024, 7, 31), "SUPPLEMENTED_NO_MMA") not in reasons


def test_the_marts_stay_as_of_the_run_date():
    """Built with several as-of dates, the marts hold the run's as_of (rules_settings) only."""
    con = build_many_dates(crafted_lake(), MONTH_ENDS)
    assert con.execute("select distinct as_of from patient_status").fetchall() == [(LAST,)]
    single = build(**crafted_lake(), as_of=LAST)
    for mart in ("patient_status", "cohort_deficient", "cohort_borderline", "cohort_under_monitored",
                 "patient_flags", "result_classification", "worklist", "worklist_deficient", "worklist_borderline",
                 "worklist_under_monitored", "worklist_flagged"):
        assert con.execute(f"select count(*) from {mart}").fetchone() == single.execute(
            f"select count(*) from {mart}").fetchone(), mart


def test_as_of_dates_are_dates():
    con = duckdb.connect()
    create_lake(con, {})
    install_rules(con, rules_for(None), LAST)
    with pytest.raises(ModelError, match="as_of_dates: expected at least one date"):
        build_models(con, as_of=LAST, as_of_dates=[])
    with pytest.raises(ModelError, match="as_of_dates: expected dates"):
        build_models(con, as_of=LAST, as_of_dates=["2024-01-31"])
