"""docs/analyst-guide.md: every ```sql block runs on the sample warehouse and answers its question."""
from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "analyst-guide.md"
QUESTION = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)

# Questions the sample data may leave without an answer: none (its seed was chosen so that its 500 patients show
# every reason and flag, MMA_RENAL_CAVEAT included).
MAY_BE_EMPTY: set[int] = set()
# Numbers that are rule values in the seed profile: the guide reads them from rules_settings instead.
RULE_VALUES = ("150", "203", "258", "350", "300", "400", "365", "730", "183")


def questions() -> list[tuple[int, str, str]]:
    """(number, title, sql) of each numbered question, in order."""
    text = GUIDE.read_text(encoding="utf-8")
    headings = list(QUESTION.finditer(text))
    found = []
    for heading, following in zip(headings, [*headings[1:], None]):
        section = text[heading.end(): following.start() if following else len(text)]
        blocks = SQL_BLOCK.findall(section)
        assert len(blocks) == 1, f"question {heading.group(1)} should hold exactly one ```sql block"
        found.append((int(heading.group(1)), heading.group(2), blocks[0]))
    return found


PARAMS = [pytest.param(number, title, query, id=f"q{number}") for number, title, query in questions()]


def test_the_guide_answers_twenty_questions_each_with_one_sql_block():
    found = questions()
    assert [number for number, _, _ in found] == list(range(1, 21))
    assert len(SQL_BLOCK.findall(GUIDE.read_text(encoding="utf-8"))) == len(found), "an sql block outside a question"


@pytest.mark.parametrize("number, title, query", PARAMS)
def test_question_sql_does_not_type_rule_values(number, title, query):
    code = re.sub(r"--[^\n]*", "", query)
    typed = [value for value in RULE_VALUES if re.search(rf"(?<![\w.']){value}(?![\w.'])", code)]
    assert not typed, f"question {number} types rule values {typed}: read them from rules_settings"


@pytest.fixture(scope="module")
def project_like_folder(sample_output, tmp_path_factory) -> Path:
    """A folder laid out like the project's: output/ is the sample run (queries use paths relative to it)."""
    folder = tmp_path_factory.mktemp("analyst")
    (folder / "output").symlink_to(sample_output, target_is_directory=True)
    return folder


@pytest.mark.parametrize("number, title, query", PARAMS)
def test_question_runs_on_the_sample_warehouse(number, title, query, project_like_folder, monkeypatch):
    monkeypatch.chdir(project_like_folder)
    with duckdb.connect(str(project_like_folder / "output" / "warehouse.duckdb"), read_only=True) as con:
        result = con.execute(query)
        columns = [description[0] for description in result.description]
        rows = result.fetchall()
    assert columns, f"question {number} returns no columns"
    assert len(set(columns)) == len(columns), f"question {number} returns duplicate column names {columns}"
    if number not in MAY_BE_EMPTY:
        assert rows, f"question {number} ({title}) found no row in the sample data"


def test_every_release_2_reason_and_flag_has_a_question():
    queries = " ".join(query for _, _, query in questions())
    for code in ("DEFICIENT_NO_IF_ANTIBODY", "DEFICIENT_NO_BLOOD_COUNT", "PA_NOT_ON_TREATMENT",
                 "TREATED_MARKERS_NOT_NORMAL", "METFORMIN_B12_NOT_TESTED", "MMA_RENAL_CAVEAT",
                 "B12_INJECTIONS_WITHOUT_DEFICIENCY", "neuro_involvement"):
        assert code in queries, f"no question of the guide queries {code}"
