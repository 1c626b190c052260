"""patient_status: the patient status as of D and PA and B12 treatment (docs/models.md), every boundary.

Each case is a patient of its own; all cases are built once (as-of 2025-06-30) and checked one by one.
"""
from __future__ import annotations

import pytest

from tests.transforms.lake import (
    FOLIC_ACID, build_cases, diagnosis, lab, medication, one, patient, rows,
)

B12_INDEX_DAY = -100  # a borderline index result 100 days before as-of, for the MMA window cases


def borderline_index_with(*mma_results):
    """A borderline B12 (200 pmol/L) on day -100 plus MMA results given as (day relative to index, value)."""
    return lambda p: {"labs": [lab(value=200, day=B12_INDEX_DAY, patient=p)] + [
        lab("mma", value, day=B12_INDEX_DAY + offset, patient=p) for offset, value in mma_results]}


def supplemented(*labs, start=-300, end=None):
    return lambda p: {
        "labs": [lab(patient=p, **kwargs) for kwargs in labs],
        "medications": [medication(patient=p, start=start, end=end)],
    }


def labs_only(*labs):
    return lambda p: {"labs": [lab(patient=p, **kwargs) for kwargs in labs]}


# case id -> (rows, expected columns of patient_status)
CASES = {
    # lookback: collected on or after D - 730 days
    "lookback_day_730": (labs_only(dict(value=100, day=-730)),
                         dict(status="deficient", rule_id="B12_DEFICIENT", index_analyte="b12", index_value=100)),
    "lookback_day_731": (labs_only(dict(value=100, day=-731)),
                         dict(status="not_tested", rule_id="NO_RECENT_RESULT", index_value=None)),
    "holotc_deficient": (labs_only(dict(analyte="holotc", value=20)),
                         dict(status="deficient", rule_id="HOLOTC_DEFICIENT", index_analyte="holotc")),
    "b12_normal": (labs_only(dict(value=259)), dict(status="normal", rule_id="NORMAL", index_category="normal")),
    "most_recent_wins": (labs_only(dict(value=100, day=-100), dict(value=400, day=-10)),
                         dict(status="normal", rule_id="NORMAL", index_value=400)),
    # ties on the same collection time: the more severe category wins
    "tie_holotc_more_severe": (labs_only(dict(value=400), dict(analyte="holotc", value=20)),
                               dict(status="deficient", rule_id="HOLOTC_DEFICIENT", index_analyte="holotc")),
    "tie_b12_more_severe": (labs_only(dict(value=100), dict(analyte="holotc", value=80)),
                            dict(status="deficient", rule_id="B12_DEFICIENT", index_analyte="b12")),
    "tie_borderline_beats_normal": (labs_only(dict(value=400), dict(value=200)),
                                    dict(status="borderline_needs_mma", index_value=200)),
    "same_day_later_time_wins": (labs_only(dict(value=100, at="08:00"), dict(value=400, at="10:00")),
                                 dict(status="normal", index_value=400)),
    # the index is reported as the lab reported it, SI value kept
    "index_as_reported": (labs_only(dict(value=180, unit="pg/mL")),
                          dict(status="deficient", index_value=180, index_unit="pg/mL", index_unit_si="pmol/L")),
    "index_censored": (labs_only(dict(value=100, comparator="<")),
                       dict(status="deficient", index_value=100, index_comparator="<")),
    # MMA window: from 30 days before to 60 days after the index result, inclusive
    "mma_elevated_day_minus_30": (borderline_index_with((-30, 0.6)),
                                  dict(status="deficient", rule_id="FUNCTIONAL_MMA", mma_value=0.6,
                                       index_analyte="b12", index_value=200, index_category="borderline")),
    "mma_elevated_day_minus_31": (borderline_index_with((-31, 0.6)),
                                  dict(status="borderline_needs_mma", rule_id="BORDERLINE_NEEDS_MMA", mma_value=None)),
    "mma_elevated_day_plus_60": (borderline_index_with((60, 0.6)),
                                 dict(status="deficient", rule_id="FUNCTIONAL_MMA")),
    "mma_elevated_day_plus_61": (borderline_index_with((61, 0.6)),
                                 dict(status="borderline_needs_mma", rule_id="BORDERLINE_NEEDS_MMA")),
    "mma_normal_day_plus_60": (borderline_index_with((60, 0.3)),
                               dict(status="borderline_mma_normal", rule_id="BORDERLINE_MMA_NORMAL", mma_value=0.3)),
    "mma_normal_day_minus_30": (borderline_index_with((-30, 0.3)),
                                dict(status="borderline_mma_normal", rule_id="BORDERLINE_MMA_NORMAL")),
    "mma_normal_day_plus_61": (borderline_index_with((61, 0.3)),
                               dict(status="borderline_needs_mma", rule_id="BORDERLINE_NEEDS_MMA")),
    "mma_normal_and_elevated": (borderline_index_with((-5, 0.3), (20, 0.55)),
                                dict(status="deficient", rule_id="FUNCTIONAL_MMA", mma_value=0.55)),
    "mma_at_limit_is_normal": (borderline_index_with((10, 0.40)),
                               dict(status="borderline_mma_normal", rule_id="BORDERLINE_MMA_NORMAL")),
    "mma_above_lab_limit": (lambda p: {"labs": [lab(value=200, day=-100, patient=p),
                                                lab("mma", 0.38, day=-95, ref_high_si=0.37, patient=p)]},
                            dict(status="deficient", rule_id="FUNCTIONAL_MMA")),
    "mma_window_stops_at_as_of": (lambda p: {"labs": [lab(value=200, day=-20, patient=p),
                                                      lab("mma", 0.6, day=5, patient=p)]},
                                  dict(status="borderline_needs_mma", rule_id="BORDERLINE_NEEDS_MMA")),
    "mma_on_as_of_day": (lambda p: {"labs": [lab(value=200, day=-20, patient=p),
                                             lab("mma", 0.6, day=0, patient=p)]},
                         dict(status="deficient", rule_id="FUNCTIONAL_MMA")),
    "holotc_indeterminate_mma_elevated": (
        lambda p: {"labs": [lab("holotc", 50, day=-40, patient=p), lab("mma", 0.5, day=-30, patient=p)]},
        dict(status="deficient", rule_id="FUNCTIONAL_MMA", index_analyte="holotc", index_category="indeterminate")),
    "holotc_indeterminate_mma_normal": (
        lambda p: {"labs": [lab("holotc", 50, day=-40, patient=p), lab("mma", 0.2, day=-30, patient=p)]},
        dict(status="borderline_mma_normal", rule_id="BORDERLINE_MMA_NORMAL")),
    "holotc_indeterminate_no_mma": (labs_only(dict(analyte="holotc", value=50)),
                                    dict(status="borderline_needs_mma", rule_id="BORDERLINE_NEEDS_MMA")),
    "normal_b12_mma_elevated_not_supplemented": (
        labs_only(dict(value=400), dict(analyte="mma", value=0.6)),
        dict(status="normal", rule_id="NORMAL", on_b12=False)),
    # MMA_ON_SUPPLEMENT: on B12 at D and the latest MMA in the lookback is elevated
    "on_supplement_mma_elevated": (
        supplemented(dict(value=900, day=-10), dict(analyte="mma", value=0.6, day=-20)),
        dict(status="deficient", rule_id="MMA_ON_SUPPLEMENT", on_b12=True, index_analyte="mma", index_value=0.6,
             index_unit="umol/L", index_category="elevated", mma_value=0.6)),
    "on_supplement_no_b12_result": (
        supplemented(dict(analyte="mma", value=0.6, day=-700), start=-800),
        dict(status="deficient", rule_id="MMA_ON_SUPPLEMENT", index_analyte="mma")),
    # release 3: an MMA taken before supplementation started says nothing about a supplemented patient
    "on_supplement_mma_before_start": (
        supplemented(dict(analyte="mma", value=0.6, day=-700), start=-699),
        dict(status="not_tested", rule_id="NO_RECENT_RESULT", on_b12=True)),
    "on_supplement_mma_on_start_day": (
        supplemented(dict(analyte="mma", value=0.6, day=-700), start=-700),
        dict(status="deficient", rule_id="MMA_ON_SUPPLEMENT", index_analyte="mma")),
    "on_supplement_mma_day_730": (
        supplemented(dict(analyte="mma", value=0.6, day=-730), start=-800),
        dict(status="deficient", rule_id="MMA_ON_SUPPLEMENT")),
    "on_supplement_mma_day_731": (
        supplemented(dict(analyte="mma", value=0.6, day=-731), start=-800),
        dict(status="not_tested", rule_id="NO_RECENT_RESULT", on_b12=True)),
    "on_supplement_latest_mma_normal": (
        supplemented(dict(value=900, day=-10), dict(analyte="mma", value=0.6, day=-50),
                     dict(analyte="mma", value=0.3, day=-5)),
        dict(status="normal", rule_id="NORMAL", on_b12=True)),
    "supplement_ended_on_as_of": (
        supplemented(dict(value=900, day=-10), dict(analyte="mma", value=0.6, day=-20), end=0),
        dict(status="normal", rule_id="NORMAL", on_b12=False)),
    "supplement_ends_day_after_as_of": (
        supplemented(dict(value=900, day=-10), dict(analyte="mma", value=0.6, day=-20), end=1),
        dict(status="deficient", rule_id="MMA_ON_SUPPLEMENT", on_b12=True)),
    # on B12 at D, but the MMA was taken before the supplement started (release 3): it does not count
    "supplement_starts_on_as_of": (
        supplemented(dict(value=900, day=-10), dict(analyte="mma", value=0.6, day=-20), start=0),
        dict(status="normal", rule_id="NORMAL", on_b12=True)),
    "supplement_starts_after_as_of": (
        supplemented(dict(value=900, day=-10), dict(analyte="mma", value=0.6, day=-20), start=1),
        dict(status="normal", rule_id="NORMAL", on_b12=False, treatment_start=None)),
    "functional_mma_before_on_supplement": (
        supplemented(dict(value=200, day=-10), dict(analyte="mma", value=0.6, day=-5)),
        dict(status="deficient", rule_id="FUNCTIONAL_MMA")),
    "on_supplement_before_borderline_mma_normal": (
        supplemented(dict(value=200, day=-300), dict(analyte="mma", value=0.3, day=-290),
                     dict(analyte="mma", value=0.6, day=-10)),
        dict(status="deficient", rule_id="MMA_ON_SUPPLEMENT", index_analyte="mma", index_value=0.6)),
    "deficient_before_on_supplement": (
        supplemented(dict(value=100, day=-10), dict(analyte="mma", value=0.6, day=-5)),
        dict(status="deficient", rule_id="B12_DEFICIENT")),
    # every patient known from any input has a row
    "known_from_registry_only": (lambda p: {"patients": [patient(p)]},
                                 dict(status="not_tested", rule_id="NO_RECENT_RESULT", practice="Practice A")),
    "known_from_medication_only": (lambda p: {"medications": [medication(FOLIC_ACID, patient=p)]},
                                   dict(status="not_tested", on_b12=False)),
    "known_from_diagnosis_only": (lambda p: {"diagnoses": [diagnosis(patient=p)]},
                                  dict(status="not_tested", has_pa=True)),
    "known_from_folate_result_only": (labs_only(dict(analyte="folate", value=10)),
                                      dict(status="not_tested", has_pa=False)),
    # PA (section 4): by diagnosis code in each code system, or a positive IF antibody, on or before D
    "pa_icd10": (lambda p: {"diagnoses": [diagnosis("ICD-10", "D51.0", patient=p)]},
                 dict(has_pa=True, pa_evidence="diagnosis")),
    "pa_icd10_undotted": (lambda p: {"diagnoses": [diagnosis("ICD-10", "D510", patient=p)]}, dict(has_pa=True)),
    "pa_icd9": (lambda p: {"diagnoses": [diagnosis("ICD-9", "281.0", patient=p)]}, dict(has_pa=True)),
    "pa_snomed": (lambda p: {"diagnoses": [diagnosis("SNOMED-CT", "84027009", patient=p)]}, dict(has_pa=True)),
    "not_pa_icd10_d51_1": (lambda p: {"diagnoses": [diagnosis("ICD-10", "D51.1", patient=p)]}, dict(has_pa=False)),
    "not_pa_icd9_281_1": (lambda p: {"diagnoses": [diagnosis("ICD-9", "281.1", patient=p)]}, dict(has_pa=False)),
    "not_pa_wrong_system": (lambda p: {"diagnoses": [diagnosis("ICD-9", "D51.0", patient=p)]}, dict(has_pa=False)),
    "pa_recorded_on_as_of": (lambda p: {"diagnoses": [diagnosis(patient=p, day=0)]}, dict(has_pa=True)),
    "not_pa_recorded_after_as_of": (lambda p: {"diagnoses": [diagnosis(patient=p, day=1)]}, dict(has_pa=False)),
    "pa_recorded_without_date": (lambda p: {"diagnoses": [diagnosis(patient=p, day=None)]}, dict(has_pa=True)),
    "pa_if_antibody_positive": (labs_only(dict(analyte="if_antibody", text="positive", day=-1000)),
                                dict(has_pa=True, pa_evidence="if_antibody", status="not_tested")),
    "not_pa_if_antibody_negative": (labs_only(dict(analyte="if_antibody", text="negative")), dict(has_pa=False)),
    "not_pa_if_antibody_equivocal": (labs_only(dict(analyte="if_antibody", text="equivocal")), dict(has_pa=False)),
    "not_pa_if_antibody_preliminary": (labs_only(dict(analyte="if_antibody", text="positive", status="P")),
                                       dict(has_pa=False)),
    "not_pa_if_antibody_after_as_of": (labs_only(dict(analyte="if_antibody", text="positive", day=1)),
                                       dict(has_pa=False)),
    "pa_both": (lambda p: {"diagnoses": [diagnosis(patient=p)],
                           "labs": [lab("if_antibody", text="positive", patient=p)]},
                dict(has_pa=True, pa_evidence="diagnosis and if_antibody")),
}


