"""patient_flags: FOLATE_BEFORE_B12 and MACROCYTOSIS_NOT_TESTED (docs/models.md, Flags)."""
from __future__ import annotations

import dataclasses

import pytest

from tests.transforms.lake import FOLIC_ACID, build_cases, lab, medication, on, rows, rules_for

F = -50  # folic acid start, days before as-of
M = -200  # macrocytic MCV, days before as-of


def folic_acid_after(*labs, folic_start=F, b12_start=None, extra_folic_starts=()):
    def make_rows(p):
        meds = [medication(FOLIC_ACID, patient=p, start=folic_start)]
        meds += [medication(FOLIC_ACID, patient=p, start=start) for start in extra_folic_starts]
        if b12_start is not None:
            meds.append(medication(patient=p, start=b12_start))
        return {"labs": [lab(patient=p, **kwargs) for kwargs in labs], "medications": meds}
    return make_rows


def macrocytic_mcv(*labs, mcv=101.0, day=M):
    return lambda p: {"labs": [lab("mcv", mcv, day=day, patient=p)] + [lab(patient=p, **kwargs) for kwargs in labs]}


# case id -> (rows, expected {flag: flag_date} of that patient)
CASES = {
    # FOLATE_BEFORE_B12: folic acid started while deficient or borderline_needs_mma, before any B12 treatment
    "folic_while_deficient": (folic_acid_after(dict(value=100, day=-100)), {"FOLATE_BEFORE_B12": on(F)}),
    "folic_while_holotc_deficient": (folic_acid_after(dict(analyte="holotc", value=20, day=-100)),
                                     {"FOLATE_BEFORE_B12": on(F)}),
    "folic_while_borderline_needs_mma": (folic_acid_after(dict(value=200, day=-100)), {"FOLATE_BEFORE_B12": on(F)}),
    "folic_while_borderline_mma_normal": (
        folic_acid_after(dict(value=200, day=-100), dict(analyte="mma", value=0.2, day=-95)), {}),
    "folic_mma_known_only_later": (
        # at the folic acid start the MMA was not yet done: the status then was borderline_needs_mma
        folic_acid_after(dict(value=200, day=-100), dict(analyte="mma", value=0.2, day=-40)),
        {"FOLATE_BEFORE_B12": on(F)}),
    "folic_while_functional_mma": (
        folic_acid_after(dict(value=200, day=-100), dict(analyte="mma", value=0.6, day=-95)),
        {"FOLATE_BEFORE_B12": on(F)}),
    "folic_while_normal": (folic_acid_after(dict(value=400, day=-100)), {}),
    "folic_before_the_deficient_result": (folic_acid_after(dict(value=100, day=-40)), {}),
    "folic_deficient_result_same_day": (folic_acid_after(dict(value=100, day=F)), {"FOLATE_BEFORE_B12": on(F)}),
    "folic_index_at_lookback_edge": (folic_acid_after(dict(value=100, day=F - 730)), {"FOLATE_BEFORE_B12": on(F)}),
    "folic_index_beyond_lookback": (folic_acid_after(dict(value=100, day=F - 731)), {}),
    "folic_b12_started_same_day": (folic_acid_after(dict(value=100, day=-100), b12_start=F), {}),
    "folic_b12_started_before": (folic_acid_after(dict(value=100, day=-100), b12_start=F - 10), {}),
    "folic_b12_started_day_after": (folic_acid_after(dict(value=100, day=-100), b12_start=F + 1),
                                    {"FOLATE_BEFORE_B12": on(F)}),
    "folic_started_after_as_of": (folic_acid_after(dict(value=100, day=-100), folic_start=1), {}),
    "folic_twice_first_date_counts": (folic_acid_after(dict(value=100, day=-100), extra_folic_starts=(-20,)),
                                      {"FOLATE_BEFORE_B12": on(F)}),
    # MACROCYTOSIS_NOT_TESTED: MCV > 100 fL, no b12/holotc from 90 days before to 90 days after, 90 days passed
    "mcv_100_1": (macrocytic_mcv(mcv=100.1), {"MACROCYTOSIS_NOT_TESTED": on(M)}),
    "mcv_100": (macrocytic_mcv(mcv=100.0), {}),
    "mcv_90_days_passed": (macrocytic_mcv(day=-90), {"MACROCYTOSIS_NOT_TESTED": on(-90)}),
    "mcv_89_days_passed": (macrocytic_mcv(day=-89), {}),
    "mcv_b12_90_days_before": (macrocytic_mcv(dict(value=400, day=M - 90)), {}),
    "mcv_b12_91_days_before": (macrocytic_mcv(dict(value=400, day=M - 91)), {"MACROCYTOSIS_NOT_TESTED": on(M)}),
    "mcv_b12_90_days_after": (macrocytic_mcv(dict(value=400, day=M + 90)), {}),
    "mcv_b12_91_days_after": (macrocytic_mcv(dict(value=400, day=M + 91)), {"MACROCYTOSIS_NOT_TESTED": on(M)}),
    "mcv_holotc_tested": (macrocytic_mcv(dict(analyte="holotc", value=80, day=M + 10)), {}),
    "mcv_mma_is_not_a_b12_test": (macrocytic_mcv(dict(analyte="mma", value=0.2, day=M + 10)),
                                  {"MACROCYTOSIS_NOT_TESTED": on(M)}),
    "mcv_twice_latest_date": (macrocytic_mcv(dict(analyte="mcv", value=104, day=-120)),
                              {"MACROCYTOSIS_NOT_TESTED": on(-120)}),
}


@pytest.fixture(scope="module")
def built():
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in CASES.items()})
    yield con
    con.close()


@pytest.mark.parametrize("case_id", list(CASES))
def test_flags(built, case_id):
    found = {row["flag"]: row["flag_date"] for row in rows(
        built, "select flag, flag_date from patient_flags where patient_id = ?", [case_id])}
    assert found == CASES[case_id][1]


def test_flag_details(built):
    detail = dict(built.execute("select patient_id, detail from patient_flags").fetchall())
    assert detail["folic_while_deficient"] == (
        f"folic acid started {on(F)} while status was deficient (B12_DEFICIENT: b12 100 pmol/L on {on(-100)}); "
        "no B12 treatment started")
    assert detail["folic_b12_started_day_after"].endswith(f"B12 treatment started later, on {on(F + 1)}")
    assert detail["mcv_100_1"] == f"MCV 100.1 fL on {on(M)}; no b12 or holotc result from {on(M - 90)} to {on(M + 90)}"
    assert detail["mcv_twice_latest_date"].endswith(f"; 2 untested macrocytic MCV results since {on(M)}")


@pytest.mark.parametrize("flag, switch", [
    ("FOLATE_BEFORE_B12", "flag_folate_before_b12_enabled"),
    ("MACROCYTOSIS_NOT_TESTED", "flag_macrocytosis_not_tested_enabled"),
])
def test_a_disabled_flag_produces_no_rows(flag, switch):
    rules = rules_for(None)
    switched_off = dataclasses.replace(rules, settings={**rules.settings, switch: False})
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in CASES.items()}, rules=switched_off)
    flags = {row[0] for row in con.execute("select distinct flag from patient_flags").fetchall()}
    assert flags == {"FOLATE_BEFORE_B12", "MACROCYTOSIS_NOT_TESTED"} - {flag}


def test_contract_columns_come_first(built):
    described = [row[0] for row in built.execute("describe patient_flags").fetchall()]
    assert described[:4] == ["patient_id", "flag", "flag_date", "detail"]
