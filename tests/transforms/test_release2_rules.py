"""Release 2 rules (the rest of the seed's pathway, and the gaps it does not name): the four new
under-monitoring reasons, neurological involvement in cohort_deficient, and the three new flags, with every
boundary pinned on both sides, the details, and each switch turned off."""
from __future__ import annotations

import dataclasses

import pytest

from tests.transforms.lake import build_cases, diagnosis, lab, medication, on, rows, rules_for

METFORMIN = {"drug": "metformin 500 mg tablets", "atc_code": "A10BA02", "route": "oral", "dose": "500 mg"}
ORAL_B12 = {"drug": "cyanocobalamin 50 microgram tablets", "atc_code": "B03BA01", "route": "oral", "dose": "50 ug"}
HB = dict(analyte="hemoglobin", value=130)
IF_NEGATIVE = dict(analyte="if_antibody", text="negative", day=-2000)
S = -800  # treatment start of the treated PA cases


def patient_rows(*labs, diagnoses=(), medications=()):
    """A patient with these labs (dicts of lab() arguments), diagnoses and medications (dicts of arguments)."""
    def make_rows(p):
        return {"labs": [lab(patient=p, **kwargs) for kwargs in labs],
                "diagnoses": [diagnosis(patient=p, **kwargs) for kwargs in diagnoses],
                "medications": [medication(patient=p, **kwargs) for kwargs in medications]}
    return make_rows


def deficient(day, *labs, **more):
    """Deficient on `day` (b12 100 pmol/L), with these other labs."""
    return patient_rows(dict(value=100, day=day), *labs, **more)


def pa(*labs, diagnosed=-1000, medications=()):
    """A PA patient (ICD-10 D51.0 recorded on `diagnosed`, None: without a date) with a recent normal B12."""
    return patient_rows(dict(value=500, day=-10), *labs, diagnoses=[dict(day=diagnosed)], medications=medications)


def pa_treated(*labs):
    """PA, B12 from S to the day before as-of (not on B12 at as-of), monitored so no release 1 reason fires."""
    return patient_rows(dict(value=500, day=-300), *labs, diagnoses=[dict(day=-1000)],
                        medications=[dict(start=S, end=-1)])


