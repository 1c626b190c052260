"""stg_counted_results: which results count (docs/models.md, "Which results count")."""
from __future__ import annotations

from tests.transforms.lake import lab, rows


def counted(con, patient="P1"):
    return [
        (row["analyte"], row["value_reported"], row["status"])
        for row in rows(con, "select * from stg_counted_results where patient_id = ? "
                             "order by collected_at, value_reported", [patient])
    ]


def test_final_and_corrected_count_preliminary_does_not(build_lake):
    con = build_lake([
        lab(value=400, status="F"),
        lab(value=410, status="C", day=-9),
        lab(value=120, status="P", day=-1),
    ])
    assert counted(con) == [("b12", 400, "F"), ("b12", 410, "C")]
    status = rows(con, "select status, rule_id, index_value from patient_status")
    assert status == [{"status": "normal", "rule_id": "NORMAL", "index_value": 410}]


def test_preliminary_only_patient_is_known_but_not_tested(build_lake):
    con = build_lake([lab(value=100, status="P")])
    assert counted(con) == []
    assert rows(con, "select patient_id, status, rule_id from patient_status") == [
        {"patient_id": "P1", "status": "not_tested", "rule_id": "NO_RECENT_RESULT"}]


def test_correction_replaces_the_final_result(build_lake):
    con = build_lake([
        lab(value=100, status="F", accession="A1", resulted_day=-10),
        lab(value=300, status="C", accession="A1", resulted_day=-8),
    ])
    assert counted(con) == [("b12", 300, "C")]
    assert rows(con, "select status, index_value from patient_status") == [{"status": "normal", "index_value": 300}]


def test_latest_correction_by_resulted_at_wins(build_lake):
    con = build_lake([
        lab(value=100, status="F", accession="A1", resulted_day=-10),
        lab(value=300, status="C", accession="A1", resulted_day=-5, source_file="labs_b.csv"),
        lab(value=200, status="C", accession="A1", resulted_day=-7, source_file="labs_c.csv"),
    ])
    assert counted(con) == [("b12", 300, "C")]


def test_correction_touches_only_its_accession_and_analyte(build_lake):
    con = build_lake([
        lab(value=100, status="F", accession="A1"),
        lab(value=0.3, analyte="mma", status="F", accession="A1"),
        lab(value=120, status="F", accession="A2", day=-20),
        lab(value=300, status="C", accession="A1", resulted_day=-1),
    ])
    assert counted(con) == [("b12", 120, "F"), ("mma", 0.3, "F"), ("b12", 300, "C")]


def test_results_without_accession_are_never_replaced(build_lake):
    con = build_lake([
        lab(value=100, status="F", accession=None, day=-20),
        lab(value=300, status="C", accession=None, day=-10),
    ])
    assert counted(con) == [("b12", 100, "F"), ("b12", 300, "C")]


def test_cross_file_duplicate_counts_once(build_lake):
    original = lab(value=140, accession="A1", source_file="labs_a.csv")
    copy = {**original, "source_file": "labs_b.csv", "source_row": 7, "source_hash": "hash-b"}
    con = build_lake([original, copy])
    assert counted(con) == [("b12", 140, "F")]
    assert rows(con, "select source_file from result_classification") == [{"source_file": "labs_a.csv"}]


def test_a_copy_without_accession_counts_once(build_lake):
    # No accession: the copy is found among the results without one (by patient, analyte, time and value).
    original = lab(value=140, accession=None, source_file="labs_b.csv", source_row=3)
    copy = {**original, "source_file": "labs_a.csv", "source_row": 9, "source_hash": "hash-a"}
    other_time = {**original, "collected_at": original["collected_at"].replace(hour=7), "source_row": 4}
    con = build_lake([original, copy, other_time])
    assert rows(con, "select source_file, source_row from stg_counted_results order by collected_at") == [
        {"source_file": "labs_b.csv", "source_row": 4}, {"source_file": "labs_a.csv", "source_row": 9}]


def test_a_copy_without_accession_of_a_text_result_counts_once(build_lake):
    # value_si and comparator null on both copies: nulls are equal when copies are compared
    original = lab(analyte="if_antibody", accession=None, text="positive")
    copy = {**original, "source_file": "labs_b.csv", "source_row": 7, "source_hash": "hash-b"}
    con = build_lake([original, copy])
    assert rows(con, "select source_file, value_text from stg_counted_results") == [
        {"source_file": original["source_file"], "value_text": "positive"}]


def test_same_accession_with_another_value_is_not_a_duplicate(build_lake):
    first = lab(value=140, accession="A1")
    second = {**first, "value_reported": 150.0, "value_si": 150.0, "source_row": 99}
    con = build_lake([first, second])
    assert counted(con) == [("b12", 140, "F"), ("b12", 150, "F")]


def test_only_results_collected_on_or_before_as_of_count(build_lake):
    con = build_lake([
        lab(value=100, day=0, at="23:59"),
        lab(value=120, day=1, at="00:00"),
    ])
    assert counted(con) == [("b12", 100, "F")]
