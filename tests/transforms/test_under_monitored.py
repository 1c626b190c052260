"""cohort_under_monitored: the five release 1 reasons of docs/models.md (with the release 2 correction of
PA_NO_POST_TREATMENT_RECHECK: a late recheck closes the gap), each window edge on both sides, and each reason
switched off by its profile setting. The four release 2 reasons are pinned in test_release2_rules.py."""
from __future__ import annotations

import dataclasses

import pytest

from tests.transforms.lake import build_cases, diagnosis, lab, medication, on, rows, rules_for

# Treatment start for the PA cases, days before as-of: far enough back that the recheck window (S+90 to
# S+183) lies outside the annual window (D-365 to D), so each case tests one rule.
S = -800


def pa_treated(*labs, start=S, pa=True, end=-1):
    """A PA patient (ICD-10 D51.0) whose B12 treatment ran from `start` to the day before as-of (so that
    SUPPLEMENTED_NO_MMA, which needs B12 at as-of, stays out of these cases), with these lab results."""
    def make_rows(p):
        made = {"labs": [lab(patient=p, **kwargs) for kwargs in labs],
                "medications": [medication(patient=p, start=start, end=end)] if start is not None else []}
        if pa:
            made["diagnoses"] = [diagnosis(patient=p, day=-1000)]
        return made
    return make_rows


def supplemented(*labs, start=-400, end=None):
    return lambda p: {"labs": [lab(patient=p, **kwargs) for kwargs in labs],
                      "medications": [medication(patient=p, start=start, end=end)]}


def untreated(*labs):
    return lambda p: {"labs": [lab(patient=p, **kwargs) for kwargs in labs]}


ANNUAL = dict(value=500, day=-300)  # an at-target B12 that keeps PA_OVERDUE_ANNUAL_B12 away
RECHECK = dict(value=500, day=S + 120)  # a recheck inside S+90..S+183

