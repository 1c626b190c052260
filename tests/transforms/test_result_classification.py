"""result_classification: every result-level boundary (docs/models.md, Result categories), on both sides.

Each case is one result of its own patient; all cases of a profile are built once and checked one by one.
"""
from __future__ import annotations

import pytest

from tests.transforms.lake import build_cases, lab, one

# (case id, lab() arguments, category, at_target, rule_id)
SEED_CASES = [
    # serum B12 in pmol/L: deficient < 150, borderline <= 258
    ("b12_pmol_149", dict(analyte="b12", value=149), "deficient", False, "B12_DEFICIENT"),
    ("b12_pmol_150", dict(analyte="b12", value=150), "borderline", False, "B12_BORDERLINE"),
    ("b12_pmol_258", dict(analyte="b12", value=258), "borderline", False, "B12_BORDERLINE"),
    ("b12_pmol_259", dict(analyte="b12", value=259), "normal", False, "B12_NORMAL"),
    # in pg/mL the pg/mL thresholds apply to the reported value: 203 pg/mL (149.8 pmol/L) is not deficient,
    # 350 pg/mL (258.2 pmol/L) is borderline
    ("b12_pgml_202", dict(analyte="b12", value=202, unit="pg/mL"), "deficient", False, "B12_DEFICIENT"),
    ("b12_pgml_203", dict(analyte="b12", value=203, unit="pg/mL"), "borderline", False, "B12_BORDERLINE"),
    ("b12_pgml_350", dict(analyte="b12", value=350, unit="pg/mL"), "borderline", False, "B12_BORDERLINE"),
    ("b12_pgml_351", dict(analyte="b12", value=351, unit="pg/mL"), "normal", False, "B12_NORMAL"),
    ("b12_ngl_202", dict(analyte="b12", value=202, unit="ng/L"), "deficient", False, "B12_DEFICIENT"),
    ("b12_ngl_203", dict(analyte="b12", value=203, unit="ng/L"), "borderline", False, "B12_BORDERLINE"),
    ("b12_ngl_350", dict(analyte="b12", value=350, unit="ng/L"), "borderline", False, "B12_BORDERLINE"),
    ("b12_ngl_351", dict(analyte="b12", value=351, unit="ng/L"), "normal", False, "B12_NORMAL"),
    # treatment target: > 300 pmol/L, > 400 pg/mL (a flag, not a category)
    ("target_pmol_300", dict(analyte="b12", value=300), "normal", False, "B12_NORMAL"),
    ("target_pmol_301", dict(analyte="b12", value=301), "normal", True, "B12_NORMAL"),
    ("target_pgml_400", dict(analyte="b12", value=400, unit="pg/mL"), "normal", False, "B12_NORMAL"),
    ("target_pgml_401", dict(analyte="b12", value=401, unit="pg/mL"), "normal", True, "B12_NORMAL"),
    # holoTC: deficient < 25, indeterminate 25-70 inclusive, normal > 70
    ("holotc_24", dict(analyte="holotc", value=24), "deficient", None, "HOLOTC_DEFICIENT"),
    ("holotc_25", dict(analyte="holotc", value=25), "indeterminate", None, "HOLOTC_INDETERMINATE"),
    ("holotc_70", dict(analyte="holotc", value=70), "indeterminate", None, "HOLOTC_INDETERMINATE"),
    ("holotc_71", dict(analyte="holotc", value=71), "normal", None, "HOLOTC_NORMAL"),
    # MMA: elevated above 0.40 umol/L, or above the lab's own upper limit when the result carries one
    ("mma_040", dict(analyte="mma", value=0.40), "normal", None, "MMA_NORMAL"),
    ("mma_0401", dict(analyte="mma", value=0.401), "elevated", None, "MMA_ELEVATED"),
    ("mma_400_nmol", dict(analyte="mma", value=400, unit="nmol/L"), "normal", None, "MMA_NORMAL"),
    ("mma_410_nmol", dict(analyte="mma", value=410, unit="nmol/L"), "elevated", None, "MMA_ELEVATED"),
    ("mma_lab_037_at", dict(analyte="mma", value=0.37, ref_high_si=0.37), "normal", None, "MMA_NORMAL"),
    ("mma_lab_037_above", dict(analyte="mma", value=0.38, ref_high_si=0.37), "elevated", None, "MMA_ELEVATED"),
    ("mma_lab_050_below", dict(analyte="mma", value=0.45, ref_high_si=0.50), "normal", None, "MMA_NORMAL"),
    ("mma_lab_050_above", dict(analyte="mma", value=0.51, ref_high_si=0.50), "elevated", None, "MMA_ELEVATED"),
    # homocysteine: above_target >= 10, elevated > 15 (nested; the category names the more severe one)
    ("hcy_9_9", dict(analyte="homocysteine", value=9.9), "normal", True, "HOMOCYSTEINE_NORMAL"),
    ("hcy_10", dict(analyte="homocysteine", value=10), "above_target", False, "HOMOCYSTEINE_ABOVE_TARGET"),
    ("hcy_15", dict(analyte="homocysteine", value=15), "above_target", False, "HOMOCYSTEINE_ABOVE_TARGET"),
    ("hcy_15_1", dict(analyte="homocysteine", value=15.1), "elevated", False, "HOMOCYSTEINE_ELEVATED"),
    ("hcy_lab_range_ignored", dict(analyte="homocysteine", value=13, ref_high_si=12), "above_target", False,
     "HOMOCYSTEINE_ABOVE_TARGET"),
    # MCV: macrocytic above 100 fL
    ("mcv_100", dict(analyte="mcv", value=100), "normal", None, "MCV_NORMAL"),
    ("mcv_100_1", dict(analyte="mcv", value=100.1), "macrocytic", None, "MCV_MACROCYTIC"),
    # intrinsic factor antibody, as reported
    ("ifab_positive", dict(analyte="if_antibody", text="positive"), "positive", None, "IF_ANTIBODY_POSITIVE"),
    ("ifab_negative", dict(analyte="if_antibody", text="negative"), "negative", None, "IF_ANTIBODY_NEGATIVE"),
    ("ifab_equivocal", dict(analyte="if_antibody", text="equivocal"), "equivocal", None, "IF_ANTIBODY_EQUIVOCAL"),
    # counted but not classified by these rules
    ("folate", dict(analyte="folate", value=5, unit="ng/mL"), None, None, None),
    ("hemoglobin", dict(analyte="hemoglobin", value=12, unit="g/dL"), None, None, None),
]

