"""Worklists: most urgent first, one file per cohort (and items/) and practice with a safe name, owner and group
only, and README.txt, their legend."""
from __future__ import annotations

import csv
import re
import stat
from datetime import date
from pathlib import Path

import duckdb
import pytest

from b12lab.common.paths import VOCABULARY_DIR
from b12lab.report import worklists
from b12lab.report.worklists import (COHORTS, COLUMN_NOTES, DIR_MODE, FILE_MODE, SOURCES, cell_text,
                                     practice_slug, practice_slugs, write_worklists)
from tests.helpers.models import compiled_models

# The urgency order of the reasons, as the vocabulary seed gives it (1 = most urgent).
with (VOCABULARY_DIR / "reason_codes.csv").open(encoding="utf-8") as _stream:
    REASON_URGENCY = {row["reason"]: int(row["urgency"]) for row in csv.DictReader(_stream)}
with (VOCABULARY_DIR / "flag_codes.csv").open(encoding="utf-8") as _stream:
    FLAG_URGENCY = {row["flag"]: int(row["urgency"]) for row in csv.DictReader(_stream)}
ITEMS_HEADER = ["practice", "patient_id", "item", "urgency", "next_action", "detail", "open_since"]

# The marts of the four cohort folders, each with its priority order in `position`.
COHORT_MARTS = ("worklist_deficient", "worklist_borderline", "worklist_under_monitored", "worklist_flagged")

SAFE_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*\.csv$")


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- a tiny hand-built warehouse, with the published tables' real columns ----------------------------------


@pytest.fixture
def tiny(sample_output, tmp_path):
    """A DuckDB holding the mart tables of the sample publication, emptied, to insert hand-made rows into, and
    its vocabulary tables as published."""
    con = duckdb.connect()  # in memory, where the models' compiled SQL finds its tables (rebuild_worklist_items)
    con.execute("attach $path as sample (read_only)", {"path": str(sample_output / "warehouse.duckdb")})
    for table in ("patient_status", "cohort_deficient", "cohort_borderline", "cohort_under_monitored",
                  "result_classification", "patient_flags", "worklist", *COHORT_MARTS):
        con.execute(f"create table {table} as select * from sample.{table} limit 0")
    for table in ("reason_codes", "flag_codes", "deficient_actions", "worklist_tiers", "status_codes",
                  "rules_settings", "worklist_items"):
        con.execute(f"create table {table} as select * from sample.{table}")
    con.execute("detach sample")
    yield con
    con.close()


def write_from_cohorts(con, report_dir: Path):
    """The worklists written after the cohorts' worklist marts are built again from their compiled SQL over the
    hand-made rows in `con` (the marts hold the worklists' order and formatting)."""
    compiled = {model.name: model.compiled for model in compiled_models()}
    # The situation and next action of the hand-made deficient rows, as cohort_deficient gives them (the tests
    # of that rule are tests/transforms/test_release3_rules.py).
    con.execute("""update cohort_deficient set
        situation = case when neuro_involvement then 'neurological_involvement' when treatment = 'untreated'
                         then 'untreated' else 'treated' end,
        next_action = (select case when cohort_deficient.treatment = 'treated' and next_action_when_treated <> ''
                                   then next_action_when_treated
                                        || coalesce(' ' || strftime(cohort_deficient.treatment_start, '%Y-%m-%d'), '')
                                   else deficient_actions.next_action end
                       from deficient_actions
                       where deficient_actions.situation = case when cohort_deficient.neuro_involvement
                           then 'neurological_involvement' when cohort_deficient.treatment = 'untreated'
                           then 'untreated' else 'treated' end)""")
    for mart in COHORT_MARTS:
        con.execute(f"create or replace table {mart} as\n{compiled[mart]}")
    return write_worklists(con, report_dir)


def patient(con, patient_id, practice, status="normal", index_date=None, index_value=None, **extra):
    con.execute("insert into patient_status by name select $patient_id as patient_id, $practice as practice, "
                "$status as status, 'X' as rule_id, $index_date as index_date, $index_value as index_value, "
                "'pmol/L' as index_unit, 'b12' as index_analyte, false as has_pa, false as on_b12",
                {"patient_id": patient_id, "practice": practice, "status": status, "index_date": index_date,
                 "index_value": index_value})


