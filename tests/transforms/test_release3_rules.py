"""Release 3 corrections: the dead are in no cohort, reason, flag, worklist or measure as of their death;
MMA_ON_SUPPLEMENT judges only an MMA taken on supplementation; a FHIR coded route matches on any of its terms;
a treated patient with neurological involvement is not told to start B12; MACROCYTOSIS_NOT_TESTED looks back
as far as the status does. Every boundary on both sides."""
from __future__ import annotations

import pytest

from tests.transforms.lake import build_cases, diagnosis, lab, medication, on, patient, rows

IM_CODED = {"drug": "hydroxocobalamin 1 mg/mL injection", "atc_code": "B03BA03", "route": "Intramuscular route",
            "dose": "1 mg"}
NEURO_ADVICE = "seek urgent neurology and haematology advice"


def patient_rows(*labs, diagnoses=(), medications=(), died=None, deceased=None):
    """A registered patient with these labs, diagnoses and medications (dicts of arguments); `died`: the day of
    death relative to as-of; `deceased`: the registry's deceased flag (FHIR deceasedBoolean) when given."""
    def make_rows(p):
        registry = patient(p)
        registry["death_date"] = None if died is None else on(died)
        registry["deceased"] = deceased if deceased is not None else died is not None
        return {"labs": [lab(patient=p, **kwargs) for kwargs in labs],
                "patients": [registry],
                "diagnoses": [diagnosis(patient=p, **kwargs) for kwargs in diagnoses],
                "medications": [medication(patient=p, **kwargs) for kwargs in medications]}
    return make_rows


def deficient_untreated(**more):
    """Deficient (b12 100 pmol/L 100 days ago), untreated, never an IF antibody: a cohort row, two reasons, a
    worklist row and a FOLATE_BEFORE_B12 flag (folic acid 50 days ago)."""
    folic = {"drug": "folic acid 5 mg tablets", "atc_code": "B03BB01", "route": "oral", "dose": "5 mg"}
    return patient_rows(dict(value=100, day=-100), medications=[dict(folic, start=-50)], **more)


CASES = {
    # the dead: death on or before as-of leaves every list; a death without a date counts on any as-of
    "died_on_as_of": deficient_untreated(died=0),
    "died_day_after_as_of": deficient_untreated(died=1),
    "died_without_date": deficient_untreated(deceased=True),
    "alive": deficient_untreated(),
    # MMA_ON_SUPPLEMENT: only an MMA collected while a B12 record was active
    "mos_mma_before_supplement": patient_rows(dict(value=900, day=-200), dict(analyte="mma", value=0.8, day=-41),
                                              medications=[dict(start=-40)]),
    "mos_mma_on_start_day": patient_rows(dict(value=900, day=-200), dict(analyte="mma", value=0.8, day=-40),
                                         medications=[dict(start=-40)]),
    "mos_mma_on_end_day": patient_rows(dict(value=900, day=-200), dict(analyte="mma", value=0.8, day=-60),
                                       medications=[dict(start=-400, end=-60), dict(start=-30)]),
    "mos_mma_day_before_end": patient_rows(dict(value=900, day=-200), dict(analyte="mma", value=0.8, day=-61),
                                           medications=[dict(start=-400, end=-60), dict(start=-30)]),
    "mos_later_mma_before_supplement_ignored": patient_rows(
        dict(value=900, day=-200), dict(analyte="mma", value=0.8, day=-300), dict(analyte="mma", value=0.9, day=-20),
        medications=[dict(start=-400, end=-100), dict(start=-10)]),
    # a FHIR coded route: matched on its code as well as its display
    "route_coded_im": patient_rows(dict(value=500, day=-10),
                                   medications=[dict(IM_CODED, route_terms=["Intramuscular route", "78421000"])]),
    "route_display_only": patient_rows(dict(value=500, day=-10), medications=[dict(IM_CODED)]),
    # neurological involvement: treated patients are told the B12 start, untreated ones to start B12
    "neuro_treated": patient_rows(dict(value=100, day=-100), diagnoses=[dict(code="G62.9", day=-200)],
                                  medications=[dict(start=-90)]),
    "neuro_untreated": patient_rows(dict(value=100, day=-100), diagnoses=[dict(code="G62.9", day=-200)]),
    # MACROCYTOSIS_NOT_TESTED: MCVs within the lookback (730 days) only
    "mcv_730_days_ago": patient_rows(dict(analyte="mcv", value=105, day=-730)),
    "mcv_731_days_ago": patient_rows(dict(analyte="mcv", value=105, day=-731)),
}


@pytest.fixture(scope="module")
def built():
    con = build_cases(CASES)
    yield con
    con.close()


def _ids(con, sql, params=()):
    return {row["patient_id"] for row in rows(con, sql, list(params))}


DEAD = {"died_on_as_of", "died_without_date"}


