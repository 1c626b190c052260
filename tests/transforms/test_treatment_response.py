"""Treatment response (clinical rules release 3, docs/models.md "Treatment response"): who is in it (a treatment
that answered a documented deficiency, alive), the baseline window, the route class, every window edge on both
sides, the window's first b12 result, the measure treated_at_target_3_6m and the summary's Wilson intervals."""
from __future__ import annotations

import math

import pytest

from tests.transforms.lake import build_cases, lab, medication, on, patient, rows

ORAL = {"drug": "cyanocobalamin 1000 microgram tablets", "atc_code": "B03BA01", "route": "oral", "dose": "1000 ug"}
IM = {"drug": "hydroxocobalamin 1 mg/mL injection", "atc_code": "B03BA03", "route": "IM", "dose": "1 mg"}
NO_ROUTE = {"drug": "cyanocobalamin", "atc_code": "B03BA01", "route": None, "dose": None}

# Treatment starts S = as-of minus START days: every window of a patient started 500 days ago is closed.
START = -500


def treated(*labs, start=START, routes=(IM,), died=None, practice="Practice A"):
    """A registered patient whose B12 records (one per route in `routes`) start on `start`, with these labs
    (dicts of lab() arguments; `after` places a lab `after` days after the start instead of `day`)."""
    def make_rows(p):
        registry = patient(p, practice=practice)
        registry["death_date"] = None if died is None else on(died)
        registry["deceased"] = died is not None
        lab_rows = []
        for kwargs in labs:
            kwargs = dict(kwargs)
            if "after" in kwargs:
                kwargs["day"] = start + kwargs.pop("after")
            lab_rows.append(lab(patient=p, **kwargs))
        return {"labs": lab_rows, "patients": [registry], "diagnoses": [],
                "medications": [medication(route_kind, patient=p, start=start) for route_kind in routes]}
    return make_rows


def deficient_at(after=-10, value=100, analyte="b12", **more):
    return dict(analyte=analyte, value=value, after=after, **more)


def b12_at(after, value=400, **more):
    return dict(analyte="b12", value=value, after=after, **more)


CASES = {
    # who: the baseline window S - 90 to S
    "baseline_s_minus_90": treated(deficient_at(-90)),
    "baseline_s_minus_91": treated(deficient_at(-91)),
    "baseline_on_s": treated(deficient_at(0)),
    "baseline_s_plus_1": treated(deficient_at(1)),
    "baseline_borderline_b12": treated(deficient_at(-5, value=200)),
    "baseline_indeterminate_holotc": treated(deficient_at(-5, value=50, analyte="holotc")),
    "baseline_elevated_mma": treated(deficient_at(-5, value=0.8, analyte="mma")),
    "baseline_normal_mma_only": treated(deficient_at(-5, value=0.2, analyte="mma")),
    "treated_without_deficiency": treated(dict(analyte="b12", value=500, after=-5)),
    # the latest baseline result wins; on the same collection time the more severe
    "baseline_latest": treated(deficient_at(-30, value=100), deficient_at(-3, value=0.9, analyte="mma")),
    "baseline_tie_severe": treated(deficient_at(-3, value=200), deficient_at(-3, value=20, analyte="holotc")),
    "died": treated(deficient_at(-5), died=-1),
    "died_after_as_of": treated(deficient_at(-5), died=1),
    # route class of the records starting S
    "route_oral": treated(deficient_at(-5), routes=(ORAL,)),
    "route_unknown": treated(deficient_at(-5), routes=(NO_ROUTE,)),
    "route_tie_im_wins": treated(deficient_at(-5), routes=(ORAL, IM)),
    # window edges, both sides: 1m 21..59, 3-6m 90..183, 12m 305..425
    "edge_20": treated(deficient_at(-5), b12_at(20)),
    "edge_21": treated(deficient_at(-5), b12_at(21)),
    "edge_59": treated(deficient_at(-5), b12_at(59)),
    "edge_60": treated(deficient_at(-5), b12_at(60)),
    "edge_89": treated(deficient_at(-5), b12_at(89)),
    "edge_90": treated(deficient_at(-5), b12_at(90)),
    "edge_183": treated(deficient_at(-5), b12_at(183)),
    "edge_184": treated(deficient_at(-5), b12_at(184)),
    "edge_304": treated(deficient_at(-5), b12_at(304)),
    "edge_305": treated(deficient_at(-5), b12_at(305)),
    "edge_425": treated(deficient_at(-5), b12_at(425)),
    "edge_426": treated(deficient_at(-5), b12_at(426)),
    # the first b12 result of the window counts, holotc does not; targets compared in the reported unit
    "first_result_counts": treated(deficient_at(-5), b12_at(100, value=250), b12_at(150, value=900),
                                   dict(analyte="holotc", value=90, after=95)),
    "target_pg_ml_400": treated(deficient_at(-5), b12_at(100, value=400, unit="pg/mL")),
    "target_pg_ml_401": treated(deficient_at(-5), b12_at(100, value=401, unit="pg/mL")),
    "deficient_at_recheck": treated(deficient_at(-5), b12_at(100, value=120)),
    "censored_recheck": treated(deficient_at(-5), b12_at(100, value=1476, comparator=">")),
}


