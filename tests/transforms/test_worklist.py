"""The worklist mart: one row per patient and item (reason, flag, DEFICIENT, BORDERLINE_NEEDS_MMA), one urgency
order across them from the seeds, the next action of each, since when each gap is open (open_since, with the
reasons' own dates from int_under_monitored), and the practice fallback."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers.models import compiled_models
from tests.transforms.lake import (FOLIC_ACID, build, build_cases, diagnosis, lab, medication, on, patient, rows)

# The urgency order of the seed vocabulary (docs/clinical-decisions.md): 1 = most urgent.
ORDER = [
    ("DEFICIENT", "neurological_involvement"),
    ("FOLATE_BEFORE_B12", None),
    ("DEFICIENT", "untreated"),
    # the reasons, by reason_codes.urgency
    ("PA_NOT_ON_TREATMENT", None),
    ("TREATED_BELOW_TARGET", None),
    ("TREATED_MARKERS_NOT_NORMAL", None),
    ("DEFICIENT_NO_IF_ANTIBODY", None),
    ("DEFICIENT_NO_BLOOD_COUNT", None),
    ("PA_NO_POST_TREATMENT_RECHECK", None),
    ("PA_OVERDUE_ANNUAL_B12", None),
    ("BORDERLINE_NO_MMA", None),
    ("SUPPLEMENTED_NO_MMA", None),
    # the other flags, by flag_codes.urgency
    ("MACROCYTOSIS_NOT_TESTED", None),
    ("METFORMIN_B12_NOT_TESTED", None),
    ("MMA_RENAL_CAVEAT", None),
    ("B12_INJECTIONS_WITHOUT_DEFICIENCY", None),
    ("DEFICIENT", "treated"),
    ("BORDERLINE_NEEDS_MMA", None),
]
REASONS = [item for item, _ in ORDER[3:12]]
FLAGS = ["FOLATE_BEFORE_B12", *(item for item, _ in ORDER[12:16])]
COMPILED = {model.name: model.compiled for model in compiled_models()}


# --- the urgency order and next actions, on hand-made mart rows ---------------------------------------------


def rebuild_worklist(con) -> list[dict]:
    """The worklist built again from its compiled SQL, after the urgency order it reads (worklist_items), so that
    a test's edits of the marts and the vocabulary reach it."""
    for model in ("worklist_items", "worklist"):
        con.execute(f"create or replace table {model} as\n{COMPILED[model]}")
    return rows(con, "select * from worklist")


@pytest.fixture
def marts():
    """Every model built on an empty lake; the tests insert hand-made rows into the marts the worklist reads
    and build the worklist again from its compiled SQL."""
    con = build()
    yield con
    con.close()


def add_status(con, patient_id, practice="Practice A", index_date=dt.date(2025, 1, 1), status="normal"):
    con.execute("insert into patient_status by name select $p as patient_id, $practice as practice, $s as status, "
                "'X' as rule_id, $d as index_date, false as has_pa, false as on_b12",
                {"p": patient_id, "practice": practice, "s": status, "d": index_date})


def add_deficient(con, patient_id, treatment, neuro=False, treatment_start=None, on_b12=False):
    add_status(con, patient_id, status="deficient")
    con.execute("""insert into cohort_deficient by name select $p as patient_id, 'B12_DEFICIENT' as rule_id,
        'b12' as index_analyte, 100.0 as index_value, 'pmol/L' as index_unit, date '2025-01-01' as index_date,
        $t as treatment, $neuro as neuro_involvement, case when $neuro then 'G62.9 (ICD-10) on 2024-12-01' end
        as neuro_detail, false as has_pa, $on_b12 as on_b12, $start::date as treatment_start,
        'Practice A' as practice,
        situation, (select next_action from deficient_actions where deficient_actions.situation = situations.situation)
        as next_action
        from (select case when $neuro then 'neurological_involvement' else $t end as situation) as situations""",
                {"p": patient_id, "t": treatment, "neuro": neuro, "start": treatment_start, "on_b12": on_b12})


