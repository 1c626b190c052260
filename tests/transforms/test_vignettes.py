"""Clinical vignettes (tests/data/vignettes.yaml), checked exactly against the mart tables; and reproducibility:
the same inputs, rules and as-of give identical marts, row for row and in the same order."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from b12lab.publish.dbt_build import MART_TABLES
from tests.transforms.lake import build, collect_cases, diagnosis, lab, medication, one, patient, rows

VIGNETTES_PATH = Path(__file__).resolve().parents[1] / "data" / "vignettes.yaml"
DOCUMENT = yaml.safe_load(VIGNETTES_PATH.read_text(encoding="utf-8"))
AS_OF: dt.date = DOCUMENT["as_of"]
VIGNETTES = {vignette["id"]: vignette for vignette in DOCUMENT["vignettes"]}
COHORT_FIELDS = ("cohort", "treatment", "mma_status", "reasons", "flags", "neuro_involvement", "neuro_detail",
                 "treatment_response")


def days(date: dt.date | None) -> int | None:
    return None if date is None else (date - AS_OF).days


def vignette_rows(vignette: dict):
    def make_rows(patient_id: str) -> dict:
        labs = []
        for row in vignette.get("labs", []):
            labs.append(lab(
                row["analyte"], row.get("value"), row.get("unit"), patient=patient_id, day=days(row["collected"]),
                comparator=row.get("comparator"), text=row.get("text"), status=row.get("status", "F"),
                accession=row.get("accession", "auto"), resulted_day=days(row.get("resulted")), as_of=AS_OF))
        medications = [
            medication(patient=patient_id, drug=row["drug"], atc_code=row.get("atc"), route=row.get("route"),
                       start=days(row["start"]), end=days(row.get("end")), as_of=AS_OF)
            for row in vignette.get("medications", [])
        ]
        diagnoses = [
            diagnosis(row["system"], str(row["code"]), patient=patient_id, day=days(row["recorded"]), as_of=AS_OF)
            for row in vignette.get("diagnoses", [])
        ]
        patients = [patient(patient_id, practice=vignette["practice"])] if "practice" in vignette else []
        if "died" in vignette:  # the registry's death date (release 3)
            patients[0].update(death_date=vignette["died"], deceased=True)
        return {"labs": labs, "medications": medications, "diagnoses": diagnoses, "patients": patients}
    return make_rows


@pytest.fixture(scope="module")
def tables():
    return collect_cases({vignette_id: vignette_rows(v) for vignette_id, v in VIGNETTES.items()})


@pytest.fixture(scope="module")
def built(tables):
    con = build(**tables, as_of=AS_OF)
    yield con
    con.close()


@pytest.mark.parametrize("vignette_id", list(VIGNETTES))
def test_vignette(built, vignette_id):
    expect = VIGNETTES[vignette_id]["expect"]
    status = one(built, "select * from patient_status where patient_id = ?", [vignette_id])
    status_fields = {key: value for key, value in expect.items() if key not in COHORT_FIELDS}
    assert {key: status[key] for key in status_fields} == status_fields

    deficient = one(built, "select * from cohort_deficient where patient_id = ?", [vignette_id])
    borderline = one(built, "select * from cohort_borderline where patient_id = ?", [vignette_id])
    cohort = "deficient" if deficient else "borderline" if borderline else "none"
    assert cohort == expect["cohort"]
    if deficient:
        assert deficient["treatment"] == expect["treatment"]
        assert deficient["practice"] == VIGNETTES[vignette_id]["practice"]
        assert deficient["neuro_involvement"] == expect.get("neuro_involvement", False)
        assert deficient["neuro_detail"] == expect.get("neuro_detail")
    if borderline:
        assert borderline["mma_status"] == expect["mma_status"]

    reasons = [row["reason"] for row in rows(
        built, "select reason from cohort_under_monitored where patient_id = ?", [vignette_id])]
    assert reasons == sorted(expect["reasons"])
    flags = {row["flag"]: row["flag_date"] for row in rows(
        built, "select flag, flag_date from patient_flags where patient_id = ?", [vignette_id])}
    assert flags == expect["flags"]

    if "treatment_response" in expect:  # release 3: the follow-up windows of a treatment for a deficiency
        fields = ("window", "route_class", "baseline_analyte", "window_closed", "result_date", "not_deficient",
                  "at_target")
        found = rows(built, f"""select {', '.join(f'"{f}"' for f in fields)} from treatment_response
                                where patient_id = ? order by window_start""", [vignette_id])
        assert found == [{f: row[f] for f in fields} for row in expect["treatment_response"]]


def test_every_status_and_reason_has_a_vignette():
    statuses = {v["expect"]["status"] for v in VIGNETTES.values()}
    assert statuses == {"deficient", "borderline_needs_mma", "borderline_mma_normal", "normal", "not_tested"}
    reasons = {reason for v in VIGNETTES.values() for reason in v["expect"]["reasons"]}
    assert reasons == {"PA_NO_POST_TREATMENT_RECHECK", "PA_OVERDUE_ANNUAL_B12", "BORDERLINE_NO_MMA",
                       "SUPPLEMENTED_NO_MMA", "TREATED_BELOW_TARGET", "DEFICIENT_NO_IF_ANTIBODY", "DEFICIENT_NO_BLOOD_COUNT",
                       "PA_NOT_ON_TREATMENT", "TREATED_MARKERS_NOT_NORMAL"}
    flags = {flag for v in VIGNETTES.values() for flag in v["expect"]["flags"]}
    assert flags == {"FOLATE_BEFORE_B12", "MACROCYTOSIS_NOT_TESTED", "METFORMIN_B12_NOT_TESTED", "MMA_RENAL_CAVEAT",
                     "B12_INJECTIONS_WITHOUT_DEFICIENCY"}
    assert any(v["expect"].get("neuro_involvement") for v in VIGNETTES.values())


ORDER_KEYS = {
    "result_classification": ("patient_id", "collected_at", "analyte", "source_file", "source_row"),
    "patient_status": ("patient_id",),
    "cohort_deficient": ("patient_id",),
    "cohort_borderline": ("patient_id",),
    "cohort_under_monitored": ("patient_id", "reason"),
    "patient_flags": ("patient_id", "flag"),
    # the whole population (practice null) first: coalesce sorts it before every practice name
    "cohort_counts": ("as_of", "coalesce(practice, '')", "metric"),
    # the whole population first, then the practices by name; the funnel curves by denominator
    "practice_measures": ("as_of", "measure", "practice is not null", "coalesce(practice, '')"),
    "funnel_limits": ("measure", "denominator"),
    "worklist_items": ("urgency",),
    # per patient, the windows in time; the summary: the whole population first, windows in time, "all" first
    "treatment_response": ("patient_id", "window_start"),
    "treatment_response_summary": ("practice is not null", "coalesce(practice, '')",
                                   "case \"window\" when '1m' then 1 when '3-6m' then 2 else 3 end",
                                   "case route_class when 'all' then 0 when 'intramuscular' then 1 "
                                   "when 'oral' then 2 else 3 end"),
    # the accounting of all files (no file) before each file's, by field; the outcomes; the quarantine by file
    "data_quality": ("section", "coalesce(source_file, '')", "coalesce(field, '')", "coalesce(outcome, '')",
                     "coalesce(reason, '')", "coalesce(table_name, '')"),
    # per practice, most urgent first, the longest open first (no date at all before any date)
    "worklist": ("practice", "urgency", "coalesce(open_since, date '0001-01-01')", "patient_id", "item"),
    # one patient each, numbered in the worklist's priority order
    "worklist_deficient": ("position",),
    "worklist_borderline": ("position",),
    "worklist_under_monitored": ("position",),
    "worklist_flagged": ("position",),
}


# Stored in no order (docs/clinical-decisions.md, Row order): sorting its 11M rows at 10M lab rows was 12 s.
UNORDERED = {"result_classification"}


def test_reproducible_and_ordered(built, tables):
    again = build(**tables, as_of=AS_OF)
    for table in MART_TABLES:
        first = built.execute(f"select * from {table}").fetchall()
        second = again.execute(f"select * from {table}").fetchall()
        assert sorted(first, key=repr) == sorted(second, key=repr), table
        if table not in UNORDERED:
            assert first == second, table
        keys = rows(built, f"select {', '.join(ORDER_KEYS[table])} from {table}")
        as_tuples = [tuple(row.values()) for row in keys]
        if table not in UNORDERED:
            assert as_tuples == sorted(as_tuples), f"{table} is ordered by {ORDER_KEYS[table]}"
        assert len(set(as_tuples)) == len(as_tuples), f"{table} has one row per {ORDER_KEYS[table]}"
    again.close()