def deficient(con, patient_id, practice, treatment, value, unit_si, index_date, analyte="b12", comparator=None):
    patient(con, patient_id, practice, "deficient", index_date, value)
    con.execute("""insert into cohort_deficient by name select
        $patient_id as patient_id, $practice as practice, 'B12_DEFICIENT' as rule_id, $treatment as treatment,
        $analyte as index_analyte, $comparator as index_comparator, $value as index_value, $unit as index_unit,
        $index_date as index_date, $value as index_value_si, $unit as index_unit_si,
        false as has_pa, false as on_b12""",
                {"patient_id": patient_id, "practice": practice, "treatment": treatment, "analyte": analyte,
                 "comparator": comparator, "value": value, "unit": unit_si, "index_date": index_date})


def borderline(con, patient_id, practice, mma_status, index_date):
    patient(con, patient_id, practice, "borderline_needs_mma", index_date, 200.0)
    con.execute("""insert into cohort_borderline by name select
        $patient_id as patient_id, $practice as practice, 'BORDERLINE_NEEDS_MMA' as rule_id,
        $mma_status as mma_status, 'b12' as index_analyte, 200.0 as index_value, 'pmol/L' as index_unit,
        $index_date as index_date, false as has_pa, false as on_b12""",
                {"patient_id": patient_id, "practice": practice, "mma_status": mma_status, "index_date": index_date})


def under_monitored(con, patient_id, practice, reasons, last_test=None):
    patient(con, patient_id, practice)
    for reason in reasons:
        con.execute("insert into cohort_under_monitored by name select $p as patient_id, $r as reason, "
                    "'detail of ' || $r as detail, $practice as practice",
                    {"p": patient_id, "r": reason, "practice": practice})
    if last_test:
        con.execute("insert into result_classification by name select $p as patient_id, 'b12' as analyte, "
                    "'normal' as category, $d as collected_on", {"p": patient_id, "d": last_test})


def test_deficient_untreated_first_then_lowest_pmol_then_oldest(tiny, tmp_path):
    deficient(tiny, "D-140", "Riverside", "untreated", 140.0, "pmol/L", date(2026, 1, 1))
    deficient(tiny, "D-120-new", "Riverside", "untreated", 120.0, "pmol/L", date(2026, 5, 1))
    deficient(tiny, "D-120-old", "Riverside", "untreated", 120.0, "pmol/L", date(2025, 12, 1))
    deficient(tiny, "D-holotc-20", "Riverside", "untreated", 20.0, "pmol/L", date(2026, 2, 1), analyte="holotc")
    deficient(tiny, "D-mma", "Riverside", "untreated", 0.9, "umol/L", date(2026, 3, 1), analyte="mma")
    deficient(tiny, "D-treated-50", "Riverside", "treated", 50.0, "pmol/L", date(2026, 1, 1), comparator="<")
    write_from_cohorts(tiny, tmp_path / "report")
    rows = read_csv(tmp_path / "report" / "worklists" / "deficient" / "riverside.csv")
    assert [r["patient_id"] for r in rows] == [
        "D-holotc-20", "D-120-old", "D-120-new", "D-140", "D-mma", "D-treated-50"]
    assert rows[-1]["index_value"] == "<50" and rows[-1]["index_unit"] == "pmol/L"
    assert rows[-1]["index_date"] == "2026-01-01" and rows[0]["rule_id"] == "B12_DEFICIENT"


def test_borderline_mma_needed_first_then_oldest(tiny, tmp_path):
    borderline(tiny, "B-normal-old", "Hillview", "normal", date(2024, 1, 1))
    borderline(tiny, "B-needed-new", "Hillview", "needed", date(2026, 6, 1))
    borderline(tiny, "B-needed-old", "Hillview", "needed", date(2025, 6, 1))
    write_from_cohorts(tiny, tmp_path / "report")
    rows = read_csv(tmp_path / "report" / "worklists" / "borderline" / "hillview.csv")
    assert [r["patient_id"] for r in rows] == ["B-needed-old", "B-needed-new", "B-normal-old"]
    assert [r["mma_status"] for r in rows] == ["needed", "needed", "normal"]


