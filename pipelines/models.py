"""Build the SQL models of transforms/ (staging -> intermediate -> marts) in a DuckDB connection.

One model per file, file name = table name. The build order comes from the models themselves: a model
depends on every other model whose name it mentions (outside comments), and the models are built in
dependency order, layer by layer. The connection must already hold the lake tables (`lab_results`,
`patients`, `diagnoses`, `medications`) and the rules tables (`pipelines.rules.install_rules`).

Every date-dependent model keeps the as-of date in its grain and reads its dates from `stg_as_of_dates`,
which holds the run's as_of alone in a publication. The report's trend builds the same models once with
every month end there instead (`build_models(..., as_of_dates=...)`), so that the publication and the trend
share one definition of each rule; the marts select the run's as_of.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRANSFORMS_DIR = Path(__file__).resolve().parent.parent / "transforms"
LAYERS = ("staging", "intermediate", "marts")
REQUIRED_TABLES = (
    "lab_results", "patients", "diagnoses", "medications", "rules_settings", "rules_codes",
)  # fmt: skip
# The analyst tables (the output contract): their names must not change.
MART_TABLES = (
    "result_classification",
    "patient_status",
    "cohort_deficient",
    "cohort_borderline",
    "cohort_under_monitored",
    "patient_flags",
)
# The model that holds the as-of dates every date-dependent model is evaluated on.
AS_OF_DATES_MODEL = "stg_as_of_dates"

_LINE_COMMENT = re.compile(r"--[^\n]*")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_QUOTED_VALUE = re.compile(r"'(?:[^']|'')*'")


class ModelError(RuntimeError):
    """The model files are inconsistent (bad name, unknown layer order, cycle) or a model failed."""


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    sql: str
    depends_on: frozenset[str]


def discover_models(transforms_dir: Path | None = None) -> list[Model]:
    """Every model file, in build order (dependencies first; within that, by layer then name)."""
    root = Path(transforms_dir) if transforms_dir is not None else TRANSFORMS_DIR
    found: dict[str, tuple[str, Path, str]] = {}
    for layer in LAYERS:
        for path in sorted((root / layer).glob("*.sql")):
            name = path.stem
            if not _MODEL_NAME.match(name):
                raise ModelError(f"{layer}/{path.name}: a model file name must be a lowercase table name")
            if name in found:
                raise ModelError(f"{layer}/{path.name}: model name '{name}' is used twice")
            sql = path.read_text(encoding="utf-8").strip().rstrip(";").strip()
            found[name] = (layer, path, sql)

    models: dict[str, Model] = {}
    for name, (layer, path, sql) in found.items():
        code = _LINE_COMMENT.sub(" ", _BLOCK_COMMENT.sub(" ", sql))
        depends_on = frozenset(
            other for other in found if other != name and re.search(rf"\b{re.escape(other)}\b", code)
        )
        for other in depends_on:
            if LAYERS.index(found[other][0]) > LAYERS.index(layer):
                raise ModelError(f"{layer}/{name}: depends on '{other}' of the later layer {found[other][0]}")
        models[name] = Model(name=name, layer=layer, path=path, sql=sql, depends_on=depends_on)
    return _in_build_order(models)


def models_for(tables: Iterable[str], transforms_dir: Path | None = None) -> list[Model]:
    """The models `tables` are built from (themselves and every model they depend on), in build order."""
    models = discover_models(transforms_dir)
    by_name = {model.name: model for model in models}
    unknown = sorted(set(tables) - set(by_name))
    if unknown:
        raise ModelError(f"no model named {', '.join(unknown)}")
    needed, pending = set(), list(tables)
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(by_name[name].depends_on)
    return [model for model in models if model.name in needed]


def build_models(con: Any, transforms_dir: Path | None = None, *, tables: Iterable[str] | None = None,
                 as_of_dates: Sequence[dt.date] | None = None) -> list[str]:
    """Create or replace one table per model in `con`, in dependency order; return the table names built.

    tables: build only these models and the models they depend on (default: every model). The models they
    depend on are then working tables: each is dropped as soon as every model reading it is built, which
    keeps a many-date build's memory down (returned, but no longer in `con`).
    as_of_dates: evaluate the date-dependent models on each of these dates in one build, instead of on
    rules_settings.as_of alone: `stg_as_of_dates` is made from them rather than from its SQL, and every
    intermediate model then holds the rows of each date. The marts stay as of rules_settings.as_of, so a
    caller asking for several dates reads the intermediate models (the report's trend does).
    """
    existing = {row[0] for row in con.execute("select table_name from duckdb_tables() union all "
                                              "select view_name from duckdb_views()").fetchall()}
    missing = [table for table in REQUIRED_TABLES if table not in existing]
    if missing:
        raise ModelError(f"cannot build models: missing input tables {', '.join(missing)}")
    if tables is None:
        models, working_tables = discover_models(transforms_dir), set()
    else:
        tables = set(tables)
        models = models_for(tables, transforms_dir)
        working_tables = {model.name for model in models} - tables
    last_reader = {dependency: model.name for model in models for dependency in model.depends_on}
    built: list[str] = []
    for model in models:
        if model.name == AS_OF_DATES_MODEL and as_of_dates is not None:
            _create_as_of_dates(con, as_of_dates)
        else:
            try:
                con.execute(f"create or replace table {model.name} as\n{model.sql}")
            except Exception as error:  # noqa: BLE001 - re-raised with the model named, one line
                raise ModelError(f"model {model.layer}/{model.name} failed: {_safe_message(error)}") from error
        built.append(model.name)
        for dependency in sorted(model.depends_on & working_tables):
            if last_reader[dependency] == model.name:
                con.execute(f"drop table {dependency}")
    return built


def _create_as_of_dates(con: Any, as_of_dates: Sequence[dt.date]) -> None:
    """The table of AS_OF_DATES_MODEL, with the same column, holding `as_of_dates` (each once)."""
    if not all(isinstance(day, dt.date) and not isinstance(day, dt.datetime) for day in as_of_dates):
        raise ModelError("as_of_dates: expected dates")
    dates = sorted(set(as_of_dates))
    if not dates:
        raise ModelError("as_of_dates: expected at least one date")
    con.execute(f"create or replace table {AS_OF_DATES_MODEL} (as_of date)")
    con.executemany(f"insert into {AS_OF_DATES_MODEL} values (?)", [[day] for day in dates])


def _safe_message(error: Exception) -> str:
    """The error's first line with quoted values masked: a database error can quote the value it failed on,
    which could be a patient identifier, and messages end up in logs."""
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    return _QUOTED_VALUE.sub("'...'", first_line)


def _in_build_order(models: dict[str, Model]) -> list[Model]:
    def sort_key(model: Model) -> tuple[int, str]:
        return (LAYERS.index(model.layer), model.name)

    ordered: list[Model] = []
    done: set[str] = set()
    pending = sorted(models.values(), key=sort_key)
    while pending:
        ready = [model for model in pending if model.depends_on <= done]
        if not ready:
            raise ModelError(f"models depend on each other in a cycle: {', '.join(m.name for m in pending)}")
        first = ready[0]
        ordered.append(first)
        done.add(first.name)
        pending.remove(first)
    return ordered