REASON_CASES = {
    # DEFICIENT_NO_IF_ANTIBODY: deficient, no PA, no counted if_antibody ever, index on or before D - 30
    "ifab_index_day_30": (deficient(-30, dict(HB, day=-30)), {"DEFICIENT_NO_IF_ANTIBODY"}),
    "ifab_index_day_29": (deficient(-29, dict(HB, day=-29)), set()),
    "ifab_negative_long_ago": (deficient(-100, dict(HB, day=-100), IF_NEGATIVE), set()),
    "ifab_equivocal": (deficient(-100, dict(HB, day=-100), dict(IF_NEGATIVE, text="equivocal")), set()),
    "ifab_preliminary_does_not_count": (deficient(-100, dict(HB, day=-100), dict(IF_NEGATIVE, status="P")),
                                        {"DEFICIENT_NO_IF_ANTIBODY"}),
    "ifab_after_as_of_does_not_count": (deficient(-100, dict(HB, day=-100), dict(IF_NEGATIVE, day=1)),
                                        {"DEFICIENT_NO_IF_ANTIBODY"}),
    "ifab_functional_mma": (patient_rows(dict(value=200, day=-60), dict(analyte="mma", value=0.8, day=-55),
                                         dict(HB, day=-60)), {"DEFICIENT_NO_IF_ANTIBODY"}),
    # MMA_ON_SUPPLEMENT: the index date is the MMA's date (-30 reported, -29 not yet)
    "ifab_mma_on_supplement_day_30": (patient_rows(dict(value=900, day=-200), dict(analyte="mma", value=0.8, day=-30),
                                                   dict(HB, day=-30), medications=[dict(start=-400)]),
                                      {"DEFICIENT_NO_IF_ANTIBODY"}),
    "ifab_mma_on_supplement_day_29": (patient_rows(dict(value=900, day=-200), dict(analyte="mma", value=0.8, day=-29),
                                                   dict(HB, day=-29), medications=[dict(start=-400)]), set()),
    "ifab_coded_non_pa_deficiency": (deficient(-100, dict(HB, day=-100), diagnoses=[dict(code="E53.8")]),
                                     {"DEFICIENT_NO_IF_ANTIBODY"}),
    # DEFICIENT_NO_BLOOD_COUNT: deficient, index on or before D - 30, no hemoglobin/mcv from index-30 to index+30
    "fbc_hb_30_days_before": (deficient(-100, dict(HB, day=-130), IF_NEGATIVE), set()),
    "fbc_hb_31_days_before": (deficient(-100, dict(HB, day=-131), IF_NEGATIVE), {"DEFICIENT_NO_BLOOD_COUNT"}),
    "fbc_mcv_30_days_after": (deficient(-100, dict(analyte="mcv", value=90, day=-70), IF_NEGATIVE), set()),
    "fbc_mcv_31_days_after": (deficient(-100, dict(analyte="mcv", value=90, day=-69), IF_NEGATIVE),
                              {"DEFICIENT_NO_BLOOD_COUNT"}),
    "fbc_index_day_30": (deficient(-30, IF_NEGATIVE), {"DEFICIENT_NO_BLOOD_COUNT"}),
    "fbc_index_day_29": (deficient(-29, IF_NEGATIVE), set()),
    "fbc_preliminary_does_not_count": (deficient(-100, dict(HB, day=-100, status="P"), IF_NEGATIVE),
                                       {"DEFICIENT_NO_BLOOD_COUNT"}),
    "fbc_folate_does_not_count": (deficient(-100, dict(analyte="folate", value=20, day=-100), IF_NEGATIVE),
                                  {"DEFICIENT_NO_BLOOD_COUNT"}),
    # PA_NOT_ON_TREATMENT: PA known for at least 30 days, no B12 record current or ended on/after D - 92
    "pant_known_30_days": (pa(diagnosed=-30), {"PA_NOT_ON_TREATMENT"}),
    "pant_known_29_days": (pa(diagnosed=-29), set()),
    "pant_undated_diagnosis": (pa(diagnosed=None), {"PA_NOT_ON_TREATMENT"}),
    "pant_if_antibody_30_days": (patient_rows(dict(value=500, day=-10),
                                              dict(analyte="if_antibody", text="positive", day=-30)),
                                 {"PA_NOT_ON_TREATMENT"}),
    "pant_if_antibody_29_days": (patient_rows(dict(value=500, day=-10),
                                              dict(analyte="if_antibody", text="positive", day=-29)), set()),
    "pant_earliest_evidence_counts": (pa(dict(analyte="if_antibody", text="positive", day=-40), diagnosed=-10),
                                      {"PA_NOT_ON_TREATMENT"}),
    "pant_ended_d_minus_92": (pa(medications=[dict(start=-400, end=-92)]), set()),
    "pant_ended_d_minus_93": (pa(medications=[dict(start=-400, end=-93)]), {"PA_NOT_ON_TREATMENT"}),
    "pant_no_end_date": (pa(dict(analyte="mma", value=0.2, day=-10), medications=[dict(start=-400)]), set()),
    "pant_oral_counts": (pa(dict(analyte="mma", value=0.2, day=-10), medications=[dict(ORAL_B12, start=-400)]), set()),
    "pant_starts_after_as_of": (pa(medications=[dict(start=1)]), {"PA_NOT_ON_TREATMENT"}),
    # TREATED_MARKERS_NOT_NORMAL: PA, S, latest homocysteine from S + 90 at or above 10, or latest mma elevated
    "tmnn_hcy_9_9": (pa_treated(dict(analyte="homocysteine", value=9.9, day=-10)), set()),
    "tmnn_hcy_10_0": (pa_treated(dict(analyte="homocysteine", value=10.0, day=-10)), {"TREATED_MARKERS_NOT_NORMAL"}),
    "tmnn_hcy_high_before_s_90_ignored": (pa_treated(dict(analyte="homocysteine", value=25, day=S + 89)), set()),
    "tmnn_hcy_high_at_s_90": (pa_treated(dict(analyte="homocysteine", value=25, day=S + 90)),
                              {"TREATED_MARKERS_NOT_NORMAL"}),
    "tmnn_hcy_high_then_normal": (pa_treated(dict(analyte="homocysteine", value=14, day=-200),
                                             dict(analyte="homocysteine", value=8, day=-10)), set()),
    "tmnn_hcy_normal_then_high": (pa_treated(dict(analyte="homocysteine", value=8, day=-200),
                                             dict(analyte="homocysteine", value=14, day=-10)),
                                  {"TREATED_MARKERS_NOT_NORMAL"}),
    "tmnn_hcy_censored_below": (pa_treated(dict(analyte="homocysteine", value=8, comparator="<", day=-10)), set()),
    "tmnn_hcy_censored_above": (pa_treated(dict(analyte="homocysteine", value=12, comparator=">", day=-10)),
                                {"TREATED_MARKERS_NOT_NORMAL"}),
    "tmnn_mma_elevated": (pa_treated(dict(analyte="mma", value=0.55, day=-10)), {"TREATED_MARKERS_NOT_NORMAL"}),
    "tmnn_mma_normal": (pa_treated(dict(analyte="mma", value=0.40, day=-10)), set()),
    "tmnn_mma_elevated_before_s_90": (pa_treated(dict(analyte="mma", value=0.9, day=S + 89)), set()),
    "tmnn_both_markers": (pa_treated(dict(analyte="mma", value=0.55, day=-20),
                                     dict(analyte="homocysteine", value=11, day=-10)), {"TREATED_MARKERS_NOT_NORMAL"}),
    "tmnn_not_pa": (patient_rows(dict(value=500, day=-300), dict(analyte="homocysteine", value=14, day=-10),
                                 medications=[dict(start=S, end=-1)]), set()),
}


