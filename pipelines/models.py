"""Build the SQL models of transforms/ (staging -> intermediate -> marts) in a DuckDB connection.

One model per file, file name = table name. The build order comes from the models themselves: a model
depends on every other model whose name it mentions (outside comments), and the models are built in
dependency order, layer by layer. The connection must already hold the lake tables (`lab_results`,
`patients`, `diagnoses`, `medications`) and the rules tables (`pipelines.rules.install_rules`).
"""

from __future__ import annotations

import re
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


def build_models(con: Any, transforms_dir: Path | None = None) -> list[str]:
    """Create or replace one table per model in `con`, in dependency order; return the table names built."""
    existing = {row[0] for row in con.execute("select table_name from duckdb_tables() union all "
                                              "select view_name from duckdb_views()").fetchall()}
    missing = [table for table in REQUIRED_TABLES if table not in existing]
    if missing:
        raise ModelError(f"cannot build models: missing input tables {', '.join(missing)}")
    built: list[str] = []
    for model in discover_models(transforms_dir):
        try:
            con.execute(f"create or replace table {model.name} as\n{model.sql}")
        except Exception as error:  # noqa: BLE001 - re-raised with the model named, one line
            raise ModelError(f"model {model.layer}/{model.name} failed: {_safe_message(error)}") from error
        built.append(model.name)
    return built


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