def test_under_monitored_one_row_per_patient_by_severity_then_oldest(tiny, tmp_path):
    under_monitored(tiny, "U-supp", "Hillview", ["SUPPLEMENTED_NO_MMA"], date(2020, 1, 1))
    under_monitored(tiny, "U-two", "Hillview", ["SUPPLEMENTED_NO_MMA", "PA_OVERDUE_ANNUAL_B12"], date(2025, 1, 1))
    under_monitored(tiny, "U-annual-older", "Hillview", ["PA_OVERDUE_ANNUAL_B12"], date(2023, 1, 1))
    under_monitored(tiny, "U-annual-never", "Hillview", ["PA_OVERDUE_ANNUAL_B12"])
    under_monitored(tiny, "U-target", "Hillview", ["TREATED_BELOW_TARGET"], date(2026, 9, 1))
    write_from_cohorts(tiny, tmp_path / "report")
    rows = read_csv(tmp_path / "report" / "worklists" / "under_monitored" / "hillview.csv")
    assert [r["patient_id"] for r in rows] == ["U-target", "U-annual-never", "U-annual-older", "U-two", "U-supp"]
    two = next(r for r in rows if r["patient_id"] == "U-two")
    assert two["reasons"] == "PA_OVERDUE_ANNUAL_B12; SUPPLEMENTED_NO_MMA"
    assert two["details"].startswith("PA_OVERDUE_ANNUAL_B12: detail of")
    assert two["priority"] == str(REASON_URGENCY["PA_OVERDUE_ANNUAL_B12"])


def test_deficient_with_neurological_features_first_with_next_actions(tiny, tmp_path):
    deficient(tiny, "D-untreated", "Riverside", "untreated", 100.0, "pmol/L", date(2026, 1, 1))
    deficient(tiny, "D-treated-neuro", "Riverside", "treated", 140.0, "pmol/L", date(2026, 2, 1))
    deficient(tiny, "D-treated", "Riverside", "treated", 90.0, "pmol/L", date(2026, 2, 1))
    tiny.execute("update cohort_deficient set neuro_involvement = (patient_id = 'D-treated-neuro'), "
                 "neuro_detail = case when patient_id = 'D-treated-neuro' then 'R20.2 (ICD-10) on 2026-01-20' end")
    write_from_cohorts(tiny, tmp_path / "report")
    rows = read_csv(tmp_path / "report" / "worklists" / "deficient" / "riverside.csv")
    assert [r["patient_id"] for r in rows] == ["D-treated-neuro", "D-untreated", "D-treated"]
    assert [r["next_action"] for r in rows] == [
        "seek urgent neurology and haematology advice; B12 started", "start B12 treatment",
        "check treatment and work-up"]
    assert rows[0]["neuro_detail"] == "R20.2 (ICD-10) on 2026-01-20" and rows[0]["neuro_involvement"] == "true"


def test_under_monitored_release_2_urgency_and_next_actions(tiny, tmp_path):
    under_monitored(tiny, "U-lapsed", "Hillview", ["PA_NOT_ON_TREATMENT", "PA_OVERDUE_ANNUAL_B12"], date(2026, 1, 1))
    under_monitored(tiny, "U-work-up", "Hillview", ["DEFICIENT_NO_IF_ANTIBODY", "DEFICIENT_NO_BLOOD_COUNT"],
                    date(2026, 1, 1))
    under_monitored(tiny, "U-target", "Hillview", ["TREATED_BELOW_TARGET"], date(2020, 1, 1))
    under_monitored(tiny, "U-mma-twice", "Hillview", ["BORDERLINE_NO_MMA", "SUPPLEMENTED_NO_MMA"], date(2026, 1, 1))
    write_from_cohorts(tiny, tmp_path / "report")
    path = tmp_path / "report" / "worklists" / "under_monitored" / "hillview.csv"
    rows = {r["patient_id"]: r for r in read_csv(path)}
    assert list(rows) == ["U-lapsed", "U-target", "U-work-up", "U-mma-twice"]
    assert rows["U-lapsed"]["next_action"] == "restart maintenance B12 or record why stopped; order annual B12"
    assert rows["U-work-up"]["next_action"] == "order intrinsic factor antibody; order full blood count"
    assert rows["U-mma-twice"]["next_action"] == "order MMA"  # each action once