@pytest.fixture(scope="module")
def reasons_built():
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in REASON_CASES.items()})
    yield con
    con.close()


@pytest.mark.parametrize("case_id", list(REASON_CASES))
def test_new_reasons(reasons_built, case_id):
    found = {row["reason"] for row in rows(
        reasons_built, "select reason from cohort_under_monitored where patient_id = ?", [case_id])}
    assert found == REASON_CASES[case_id][1]


def test_new_reason_details(reasons_built):
    detail = {(row["patient_id"], row["reason"]): row["detail"] for row in rows(
        reasons_built, "select patient_id, reason, detail from cohort_under_monitored")}
    assert detail["ifab_index_day_30", "DEFICIENT_NO_IF_ANTIBODY"] == (
        f"deficient (B12_DEFICIENT: b12 100 pmol/L on {on(-30)}); no pernicious anaemia on record and no intrinsic "
        f"factor antibody result on or before {on(0)}")
    assert detail["fbc_hb_31_days_before", "DEFICIENT_NO_BLOOD_COUNT"] == (
        f"deficient (B12_DEFICIENT: b12 100 pmol/L on {on(-100)}); no hemoglobin or mcv result from {on(-130)} "
        f"to {on(-70)}")
    assert detail["fbc_index_day_30", "DEFICIENT_NO_BLOOD_COUNT"].endswith(f"from {on(-60)} to {on(0)}")
    assert detail["pant_known_30_days", "PA_NOT_ON_TREATMENT"] == (
        f"pernicious anaemia on record since {on(-30)}; never treated; no B12 record active from {on(-92)} "
        f"to {on(0)}")
    assert detail["pant_ended_d_minus_93", "PA_NOT_ON_TREATMENT"] == (
        f"pernicious anaemia on record since {on(-1000)}; last B12 record ended {on(-93)}; no B12 record active "
        f"from {on(-92)} to {on(0)}")
    assert detail["pant_undated_diagnosis", "PA_NOT_ON_TREATMENT"].startswith(
        "pernicious anaemia on record (diagnosis without a date); never treated")
    assert detail["tmnn_hcy_10_0", "TREATED_MARKERS_NOT_NORMAL"] == (
        f"latest homocysteine 10 umol/L on {on(-10)} is not below the target of 10 umol/L; "
        f"B12 treatment started {on(S)}")
    assert detail["tmnn_both_markers", "TREATED_MARKERS_NOT_NORMAL"] == (
        f"latest homocysteine 11 umol/L on {on(-10)} is not below the target of 10 umol/L; "
        f"mma 0.55 umol/L on {on(-20)} is elevated; B12 treatment started {on(S)}")
    for text in detail.values():  # never the patient
        assert not any(case_id in text for case_id in REASON_CASES)