# case id -> (rows, the exact set of reasons of that patient)
CASES = {
    # PA_NO_POST_TREATMENT_RECHECK: D >= S + 183 and no b12/holotc/mma from S+90 to D (a late one closes it)
    "recheck_s_183_days_ago": (pa_treated(ANNUAL, start=-183), {"PA_NO_POST_TREATMENT_RECHECK"}),
    "recheck_s_182_days_ago": (pa_treated(ANNUAL, start=-182), set()),
    "recheck_at_s_plus_90": (pa_treated(ANNUAL, dict(value=500, day=S + 90)), set()),
    "recheck_at_s_plus_89": (pa_treated(dict(value=500, day=S + 89)),
                             {"PA_NO_POST_TREATMENT_RECHECK", "PA_OVERDUE_ANNUAL_B12"}),
    "recheck_late_annual_closes_gap": (pa_treated(ANNUAL), set()),
    "recheck_late_on_as_of_closes_gap": (pa_treated(dict(value=500, day=0)), set()),
    "recheck_at_s_plus_183": (pa_treated(ANNUAL, dict(value=500, day=S + 183)), set()),
    "recheck_late_at_s_plus_184": (pa_treated(ANNUAL, dict(value=500, day=S + 184)), set()),
    "recheck_after_as_of_does_not_count": (pa_treated(dict(value=500, day=S + 89), dict(value=500, day=1)),
                                           {"PA_NO_POST_TREATMENT_RECHECK", "PA_OVERDUE_ANNUAL_B12"}),
    "recheck_by_holotc": (pa_treated(ANNUAL, dict(analyte="holotc", value=90, day=S + 100)), set()),
    "recheck_by_mma": (pa_treated(ANNUAL, dict(analyte="mma", value=0.2, day=S + 100)), set()),
    "recheck_folate_does_not_count": (pa_treated(dict(analyte="folate", value=20, day=S + 100)),
                                      {"PA_NO_POST_TREATMENT_RECHECK", "PA_OVERDUE_ANNUAL_B12"}),
    "recheck_preliminary_does_not_count": (pa_treated(dict(value=500, day=S + 100, status="P")),
                                           {"PA_NO_POST_TREATMENT_RECHECK", "PA_OVERDUE_ANNUAL_B12"}),
    "recheck_not_pa": (pa_treated(dict(value=500, day=-10), dict(analyte="mma", value=0.2, day=-10), pa=False),
                       set()),
    # PA_OVERDUE_ANNUAL_B12: PA and no b12/holotc/mma from D-365 to D
    "annual_day_365": (pa_treated(RECHECK, dict(value=500, day=-365)), set()),
    "annual_day_366": (pa_treated(RECHECK, dict(value=500, day=-366)), {"PA_OVERDUE_ANNUAL_B12"}),
    "annual_by_mma": (pa_treated(RECHECK, dict(analyte="mma", value=0.2, day=-365)), set()),
    "annual_by_holotc": (pa_treated(RECHECK, dict(analyte="holotc", value=90, day=-100)), set()),
    "annual_never_tested_untreated_pa": (pa_treated(start=None), {"PA_OVERDUE_ANNUAL_B12", "PA_NOT_ON_TREATMENT"}),
    "annual_result_after_as_of": (pa_treated(RECHECK, dict(value=500, day=1)), {"PA_OVERDUE_ANNUAL_B12"}),
    "annual_pa_by_if_antibody": (untreated(dict(analyte="if_antibody", text="positive", day=-10)),
                                 {"PA_OVERDUE_ANNUAL_B12"}),
    # BORDERLINE_NO_MMA: status borderline_needs_mma and index on or before D - 30
    "borderline_day_30": (untreated(dict(value=200, day=-30)), {"BORDERLINE_NO_MMA"}),
    "borderline_day_29": (untreated(dict(value=200, day=-29)), set()),
    "borderline_holotc_day_30": (untreated(dict(analyte="holotc", value=40, day=-30)), {"BORDERLINE_NO_MMA"}),
    "borderline_mma_normal": (untreated(dict(value=200, day=-100), dict(analyte="mma", value=0.2, day=-90)), set()),
    # SUPPLEMENTED_NO_MMA: on B12 at D, a b12 result and no mma from D-365 to D
    "supplemented_b12_day_365": (supplemented(dict(value=900, day=-365)), {"SUPPLEMENTED_NO_MMA"}),
    "supplemented_b12_day_366": (supplemented(dict(value=900, day=-366)), set()),
    "supplemented_mma_day_365": (supplemented(dict(value=900, day=-10), dict(analyte="mma", value=0.2, day=-365)),
                                 set()),
    "supplemented_mma_day_366": (supplemented(dict(value=900, day=-10), dict(analyte="mma", value=0.2, day=-366)),
                                 {"SUPPLEMENTED_NO_MMA"}),
    "supplemented_holotc_only": (supplemented(dict(analyte="holotc", value=90, day=-10)), set()),
    "supplement_ended_on_as_of": (supplemented(dict(value=900, day=-10), end=0), set()),
    "supplement_ends_day_after": (supplemented(dict(value=900, day=-10), end=1), {"SUPPLEMENTED_NO_MMA"}),
    # TREATED_BELOW_TARGET: PA, treated, latest b12 at least 90 days after S not at target (> 300 / > 400)
    "target_300_pmol": (pa_treated(dict(value=300, day=S + 90), dict(analyte="mma", value=0.2, day=-10)),
                        {"TREATED_BELOW_TARGET"}),
    "target_301_pmol": (pa_treated(dict(value=301, day=S + 90), dict(analyte="mma", value=0.2, day=-10)), set()),
    "target_400_pgml": (pa_treated(dict(value=400, unit="pg/mL", day=S + 90),
                                   dict(analyte="mma", value=0.2, day=-10)), {"TREATED_BELOW_TARGET"}),
    "target_401_pgml": (pa_treated(dict(value=401, unit="pg/mL", day=S + 90),
                                   dict(analyte="mma", value=0.2, day=-10)), set()),
    "target_censored_above": (pa_treated(dict(value=300, comparator=">", day=S + 90),
                                         dict(analyte="mma", value=0.2, day=-10)), set()),
    "target_low_b12_at_s_plus_89": (pa_treated(dict(value=250, day=S + 89), dict(value=250, day=S + 100,
                                                                                analyte="holotc"),
                                               dict(analyte="mma", value=0.2, day=-10)), set()),
    "target_latest_is_at_target": (pa_treated(dict(value=250, day=S + 100), dict(value=500, day=-10),
                                              dict(analyte="mma", value=0.2, day=-10)), set()),
    "target_latest_is_below": (pa_treated(dict(value=500, day=S + 100), dict(value=280, day=-10),
                                          dict(analyte="mma", value=0.2, day=-10)), {"TREATED_BELOW_TARGET"}),
    "target_not_pa": (pa_treated(dict(value=300, day=S + 90), dict(analyte="mma", value=0.2, day=-10), pa=False),
                      set()),
    "target_pa_untreated": (pa_treated(dict(value=250, day=-10), start=None), {"PA_NOT_ON_TREATMENT"}),
}