def test_flagged_worklist_by_flag_urgency_with_next_actions(tiny, tmp_path):
    for patient_id, flags in (("F-injections", [("B12_INJECTIONS_WITHOUT_DEFICIENCY", date(2019, 1, 1))]),
                              ("F-metformin", [("METFORMIN_B12_NOT_TESTED", date(2018, 1, 1))]),
                              ("F-folic", [("FOLATE_BEFORE_B12", date(2026, 3, 1)),
                                           ("MMA_RENAL_CAVEAT", date(2026, 2, 1))])):
        patient(tiny, patient_id, "Hillview")
        for flag, flag_date in flags:
            tiny.execute("insert into patient_flags by name select $p as patient_id, $f as flag, $d as flag_date, "
                         "'detail of ' || $f as detail, 'Hillview' as practice",
                         {"p": patient_id, "f": flag, "d": flag_date})
    write_from_cohorts(tiny, tmp_path / "report")
    rows = read_csv(tmp_path / "report" / "worklists" / "flagged" / "hillview.csv")
    assert [r["patient_id"] for r in rows] == ["F-folic", "F-metformin", "F-injections"]
    assert rows[0]["flags"] == "FOLATE_BEFORE_B12; MMA_RENAL_CAVEAT"
    assert rows[0]["next_action"] == ("start B12 now and review folic acid; "
                                      "interpret MMA with renal function: consider holoTC before treating")
    assert rows[2]["next_action"] == "review: switch to oral or stop"
    assert rows[1]["next_action"] == "order B12"


def test_files_are_owner_and_group_only_with_safe_names(tiny, tmp_path):
    names = ["St. Mary's & Co / Surgery", "St Marys and Co Surgery", None, "", "../../etc/passwd", "CON",
             "Ünïcödé Practice", "$$$", "no-practice"]
    for index, name in enumerate(names):
        deficient(tiny, f"P{index}", name, "untreated", 100.0 + index, "pmol/L", date(2026, 1, 1))
    report_dir = tmp_path / "report"
    written = write_from_cohorts(tiny, report_dir)
    root = report_dir / "worklists"
    assert mode(root) == DIR_MODE == 0o750
    for folder in ("deficient", "borderline", "under_monitored", "flagged", "items"):
        assert mode(root / folder) == DIR_MODE
        files = sorted((root / folder).iterdir())
        assert all(SAFE_NAME.match(path.name) for path in files), [p.name for p in files]
        assert all(mode(path) == FILE_MODE == 0o640 for path in files)
        # every practice (and "no practice") has its own file in every cohort, header only when empty
        assert len(files) == len({w.practice for w in written})
    assert not any(path.is_symlink() or ".." in path.name for path in root.rglob("*"))
    patients = {r["patient_id"]: path.name for path in (root / "deficient").iterdir() for r in read_csv(path)}
    assert patients["P2"] == patients["P3"] == "no-practice.csv"   # no practice, blank practice
    assert patients["P0"] != patients["P1"]                         # similar names, different files
    assert patients["P4"] == "etc-passwd.csv"
    assert patients["P5"] == "con-practice.csv"
    assert patients["P6"] == "unicode-practice.csv"
    assert patients["P8"] != "no-practice.csv"                      # a practice really named "no-practice"
    assert sum(w.rows for w in written if w.cohort == "deficient") == len(names)


def test_practice_slugs_are_stable_and_unique():
    assert practice_slug("Abbey Road Surgery") == "abbey-road-surgery"
    assert practice_slug(None) == practice_slug("  ") == "no-practice"
    slugs = practice_slugs(["St Mary's", "St. Marys", "Hillview"])
    assert len(set(slugs.values())) == 3 and slugs["Hillview"] == "hillview"
    assert slugs["St Mary's"].startswith("st-marys-") and slugs == practice_slugs(["Hillview", "St. Marys", "St Mary's"])
    assert practice_slug("x" * 300) == "x" * 80


def test_cells_a_spreadsheet_would_run_are_defused(tiny, tmp_path):
    deficient(tiny, "=HYPERLINK(\"http://example.invalid\")", "Riverside", "untreated", 100.0, "pmol/L",
              date(2026, 1, 1))
    write_from_cohorts(tiny, tmp_path / "report")
    rows = read_csv(tmp_path / "report" / "worklists" / "deficient" / "riverside.csv")
    assert rows[0]["patient_id"].startswith("'=")


def test_a_practice_that_leaves_a_cohort_leaves_no_stale_file(tiny, tmp_path):
    deficient(tiny, "P1", "Old Practice", "untreated", 100.0, "pmol/L", date(2026, 1, 1))
    write_from_cohorts(tiny, tmp_path / "report")
    assert (tmp_path / "report" / "worklists" / "deficient" / "old-practice.csv").exists()
    tiny.execute("delete from cohort_deficient")
    tiny.execute("delete from patient_status")
    deficient(tiny, "P2", "New Practice", "untreated", 100.0, "pmol/L", date(2026, 1, 1))
    write_from_cohorts(tiny, tmp_path / "report")
    assert sorted(p.name for p in (tmp_path / "report" / "worklists" / "deficient").iterdir()) == ["new-practice.csv"]
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["worklists"]