NEW_REASON_SWITCHES = {
    "DEFICIENT_NO_IF_ANTIBODY": "reason_deficient_no_if_antibody_enabled",
    "DEFICIENT_NO_BLOOD_COUNT": "reason_deficient_no_blood_count_enabled",
    "PA_NOT_ON_TREATMENT": "reason_pa_not_on_treatment_enabled",
    "TREATED_MARKERS_NOT_NORMAL": "reason_treated_markers_not_normal_enabled",
}


@pytest.mark.parametrize("reason, switch", list(NEW_REASON_SWITCHES.items()))
def test_a_disabled_new_reason_produces_no_rows(reasons_built, reason, switch):
    before = {row[0] for row in reasons_built.execute("select distinct reason from cohort_under_monitored").fetchall()}
    assert reason in before
    rules = rules_for(None)
    switched_off = dataclasses.replace(rules, settings={**rules.settings, switch: False})
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in REASON_CASES.items()}, rules=switched_off)
    after = {row[0] for row in con.execute("select distinct reason from cohort_under_monitored").fetchall()}
    assert after == before - {reason}


@pytest.mark.parametrize("profile", ["nice_ng239", "bsh_2014"])
def test_marker_target_is_seed_only(profile):
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in REASON_CASES.items()}, profile=profile)
    reasons = {row[0] for row in con.execute("select distinct reason from cohort_under_monitored").fetchall()}
    assert "TREATED_MARKERS_NOT_NORMAL" not in reasons
    assert {"DEFICIENT_NO_IF_ANTIBODY", "DEFICIENT_NO_BLOOD_COUNT", "PA_NOT_ON_TREATMENT"} <= reasons


def test_new_reasons_on_many_as_of_dates_match_single_builds():
    """The trend evaluates every month end in one build: each date must equal its own build."""
    from tests.transforms.test_trend import build_many_dates
    from tests.transforms.lake import build, collect_cases
    tables = collect_cases({case_id: make_rows for case_id, (make_rows, _) in REASON_CASES.items()})
    dates = [on(-95), on(-40), on(-29), on(0)]
    many = build_many_dates(tables, dates)
    for as_of in dates:
        single = build(**tables, as_of=as_of)
        assert many.execute(
            "select patient_id, reason, detail from int_under_monitored where as_of = ? order by all", [as_of]
        ).fetchall() == single.execute(
            "select patient_id, reason, detail from cohort_under_monitored order by all").fetchall(), as_of


# --- neurological involvement ------------------------------------------------------------------------------

NEURO_CASES = {
    "neuro_with_dot": ([dict(code="G62.9", day=-20)], True, f"G62.9 (ICD-10) on {on(-20)}"),
    "neuro_without_dot": ([dict(code="G629", day=-20)], True, f"G629 (ICD-10) on {on(-20)}"),
    "neuro_listed_code_itself": ([dict(code="G32.0", day=-20)], True, f"G32.0 (ICD-10) on {on(-20)}"),
    "neuro_subcode_of_dotted_code": ([dict(code="R20.2", day=-20), dict(code="R202", day=-5)], True,
                                     f"R20.2 (ICD-10) on {on(-20)}; R202 (ICD-10) on {on(-5)}"),
    "neuro_sibling_not_matched": ([dict(code="R20.1", day=-20)], False, None),
    "neuro_parent_not_matched": ([dict(code="G32", day=-20)], False, None),
    "neuro_undated": ([dict(code="R26.8", day=None)], True, "R26.8 (ICD-10) without a date"),
    "neuro_on_as_of": ([dict(code="F06.7", day=0)], True, f"F06.7 (ICD-10) on {on(0)}"),
    "neuro_after_as_of": ([dict(code="F06.7", day=1)], False, None),
    "neuro_other_system_not_prefix": ([dict(code_system="ICD-9", code="G62", day=-20)], False, None),
    "neuro_none": ([], False, None),
}