# Censored results: the most severe category any consistent value could have.
CENSORED_CASES = [
    ("lt_200_pmol", dict(analyte="b12", value=200, comparator="<"), "deficient", False, "B12_DEFICIENT"),
    ("lt_150_pmol", dict(analyte="b12", value=150, comparator="<"), "deficient", False, "B12_DEFICIENT"),
    ("le_150_pmol", dict(analyte="b12", value=150, comparator="<="), "deficient", False, "B12_DEFICIENT"),
    ("lt_1000_pmol", dict(analyte="b12", value=1000, comparator="<"), "deficient", False, "B12_DEFICIENT"),
    ("gt_149_pmol", dict(analyte="b12", value=149, comparator=">"), "deficient", False, "B12_DEFICIENT"),
    ("gt_150_pmol", dict(analyte="b12", value=150, comparator=">"), "borderline", False, "B12_BORDERLINE"),
    ("ge_149_pmol", dict(analyte="b12", value=149, comparator=">="), "deficient", False, "B12_DEFICIENT"),
    ("ge_150_pmol", dict(analyte="b12", value=150, comparator=">="), "borderline", False, "B12_BORDERLINE"),
    ("gt_257_pmol", dict(analyte="b12", value=257, comparator=">"), "borderline", False, "B12_BORDERLINE"),
    ("gt_258_pmol", dict(analyte="b12", value=258, comparator=">"), "normal", False, "B12_NORMAL"),
    ("ge_258_pmol", dict(analyte="b12", value=258, comparator=">="), "borderline", False, "B12_BORDERLINE"),
    ("gt_1476_pmol", dict(analyte="b12", value=1476, comparator=">"), "normal", True, "B12_NORMAL"),
    ("gt_202_pgml", dict(analyte="b12", value=202, unit="pg/mL", comparator=">"), "deficient", False,
     "B12_DEFICIENT"),
    ("ge_203_pgml", dict(analyte="b12", value=203, unit="pg/mL", comparator=">="), "borderline", False,
     "B12_BORDERLINE"),
    ("gt_350_pgml", dict(analyte="b12", value=350, unit="pg/mL", comparator=">"), "normal", False, "B12_NORMAL"),
    ("ge_350_pgml", dict(analyte="b12", value=350, unit="pg/mL", comparator=">="), "borderline", False,
     "B12_BORDERLINE"),
    ("lt_100_pgml", dict(analyte="b12", value=100, unit="pg/mL", comparator="<"), "deficient", False,
     "B12_DEFICIENT"),
    # at target only when every consistent value is above the target
    ("target_gt_300", dict(analyte="b12", value=300, comparator=">"), "normal", True, "B12_NORMAL"),
    ("target_ge_300", dict(analyte="b12", value=300, comparator=">="), "normal", False, "B12_NORMAL"),
    ("target_ge_301", dict(analyte="b12", value=301, comparator=">="), "normal", True, "B12_NORMAL"),
    ("target_gt_400_pgml", dict(analyte="b12", value=400, unit="pg/mL", comparator=">"), "normal", True,
     "B12_NORMAL"),
    # holoTC
    ("holotc_lt_25", dict(analyte="holotc", value=25, comparator="<"), "deficient", None, "HOLOTC_DEFICIENT"),
    ("holotc_gt_24", dict(analyte="holotc", value=24, comparator=">"), "deficient", None, "HOLOTC_DEFICIENT"),
    ("holotc_ge_25", dict(analyte="holotc", value=25, comparator=">="), "indeterminate", None,
     "HOLOTC_INDETERMINATE"),
    ("holotc_ge_70", dict(analyte="holotc", value=70, comparator=">="), "indeterminate", None,
     "HOLOTC_INDETERMINATE"),
    ("holotc_gt_70", dict(analyte="holotc", value=70, comparator=">"), "normal", None, "HOLOTC_NORMAL"),
    ("holotc_gt_128", dict(analyte="holotc", value=128, comparator=">"), "normal", None, "HOLOTC_NORMAL"),
    # MMA: high is bad, so ">x" is elevated; "<x" only when x is above the limit
    ("mma_gt_0_1", dict(analyte="mma", value=0.1, comparator=">"), "elevated", None, "MMA_ELEVATED"),
    ("mma_ge_0_1", dict(analyte="mma", value=0.1, comparator=">="), "elevated", None, "MMA_ELEVATED"),
    ("mma_lt_0_40", dict(analyte="mma", value=0.40, comparator="<"), "normal", None, "MMA_NORMAL"),
    ("mma_le_0_40", dict(analyte="mma", value=0.40, comparator="<="), "normal", None, "MMA_NORMAL"),
    ("mma_lt_0_41", dict(analyte="mma", value=0.41, comparator="<"), "elevated", None, "MMA_ELEVATED"),
    ("mma_lt_0_05", dict(analyte="mma", value=0.05, comparator="<"), "normal", None, "MMA_NORMAL"),
    # homocysteine
    ("hcy_lt_10", dict(analyte="homocysteine", value=10, comparator="<"), "normal", True, "HOMOCYSTEINE_NORMAL"),
    ("hcy_le_10", dict(analyte="homocysteine", value=10, comparator="<="), "above_target", False,
     "HOMOCYSTEINE_ABOVE_TARGET"),
    ("hcy_lt_10_5", dict(analyte="homocysteine", value=10.5, comparator="<"), "above_target", False,
     "HOMOCYSTEINE_ABOVE_TARGET"),
    ("hcy_gt_5", dict(analyte="homocysteine", value=5, comparator=">"), "elevated", False, "HOMOCYSTEINE_ELEVATED"),
]