@pytest.fixture(scope="module")
def built():
    con = build_cases(CASES)
    yield con
    con.close()


def windows_of(con, patient_id):
    return {row["window"]: row for row in rows(
        con, 'select * from treatment_response where patient_id = ?', [patient_id])}


def ids(con):
    return {row["patient_id"] for row in rows(con, "select distinct patient_id from treatment_response")}


@pytest.mark.parametrize("case_id, included", [
    ("baseline_s_minus_90", True), ("baseline_s_minus_91", False),
    ("baseline_on_s", True), ("baseline_s_plus_1", False),
    ("baseline_borderline_b12", True), ("baseline_indeterminate_holotc", True), ("baseline_elevated_mma", True),
    ("baseline_normal_mma_only", False), ("treated_without_deficiency", False),
    ("died", False), ("died_after_as_of", True),
])
def test_who_is_in_it(built, case_id, included):
    assert (case_id in ids(built)) is included


def test_the_baseline_is_the_latest_result_ties_to_the_more_severe(built):
    latest = windows_of(built, "baseline_latest")["1m"]
    assert (latest["baseline_analyte"], latest["baseline_date"]) == ("mma", on(START - 3))
    assert latest["baseline_value_si"] == pytest.approx(0.9)
    tie = windows_of(built, "baseline_tie_severe")["1m"]
    assert tie["baseline_analyte"] == "holotc"  # deficient holotc beats a borderline b12 at the same time


@pytest.mark.parametrize("case_id, route_class", [
    ("baseline_on_s", "intramuscular"), ("route_oral", "oral"), ("route_unknown", "unknown"),
    ("route_tie_im_wins", "intramuscular"),
])
def test_route_class(built, case_id, route_class):
    assert {row["route_class"] for row in windows_of(built, case_id).values()} == {route_class}


@pytest.mark.parametrize("case_id, window", [
    ("edge_20", None), ("edge_21", "1m"), ("edge_59", "1m"), ("edge_60", None),
    ("edge_89", None), ("edge_90", "3-6m"), ("edge_183", "3-6m"), ("edge_184", None),
    ("edge_304", None), ("edge_305", "12m"), ("edge_425", "12m"), ("edge_426", None),
])
def test_window_edges(built, case_id, window):
    found = {name for name, row in windows_of(built, case_id).items() if row["result_date"] is not None}
    assert found == ({window} if window else set())


def test_every_window_has_its_bounds(built):
    found = windows_of(built, "edge_90")
    s = on(START)
    assert {name: (row["window_start"], row["window_end"], row["window_closed"]) for name, row in found.items()} == {
        "1m": (on(21, s), on(59, s), True), "3-6m": (on(90, s), on(183, s), True),
        "12m": (on(305, s), on(425, s), True)}
    assert found["3-6m"]["not_deficient"] is True and found["3-6m"]["at_target"] is True
    assert found["1m"]["not_deficient"] is None and found["1m"]["at_target"] is None


def test_the_first_b12_result_of_the_window_counts(built):
    row = windows_of(built, "first_result_counts")["3-6m"]
    assert (row["result_date"], row["result_value_si"], row["result_value_raw"], row["result_unit_raw"]) == (
        on(START + 100), 250, "250", "pmol/L")
    assert (row["not_deficient"], row["at_target"]) == (True, False)