def test_the_dead_keep_their_status_row_with_the_death(built):
    status = {row["patient_id"]: row for row in rows(built, "select * from patient_status")}
    assert (status["died_on_as_of"]["deceased"], status["died_on_as_of"]["deceased_on"]) == (True, on(0))
    assert (status["died_without_date"]["deceased"], status["died_without_date"]["deceased_on"]) == (True, None)
    assert (status["died_day_after_as_of"]["deceased"], status["died_day_after_as_of"]["deceased_on"]) == (False, None)
    assert status["alive"]["deceased"] is False
    assert {status[p]["status"] for p in DEAD} == {"deficient"}  # the status is kept, the lists leave them out


@pytest.mark.parametrize("mart", ["cohort_deficient", "cohort_under_monitored", "patient_flags", "worklist",
                                  "worklist_deficient", "worklist_under_monitored", "worklist_flagged"])
def test_the_dead_are_on_no_list(built, mart):
    listed = _ids(built, f"select patient_id from {mart}")
    assert not listed & DEAD
    assert {"alive", "died_day_after_as_of"} <= listed


def test_the_dead_are_in_no_measure(built):
    alive = len(rows(built, "select 1 from patient_status where not deceased"))
    counts = {row["metric"]: row["patients"] for row in rows(
        built, "select metric, patients from cohort_counts where practice is null and as_of = ?", [on(0)])}
    assert counts["patients"] == alive == len(CASES) - len(DEAD)
    deficient_alive = len(rows(built, "select 1 from patient_status where status = 'deficient' and not deceased"))
    assert counts["deficient"] == deficient_alive


def test_the_dead_count_while_alive():
    con = build_cases({p: CASES[p] for p in ("died_on_as_of", "alive")}, as_of=on(-1))
    try:
        assert _ids(con, "select patient_id from cohort_deficient") == {"died_on_as_of", "alive"}
        assert one_value(con, "select deceased from patient_status where patient_id = 'died_on_as_of'") is False
    finally:
        con.close()


def one_value(con, sql):
    [row] = con.execute(sql).fetchall()
    return row[0]


@pytest.mark.parametrize("case_id, expected", [
    ("mos_mma_before_supplement", "NORMAL"),
    ("mos_mma_on_start_day", "MMA_ON_SUPPLEMENT"),
    ("mos_mma_on_end_day", "NORMAL"),
    ("mos_mma_day_before_end", "MMA_ON_SUPPLEMENT"),
    ("mos_later_mma_before_supplement_ignored", "MMA_ON_SUPPLEMENT"),
])
def test_mma_on_supplement_judges_only_an_mma_taken_on_supplementation(built, case_id, expected):
    [row] = rows(built, "select rule_id, index_date, mma_date from patient_status where patient_id = ?", [case_id])
    assert row["rule_id"] == expected
    if expected == "MMA_ON_SUPPLEMENT":
        assert row["index_date"] == row["mma_date"]
        [cohort] = rows(built, "select treatment from cohort_deficient where patient_id = ?", [case_id])
        assert cohort["treatment"] == "treated"


def test_an_mma_taken_between_two_b12_records_is_not_the_deciding_one(built):
    # the MMA 20 days ago falls between a record that ended 100 days ago and one that started 10 days ago: the
    # one taken 300 days ago, on supplementation, decides
    [row] = rows(built, "select mma_date from patient_status where patient_id = 'mos_later_mma_before_supplement_ignored'")
    assert row["mma_date"] == on(-300)


def test_a_coded_route_is_matched_on_its_code(built):
    flagged = _ids(built, "select patient_id from patient_flags where flag = 'B12_INJECTIONS_WITHOUT_DEFICIENCY'")
    assert "route_coded_im" in flagged
    assert "route_display_only" not in flagged  # "Intramuscular route" alone is no whole value of the set


def test_a_treated_patient_with_neurological_involvement_is_told_the_b12_start(built):
    actions = {row["patient_id"]: row["next_action"] for row in rows(
        built, "select patient_id, next_action from cohort_deficient where patient_id like 'neuro_%'")}
    assert actions == {"neuro_treated": f"{NEURO_ADVICE}; B12 started {on(-90).isoformat()}",
                       "neuro_untreated": f"{NEURO_ADVICE}; start B12 now"}
    for mart in ("worklist_deficient", "worklist"):
        found = {row["patient_id"]: row["next_action"] for row in rows(
            built, f"select patient_id, next_action from {mart} where patient_id like 'neuro_%'"
                   + (" and item = 'DEFICIENT'" if mart == "worklist" else ""))}
        assert found == actions, mart


def test_macrocytosis_looks_back_as_far_as_the_status(built):
    flagged = _ids(built, "select patient_id from patient_flags where flag = 'MACROCYTOSIS_NOT_TESTED'")
    assert "mcv_730_days_ago" in flagged
    assert "mcv_731_days_ago" not in flagged
