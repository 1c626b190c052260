"""The dbt project's models as dbt compiles them, executed on an in-memory DuckDB connection: the rule tests
build hundreds of small lakes, and a `dbt build` per lake (a warehouse file, dbt's start-up) would take hours.

`dbt compile` runs once per test session against an in-memory profile, so every `ref()` and `source()`
becomes a table of the connection's default database ("memory"). `build_models` then creates one table per
model from dbt's compiled SQL, in dbt's dependency order: the same SQL the nightly `dbt build` runs. Seeds the
models join are created from their CSV files with the column types of their `.yml`. That the two builds give
the same tables is checked by tests/transforms/test_dbt_project.py.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from b12lab.publish import dbt_build as runner

AS_OF_DATES_MODEL = "stg_as_of_dates"
# The one model that reads the dbt variable as_of: compiled once with dbt's default, built with the test's date.
RUN_AS_OF_MODEL = "stg_run_as_of"
REQUIRED_TABLES = ("lab_results", "patients", "diagnoses", "medications", "quarantine", "unmapped_codes",
                   "unreadable_fields", "ingested_files",
                   "ingest_outcomes", "runs", "rules_settings", "rules_codes")


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    sql: str            # the model file as written (Jinja)
    compiled: str       # as dbt compiled it
    depends_on: frozenset[str]  # models and seeds
    relation: str       # the table dbt builds it as ("memory"."incremental"."int_status_on_date")


@dataclass(frozen=True)
class Seed:
    name: str
    path: Path
    column_types: dict


@functools.cache
def _manifest() -> dict:
    # inside the session's dbt work folder when there is one (tests/conftest.py removes it at the end)
    work = Path(tempfile.mkdtemp(prefix="compile-", dir=os.environ.get("B12LAB_DBT_WORK_DIR")))
    from dbt.cli.main import dbtRunner

    saved = os.environ.get("B12LAB_WAREHOUSE_FILE")
    os.environ["B12LAB_WAREHOUSE_FILE"] = ":memory:"
    try:
        outcome = dbtRunner().invoke([
            "compile", "--project-dir", str(runner.PROJECT_DIR), "--profiles-dir", str(runner.PROJECT_DIR),
            "--target-path", str(work / "target"), "--log-path", str(work / "logs"), "--log-level", "none",
            "--log-level-file", "none", "--no-send-anonymous-usage-stats", "--no-version-check",
            # One as-of date (the run's): the rule tests build hundreds of lakes; the trend's many dates are
            # tested with as_of_dates and through dbt itself.
            "--vars", "{trend_months: 1}"])
    finally:
        if saved is None:
            os.environ.pop("B12LAB_WAREHOUSE_FILE", None)
        else:
            os.environ["B12LAB_WAREHOUSE_FILE"] = saved
    assert outcome.success, f"dbt compile failed: {outcome.exception}"
    return json.loads((work / "target" / "manifest.json").read_text())


@functools.cache
def seed_tests() -> set[str]:
    """The names of the data tests written in the seeds' .yml files."""
    return {node["name"] for node in _manifest()["nodes"].values()
            if node["resource_type"] == "test" and node["original_file_path"].startswith("seeds/")}


def tagged_tests(tag: str) -> set[str]:
    return {node["name"] for node in _manifest()["nodes"].values()
            if node["resource_type"] == "test" and tag in node["tags"]}


def seeds() -> dict[str, Seed]:
    found = {}
    for node in _manifest()["nodes"].values():
        if node["resource_type"] == "seed":
            path = runner.PROJECT_DIR / node["original_file_path"]
            found[node["name"]] = Seed(node["name"], path, dict(node["config"].get("column_types") or {}))
    return found


