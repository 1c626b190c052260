"""cohort_deficient and cohort_borderline (docs/models.md, Deficient and Borderline)."""
from __future__ import annotations

import pytest

from tests.transforms.lake import FOLIC_ACID, build_cases, lab, medication, on, one, patient

INDEX_DAY = -100


def deficient_with(**medication_kwargs):
    """A deficient B12 (100 pmol/L) on day -100, and one medication record (start/end relative to as-of)."""
    def make_rows(p):
        rows = {"labs": [lab(value=100, day=INDEX_DAY, patient=p)]}
        if medication_kwargs:
            rows["medications"] = [medication(patient=p, **medication_kwargs)]
        return rows
    return make_rows


# case id -> (rows, expected cohort_deficient row or None)
DEFICIENT_CASES = {
    "no_treatment": (deficient_with(), dict(rule_id="B12_DEFICIENT", treatment="untreated")),
    "starts_index_plus_30": (deficient_with(start=INDEX_DAY + 30), dict(treatment="treated")),
    "starts_index_plus_31": (deficient_with(start=INDEX_DAY + 31), dict(treatment="untreated")),
    "starts_on_index_date": (deficient_with(start=INDEX_DAY), dict(treatment="treated")),
    "active_on_index_date": (deficient_with(start=-500), dict(treatment="treated")),
    "ended_on_index_date": (deficient_with(start=-500, end=INDEX_DAY), dict(treatment="untreated")),
    "ended_day_after_index": (deficient_with(start=-500, end=INDEX_DAY + 1), dict(treatment="treated")),
    "folic_acid_is_not_b12": (deficient_with(kind=FOLIC_ACID, start=INDEX_DAY + 1), dict(treatment="untreated")),
    "start_after_as_of_unknown": (
        lambda p: {"labs": [lab(value=100, day=-10, patient=p)], "medications": [medication(patient=p, start=5)]},
        dict(treatment="untreated")),
    "index_reported_in_pg_ml": (
        lambda p: {"labs": [lab(value=180, unit="pg/mL", day=INDEX_DAY, patient=p)], "patients": [patient(p)]},
        dict(index_value=180, index_unit="pg/mL", index_date=on(INDEX_DAY), practice="Practice A")),
    "functional_mma": (
        lambda p: {"labs": [lab(value=200, day=INDEX_DAY, patient=p), lab("mma", 0.6, day=INDEX_DAY + 5, patient=p)]},
        dict(rule_id="FUNCTIONAL_MMA", index_value=200, mma_value=0.6, treatment="untreated")),
    "mma_on_supplement": (
        lambda p: {"labs": [lab(value=900, day=-10, patient=p), lab("mma", 0.6, day=-20, patient=p)],
                   "medications": [medication(patient=p, start=-400)]},
        dict(rule_id="MMA_ON_SUPPLEMENT", index_value=0.6, index_unit="umol/L", treatment="treated")),
    "holotc_deficient": (lambda p: {"labs": [lab("holotc", 20, patient=p)]},
                         dict(rule_id="HOLOTC_DEFICIENT", index_value=20, index_unit="pmol/L")),
    "borderline_not_in_deficient": (lambda p: {"labs": [lab(value=200, patient=p)]}, None),
    "normal_not_in_deficient": (lambda p: {"labs": [lab(value=400, patient=p)]}, None),
}

# case id -> (rows, expected cohort_borderline row or None)
BORDERLINE_CASES = {
    "borderline_needs_mma": (lambda p: {"labs": [lab(value=300, unit="pg/mL", day=-40, patient=p)]},
                             dict(rule_id="BORDERLINE_NEEDS_MMA", mma_status="needed", index_value=300,
                                  index_unit="pg/mL", index_date=on(-40))),
    "borderline_mma_normal": (
        lambda p: {"labs": [lab(value=200, day=-40, patient=p), lab("mma", 0.2, day=-20, patient=p)]},
        dict(rule_id="BORDERLINE_MMA_NORMAL", mma_status="normal", mma_value=0.2)),
    "holotc_indeterminate": (lambda p: {"labs": [lab("holotc", 60, patient=p)]},
                             dict(rule_id="BORDERLINE_NEEDS_MMA", mma_status="needed", index_analyte="holotc")),
    "functional_mma_not_borderline": (
        lambda p: {"labs": [lab(value=200, day=-40, patient=p), lab("mma", 0.6, day=-20, patient=p)]}, None),
    "deficient_not_borderline": (lambda p: {"labs": [lab(value=100, patient=p)]}, None),
    "normal_not_borderline": (lambda p: {"labs": [lab(value=259, patient=p)]}, None),
}


@pytest.fixture(scope="module")
def built():
    cases = {**DEFICIENT_CASES, **BORDERLINE_CASES}
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in cases.items()})
    yield con
    con.close()


@pytest.mark.parametrize("case_id", list(DEFICIENT_CASES))
def test_cohort_deficient(built, case_id):
    expected = DEFICIENT_CASES[case_id][1]
    row = one(built, "select * from cohort_deficient where patient_id = ?", [case_id])
    if expected is None:
        assert row is None
    else:
        assert row is not None
        assert {column: row[column] for column in expected} == expected


@pytest.mark.parametrize("case_id", list(BORDERLINE_CASES))
def test_cohort_borderline(built, case_id):
    expected = BORDERLINE_CASES[case_id][1]
    row = one(built, "select * from cohort_borderline where patient_id = ?", [case_id])
    if expected is None:
        assert row is None
    else:
        assert row is not None
        assert {column: row[column] for column in expected} == expected


def test_cohorts_match_patient_status(built):
    assert built.execute(
        "select count(*) from patient_status where status = 'deficient'").fetchone()[0] == built.execute(
        "select count(*) from cohort_deficient").fetchone()[0]
    assert built.execute(
        "select count(*) from patient_status where status like 'borderline%'").fetchone()[0] == built.execute(
        "select count(*) from cohort_borderline").fetchone()[0]


@pytest.mark.parametrize("table, columns", [
    ("cohort_deficient", ["patient_id", "rule_id", "index_value", "index_unit", "index_date", "treatment"]),
    ("cohort_borderline", ["patient_id", "rule_id", "index_value", "index_unit", "index_date", "mma_status"]),
])
def test_contract_columns_come_first(built, table, columns):
    described = [row[0] for row in built.execute(f"describe {table}").fetchall()]
    assert described[:len(columns)] == columns
    assert "practice" in described