def test_neuro_involvement():
    con = build_cases({case_id: deficient(-10, diagnoses=diagnoses)
                       for case_id, (diagnoses, _, _) in NEURO_CASES.items()})
    found = {row["patient_id"]: (row["neuro_involvement"], row["neuro_detail"]) for row in rows(
        con, "select patient_id, neuro_involvement, neuro_detail from cohort_deficient")}
    assert found == {case_id: (flag, detail) for case_id, (_, flag, detail) in NEURO_CASES.items()}
    rules = rules_for(None)
    switched_off = dataclasses.replace(rules, settings={**rules.settings, "neuro_involvement_enabled": False})
    con = build_cases({case_id: deficient(-10, diagnoses=diagnoses)
                       for case_id, (diagnoses, _, _) in NEURO_CASES.items()}, rules=switched_off)
    assert con.execute("select count(*) filter (where neuro_involvement), count(neuro_detail), count(*) "
                       "from cohort_deficient").fetchone() == (0, 0, len(NEURO_CASES))


def test_a_site_snomed_code_matches_exactly():
    rules = rules_for(None)
    with_snomed = dataclasses.replace(rules, codes=rules.codes + (("neurological_features", "SNOMED-CT", "230523000"),))
    con = build_cases({
        "snomed_exact": deficient(-10, diagnoses=[dict(code_system="SNOMED-CT", code="230523000", day=-5)]),
        "snomed_longer": deficient(-10, diagnoses=[dict(code_system="SNOMED-CT", code="2305230001", day=-5)]),
    }, rules=with_snomed)
    found = dict(con.execute("select patient_id, neuro_involvement from cohort_deficient").fetchall())
    assert found == {"snomed_exact": True, "snomed_longer": False}


# --- flags ------------------------------------------------------------------------------------------------

def mma_decided(egfr_value, egfr_day, mma_day=-50, comparator=None, rule="functional"):
    """FUNCTIONAL_MMA (borderline b12 then elevated MMA) or MMA_ON_SUPPLEMENT, and one eGFR result."""
    egfr = dict(analyte="egfr", value=egfr_value, day=egfr_day, comparator=comparator)
    if rule == "functional":
        return patient_rows(dict(value=200, day=mma_day - 5), dict(analyte="mma", value=0.8, day=mma_day), egfr)
    return patient_rows(dict(value=900, day=mma_day - 100), dict(analyte="mma", value=0.8, day=mma_day), egfr,
                        medications=[dict(ORAL_B12, start=-1000)])


def metformin(start, *labs, end=None, extra=()):
    return patient_rows(*labs, medications=[dict(METFORMIN, start=start, end=end), *extra])


def injections(*labs, route="IM", pa=False, end=None, start=-400, diagnoses=()):
    return patient_rows(*labs, dict(analyte="mma", value=0.2, day=-10),
                        diagnoses=[*diagnoses, *([dict(day=-1000)] if pa else [])],
                        medications=[dict(start=start, end=end, route=route)])


