"""The SQL models as a dbt project: every model documented beside itself, built by dbt itself (the runner the
flow uses) with its data and unit tests, failures in one line, and the same tables as the compiled-SQL build
the rule tests use (tests/helpers/models.py)."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from b12lab.rules.rules_file import install_rules
from b12lab.publish import dbt_build as runner
from tests.helpers.models import compiled_models, model_yml, seed_tests, seeds, tagged_tests
from tests.helpers.trend import month_ends
from tests.transforms.lake import AS_OF, build, create_lake, diagnosis, lab, medication, patient, rules_for

# The session's dbt work folder (tests/conftest.py): the builds here reuse one parse of the project.
SESSION_DBT_WORK = Path(os.environ["B12LAB_DBT_WORK_DIR"])

MODELS = compiled_models()
# Columns whose values are codes: each needs an accepted_values or relationships test.
CODE_COLUMNS = {"status", "rule_id", "reason", "flag", "category", "treatment", "mma_status", "analyte",
                "index_analyte", "index_category", "metric"}


def lake_tables() -> dict[str, list[dict]]:
    """A small lake that puts patients in every cohort."""
    return {
        "patients": [patient("DEF"), patient("BORD", practice=""), patient("OK", practice="Practice B"),
                     patient("PA")],
        "lab_results": [lab("b12", 100, patient="DEF", day=-20), lab("b12", 200, patient="BORD", day=-200),
                        lab("b12", 400, patient="OK", day=-30), lab("b12", 350, patient="PA", day=-700)],
        "diagnoses": [diagnosis(patient="PA", day=-800)],
        "medications": [medication(patient="PA", start=-790)],
    }


def warehouse_with(tmp_path: Path, tables: dict[str, list[dict]], as_of: dt.date = AS_OF) -> Path:
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        create_lake(con, tables)
        install_rules(con, rules_for(None), as_of)
    return warehouse


def test_every_model_has_a_yml_beside_it_describing_it_and_every_column_in_order():
    con = build()  # an empty lake: every model's columns
    for model in MODELS:
        spec = model_yml(model)
        [entry] = spec["models"]
        assert entry["name"] == model.name
        assert entry.get("description", "").strip(), model.name
        built = [name for (name,) in con.execute(
            "select column_name from duckdb_columns() where table_name = $t order by column_index",
            {"t": model.name}).fetchall()]
        documented = [column["name"] for column in entry["columns"]]
        assert documented == built, model.name
        assert all(column.get("description", "").strip() for column in entry["columns"]), model.name


def test_every_seed_is_documented():
    documented = {}
    for path in runner.PROJECT_DIR.glob("seeds/*/*.yml"):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8"))["seeds"]:
            documented[entry["name"]] = entry
    assert set(documented) == set(seeds())
    for name, entry in documented.items():
        header = seeds()[name].path.read_text(encoding="utf-8").splitlines()[0].split(",")
        assert [column["name"] for column in entry["columns"]] == header, name
        assert set(entry["config"]["column_types"]) == set(header), name


def _tests_of(column: dict) -> list[str]:
    names = []
    for test in column.get("data_tests", []) or []:
        names.append(test if isinstance(test, str) else next(iter(test)))
    return names


def _model_test_arguments(model_entry: dict, name: str) -> dict:
    for test in model_entry.get("data_tests", []) or []:
        if isinstance(test, dict) and name in test:
            return test[name]["arguments"]
    return {}


def _not_null_columns(model_entry: dict) -> list[str]:
    """The columns of a model's `not_null_columns` test (tests/generic/not_null_columns.sql)."""
    return _model_test_arguments(model_entry, "not_null_columns").get("columns", [])


def _accepted_values(model_entry: dict) -> dict[str, list]:
    """The columns and values of a model's `accepted_values_columns` test (tests/generic/accepted_values_columns.sql)."""
    return _model_test_arguments(model_entry, "accepted_values_columns").get("values", {})


def test_keys_are_tested_and_every_code_column_has_its_values_tested():
    for model in MODELS:
        [entry] = model_yml(model)["models"]
        columns = {column["name"]: column for column in entry["columns"]}
        if "patient_id" in columns:
            assert "patient_id" in _not_null_columns(entry), model.name
        assert set(_not_null_columns(entry)) <= set(columns), model.name  # no column the model lacks
        accepted = _accepted_values(entry)
        assert set(accepted) <= set(columns), model.name
        for name in CODE_COLUMNS & set(columns):
            tests = _tests_of(columns[name])
            assert name in accepted or {"accepted_values", "relationships"} & set(tests), f"{model.name}.{name}"
        # a column's accepted values are in the model's one accepted_values_columns test, but for a warning
        for name, column in columns.items():
            for test in column.get("data_tests", []) or []:
                if isinstance(test, dict) and "accepted_values" in test:
                    assert test["accepted_values"]["config"]["severity"] == "warn", f"{model.name}.{name}"


