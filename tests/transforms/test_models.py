"""The model files themselves: conventions, no rule values in SQL, build order, the mart names."""
from __future__ import annotations

import re

import duckdb
import pytest

from b12lab.publish.dbt_build import MART_TABLES, ModelError
from tests.helpers.models import build_models, compiled_models, seeds
from b12lab.rules.rules_file import install_rules
from tests.transforms.lake import AS_OF, create_lake, rules_for

MODELS = compiled_models()
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRINGS = re.compile(r"'(?:[^']|'')*'")


def code_of(sql: str) -> str:
    """The SQL without comments and string literals."""
    return _STRINGS.sub("''", _COMMENTS.sub(" ", sql))


def test_layers_and_marts():
    by_layer = {layer: [m.name for m in MODELS if m.layer == layer] for layer in ("staging", "intermediate", "marts")}
    assert sorted(by_layer["marts"]) == sorted(MART_TABLES)
    assert all(name.startswith("stg_") for name in by_layer["staging"])
    assert all(name.startswith("int_") for name in by_layer["intermediate"])


@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_model_conventions(model):
    first_line = model.sql.splitlines()[0]
    assert first_line.startswith("-- grain: "), "opens with a comment giving the grain"
    assert "rule" in model.sql.split("\nwith\n")[0], "the opening comment states the rule"
    code = code_of(model.sql)
    # the model's config and Jinja variables may come first
    code = re.sub(r"^\s*\{\{\s*config\(.*?\)\s*\}\}\s*$", "", code, flags=re.DOTALL | re.MULTILINE, count=1)
    code = re.sub(r"\{#.*?#\}", "", code, flags=re.DOTALL)  # Jinja comments
    code = re.sub(r"\{%-?\s*set\s+\w+\s*-?%\}.*?\{%-?\s*endset\s*-?%\}|\{%-?\s*set\s+\w+\s*=.*?-?%\}", "", code,
                  flags=re.DOTALL)  # Jinja variables, as blocks or one-line
    assert re.match(r"^\s*with\b", code), "a chain of with blocks"
    assert not re.search(r"\b(from|join)\s+(lab_results|patients|diagnoses|medications|rules_settings|rules_codes)\b",
                         code), "inputs through source() and ref() only"
    assert re.search(r"\bfinal as \(", code)
    # a patient-level (incremental) model: its own `final`, or the rows its patients' buckets built (docs/buckets.md;
    # code_of blanks the string literal)
    ending = ("select * from {{ built_in_buckets_or('') }}" if "materialized='incremental'" in model.sql
              else "select * from final")
    assert code.rstrip().endswith(ending)
    assert code == code.lower(), "lowercase SQL"


@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_no_rule_values_in_sql(model):
    """Thresholds and windows come from rules_settings only: the only numbers allowed are the severity ranks
    (1-3), row_number() = 1 and "none" (count = 0)."""
    numbers = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", code_of(model.sql)))
    assert numbers <= {"0", "1", "2", "3"}


def test_only_the_as_of_dates_model_and_the_marts_read_the_run_date():
    """Every date-dependent intermediate model takes its dates from stg_as_of_dates and keeps the date in its
    grain, so that one build can evaluate many as-of dates (the report's trend); a model reading
    rules_settings.as_of would be pinned to the run's date. The marts select the run's date."""
    readers = {model.name for model in MODELS if re.search(r"settings\.as_of\b", code_of(model.sql))}
    assert readers <= {"stg_as_of_dates", *MART_TABLES}


def test_the_run_date_comes_from_the_dbt_variable_through_one_model():
    """The run's as-of date reaches the project as the dbt variable as_of, read by stg_run_as_of alone; no model
    takes it from rules_settings, which holds the rules."""
    readers = {model.name for model in MODELS if re.search(r"var\(\s*['\"]as_of['\"]", model.sql)}
    assert readers == {"stg_run_as_of"}
    for model in MODELS:
        assert not re.search(r"rules_settings\.as_of\b", code_of(model.sql)), model.name
        if "rules_settings.*" in code_of(model.sql) and model.layer == "marts":
            assert "exclude (as_of)" in code_of(model.sql), model.name


def test_dependencies_come_first():
    built = list(seeds())
    for model in MODELS:
        assert model.depends_on <= set(built), model.name
        built.append(model.name)


def test_build_refuses_a_connection_without_inputs():
    with pytest.raises(ModelError, match="missing input tables lab_results, patients"):
        build_models(duckdb.connect(), as_of=AS_OF)


def test_build_returns_the_tables_in_order():
    con = duckdb.connect()
    create_lake(con, {})
    install_rules(con, rules_for(None), AS_OF)
    built = build_models(con, as_of=AS_OF)
    assert built == [m.name for m in MODELS]
    tables = {row[0] for row in con.execute("select table_name from duckdb_tables()").fetchall()}
    assert set(built) <= tables
    for mart in MART_TABLES:
        if mart == "cohort_counts":  # the whole population's counts exist, all 0
            assert con.execute("select count(*), sum(patients) from cohort_counts where practice is null "
                               "having count(*) > 0").fetchone() == (con.execute(
                                   "select count(*) from cohort_counts").fetchone()[0], 0)
        elif mart == "practice_measures":  # the whole population's measures exist, without a rate
            assert con.execute("select count(*) from practice_measures where practice is not null "
                               "or denominator <> 0 or rate is not null").fetchone() == (0,)
        elif mart == "worklist_items":  # the vocabulary's order: every item, whatever the data
            assert con.execute("select count(*), max(urgency) from worklist_items").fetchone() == (18, 18)
        elif mart == "treatment_response_summary":  # every window and route class, whole population, 0
            assert con.execute("select count(*), count(practice), sum(windows_begun), count(at_target_share) "
                               "from treatment_response_summary").fetchone() == (12, 0, 0, 0)
        elif mart == "data_quality":  # the accounting of all files, every field 0
            assert con.execute("select section, source_file, sum(this_run), sum(all_runs), count(*) "
                               "from data_quality group by all").fetchall() == [("accounting", None, 0, 0, 8)]
        else:
            assert con.execute(f"select count(*) from {mart}").fetchone() == (0,)