def add_everything(con) -> None:
    """One patient with every reason and every flag; three deficient patients, one per situation; one borderline
    patient needing MMA and one whose MMA was normal."""
    add_status(con, "ALL")
    for reason in REASONS:
        con.execute("insert into cohort_under_monitored by name select 'ALL' as patient_id, $r as reason, "
                    "'detail of ' || $r as detail, 'Practice A' as practice, date '2025-02-01' as open_since",
                    {"r": reason})
    for flag in FLAGS:
        con.execute("insert into patient_flags by name select 'ALL' as patient_id, $f as flag, "
                    "date '2025-03-01' as flag_date, 'detail of ' || $f as detail, 'Practice A' as practice",
                    {"f": flag})
    add_deficient(con, "D-neuro", "untreated", neuro=True)
    add_deficient(con, "D-untreated", "untreated")
    add_deficient(con, "D-treated", "treated")
    for patient_id, mma_status in (("B-needed", "needed"), ("B-normal", "normal")):
        add_status(con, patient_id, status=f"borderline_{'needs_mma' if mma_status == 'needed' else 'mma_normal'}")
        con.execute("""insert into cohort_borderline by name select $p as patient_id, $m as mma_status,
            'BORDERLINE_NEEDS_MMA' as rule_id, 'b12' as index_analyte, 'borderline' as index_category,
            200.0 as index_value, 'pmol/L' as index_unit, date '2024-11-01' as index_date, false as has_pa,
            false as on_b12""", {"p": patient_id, "m": mma_status})


def key(row: dict) -> tuple[str, str | None]:
    if row["item"] == "DEFICIENT":
        return ("DEFICIENT", row["patient_id"].removeprefix("D-").replace("neuro", "neurological_involvement"))
    return (row["item"], None)


def test_every_item_has_its_place_in_one_urgency_order(marts):
    add_everything(marts)
    found = sorted(rebuild_worklist(marts), key=lambda row: row["urgency"])
    assert [key(row) for row in found] == ORDER
    assert [row["urgency"] for row in found] == list(range(1, len(ORDER) + 1))
    assert not any(row["patient_id"] == "B-normal" for row in found)  # MMA normal: nothing to do


def test_next_actions_come_from_the_vocabulary_by_situation(marts):
    add_everything(marts)
    actions = {key(row): row["next_action"] for row in rebuild_worklist(marts)}
    seeds = dict(marts.execute("select reason, next_action from reason_codes union all "
                               "select flag, next_action from flag_codes").fetchall())
    assert actions[("DEFICIENT", "neurological_involvement")] == (
        "seek urgent neurology and haematology advice; start B12 now")
    assert actions[("DEFICIENT", "untreated")] == "start B12 treatment"
    assert actions[("DEFICIENT", "treated")] == "check treatment and work-up"
    assert actions[("BORDERLINE_NEEDS_MMA", None)] == "order MMA"
    assert actions[("PA_NOT_ON_TREATMENT", None)] == "restart maintenance B12 or record why stopped"
    assert actions[("FOLATE_BEFORE_B12", None)] == "start B12 now and review folic acid"
    for code in [*REASONS, *FLAGS]:
        assert actions[(code, None)] == seeds[code]


def test_the_order_follows_the_vocabulary_tables(marts):
    """A reason made the most urgent in reason_codes moves to the head of the reasons' tier (after the first three
    items), and a new flag code gets a place among the other flags: the order is derived, never typed."""
    add_everything(marts)
    marts.execute("update reason_codes set urgency = urgency + 100")
    marts.execute("update reason_codes set urgency = 0 where reason = 'SUPPLEMENTED_NO_MMA'")
    marts.execute("insert into flag_codes by name select 'NEW_FLAG' as flag, 6 as urgency, 6 as display_order, "
                  "'do the new thing' as next_action")
    marts.execute("insert into patient_flags by name select 'ALL' as patient_id, 'NEW_FLAG' as flag, "
                  "date '2025-03-01' as flag_date, 'new' as detail")
    urgency = {key(row): row["urgency"] for row in rebuild_worklist(marts)}
    assert urgency[("SUPPLEMENTED_NO_MMA", None)] == 4
    assert urgency[("PA_NOT_ON_TREATMENT", None)] == 5
    assert urgency[("B12_INJECTIONS_WITHOUT_DEFICIENCY", None)] == 16 and urgency[("NEW_FLAG", None)] == 17
    assert urgency[("DEFICIENT", "treated")] == 18 and urgency[("BORDERLINE_NEEDS_MMA", None)] == 19