@pytest.fixture(scope="module")
def built():
    con = build_cases({case_id: make_rows for case_id, (make_rows, _) in CASES.items()})
    yield con
    con.close()


@pytest.mark.parametrize("case_id", list(CASES))
def test_patient_status(built, case_id):
    expected = CASES[case_id][1]
    row = one(built, "select * from patient_status where patient_id = ?", [case_id])
    assert row is not None, "every known patient has a row"
    assert {column: row[column] for column in expected} == expected


def test_one_row_per_known_patient(built):
    assert built.execute("select count(*), count(distinct patient_id) from patient_status").fetchone() == (
        len(CASES), len(CASES))


def test_status_and_rule_id_pairs_are_those_of_the_rules(built):
    pairs = set(built.execute("select distinct status, rule_id from patient_status").fetchall())
    assert pairs == {
        ("deficient", "B12_DEFICIENT"), ("deficient", "HOLOTC_DEFICIENT"), ("deficient", "FUNCTIONAL_MMA"),
        ("deficient", "MMA_ON_SUPPLEMENT"), ("borderline_mma_normal", "BORDERLINE_MMA_NORMAL"),
        ("borderline_needs_mma", "BORDERLINE_NEEDS_MMA"), ("normal", "NORMAL"), ("not_tested", "NO_RECENT_RESULT"),
    }