def test_the_models_have_unit_tests_for_their_rule_boundaries():
    unit_tests = [test for model in MODELS for test in model_yml(model).get("unit_tests", [])]
    assert len(unit_tests) >= 8
    assert {test["model"] for test in unit_tests} >= {"result_classification", "patient_status", "cohort_counts"}


@pytest.fixture(scope="module")
def dbt_built(tmp_path_factory) -> tuple[Path, runner.BuildResult, list[str]]:
    """dbt build (seeds, models, data tests and unit tests) of the small lake, through the runner the flow uses."""
    tmp = tmp_path_factory.mktemp("dbt")
    warehouse = warehouse_with(tmp, lake_tables(), as_of=dt.date(2024, 2, 29))
    lines: list[str] = []
    result = runner.build(warehouse, SESSION_DBT_WORK, dt.date(2024, 2, 29), log=lines.append, all_tests=True)
    return warehouse, result, lines


def test_dbt_builds_every_seed_and_model_and_runs_the_tests(dbt_built):
    warehouse, result, lines = dbt_built
    assert set(result.built) == {model.name for model in MODELS} | set(seeds())
    assert result.tests_passed >= 40
    assert result.warnings == []
    # Each node's result is one line of the run's log, models in dependency order.
    model_lines = [line for line in lines if re.search(r"sql (table|incremental) model", line)]
    assert len(model_lines) == len(MODELS)
    assert all(line.startswith("dbt: ") for line in lines)


def _passed_seed_tests(lines: list[str]) -> set[str]:
    """The seeds' data tests that the build's log lines say passed (`PASS unique_measures_measure ...`)."""
    return {line.split(" PASS ", 1)[1].split()[0] for line in lines if " PASS " in line} & seed_tests()


def test_the_tests_a_night_leaves_out_as_the_seeds_are_exactly_the_seeds_tests():
    assert runner.SEED_TESTS == "tag:project_files"
    assert tagged_tests("project_files") == seed_tests() != set()


def test_the_seeds_are_tested_by_the_suite_and_not_at_night(dbt_built, sample_output):
    """The seeds' data tests check the project's own CSV files: the suite's build runs every one of them, a
    night none (63 tests, a second of every first night)."""
    _, _, lines = dbt_built
    assert len(seed_tests()) >= len(seeds()) and _passed_seed_tests(lines) == seed_tests()
    [log] = (sample_output / "logs").glob("*.log")
    night = [line.split(" - ", 1)[1] for line in log.read_text(encoding="utf-8").splitlines() if " - dbt: " in line]
    assert any("OK loaded seed file main.measures" in line for line in night)
    assert any(" PASS unique_worklist_items_urgency" in line for line in night)  # the marts' tests still run
    # and the sources', the lake's relationships test to the reference seeds among them
    assert any(" PASS source_relationships_lake_lab_results_analyte" in line for line in night)
    assert _passed_seed_tests(night) == set()


def test_the_column_comments_come_from_the_yml(dbt_built):
    warehouse, _, _ = dbt_built
    [entry] = model_yml(next(m for m in MODELS if m.name == "cohort_deficient"))["models"]
    expected = {column["name"]: column["description"].strip() for column in entry["columns"]}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        comments = dict(con.execute("select column_name, comment from duckdb_columns() "
                                    "where table_name = 'cohort_deficient'").fetchall())
        table_comment = con.execute("select comment from duckdb_tables() where table_name = 'cohort_deficient'"
                                    ).fetchone()[0]
    assert {name: (text or "").strip() for name, text in comments.items()} == expected
    assert table_comment.strip() == entry["description"].strip()