def test_open_since_by_kind_and_the_index_date_when_a_reason_has_none(marts):
    add_everything(marts)
    marts.execute("update cohort_under_monitored set open_since = null where reason = 'PA_OVERDUE_ANNUAL_B12'")
    since = {key(row): row["open_since"] for row in rebuild_worklist(marts)}
    assert since[("PA_NOT_ON_TREATMENT", None)] == dt.date(2025, 2, 1)        # the reason's own
    assert since[("PA_OVERDUE_ANNUAL_B12", None)] == dt.date(2025, 1, 1)      # none: the status's index date
    assert since[("MACROCYTOSIS_NOT_TESTED", None)] == dt.date(2025, 3, 1)    # flag_date
    assert since[("DEFICIENT", "treated")] == dt.date(2025, 1, 1)             # index date
    assert since[("BORDERLINE_NEEDS_MMA", None)] == dt.date(2024, 11, 1)      # index date


def test_practice_is_trimmed_with_a_fallback(marts):
    for patient_id, practice in (("P-blank", "   "), ("P-null", None), ("P-spaced", "  Hillview ")):
        add_status(marts, patient_id, practice=practice)
        marts.execute("insert into cohort_under_monitored by name select $p as patient_id, "
                      "'PA_OVERDUE_ANNUAL_B12' as reason, 'd' as detail", {"p": patient_id})
    practices = {row["patient_id"]: row["practice"] for row in rebuild_worklist(marts)}
    assert practices == {"P-blank": "(no practice)", "P-null": "(no practice)", "P-spaced": "Hillview"}



def rebuild_cohort_worklists(con) -> dict[str, list[dict]]:
    """The cohorts' worklist marts built again from their compiled SQL: mart -> its rows in position order."""
    found = {}
    for mart in ("worklist_deficient", "worklist_borderline", "worklist_under_monitored", "worklist_flagged"):
        con.execute(f"create or replace table {mart} as\n{COMPILED[mart]}")
        found[mart] = rows(con, f"select * from {mart} order by position")
    return found


def test_the_cohort_worklists_number_one_row_per_patient_most_urgent_first(marts):
    add_everything(marts)
    add_status(marts, "U-lapsed", index_date=dt.date(2024, 1, 1))
    marts.execute("insert into cohort_under_monitored by name select 'U-lapsed' as patient_id, reason, "
                  "'lapsed' as detail from (values ('PA_NOT_ON_TREATMENT'), ('PA_OVERDUE_ANNUAL_B12')) as r(reason)")
    marts.execute("insert into cohort_under_monitored by name select 'D-neuro' as patient_id, "
                  "'SUPPLEMENTED_NO_MMA' as reason, 'supplemented' as detail")
    found = rebuild_cohort_worklists(marts)
    for mart, mart_rows in found.items():
        assert [row["position"] for row in mart_rows] == list(range(1, len(mart_rows) + 1)), mart
    deficient = found["worklist_deficient"]
    assert [row["patient_id"] for row in deficient] == ["D-neuro", "D-untreated", "D-treated"]
    assert [row["next_action"] for row in deficient] == [
        "seek urgent neurology and haematology advice; start B12 now", "start B12 treatment",
        "check treatment and work-up"]
    assert deficient[0]["index_value"] == "100" and deficient[0]["index_value_pmol_l"] is None  # no SI unit given
    assert [row["patient_id"] for row in found["worklist_borderline"]] == ["B-needed", "B-normal"]
    under_monitored = {row["patient_id"]: row for row in found["worklist_under_monitored"]}
    # neurological involvement first, whatever its reason; then priority (both 1 here), then the older index date
    assert list(under_monitored) == ["D-neuro", "U-lapsed", "ALL"]
    assert under_monitored["D-neuro"]["neuro_involvement"] and not under_monitored["ALL"]["neuro_involvement"]
    assert under_monitored["U-lapsed"]["reasons"] == "PA_NOT_ON_TREATMENT; PA_OVERDUE_ANNUAL_B12"
    assert under_monitored["U-lapsed"]["details"] == "PA_NOT_ON_TREATMENT: lapsed | PA_OVERDUE_ANNUAL_B12: lapsed"
    assert under_monitored["ALL"]["reasons"].split("; ") == REASONS and under_monitored["ALL"]["priority"] == 1
    assert under_monitored["ALL"]["next_action"].split("; ")[0] == "restart maintenance B12 or record why stopped"
    [flagged] = found["worklist_flagged"]
    assert flagged["flags"].split("; ")[0] == "FOLATE_BEFORE_B12" and flagged["first_flag_date"] == dt.date(2025, 3, 1)
    assert flagged["details"].startswith("FOLATE_BEFORE_B12 (2025-03-01): detail of FOLATE_BEFORE_B12 | ")