def test_contract_columns_come_first(built):
    columns = [row[0] for row in built.execute("describe patient_status").fetchall()]
    assert columns[:10] == ["patient_id", "status", "rule_id", "index_analyte", "index_value", "index_unit",
                            "index_date", "index_category", "has_pa", "on_b12"]


@pytest.mark.parametrize("drug, atc_code, is_b12, is_folic_acid", [
    ("hydroxocobalamin 1 mg/mL injection", "B03BA03", True, False),
    ("Cyanocobalamin 1000 microgram tablets", None, True, False),
    ("METHYLCOBALAMIN 500MCG", "", True, False),
    ("Vitamin B12", "b03ba01", True, False),
    ("Vitamin B12", "B03 BA01", True, False),
    ("folic acid 5 mg tablets", None, False, True),
    ("Folate supplement", "B03BB01", False, True),
    ("Folic Acid 400mcg", "", False, True),
    ("cyanocobalamin with folic acid", None, True, True),
    ("ferrous sulfate 200 mg", "B03AA07", False, False),
    ("levothyroxine", None, False, False),
])
def test_drug_classification(build_lake, drug, atc_code, is_b12, is_folic_acid):
    con = build_lake(medications=[medication(drug=drug, atc_code=atc_code)])
    assert rows(con, "select is_b12_drug, is_folic_acid from stg_medications") == [
        {"is_b12_drug": is_b12, "is_folic_acid": is_folic_acid}]