@pytest.mark.parametrize("case_id, not_deficient, at_target", [
    ("target_pg_ml_400", True, False), ("target_pg_ml_401", True, True),
    ("deficient_at_recheck", False, False), ("censored_recheck", True, True),
])
def test_not_deficient_and_at_target(built, case_id, not_deficient, at_target):
    row = windows_of(built, case_id)["3-6m"]
    assert (row["not_deficient"], row["at_target"]) == (not_deficient, at_target)


def test_windows_begin_on_their_first_day_and_are_cut_at_as_of():
    # S 100 days before as-of: 1m closed, 3-6m begun and open (cut at as-of), 12m not begun
    cases = {"open": treated(deficient_at(-5), start=-100), "begins_today": treated(deficient_at(-5), start=-90),
             "not_yet": treated(deficient_at(-5), start=-89)}
    con = build_cases(cases)
    try:
        open_windows = windows_of(con, "open")
        assert set(open_windows) == {"1m", "3-6m"}
        assert (open_windows["3-6m"]["window_end"], open_windows["3-6m"]["window_closed"]) == (on(0), False)
        assert open_windows["1m"]["window_closed"] is True
        assert set(windows_of(con, "begins_today")) == {"1m", "3-6m"}
        assert windows_of(con, "begins_today")["3-6m"]["window_start"] == on(0)
        assert set(windows_of(con, "not_yet")) == {"1m"}
    finally:
        con.close()


def test_the_measure_counts_3_6m_windows_with_a_result(built):
    [measure] = rows(built, "select numerator, denominator from practice_measures "
                            "where measure = 'treated_at_target_3_6m' and practice is null and as_of = ?", [on(0)])
    counted = rows(built, """select count(*) filter (where at_target) as numerator,
                                    count(*) filter (where result_date is not null) as denominator
                             from treatment_response where "window" = '3-6m'""")[0]
    assert measure == counted
    assert measure["denominator"] > measure["numerator"] > 0


def wilson(successes, n, z=1.959964):
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def test_the_summary_counts_and_its_wilson_intervals(built):
    responses = rows(built, 'select * from treatment_response')
    summary = {(row["practice"], row["window"], row["route_class"]): row
               for row in rows(built, "select * from treatment_response_summary")}
    assert len(summary) == 2 * 3 * 4  # whole population and Practice A, three windows, four route classes
    for window in ("1m", "3-6m", "12m"):
        mine = [row for row in responses if row["window"] == window]
        with_result = [row for row in mine if row["result_date"] is not None]
        not_deficient = sum(bool(row["not_deficient"]) for row in with_result)
        closed = [row for row in mine if row["window_closed"]]
        line = summary[(None, window, "all")]
        assert (line["windows_begun"], line["with_result"], line["not_deficient"], line["closed"],
                line["closed_with_result"]) == (len(mine), len(with_result), not_deficient, len(closed),
                                                sum(row["result_date"] is not None for row in closed))
        assert (line["not_deficient_lower_95"], line["not_deficient_upper_95"]) == pytest.approx(
            wilson(not_deficient, len(with_result)))
        assert summary[("Practice A", window, "all")]["with_result"] == len(with_result)
        by_route = sum(summary[(None, window, route)]["windows_begun"] for route in ("intramuscular", "oral", "unknown"))
        assert by_route == len(mine)
    assert summary[(None, "1m", "oral")]["windows_begun"] == 1
    assert summary[(None, "1m", "oral")]["not_deficient_share"] is None  # no result: no share, no interval


def test_wilson_interval_by_hand():
    # 8 of 10: the textbook Wilson interval 0.490 to 0.943
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_the_seed_figure_is_on_the_oral_1m_rows_only(built):
    found = {(row["practice"], row["window"], row["route_class"]): row["reference_not_deficient_share"]
             for row in rows(built, "select * from treatment_response_summary")}
    assert {key for key, value in found.items() if value is not None} == {(None, "1m", "oral"),
                                                                          ("Practice A", "1m", "oral")}
    assert found[(None, "1m", "oral")] == pytest.approx(0.885)