# --- the worklist of a real lake: rows, details and dates from the models -----------------------------------


def lake_cases():
    return {
        # deficient, untreated, with a neurological diagnosis: seek urgent advice
        "neuro": lambda p: {"labs": [lab("b12", 90, patient=p, day=-40), lab("hemoglobin", 120, patient=p, day=-40)],
                            "diagnoses": [diagnosis(code="G62.9", patient=p, day=-60)],
                            "patients": [patient(p, practice="Riverside")]},
        # deficient, then folic acid before any B12
        "folic": lambda p: {"labs": [lab("b12", 100, patient=p, day=-100), lab("hemoglobin", 120, patient=p, day=-100),
                                     lab("if_antibody", text="negative", patient=p, day=-100)],
                            "medications": [medication(FOLIC_ACID, patient=p, start=-50)],
                            "patients": [patient(p, practice="Riverside")]},
        # deficient and treated on the index date
        "treated": lambda p: {"labs": [lab("b12", 120, patient=p, day=-20)],
                              "medications": [medication(patient=p, start=-20)],
                              "patients": [patient(p, practice="  ")]},
        # borderline, no MMA for 100 days: BORDERLINE_NEEDS_MMA and BORDERLINE_NO_MMA
        "borderline": lambda p: {"labs": [lab("b12", 200, patient=p, day=-100)]},
    }


@pytest.fixture(scope="module")
def lake_worklist():
    con = build_cases(lake_cases())
    yield con
    con.close()


def test_an_untreated_patient_with_an_old_course_says_it_is_not_active(marts):
    add_deficient(marts, "D-old-course", "untreated", treatment_start="2019-03-01")
    add_deficient(marts, "D-late-course", "untreated", treatment_start="2025-06-01", on_b12=True)
    add_deficient(marts, "D-never", "untreated")
    add_deficient(marts, "D-treated", "treated", treatment_start="2024-12-20", on_b12=True)
    (as_of,), = marts.execute("select as_of from rules_settings").fetchall()
    (within,), = marts.execute("select deficient_treated_within_days from rules_settings").fetchall()
    details = {row["patient_id"]: row["detail"] for row in rebuild_worklist(marts) if row["item"] == "DEFICIENT"}
    on_index = "B12_DEFICIENT: b12 100 pmol/L on 2025-01-01; "
    assert details["D-old-course"] == (f"{on_index}untreated (previous course started 2019-03-01, "
                                       f"not active on {as_of.isoformat()})")
    assert details["D-late-course"] == (f"{on_index}untreated (B12 first started 2025-06-01, none active on the "
                                        f"result's date or started within {within} days after)")
    assert details["D-never"] == f"{on_index}untreated"
    assert details["D-treated"] == f"{on_index}treated"