def test_the_as_of_dates_are_the_run_date_and_the_month_ends_before_it(dbt_built):
    """trend_months (24) dates: a leap day as-of, and every earlier month's last day."""
    warehouse, _, _ = dbt_built
    with duckdb.connect(str(warehouse), read_only=True) as con:
        dates = [d for (d,) in con.execute("select as_of from stg_as_of_dates order by as_of").fetchall()]
        counted = [d for (d,) in con.execute(
            "select distinct as_of from cohort_counts order by as_of").fetchall()]
    assert dates == month_ends(dt.date(2024, 2, 29), 24)
    assert dates[0] == dt.date(2022, 3, 31) and dates[-2] == dt.date(2024, 1, 31)
    assert counted == dates


def test_dbt_and_the_compiled_sql_build_give_the_same_tables(dbt_built):
    warehouse, _, _ = dbt_built
    with duckdb.connect(str(warehouse), read_only=True) as con:  # the very rows dbt built from
        tables = {name: [dict(zip([d[0] for d in cursor.description], row)) for row in cursor.fetchall()]
                  for name in ("lab_results", "patients", "diagnoses", "medications")
                  for cursor in [con.execute(f"select * from {name}")]}
    single = build(labs=tables["lab_results"], patients=tables["patients"], diagnoses=tables["diagnoses"],
                   medications=tables["medications"], as_of=dt.date(2024, 2, 29))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for mart in runner.MART_TABLES:
            query = f"select * from {mart}"
            if mart in ("cohort_counts", "practice_measures"):  # the compiled build evaluates the run's date only
                query += " where as_of = date '2024-02-29'"
            assert con.execute(query).fetchall() == single.execute(query).fetchall(), mart


def test_a_failing_data_test_stops_the_build_in_one_line(tmp_path):
    """A lab result of an analyte the reference tables do not know can only come from a broken ingest: the
    source's relationships test fails and the build raises, so the flow never reaches the switch."""
    tables = lake_tables()
    tables["lab_results"].append(lab("b12", 90, patient="SECRET-PATIENT-7", day=-5) | {"analyte": "vitamin_x"})
    warehouse = warehouse_with(tmp_path, tables)
    with pytest.raises(runner.ModelError) as failed:
        runner.build(warehouse, SESSION_DBT_WORK, AS_OF, log=lambda line: None)
    message = str(failed.value)
    assert "\n" not in message and "SECRET-PATIENT-7" not in message
    assert re.match(r"^test \S*relationships\S*lab_results\S* fail", message), message


def test_a_failing_model_is_named_and_no_value_leaks(tmp_path):
    warehouse = warehouse_with(tmp_path, lake_tables())
    with duckdb.connect(str(warehouse)) as con:  # a start date that is not a date (no ingest writes one)
        con.execute("alter table medications alter start_date type varchar")
        con.execute("update medications set start_date = 'PATIENT-0042'")
    with pytest.raises(runner.ModelError) as failed:
        runner.build(warehouse, SESSION_DBT_WORK, AS_OF, log=lambda line: None)
    message = str(failed.value)
    assert re.match(r"^model \S+ error: ", message) and "\n" not in message, message
    assert "PATIENT-0042" not in message


@pytest.mark.parametrize("error", [
    'Conversion Error: invalid date field format: "PATIENT-0042", expected format is (YYYY-MM-DD)\nLINE 1: ...',
    "Conversion Error: Could not convert string 'PATIENT-0042' to INT32 when casting from source column d",
])
def test_a_database_message_is_one_line_with_its_quoted_values_masked(error):
    line = runner._first_line(error)
    assert "PATIENT-0042" not in line and "\n" not in line and line.startswith("Conversion Error: ")


@pytest.mark.parametrize("failed, select, expected", [
    (["int_under_monitored"], None, ["int_under_monitored+"]),
    (["cohort_counts", "not_null_cohort_counts_practice"], None,
     ["cohort_counts+", "not_null_cohort_counts_practice+"]),
    (["int_under_monitored"], ["+config.materialized:incremental"],
     ["int_under_monitored+,+config.materialized:incremental"]),
])
def test_the_run_again_selects_the_failed_nodes_and_those_after_them_within_the_selection(failed, select, expected):
    assert runner.retry_selection(failed, select) == expected


def test_the_catalogue_is_one_self_contained_page(dbt_built, tmp_path):
    warehouse, _, _ = dbt_built
    page = runner.docs(warehouse, SESSION_DBT_WORK, tmp_path / "catalogue" / "index.html", log=lambda line: None)
    html = page.read_text(encoding="utf-8")
    assert not re.findall(r'(?:src|href)="https?://(?!\[::1\])', html)
    for model in ("cohort_deficient", "int_patient_status", "stg_counted_results"):
        assert model in html
    assert '\\"main\\".\\"stg_run_as_of\\"' in html  # the models' compiled SQL, refs resolved