NICE_CASES = [
    # NICE NG239: deficient < 180 ng/L (133 pmol/L), indeterminate 180-350 ng/L (133-258 pmol/L)
    ("nice_pmol_132", dict(analyte="b12", value=132), "deficient", False, "B12_DEFICIENT"),
    ("nice_pmol_133", dict(analyte="b12", value=133), "borderline", False, "B12_BORDERLINE"),
    ("nice_pmol_149", dict(analyte="b12", value=149), "borderline", False, "B12_BORDERLINE"),
    ("nice_pmol_258", dict(analyte="b12", value=258), "borderline", False, "B12_BORDERLINE"),
    ("nice_pmol_259", dict(analyte="b12", value=259), "normal", False, "B12_NORMAL"),
    ("nice_ngl_179", dict(analyte="b12", value=179, unit="ng/L"), "deficient", False, "B12_DEFICIENT"),
    ("nice_ngl_180", dict(analyte="b12", value=180, unit="ng/L"), "borderline", False, "B12_BORDERLINE"),
    ("nice_ngl_350", dict(analyte="b12", value=350, unit="ng/L"), "borderline", False, "B12_BORDERLINE"),
    ("nice_ngl_351", dict(analyte="b12", value=351, unit="ng/L"), "normal", False, "B12_NORMAL"),
    ("nice_holotc_24", dict(analyte="holotc", value=24), "deficient", None, "HOLOTC_DEFICIENT"),
    ("nice_holotc_25", dict(analyte="holotc", value=25), "indeterminate", None, "HOLOTC_INDETERMINATE"),
    ("nice_holotc_70", dict(analyte="holotc", value=70), "indeterminate", None, "HOLOTC_INDETERMINATE"),
    ("nice_holotc_71", dict(analyte="holotc", value=71), "normal", None, "HOLOTC_NORMAL"),
]