def test_one_row_per_patient_and_item_from_the_cohorts(lake_worklist):
    found = rows(lake_worklist, "select patient_id, item, urgency, next_action from worklist")
    assert len({(r["patient_id"], r["item"]) for r in found}) == len(found)
    by_patient = {}
    for row in found:
        by_patient.setdefault(row["patient_id"], {})[row["item"]] = (row["urgency"], row["next_action"])
    assert by_patient["neuro"] == {"DEFICIENT": (1, "seek urgent neurology and haematology advice; start B12 now"),
                                   "DEFICIENT_NO_IF_ANTIBODY": (7, "order intrinsic factor antibody")}
    assert by_patient["folic"] == {"FOLATE_BEFORE_B12": (2, "start B12 now and review folic acid"),
                                   "DEFICIENT": (3, "start B12 treatment")}
    assert by_patient["treated"]["DEFICIENT"] == (17, "check treatment and work-up")
    assert by_patient["borderline"] == {"BORDERLINE_NO_MMA": (11, "order MMA"), "BORDERLINE_NEEDS_MMA": (18, "order MMA")}


def test_details_dates_and_practices_from_the_cohorts(lake_worklist):
    found = {(r["patient_id"], r["item"]): r for r in rows(lake_worklist, "select * from worklist")}
    neuro = found[("neuro", "DEFICIENT")]
    assert neuro["detail"] == (f"B12_DEFICIENT: b12 90 pmol/L on {on(-40)}; untreated; "
                               f"neurological features: G62.9 (ICD-10) on {on(-60)}")
    assert neuro["open_since"] == on(-40) and neuro["practice"] == "Riverside"
    assert found[("folic", "FOLATE_BEFORE_B12")]["open_since"] == on(-50)          # the flag's date
    assert found[("folic", "FOLATE_BEFORE_B12")]["detail"].startswith(f"folic acid started {on(-50)}")
    assert found[("neuro", "DEFICIENT_NO_IF_ANTIBODY")]["open_since"] == on(-40 + 30)  # index + grace
    assert found[("borderline", "BORDERLINE_NEEDS_MMA")]["open_since"] == on(-100)     # index date
    assert found[("borderline", "BORDERLINE_NEEDS_MMA")]["detail"].startswith(f"borderline b12 200 pmol/L on {on(-100)}")
    assert found[("borderline", "BORDERLINE_NO_MMA")]["open_since"] == on(-100 + 30)
    assert found[("treated", "DEFICIENT")]["practice"] == "(no practice)"            # a blank practice
    assert found[("borderline", "BORDERLINE_NEEDS_MMA")]["practice"] == "(no practice)"  # not in the registry
    ordered = rows(lake_worklist, "select practice, urgency from worklist")
    assert ordered == sorted(ordered, key=lambda r: (r["practice"], r["urgency"]))


# --- open_since of each reason (int_under_monitored, through cohort_under_monitored) ------------------------

S = -800  # treatment start of the long-treated PA cases


def case(*labs, diagnoses=(), medications=()):
    def make_rows(p):
        return {"labs": [lab(patient=p, **kwargs) for kwargs in labs],
                "diagnoses": [diagnosis(patient=p, **kwargs) for kwargs in diagnoses],
                "medications": [medication(patient=p, **kwargs) for kwargs in medications]}
    return make_rows