FLAG_CASES = {
    # METFORMIN_B12_NOT_TESTED: active at D, first start on or before D - 365, no b12/holotc from D - 365 to D
    "metformin_365_days": (metformin(-365), {"METFORMIN_B12_NOT_TESTED": on(-365)}),
    "metformin_364_days": (metformin(-364), {}),
    "metformin_b12_365_days_ago": (metformin(-1000, dict(value=500, day=-365)), {}),
    "metformin_b12_366_days_ago": (metformin(-1000, dict(value=500, day=-366)),
                                   {"METFORMIN_B12_NOT_TESTED": on(-1000)}),
    "metformin_holotc_counts": (metformin(-1000, dict(analyte="holotc", value=90, day=-100)), {}),
    "metformin_mma_does_not_count": (metformin(-1000, dict(analyte="mma", value=0.2, day=-100)),
                                     {"METFORMIN_B12_NOT_TESTED": on(-1000)}),
    "metformin_ended_on_as_of": (metformin(-1000, end=0), {}),
    "metformin_ends_day_after": (metformin(-1000, end=1), {"METFORMIN_B12_NOT_TESTED": on(-1000)}),
    "metformin_first_start_with_gap": (patient_rows(medications=[dict(METFORMIN, start=-2000, end=-1500),
                                                                 dict(METFORMIN, start=-100)]),
                                       {"METFORMIN_B12_NOT_TESTED": on(-2000)}),
    "metformin_by_name_only": (patient_rows(medications=[dict(drug="Metformin MR 750mg", atc_code=None,
                                                              route="oral", start=-500)]),
                               {"METFORMIN_B12_NOT_TESTED": on(-500)}),
    # MMA_RENAL_CAVEAT: FUNCTIONAL_MMA or MMA_ON_SUPPLEMENT and eGFR < 60 from 90 days before to 90 after the MMA
    "renal_egfr_59": (mma_decided(59, -50), {"MMA_RENAL_CAVEAT": on(-50)}),
    "renal_egfr_60": (mma_decided(60, -50), {}),
    "renal_egfr_90_days_before": (mma_decided(45, -50 - 90), {"MMA_RENAL_CAVEAT": on(-50)}),
    "renal_egfr_91_days_before": (mma_decided(45, -50 - 91), {}),
    "renal_egfr_90_days_after": (mma_decided(45, -10, mma_day=-100), {"MMA_RENAL_CAVEAT": on(-100)}),
    "renal_egfr_91_days_after": (mma_decided(45, -9, mma_day=-100), {}),
    "renal_mma_on_supplement": (mma_decided(40, -40, rule="supplement"), {"MMA_RENAL_CAVEAT": on(-50)}),
    "renal_censored_below_15": (mma_decided(15, -50, comparator="<"), {"MMA_RENAL_CAVEAT": on(-50)}),
    "renal_censored_above_60": (mma_decided(60, -50, comparator=">"), {}),
    "renal_censored_above_90": (mma_decided(90, -50, comparator=">"), {}),
    "renal_b12_deficient_not_mma": (patient_rows(dict(value=100, day=-50), dict(analyte="mma", value=0.8, day=-50),
                                                 dict(analyte="egfr", value=30, day=-50)), {}),
    # B12_INJECTIONS_WITHOUT_DEFICIENCY: IM B12 active at D, no PA, no abnormal b12/holotc/mma ever
    "im_route_IM": (injections(dict(value=600, day=-500)), {"B12_INJECTIONS_WITHOUT_DEFICIENCY": on(-400)}),
    "im_route_intramuscular": (injections(route=" Intramuscular "), {"B12_INJECTIONS_WITHOUT_DEFICIENCY": on(-400)}),
    "im_route_snomed": (injections(route="78421000"), {"B12_INJECTIONS_WITHOUT_DEFICIENCY": on(-400)}),
    "im_route_lower_case": (injections(route="im"), {"B12_INJECTIONS_WITHOUT_DEFICIENCY": on(-400)}),
    "im_route_im_injection_not_matched": (injections(route="IM injection"), {}),
    "im_route_oral": (injections(route="oral"), {}),
    "im_route_subcutaneous": (injections(route="subcutaneous"), {}),
    "im_with_pa": (injections(pa=True), {}),
    "im_coded_non_pa_deficiency": (injections(diagnoses=[dict(code="E53.8", day=-500)]),
                                   {"B12_INJECTIONS_WITHOUT_DEFICIENCY": on(-400)}),
    "im_once_deficient_long_ago": (injections(dict(value=100, day=-3000)), {}),
    "im_once_borderline": (injections(dict(value=250, day=-3000)), {}),
    "im_once_holotc_indeterminate": (injections(dict(analyte="holotc", value=60, day=-3000)), {}),
    "im_once_mma_elevated": (injections(dict(analyte="mma", value=0.6, day=-3000)), {}),
    "im_deficient_result_after_as_of": (injections(dict(value=100, day=1)),
                                        {"B12_INJECTIONS_WITHOUT_DEFICIENCY": on(-400)}),
    "im_ended_on_as_of": (injections(end=0), {}),
    "im_ends_day_after": (injections(end=1), {"B12_INJECTIONS_WITHOUT_DEFICIENCY": on(-400)}),
}