@pytest.fixture(scope="module")
def built():
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in CASES.items()})
    yield con
    con.close()


@pytest.mark.parametrize("case_id", list(CASES))
def test_reasons(built, case_id):
    found = {row["reason"] for row in rows(
        built, "select reason from cohort_under_monitored where patient_id = ?", [case_id])}
    assert found == CASES[case_id][1]


def test_one_row_per_patient_and_reason_in_order(built):
    found = built.execute("select patient_id, reason from cohort_under_monitored").fetchall()
    assert found == sorted(set(found))


def test_detail_names_the_window(built):
    detail = built.execute(
        "select detail from cohort_under_monitored where patient_id = 'recheck_s_183_days_ago'").fetchone()[0]
    assert detail == "B12 treatment started 2024-12-29; no b12, holotc or mma result from 2025-03-29 to 2025-06-30"
    detail = built.execute(
        "select detail from cohort_under_monitored where patient_id = 'target_400_pgml'").fetchone()[0]
    assert detail == (f"latest b12 400 pg/mL on {on(S + 90)} is not above the target of 400 pg/mL; "
                      f"B12 treatment started {on(S)}")
    detail = built.execute(
        "select detail from cohort_under_monitored where patient_id = 'borderline_day_30'").fetchone()[0]
    assert detail == "borderline b12 200 pmol/L on 2025-05-31; no mma result from 2025-05-01 to 2025-06-30"


REASON_SWITCHES = {
    "PA_NO_POST_TREATMENT_RECHECK": "reason_pa_no_post_treatment_recheck_enabled",
    "PA_OVERDUE_ANNUAL_B12": "reason_pa_overdue_annual_b12_enabled",
    "BORDERLINE_NO_MMA": "reason_borderline_no_mma_enabled",
    "SUPPLEMENTED_NO_MMA": "reason_supplemented_no_mma_enabled",
    "TREATED_BELOW_TARGET": "reason_treated_below_target_enabled",
    "PA_NOT_ON_TREATMENT": "reason_pa_not_on_treatment_enabled",
}


@pytest.mark.parametrize("reason, switch", list(REASON_SWITCHES.items()))
def test_a_disabled_reason_produces_no_rows(built, reason, switch):
    assert built.execute("select count(*) from cohort_under_monitored where reason = ?", [reason]).fetchone()[0] > 0
    rules = rules_for(None)
    switched_off = dataclasses.replace(rules, settings={**rules.settings, switch: False})
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in CASES.items()}, rules=switched_off)
    reasons = {row[0] for row in con.execute("select distinct reason from cohort_under_monitored").fetchall()}
    assert reasons == set(REASON_SWITCHES) - {reason}


def test_nice_profile_has_no_annual_b12_and_no_target_rule():
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in CASES.items()}, profile="nice_ng239")
    reasons = {row[0] for row in con.execute("select distinct reason from cohort_under_monitored").fetchall()}
    assert reasons == {"PA_NO_POST_TREATMENT_RECHECK", "BORDERLINE_NO_MMA", "SUPPLEMENTED_NO_MMA",
                       "PA_NOT_ON_TREATMENT"}


def test_contract_columns_come_first(built):
    described = [row[0] for row in built.execute("describe cohort_under_monitored").fetchall()]
    assert described[:3] == ["patient_id", "reason", "detail"]