# --- the worklists of the sample run ------------------------------------------------------------------------


def test_the_sample_run_writes_worklists_matching_the_cohorts(sample_output):
    root = sample_output / "report" / "worklists"
    assert mode(root) == DIR_MODE
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        expected = {
            "deficient": con.execute("select count(*) from cohort_deficient").fetchone()[0],
            "borderline": con.execute("select count(*) from cohort_borderline").fetchone()[0],
            "under_monitored": con.execute("select count(distinct patient_id) from cohort_under_monitored").fetchone()[0],
        }
        practices = con.execute("select count(distinct practice) from patient_status").fetchone()[0]
    for cohort, count in expected.items():
        files = list((root / cohort).glob("*.csv"))
        assert len(files) == practices
        assert all(mode(path) == FILE_MODE and SAFE_NAME.match(path.name) for path in files)
        rows = [row for path in files for row in read_csv(path)]
        assert len(rows) == count and len({r["patient_id"] for r in rows}) == count
        assert all(r["index_date"] or cohort == "under_monitored" for r in rows)



def test_the_sample_run_writes_each_cohort_in_the_order_of_its_mart(sample_output):
    """A cohort folder is its mart row for row: the positions number the patients 1, 2, 3... and each practice's
    file lists its patients in that order."""
    root = sample_output / "report" / "worklists"
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        ranked = {cohort: con.execute(f"select position, patient_id from {SOURCES[cohort][0]} order by position"
                                      ).fetchall() for cohort in COHORTS if cohort != "items"}
    assert sorted(SOURCES[cohort][0] for cohort in ranked) == sorted(COHORT_MARTS)
    for cohort, rows in ranked.items():
        assert rows, cohort  # the sample has patients in every cohort
        assert [position for position, _ in rows] == list(range(1, len(rows) + 1)), cohort
        order = [patient_id for _, patient_id in rows]
        written = 0
        for path in (root / cohort).glob("*.csv"):
            listed = [r["patient_id"] for r in read_csv(path)]
            assert listed == [patient_id for patient_id in order if patient_id in set(listed)], path.name
            written += len(listed)
        assert written == len(order), cohort

# --- items/: the worklist mart, one row per patient and item; README.txt, the legend -------------------------


def item(con, patient_id, practice, code, urgency, open_since, next_action="do it", detail="the evidence"):
    con.execute("insert into worklist by name select $practice as practice, $p as patient_id, $i as item, "
                "$u as urgency, $a as next_action, $d as detail, $o as open_since",
                {"practice": practice, "p": patient_id, "i": code, "u": urgency, "a": next_action, "d": detail,
                 "o": open_since})


def urgency_table(text: str) -> dict[int, tuple[str, str]]:
    """README.txt's urgency order: urgency -> (item, next action), wrapped lines joined, the [label] dropped."""
    section = text.split("next action  [label]\n", 1)[1].split("\nCOLUMNS", 1)[0]
    entries: dict[int, list[str]] = {}
    current = None
    for line in section.splitlines():
        found = re.match(r"^\s+(\d+)  (\S+(?: \([a-z ]+\))?)\s+(.*)$", line)
        if found:
            current = int(found[1])
            entries[current] = [found[2], found[3]]
        elif line.strip() and current is not None:
            entries[current][1] += " " + line.strip()
    return {urgency: (name, re.sub(r"\s+\[[^\[]*\]$", "", rest)) for urgency, (name, rest) in entries.items()}