@functools.cache
def compiled_models() -> tuple[Model, ...]:
    """Every model, in an order dbt could build them (dependencies first; within that by layer, then name)."""
    nodes = {key: node for key, node in _manifest()["nodes"].items() if node["resource_type"] == "model"}
    names = {key: node["name"] for key, node in _manifest()["nodes"].items()
             if node["resource_type"] in ("model", "seed")}
    models = {}
    for node in nodes.values():
        path = runner.PROJECT_DIR / node["original_file_path"]
        models[node["name"]] = Model(
            name=node["name"], layer=node["fqn"][1], path=path, sql=path.read_text(encoding="utf-8"),
            compiled=node["compiled_code"].strip().rstrip(";"), relation=node["relation_name"],
            depends_on=frozenset(names[key] for key in node["depends_on"]["nodes"] if key in names))
    layers = ("staging", "intermediate", "marts")
    ordered, done = [], set(seeds())
    pending = sorted(models.values(), key=lambda m: (layers.index(m.layer), m.name))
    while pending:
        ready = next(model for model in pending if model.depends_on <= done)
        ordered.append(ready)
        done.add(ready.name)
        pending.remove(ready)
    return tuple(ordered)


def build_models(con: duckdb.DuckDBPyConnection, *, as_of: dt.date, tables: Iterable[str] | None = None,
                 as_of_dates: Sequence[dt.date] | None = None) -> list[str]:
    """Create one table per model in `con` from dbt's compiled SQL, as of the run's date `as_of` (what the
    nightly build passes as the dbt variable as_of); return the names built.

    tables: only these models and what they depend on. as_of_dates: the as-of dates model holds these dates
    instead of its own (a test of the per-date grain)."""
    if isinstance(as_of, dt.datetime) or not isinstance(as_of, dt.date):
        raise runner.ModelError("as_of: expected a date")
    existing = {row[0] for row in con.execute("select table_name from duckdb_tables() union all "
                                              "select view_name from duckdb_views()").fetchall()}
    missing = [table for table in REQUIRED_TABLES if table not in existing]
    if missing:
        raise runner.ModelError(f"cannot build models: missing input tables {', '.join(missing)}")
    models = compiled_models()
    # dbt's on-run-start (macros/incremental.sql): the incremental schema, with the sources of a full build
    con.execute("create schema if not exists incremental")
    con.execute("create table if not exists incremental.build_state (as_of date, as_of_dates date[], fingerprint varchar)")
    con.execute("create table if not exists incremental.rebuild_patients (patient_id varchar)")
    # the patient-level models live in schema incremental; tests name every model without its schema
    con.execute("set search_path = 'main,incremental'")
    if tables is not None:
        by_name, needed, pending = {m.name: m for m in models}, set(), list(tables)
        while pending:
            name = pending.pop()
            if name in by_name and name not in needed:
                needed.add(name)
                pending.extend(by_name[name].depends_on)
        models = tuple(m for m in models if m.name in needed)
    used_seeds = set().union(*(m.depends_on for m in models)) & set(seeds())
    for name in sorted(used_seeds):
        _create_seed(con, seeds()[name])
    built = []
    for model in models:
        if model.name == RUN_AS_OF_MODEL:
            con.execute(f"create or replace table {RUN_AS_OF_MODEL} as select $as_of::date as as_of", {"as_of": as_of})
        elif model.name == AS_OF_DATES_MODEL and as_of_dates is not None:
            if not all(isinstance(d, dt.date) and not isinstance(d, dt.datetime) for d in as_of_dates):
                raise runner.ModelError("as_of_dates: expected dates")
            dates = sorted(set(as_of_dates))
            if not dates:
                raise runner.ModelError("as_of_dates: expected at least one date")
            con.execute(f"create or replace table {AS_OF_DATES_MODEL} (as_of date)")
            con.executemany(f"insert into {AS_OF_DATES_MODEL} values (?)", [[d] for d in dates])
        else:
            try:
                con.execute(f"create or replace table {model.relation} as\n{model.compiled}")
            except duckdb.Error as error:
                raise runner.ModelError(f"model {model.layer}/{model.name} failed: "
                                        f"{runner._first_line(error)}") from error
        built.append(model.name)
    return built


def _create_seed(con: duckdb.DuckDBPyConnection, seed: Seed) -> None:
    types = {name: kind for name, kind in seed.column_types.items()}
    con.execute(f"create or replace table {seed.name} as select * from read_csv($path, header = true, "
                "all_varchar = true)", {"path": str(seed.path)})
    for column, kind in types.items():
        if kind.lower() not in ("varchar", "text"):
            con.execute(f"alter table {seed.name} alter {column} type {kind}")


def model_yml(model: Model) -> dict:
    """The .yml beside a model."""
    return yaml.safe_load(model.path.with_suffix(".yml").read_text(encoding="utf-8"))