@pytest.fixture(scope="module")
def flags_built():
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in FLAG_CASES.items()})
    yield con
    con.close()


NEW_FLAGS = {"METFORMIN_B12_NOT_TESTED", "MMA_RENAL_CAVEAT", "B12_INJECTIONS_WITHOUT_DEFICIENCY"}


@pytest.mark.parametrize("case_id", list(FLAG_CASES))
def test_new_flags(flags_built, case_id):
    found = {row["flag"]: row["flag_date"] for row in rows(
        flags_built, "select flag, flag_date from patient_flags where patient_id = ?", [case_id])
        if row["flag"] in NEW_FLAGS}
    assert found == FLAG_CASES[case_id][1]


def test_new_flag_details(flags_built):
    detail = {(row["patient_id"], row["flag"]): row["detail"] for row in rows(
        flags_built, "select patient_id, flag, detail from patient_flags")}
    assert detail["metformin_365_days", "METFORMIN_B12_NOT_TESTED"] == (
        f"metformin since {on(-365)}; no b12 or holotc result from {on(-365)} to {on(0)}; never tested")
    assert detail["metformin_b12_366_days_ago", "METFORMIN_B12_NOT_TESTED"].endswith(f"; last on {on(-366)}")
    assert detail["renal_egfr_59", "MMA_RENAL_CAVEAT"] == (
        f"FUNCTIONAL_MMA rests on mma 0.8 umol/L on {on(-50)}; eGFR 59 mL/min/1.73m2 on {on(-50)}: "
        "MMA rises with renal impairment")
    assert f"eGFR <15 mL/min/1.73m2 on {on(-50)}" in detail["renal_censored_below_15", "MMA_RENAL_CAVEAT"]
    assert detail["im_route_IM", "B12_INJECTIONS_WITHOUT_DEFICIENCY"] == (
        f"intramuscular B12 since {on(-400)}, active on {on(0)}; no pernicious anaemia, and no deficient, "
        f"borderline or indeterminate b12 or holotc and no elevated mma result on record; last b12 or holotc on "
        f"{on(-500)}")


@pytest.mark.parametrize("flag, switch", [
    ("METFORMIN_B12_NOT_TESTED", "flag_metformin_b12_not_tested_enabled"),
    ("MMA_RENAL_CAVEAT", "flag_mma_renal_caveat_enabled"),
    ("B12_INJECTIONS_WITHOUT_DEFICIENCY", "flag_b12_injections_without_deficiency_enabled"),
])
def test_a_disabled_new_flag_produces_no_rows(flags_built, flag, switch):
    before = {row[0] for row in flags_built.execute("select distinct flag from patient_flags").fetchall()}
    assert flag in before
    rules = rules_for(None)
    switched_off = dataclasses.replace(rules, settings={**rules.settings, switch: False})
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in FLAG_CASES.items()}, rules=switched_off)
    after = {row[0] for row in con.execute("select distinct flag from patient_flags").fetchall()}
    assert after == before - {flag}


@pytest.mark.parametrize("profile", ["seed", "nice_ng239", "bsh_2014"])
def test_new_flags_are_on_in_every_profile(profile):
    rules = rules_for(profile)
    for switch in ("flag_metformin_b12_not_tested_enabled", "flag_mma_renal_caveat_enabled",
                   "flag_b12_injections_without_deficiency_enabled", "reason_deficient_no_if_antibody_enabled",
                   "reason_deficient_no_blood_count_enabled", "reason_pa_not_on_treatment_enabled",
                   "neuro_involvement_enabled"):
        assert rules[switch] is True, (profile, switch)
    assert rules["reason_treated_markers_not_normal_enabled"] is (profile == "seed")