def test_items_by_urgency_then_longest_open_then_patient(tiny, tmp_path):
    patient(tiny, "I-a", "Hillview")
    patient(tiny, "E-1", "Empty Practice")
    item(tiny, "I-a", "Hillview", "DEFICIENT", 3, date(2026, 1, 1), "start B12 treatment")
    item(tiny, "I-a", "Hillview", "DEFICIENT_NO_IF_ANTIBODY", 7, date(2020, 1, 1))
    item(tiny, "I-b", "Hillview", "PA_OVERDUE_ANNUAL_B12", 10, date(2024, 1, 1))
    item(tiny, "I-a", "Hillview", "PA_OVERDUE_ANNUAL_B12", 10, date(2024, 1, 1))
    item(tiny, "I-c", "Hillview", "PA_OVERDUE_ANNUAL_B12", 10, date(2023, 1, 1))
    item(tiny, "I-d", "Hillview", "PA_OVERDUE_ANNUAL_B12", 10, None)
    item(tiny, "I-e", "Hillview", "BORDERLINE_NEEDS_MMA", 18, date(2019, 1, 1), detail="=cmd|' /C calc'!A0")
    item(tiny, "R-x", "Riverside", "DEFICIENT", 1, date(2026, 2, 1))
    written = write_from_cohorts(tiny, tmp_path / "report")
    folder = tmp_path / "report" / "worklists" / "items"
    path = folder / "hillview.csv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        assert next(csv.reader(handle)) == ITEMS_HEADER
    rows = read_csv(path)
    assert [(r["patient_id"], r["item"]) for r in rows] == [
        ("I-a", "DEFICIENT"), ("I-a", "DEFICIENT_NO_IF_ANTIBODY"), ("I-d", "PA_OVERDUE_ANNUAL_B12"),
        ("I-c", "PA_OVERDUE_ANNUAL_B12"), ("I-a", "PA_OVERDUE_ANNUAL_B12"), ("I-b", "PA_OVERDUE_ANNUAL_B12"),
        ("I-e", "BORDERLINE_NEEDS_MMA")]
    assert rows[0] == {"practice": "Hillview", "patient_id": "I-a", "item": "DEFICIENT", "urgency": "3",
                       "next_action": "start B12 treatment", "detail": "the evidence", "open_since": "2026-01-01"}
    assert rows[2]["open_since"] == "" and rows[-1]["detail"].startswith("'=")
    assert [r["patient_id"] for r in read_csv(folder / "riverside.csv")] == ["R-x"]
    assert read_csv(folder / "empty-practice.csv") == [] and mode(folder / "empty-practice.csv") == FILE_MODE
    assert {w.practice: w.rows for w in written if w.cohort == "items"} == {
        "Hillview": 7, "Riverside": 1, "Empty Practice": 0}
    # the cohort worklists are not changed by it
    assert read_csv(tmp_path / "report" / "worklists" / "deficient" / "hillview.csv") == []


def test_readme_explains_the_folders_every_column_and_the_urgency_order(tiny, tmp_path):
    patient(tiny, "N-1", None)  # so that every folder has a file (no-practice.csv) to read the header of
    write_from_cohorts(tiny, tmp_path / "report")
    root = tmp_path / "report" / "worklists"
    readme = root / "README.txt"
    assert mode(readme) == FILE_MODE == 0o640
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("Worklists as of 2026-10-31")
    for folder in COHORTS:
        assert re.search(rf"^  {folder}/ +one row per", text, re.MULTILINE), folder
    assert re.search(r"^  urgency \(items/\): ", text, re.MULTILINE)
    assert re.search(r"^  priority \(under_monitored/, flagged/\): ", text, re.MULTILINE)
    # every column of every file, under its folder, with a description
    columns_section = text.split("\nCOLUMNS\n", 1)[1]
    for folder in COHORTS:
        header = next(csv.reader((root / folder / "no-practice.csv").open(encoding="utf-8-sig", newline="")))
        block = columns_section.split(f"\n  {folder}/\n", 1)[1].split("\n\n", 1)[0]
        described = [line.split()[0] for line in block.splitlines() if re.match(r"^    \S+ +\S", line)]
        assert described == header, folder
    # the full urgency order: every reason and flag, each with its rank and next action
    order = urgency_table(text)
    assert sorted(order) == list(range(1, 19))
    by_item = {name: (urgency, action) for urgency, (name, action) in order.items()}
    assert by_item["DEFICIENT (neurological involvement)"] == (
        1, "seek urgent neurology and haematology advice; start B12 now")
    assert by_item["FOLATE_BEFORE_B12"] == (2, "start B12 now and review folic acid")
    assert by_item["DEFICIENT (untreated)"] == (3, "start B12 treatment")
    assert by_item["DEFICIENT (treated)"] == (17, "check treatment and work-up")
    assert by_item["BORDERLINE_NEEDS_MMA"] == (18, "order MMA")
    reasons = sorted(REASON_URGENCY, key=REASON_URGENCY.get)
    assert [by_item[reason][0] for reason in reasons] == list(range(4, 13))
    flags = sorted((f for f in FLAG_URGENCY if f != "FOLATE_BEFORE_B12"), key=FLAG_URGENCY.get)
    assert [by_item[flag][0] for flag in flags] == list(range(13, 17))
    actions = dict(tiny.execute("select reason, next_action from reason_codes union all "
                                "select flag, next_action from flag_codes").fetchall())
    assert all(by_item[code][1] == action for code, action in actions.items())


