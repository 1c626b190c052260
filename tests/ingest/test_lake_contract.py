"""The lake's columns are declared once (b12lab/lake/lake.py): what the ingest writes, the warehouse's empty
tables, models/sources.yml and the GX suites all agree with that declaration."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from b12lab.common.paths import EXPECTATIONS_DIR, TRANSFORMS_DIR
from b12lab.ingest import EXPORT_KINDS
from b12lab.lake.lake import DATA_SCHEMAS, LAKE_SCHEMAS, LINEAGE_SCHEMA, Lake
from b12lab.publish.publication import create_lake_views

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"
SUITES = sorted((EXPECTATIONS_DIR / "expectations").glob("*.json"))
# The accepted-row tables and the quarantine: every column of theirs is described in sources.yml.
FULLY_DESCRIBED = ("lab_results", "patients", "diagnoses", "medications", "quarantine")


def columns_and_types(schema) -> list[tuple[str, str]]:
    """Names and types in order (whether a writer marked a column not null, or how it names a list's items, is
    no part of the contract)."""
    return [(field.name, f"list<{field.type.value_type}>" if pa.types.is_list(field.type) else str(field.type))
            for field in schema]


def lake_sources() -> dict[str, list[str]]:
    sources = yaml.safe_load((TRANSFORMS_DIR / "models" / "sources.yml").read_text(encoding="utf-8"))["sources"]
    [lake] = [source for source in sources if source["name"] == "lake"]
    return {table["name"]: [column["name"] for column in table.get("columns", [])] for table in lake["tables"]}


def test_sources_yml_names_the_lake_tables_and_their_columns_in_order():
    documented = lake_sources()
    assert set(documented) == set(LAKE_SCHEMAS)
    for table, columns in documented.items():
        declared = LAKE_SCHEMAS[table].names
        assert set(columns) <= set(declared), f"{table}: {sorted(set(columns) - set(declared))} not in the lake"
        assert columns == [name for name in declared if name in columns], f"{table}: not in the lake's order"
    for table in FULLY_DESCRIBED:
        assert documented[table] == LAKE_SCHEMAS[table].names, table


def _columns_named(expectation: dict) -> set[str]:
    """The columns an expectation reads: its column arguments, column lists and row condition."""
    kwargs = expectation["kwargs"]
    named = {kwargs[key] for key in ("column", "column_A", "column_B") if key in kwargs}
    named |= set(kwargs.get("column_list") or []) | set(kwargs.get("column_set") or [])
    condition = kwargs.get("row_condition")
    if condition:
        text = condition.get("pass_through_filter", "") if isinstance(condition, dict) else str(condition)
        # pandas query text: a name compared with a value (analyte=="b12", rows > 1)
        named |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:==|!=|<=|>=|<|>|\bin\b|\bnot in\b)", text))
    return named


@pytest.mark.parametrize("suite", SUITES, ids=[path.stem for path in SUITES])
def test_each_gx_suite_names_only_its_lake_tables_columns(suite):
    table = suite.stem
    assert table in DATA_SCHEMAS, f"suite {suite.name} is for no lake data table"
    expectations = json.loads(suite.read_text(encoding="utf-8"))["expectations"]
    assert expectations
    for expectation in expectations:
        named = _columns_named(expectation)
        assert named, expectation["type"]
        unknown = named - set(DATA_SCHEMAS[table].names)
        assert not unknown, f"{table}: {expectation['type']} names {sorted(unknown)}, not columns of the lake table"


def test_the_condition_reader_finds_the_column_a_condition_names():
    assert _columns_named({"kwargs": {"column": "value_si", "row_condition": {
        "pass_through_filter": 'analyte=="b12"', "type": "pass_through"}}}) == {"value_si", "analyte"}


def test_every_accepted_row_table_carries_the_lineage_last():
    for kind in EXPORT_KINDS.values():
        names = DATA_SCHEMAS[kind.table].names
        assert names[len(kind.lake_columns):] == LINEAGE_SCHEMA.names, kind.table
        assert "patient_id" in kind.lake_columns


def test_what_the_ingest_writes_has_the_declared_columns_and_types(tmp_path, ingest):
    written: dict[str, list[Path]] = {}
    for path in sorted(SAMPLE_DIR.iterdir()):
        copy = tmp_path / "in" / path.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, copy)
        result = ingest(copy)
        for table in DATA_SCHEMAS:
            file = result.lake.data_file(table, result.source_hash)
            if file.exists():
                written.setdefault(table, []).append(file)
    assert set(written) == set(DATA_SCHEMAS), "the sample writes every data table"
    for table, files in written.items():
        for file in files:
            assert columns_and_types(pq.read_schema(file)) == columns_and_types(DATA_SCHEMAS[table]), table


def test_an_empty_lake_gives_the_warehouse_every_table_with_the_declared_columns(tmp_path):
    with duckdb.connect() as con:
        create_lake_views(con, Lake(tmp_path / "lake"), materialise=True)
        for table, schema in LAKE_SCHEMAS.items():
            empty = con.sql(f"select * from {table}").to_arrow_table()
            assert empty.num_rows == 0
            assert columns_and_types(empty.schema) == columns_and_types(schema), table