BSH_CASES = [
    # BSH 2014: deficient < 200 ng/L (148 pmol/L); local reference ranges for MMA and homocysteine
    ("bsh_pmol_147", dict(analyte="b12", value=147), "deficient", False, "B12_DEFICIENT"),
    ("bsh_pmol_148", dict(analyte="b12", value=148), "borderline", False, "B12_BORDERLINE"),
    ("bsh_pgml_199", dict(analyte="b12", value=199, unit="pg/mL"), "deficient", False, "B12_DEFICIENT"),
    ("bsh_pgml_200", dict(analyte="b12", value=200, unit="pg/mL"), "borderline", False, "B12_BORDERLINE"),
    ("bsh_pgml_202", dict(analyte="b12", value=202, unit="pg/mL"), "borderline", False, "B12_BORDERLINE"),
    ("bsh_mma_lab", dict(analyte="mma", value=0.38, ref_high_si=0.37), "elevated", None, "MMA_ELEVATED"),
    ("bsh_mma_no_range", dict(analyte="mma", value=0.40), "normal", None, "MMA_NORMAL"),
    ("bsh_hcy_lab_at", dict(analyte="homocysteine", value=12, ref_high_si=12), "above_target", False,
     "HOMOCYSTEINE_ABOVE_TARGET"),
    ("bsh_hcy_lab_above", dict(analyte="homocysteine", value=12.5, ref_high_si=12), "elevated", False,
     "HOMOCYSTEINE_ELEVATED"),
    ("bsh_hcy_no_range", dict(analyte="homocysteine", value=15.1), "elevated", False, "HOMOCYSTEINE_ELEVATED"),
]

PROFILE_CASES = {None: SEED_CASES + CENSORED_CASES, "nice_ng239": NICE_CASES, "bsh_2014": BSH_CASES}


@pytest.fixture(scope="module")
def built():
    """One build per profile, each case a patient of its own."""
    connections = {}
    for profile, cases in PROFILE_CASES.items():
        connections[profile] = build_cases(
            {case_id: (lambda p, kwargs=kwargs: {"labs": [lab(patient=p, **kwargs)]}) for case_id, kwargs, *_ in cases},
            profile=profile,
        )
    yield connections
    for con in connections.values():
        con.close()


def _params():
    for profile, cases in PROFILE_CASES.items():
        for case_id, kwargs, category, at_target, rule_id in cases:
            yield pytest.param(profile, case_id, kwargs, category, at_target, rule_id, id=case_id)


@pytest.mark.parametrize("profile, case_id, kwargs, category, at_target, rule_id", list(_params()))
def test_result_category(built, profile, case_id, kwargs, category, at_target, rule_id):
    row = one(built[profile], "select * from result_classification where patient_id = ?", [case_id])
    assert row is not None
    assert (row["category"], row["at_target"], row["rule_id"]) == (category, at_target, rule_id)
    assert row["censored"] == ("comparator" in kwargs)
    assert row["comparator"] == kwargs.get("comparator")


def test_b12_compared_in_reported_unit_keeps_si_value(built):
    row = one(built[None], "select * from result_classification where patient_id = 'b12_pgml_203'")
    assert row["value_reported"] == 203 and row["unit_reported"] == "pg/mL"
    assert row["value_si"] == pytest.approx(149.77, abs=0.01) and row["unit_si"] == "pmol/L"
    assert (row["compared_value"], row["compared_unit"]) == (203, "pg/mL")


def test_mma_limit_applied_is_recorded(built):
    limits = dict(built[None].execute(
        "select patient_id, upper_limit_applied from result_classification where analyte = 'mma'").fetchall())
    assert limits["mma_040"] == 0.40
    assert limits["mma_lab_050_below"] == 0.50


def test_contract_columns_come_first(built):
    columns = [row[0] for row in built[None].execute("describe result_classification").fetchall()]
    assert columns[:12] == [
        "patient_id", "analyte", "collected_at", "value_si", "unit_si", "comparator", "value_reported",
        "unit_reported", "censored", "category", "at_target", "rule_id",
    ]