def test_a_catalogue_after_a_build_that_wrote_its_manifest_reuses_it(tmp_path, monkeypatch):
    """A night that generates its catalogue afresh has its build write dbt's manifest: the catalogue takes the
    compiled nodes from it (`docs generate --no-compile`) instead of compiling the project again. Any other
    build removes a manifest left in the work folder, so the catalogue never reads an earlier night's."""
    monkeypatch.setenv("B12LAB_CACHE_DIR", str(tmp_path / "cache"))  # no page of the machine's either
    work = tmp_path / "dbt"
    runner.reuse_parse(SESSION_DBT_WORK / runner.PARSE_CACHE, work)
    warehouse = warehouse_with(tmp_path, lake_tables())
    runner.build(warehouse, work, AS_OF, log=lambda line: None, write_manifest=True)
    manifest = work / runner.BUILD_MANIFEST
    written = manifest.read_bytes()
    assert not runner.catalogue_cached(work)
    page = runner.docs(warehouse, work, tmp_path / "catalogue" / "index.html", log=lambda line: None)
    assert manifest.read_bytes() == written  # read, not written again: nothing was compiled
    html = page.read_text(encoding="utf-8")
    assert "cohort_deficient" in html and '\\"main\\".\\"stg_run_as_of\\"' in html
    assert runner.catalogue_cached(work)
    runner.build(warehouse, work, AS_OF, log=lambda line: None, select=["stg_run_as_of"])
    assert not manifest.exists()


def test_a_new_work_folder_starts_from_the_machines_parse_and_catalogue(tmp_path, monkeypatch):
    """A first night in a new output folder starts from the parse of the project and the catalogue page an
    earlier run on the machine left in the cache (B12LAB_CACHE_DIR), by the project's digest and place: its build
    does not parse the project and its catalogue is not generated again."""
    monkeypatch.setenv("B12LAB_CACHE_DIR", str(tmp_path / "cache"))
    kept = runner.machine_cache()
    assert kept.parent == tmp_path / "cache" / "dbt" and kept.name.startswith(runner.project_digest() + "-")
    warehouse = warehouse_with(tmp_path, lake_tables())
    first = tmp_path / "first"
    runner.reuse_parse(SESSION_DBT_WORK / runner.PARSE_CACHE, first)  # the session's: a parse costs 3 s
    runner.build(warehouse, first, AS_OF, log=lambda line: None)
    assert (kept / "partial_parse.msgpack").read_bytes() == (first / runner.PARSE_CACHE).read_bytes()
    page = runner.docs(warehouse, first, tmp_path / "first-catalogue.html", log=lambda line: None)
    [kept_page] = (kept / runner.CATALOGUE_CACHE).glob("*.html")
    assert kept_page.read_bytes() == page.read_bytes()

    second = tmp_path / "second"
    runner.seed_parse(second)
    assert (second / runner.PARSE_CACHE).read_bytes() == (kept / "partial_parse.msgpack").read_bytes()
    assert runner.catalogue_cached(second)  # so its first build need not write a manifest for the catalogue
    again = runner.docs(warehouse, second, tmp_path / "second-catalogue.html", log=lambda line: None)
    assert again.read_bytes() == page.read_bytes()
    assert not (second / "target" / "static_index.html").exists()  # copied, never generated: dbt did not run