def rebuild_worklist_items(con) -> None:
    """The mart worklist_items built again from its compiled SQL over the vocabulary tables in `con`."""
    sql = next(model.compiled for model in compiled_models() if model.name == "worklist_items")
    con.execute(f"create or replace table worklist_items as\n{sql}")


def test_readme_follows_the_vocabulary_of_the_warehouse(tiny, tmp_path):
    """The legend is the mart worklist_items: a vocabulary edited and the mart rebuilt, the legend follows."""
    tiny.execute("update reason_codes set urgency = urgency + 100")
    tiny.execute("update reason_codes set urgency = 0, next_action = 'act on the supplement' "
                 "where reason = 'SUPPLEMENTED_NO_MMA'")
    rebuild_worklist_items(tiny)
    write_from_cohorts(tiny, tmp_path / "report")
    order = urgency_table((tmp_path / "report" / "worklists" / "README.txt").read_text(encoding="utf-8"))
    assert order[4] == ("SUPPLEMENTED_NO_MMA", "act on the supplement")
    assert order[5][0] == "PA_NOT_ON_TREATMENT"


def test_every_column_of_every_worklist_has_a_note(sample_output):
    root = sample_output / "report" / "worklists"
    for folder in COHORTS:
        [path, *_] = sorted((root / folder).glob("*.csv"))
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle))
        assert header == list(COLUMN_NOTES[folder]), folder
        assert all(note.strip() for note in COLUMN_NOTES[folder].values())


def test_the_sample_run_writes_items_from_the_worklist_mart(sample_output):
    root = sample_output / "report" / "worklists"
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        mart = con.execute("select patient_id, item, urgency, next_action from worklist").fetchall()
        practices = con.execute("select count(distinct practice) from patient_status").fetchone()[0]
    files = sorted((root / "items").glob("*.csv"))
    assert len(files) == practices
    assert all(mode(path) == FILE_MODE and SAFE_NAME.match(path.name) for path in files)
    rows = [row for path in files for row in read_csv(path)]
    assert sorted((r["patient_id"], r["item"], int(r["urgency"]), r["next_action"]) for r in rows) == sorted(mart)
    for path in files:
        keys = [(int(r["urgency"]), r["open_since"] or "0000", r["patient_id"], r["item"]) for r in read_csv(path)]
        assert keys == sorted(keys), path.name
    # the legend numbers every item as the mart does (the sample holds every item)
    order = urgency_table((root / "README.txt").read_text(encoding="utf-8"))
    # (a treated patient with neurological involvement is told when B12 started, not to start it: release 3)
    treated_neuro = re.compile(r"^seek urgent neurology and haematology advice; B12 started \d{4}-\d{2}-\d{2}$")
    assert any(treated_neuro.match(action) for _, _, _, action in mart)
    assert {(urgency, action) for _, _, urgency, action in mart if not treated_neuro.match(action)} == {
        (urgency, action) for urgency, (_, action) in order.items()}
    assert {(urgency, name.split(" ")[0]) for urgency, (name, _) in order.items()} == {
        (urgency, code) for _, code, urgency, _ in mart}
    assert mode(root / "README.txt") == FILE_MODE


# --- a night whose worklists did not change links the live publication's files ------------------------------

WORKLIST_TABLES = ("patient_status", "rules_settings", "worklist_items", "worklist_tiers",
                   *(table for table, _ in SOURCES.values()))


@pytest.fixture
def sample_worklists(sample_output):
    """The tables the worklists read, copied from the sample publication into a database of their own."""
    con = duckdb.connect()
    con.execute("attach $path as sample (read_only)", {"path": str(sample_output / "warehouse.duckdb")})
    for table in WORKLIST_TABLES:
        con.execute(f"create table {table} as select * from sample.{table}")
    con.execute("detach sample")
    yield con
    con.close()


def files_of(folder: Path) -> dict[str, Path]:
    return {str(path.relative_to(folder)): path for path in sorted(folder.rglob("*.csv"))}