PA_LONG_AGO = [dict(day=-1000)]
# case id -> (rows, reason, expected open_since)
OPEN_SINCE = {
    # the recheck window closed on S + 183 with no result from S + 90
    "recheck_window_closed": (case(dict(value=500, day=-250), diagnoses=PA_LONG_AGO,
                                   medications=[dict(start=-200, end=-1)]),
                              "PA_NO_POST_TREATMENT_RECHECK", on(-200 + 183)),
    # ... unless PA was known only later
    "recheck_pa_known_later": (case(dict(value=500, day=-320), diagnoses=[dict(day=-10)],
                                    medications=[dict(start=-300, end=-1)]),
                               "PA_NO_POST_TREATMENT_RECHECK", on(-10)),
    # the last monitoring result left the 365 days on the 366th day after it
    "annual_last_result": (case(dict(value=500, day=-400), dict(value=500, day=S + 120), diagnoses=PA_LONG_AGO,
                                medications=[dict(start=S, end=-1)]),
                           "PA_OVERDUE_ANNUAL_B12", on(-400 + 366)),
    "annual_never_tested": (case(diagnoses=PA_LONG_AGO), "PA_OVERDUE_ANNUAL_B12", on(-1000)),
    "annual_never_tested_undated_pa": (case(diagnoses=[dict(day=None)]), "PA_OVERDUE_ANNUAL_B12", None),
    "borderline_grace": (case(dict(value=200, day=-100)), "BORDERLINE_NO_MMA", on(-100 + 30)),
    # on B12 since -400: the first b12 of the lookback; a b12 before the treatment: the treatment start
    "supplemented_first_b12": (case(dict(value=900, day=-300), dict(value=900, day=-100),
                                    medications=[dict(start=-400)]), "SUPPLEMENTED_NO_MMA", on(-300)),
    "supplemented_b12_before_treatment": (case(dict(value=900, day=-300), dict(value=900, day=-100),
                                               medications=[dict(start=-200)]), "SUPPLEMENTED_NO_MMA", on(-200)),
    "below_target_latest_b12": (case(dict(value=500, day=S + 100), dict(value=280, day=-10),
                                     dict(analyte="mma", value=0.2, day=-10), diagnoses=PA_LONG_AGO,
                                     medications=[dict(start=S, end=-1)]), "TREATED_BELOW_TARGET", on(-10)),
    "if_antibody_grace": (case(dict(value=100, day=-100), dict(analyte="hemoglobin", value=130, day=-100)),
                          "DEFICIENT_NO_IF_ANTIBODY", on(-100 + 30)),
    "blood_count_grace": (case(dict(value=100, day=-100), dict(analyte="if_antibody", text="negative", day=-2000)),
                          "DEFICIENT_NO_BLOOD_COUNT", on(-100 + 30)),
    # the last B12 record ended on -200: no longer current 93 days later
    "pa_lapsed": (case(dict(value=500, day=-10), diagnoses=PA_LONG_AGO, medications=[dict(start=-400, end=-200)]),
                  "PA_NOT_ON_TREATMENT", on(-200 + 93)),
    # never treated: PA known for 30 days
    "pa_never_treated": (case(dict(value=500, day=-10), diagnoses=[dict(day=-40)]), "PA_NOT_ON_TREATMENT",
                         on(-40 + 30)),
    # the earlier of the two markers that are not normal
    "markers_both": (case(dict(value=500, day=-300), dict(analyte="mma", value=0.55, day=-20),
                          dict(analyte="homocysteine", value=11, day=-10), diagnoses=PA_LONG_AGO,
                          medications=[dict(start=S, end=-1)]), "TREATED_MARKERS_NOT_NORMAL", on(-20)),
}


@pytest.fixture(scope="module")
def open_since_built():
    con = build_cases({case_id: make_rows for case_id, (make_rows, _, _) in OPEN_SINCE.items()})
    yield con
    con.close()


@pytest.mark.parametrize("case_id", list(OPEN_SINCE))
def test_open_since_of_each_reason(open_since_built, case_id):
    _, reason, expected = OPEN_SINCE[case_id]
    found = rows(open_since_built, "select open_since from cohort_under_monitored where patient_id = ? and reason = ?",
                 [case_id, reason])
    assert found == [{"open_since": expected}]
    [worklist_row] = rows(open_since_built, "select open_since from worklist where patient_id = ? and item = ?",
                          [case_id, reason])
    # the worklist takes the reason's date; with none (and no index result) there is no date at all
    assert worklist_row["open_since"] == expected


def test_every_reason_has_an_open_since_case():
    assert {reason for _, reason, _ in OPEN_SINCE.values()} == set(REASONS)