def test_another_checkout_of_the_same_project_has_a_cache_of_its_own(tmp_path, monkeypatch):
    # dbt's parse holds the project's absolute paths: one made in a checkout since removed (a clone in a
    # temporary folder) failed every seed of a night in another checkout of the same version.
    monkeypatch.setenv("B12LAB_CACHE_DIR", str(tmp_path / "cache"))
    here = runner.machine_cache()
    elsewhere = tmp_path / "elsewhere" / "transforms"
    shutil.copytree(runner.PROJECT_DIR, elsewhere, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    digest = runner.project_digest()
    monkeypatch.setattr(runner, "PROJECT_DIR", elsewhere)
    assert runner.project_digest() == digest  # the same files
    assert runner.machine_cache() != here


def test_a_cache_that_cannot_be_written_costs_only_time(tmp_path, monkeypatch, capsys):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("B12LAB_CACHE_DIR", str(tmp_path / "not-a-folder" / "cache"))
    warehouse = warehouse_with(tmp_path, lake_tables())
    runner.reuse_parse(SESSION_DBT_WORK / runner.PARSE_CACHE, tmp_path / "dbt")
    result = runner.build(warehouse, tmp_path / "dbt", AS_OF, log=lambda line: None, select=["stg_run_as_of"])
    assert result.built == ["stg_run_as_of"]
    [line] = [line for line in capsys.readouterr().out.splitlines() if "cache" in line]
    assert line.startswith(f"dbt: the parse and catalogue cache {tmp_path / 'not-a-folder' / 'cache'}")
    assert line.endswith("a first night in a new output folder will parse the project again")


def test_a_model_out_of_memory_names_the_limit_and_the_setting_to_raise(tmp_path):
    """DuckDB spills to disk before it gives up; when even that cannot fit (here a limit far too small for any
    hash table), the one line says which limit and which setting, not just "Runtime Error"."""
    warehouse = warehouse_with(tmp_path, lake_tables())
    lines: list[str] = []
    with pytest.raises(runner.ModelError) as failed:
        runner.build(warehouse, SESSION_DBT_WORK, AS_OF, log=lines.append, memory_limit="1MB")
    # Before giving up, the build tried the failed models and those after them again on one thread (DuckDB threads = 1),
    # which at 1 MB cannot even start.
    assert [line for line in lines if "on every core: run again on one thread" in line]
    message = str(failed.value)
    assert "\n" not in message
    # A node that ran out of memory, or (as often, at 1 MB) the project's on-run-start hook itself.
    assert re.match(r"^((model|seed) \S+ error|dbt build could not run): .*: out of memory: DuckDB could not finish "
                    r"within its memory limit \(1MB\)"
                    r" even spilling to disk; raise B12LAB_MEMORY_LIMIT( \(and \d+ more\))?$", message), message


def render_generic_test(name: str, **arguments) -> str:
    """A generic test of transforms/tests/generic/ rendered as dbt renders it, on the table `checked`."""
    import jinja2

    source = (runner.PROJECT_DIR / "tests" / "generic" / f"{name}.sql").read_text(encoding="utf-8")
    body = source.split("{% test", 1)[1].split("%}", 1)[1].split("{% endtest %}", 1)[0]
    quoting = type("Adapter", (), {"quote": staticmethod(lambda column: f'"{column}"')})
    return jinja2.Template(body).render(model="checked", adapter=quoting, **arguments)


def test_the_not_null_columns_test_names_each_column_with_nulls_and_passes_a_filled_table():
    """One scan of the model for all its never-null columns (transforms/tests/generic/not_null_columns.sql):
    a row per column with nulls, with their number; none when all are filled."""
    sql = render_generic_test("not_null_columns", columns=["patient_id", "as of", "status"])
    with duckdb.connect() as con:
        con.execute('create table checked (patient_id varchar, "as of" date, status varchar, note varchar)')
        con.execute("insert into checked values ('P1', date '2024-01-31', 'normal', null), "
                    "('P2', null, 'normal', null), ('P3', null, null, 'x')")
        assert sorted(con.execute(sql).fetchall()) == [("as of", 2), ("status", 1)]
        con.execute("update checked set \"as of\" = date '2024-01-31', status = 'normal'")
        assert con.execute(sql).fetchall() == []


def test_the_accepted_values_columns_test_names_each_value_outside_its_columns_values():
    """One query for all of a model's code columns (transforms/tests/generic/accepted_values_columns.sql): a row
    per column and unexpected value, with its number of rows; a null is no value; text, numbers and booleans
    compared as such; none when every value is accepted."""
    sql = render_generic_test("accepted_values_columns", values={
        "status": ["normal", "deficient"], "the window": ["1m", "it's"], "severity": [1, 2], "flagged": [True]})
    with duckdb.connect() as con:
        con.execute('create table checked (status varchar, "the window" varchar, severity integer, flagged boolean)')
        con.execute("insert into checked values ('normal', '1m', 1, true), ('deficient', 'it''s', 2, true), "
                    "(null, null, null, null), ('Normal', '3m', 3, false), ('Normal', '1m', 1, true)")
        assert sorted(con.execute(sql).fetchall()) == [
            ("flagged", "false", 1), ("severity", "3", 1), ("status", "Normal", 2), ("the window", "3m", 1)]
        con.execute("delete from checked where status = 'Normal'")
        assert con.execute(sql).fetchall() == []