def test_the_files_whose_rows_did_not_change_are_the_live_ones_linked(sample_worklists, tmp_path):
    con = sample_worklists
    live = tmp_path / "live" / "worklists"
    first = write_worklists(con, live.parent)
    again = write_worklists(con, tmp_path / "again", previous=live)
    assert [(w.cohort, w.practice, w.rows) for w in again] == [(w.cohort, w.practice, w.rows) for w in first]
    linked = files_of(tmp_path / "again" / "worklists")
    assert linked.keys() == files_of(live).keys() and len(linked) > 5
    assert all(path.stat().st_ino == files_of(live)[name].stat().st_ino for name, path in linked.items())

    # One deficient patient's row changes: that practice's deficient file is written again, the rest linked.
    [(practice, patient_id)] = con.execute("select practice, patient_id from worklist_deficient "
                                           "order by patient_id limit 1").fetchall()
    con.execute("update worklist_deficient set index_value = '1.0' where patient_id = $p", {"p": patient_id})
    write_worklists(con, tmp_path / "changed", previous=live)
    write_worklists(con, tmp_path / "fresh")  # the same rows, nothing to link
    changed, fresh = files_of(tmp_path / "changed" / "worklists"), files_of(tmp_path / "fresh" / "worklists")
    rewritten = sorted(name for name, path in changed.items() if path.stat().st_ino != files_of(live)[name].stat().st_ino)
    assert rewritten == [f"deficient/{practice_slug(practice)}.csv"]
    assert {name: path.read_bytes() for name, path in changed.items()} == \
        {name: path.read_bytes() for name, path in fresh.items()}
    assert mode(tmp_path / "changed" / "worklists" / rewritten[0]) == FILE_MODE


def test_each_cell_is_written_as_a_spreadsheet_reads_it_safely():
    # The cells are made in SQL (cell_text): every type's spelling, and the formula guard on both sides.
    con = duckdb.connect()
    texts = ["=SUM(A1)", "+1", "@x", "\tA", "\rB", "-x", "-", "-1", "-1.5", "-1.", "1-2", "plain", "", None]
    con.execute("create table cells (t varchar, b boolean, f double, d date, i integer)")
    con.executemany("insert into cells values (?, ?, ?, ?, ?)",
                    [(text, [True, False, None][n % 3], [245.0, 0.35, 1e-5, 1 / 3, None][n % 5],
                      [date(2025, 1, 31), None][n % 2], [7, None][n % 2]) for n, text in enumerate(texts)])
    cells = ", ".join(cell_text(column, kind) for column, kind in
                      [("t", "VARCHAR"), ("b", "BOOLEAN"), ("f", "DOUBLE"), ("d", "DATE"), ("i", "INTEGER")])
    rows = con.execute(f"select {cells} from cells").fetchall()
    assert [row[0] for row in rows] == ["'=SUM(A1)", "'+1", "'@x", "'\tA", "'\rB", "'-x", "'-", "-1", "-1.5",
                                        "'-1.", "1-2", "plain", "", None]
    assert [row[1] for row in rows[:3]] == ["true", "false", None]
    assert [row[2] for row in rows[:5]] == ["245", "0.35", "1e-05", "0.3333333333", None]
    assert [row[3:] for row in rows[:2]] == [("2025-01-31", "7"), (None, None)]


def test_rows_are_streamed_into_the_files_in_pieces_with_the_same_bytes(sample_worklists, tmp_path, monkeypatch):
    """A cohort's rows come from DuckDB a batch at a time and go to the files in pieces (never held whole: the
    worklists of 3M patients held 2 GiB): a practice's rows spanning batches, and pieces of a file, give the
    same files as one batch and one piece."""
    whole = write_worklists(sample_worklists, tmp_path / "whole")
    monkeypatch.setattr(worklists, "_FETCH_ROWS", 7)
    monkeypatch.setattr(worklists, "_WRITE_CHARS", 100)
    pieces = write_worklists(sample_worklists, tmp_path / "pieces")

    assert [(w.cohort, w.practice, w.rows) for w in pieces] == [(w.cohort, w.practice, w.rows) for w in whole]
    assert sum(w.rows for w in whole) > 7 * 10
    written = files_of(tmp_path / "pieces" / "worklists")
    assert {name: path.read_bytes() for name, path in written.items()} == {
        name: path.read_bytes() for name, path in files_of(tmp_path / "whole" / "worklists").items()}
    assert all(mode(path) == FILE_MODE for path in written.values())
