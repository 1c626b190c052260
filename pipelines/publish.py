"""Commit ingested files to the lake, build a publication, and switch it in atomically.

A publication is OUTPUT/publications/<run_id>/ (one Parquet file per output table) plus the DuckDB catalog
OUTPUT/warehouse.duckdb. The catalog is built under a temporary name and renamed over the old one: an
analyst who holds the old file open keeps reading the old publication, a new connection sees the new one,
and no one ever sees a mix. The lake views in the catalog name the committed lake files explicitly, so a
later run adding files does not change what an older catalog shows.
"""
from __future__ import annotations

import os
import shutil
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from pipelines.duck import connect
from pipelines.faults import crash_point
from pipelines.ingest import FileAccount
from pipelines.lake import COMMIT_TABLE, DATA_TABLES, OUTCOMES_TABLE, RUNS_TABLE, Lake
from pipelines.models import build_models
from pipelines.paths import TRANSFORMS_DIR
from pipelines.pseudonymise import ANALYTICS_NAME, KEY_VARIABLE, build_analytics, pseudonym_key
from pipelines.rules import Rules, install_rules
from pipelines.validate import ValidationReport

WAREHOUSE_NAME = "warehouse.duckdb"
PUBLICATIONS_KEPT = 7

# The output contract: tables analysts query, published in the catalog and as Parquet.
MART_TABLES = (
    "result_classification", "patient_status", "cohort_deficient", "cohort_borderline",
    "cohort_under_monitored", "patient_flags",
)
LAKE_VIEWS = (*DATA_TABLES, COMMIT_TABLE, OUTCOMES_TABLE, RUNS_TABLE)

_EMPTY_SCHEMAS = {
    # Used when the lake holds no file of a table yet, so the view still exists with its columns.
    "lab_results": "patient_id varchar, accession varchar, analyte varchar, loinc varchar, local_code varchar, "
                   "test_name varchar, collected_at timestamp, resulted_at timestamp, value_raw varchar, "
                   "unit_raw varchar, comparator varchar, value_reported double, unit_reported varchar, "
                   "value_si double, unit_si varchar, value_text varchar, reference_range varchar, "
                   "ref_low_si double, ref_high_si double, abnormal_flag varchar, status varchar, "
                   "performing_lab varchar",
    "patients": "patient_id varchar, birth_date date, birth_date_precision varchar, sex varchar, practice varchar",
    "diagnoses": "patient_id varchar, code_system varchar, code varchar, code_normalised varchar, recorded_at date, "
                 "recorded_at_precision varchar",
    "medications": "patient_id varchar, drug varchar, atc_code varchar, route varchar, dose varchar, "
                   "start_date date, end_date date",
    "quarantine": "source_file varchar, source_row bigint, source_hash varchar, ingest_run varchar, "
                  "table_name varchar, reason varchar, raw varchar",
    "unmapped_codes": "source_file varchar, source_hash varchar, ingest_run varchar, code_system varchar, "
                      "code varchar, display varchar, rows bigint, first_seen date, last_seen date",
    "ingested_files": "source_file varchar, source_hash varchar, kind varchar, ingest_run varchar, "
                      "committed_at timestamp, rows_read bigint, rows_accepted bigint, rows_quarantined bigint, "
                      "rows_dropped bigint",
    "ingest_outcomes": "source_file varchar, source_hash varchar, ingest_run varchar, outcome varchar, "
                       "reason varchar, rows bigint",
    "runs": "run_id varchar, as_of date, started_at timestamp, finished_at timestamp, status varchar, "
            "message varchar, rules_version varchar, rules_profile varchar, files_ingested bigint, "
            "files_skipped bigint, rows_read bigint, rows_accepted bigint, rows_quarantined bigint, "
            "rows_dropped bigint, expectations_evaluated bigint, expectations_failed bigint, "
            "expectation_warnings bigint",
}
_LINEAGE = "source_file varchar, source_row bigint, source_hash varchar, ingest_run varchar"


def staging_dir(output_dir: Path, run_id: str) -> Path:
    return output_dir / "publications" / run_id


def new_rows_files(lake: Lake, source_hashes: list[str]) -> dict[str, list[Path]]:
    """The files this run wrote to each lake table (not yet committed), for validation."""
    files = {}
    for table in DATA_TABLES:
        paths = [path for h in source_hashes if (path := lake.data_file(table, h)).exists()]
        if paths:
            files[table] = paths
    return files


def commit_files(lake: Lake, run_id: str, accounts: list[FileAccount]) -> None:
    """Record the outcomes, then the commit record: from this moment the files are part of the lake."""
    if not accounts:
        return
    committed_at = datetime.now()
    outcomes = [
        {"source_file": a.source_file, "source_hash": a.source_hash, "ingest_run": run_id,
         "outcome": outcome, "reason": reason, "rows": rows}
        for a in accounts for (outcome, reason), rows in sorted(a.by_reason.items())
    ]
    lake.append_records(OUTCOMES_TABLE, run_id, pa.Table.from_pylist(outcomes))
    files = [
        {"source_file": a.source_file, "source_hash": a.source_hash, "kind": a.kind, "ingest_run": run_id,
         "committed_at": committed_at, "rows_read": a.rows_read, "rows_accepted": a.rows_accepted,
         "rows_quarantined": a.rows_quarantined, "rows_dropped": a.rows_dropped}
        for a in accounts
    ]
    lake.append_records(COMMIT_TABLE, run_id, pa.Table.from_pylist(files))


def record_run(lake: Lake, record: dict) -> None:
    lake.append_records(RUNS_TABLE, record["run_id"], pa.Table.from_pylist([record]))


def write_summary(output_dir: Path, run_id: str, text: str) -> Path:
    """OUTPUT/run_summary.json (latest run) and a copy in the run's publication folder."""
    run_folder = staging_dir(output_dir, run_id)
    run_folder.mkdir(parents=True, exist_ok=True)
    (run_folder / "run_summary.json").write_text(text)
    latest = output_dir / "run_summary.json"
    temporary = latest.with_suffix(".json.tmp")
    temporary.write_text(text)
    os.replace(temporary, latest)
    return latest


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_lake_views(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """One view per lake table over the committed files, named explicitly (see the module docstring).

    A view's definition is stored SQL and cannot hold bound parameters, so the file paths are written in
    as properly quoted literals; they are paths this program made (hash- or run-named), never input names.
    """
    for table in LAKE_VIEWS:
        files = lake.committed_files(table) if table in DATA_TABLES else lake.files(table)
        if files:
            paths = ", ".join(_quote_literal(str(path.resolve())) for path in files)
            con.execute(f"create or replace view {table} as select * from read_parquet([{paths}], union_by_name = true)")
        else:
            columns = _EMPTY_SCHEMAS[table] + (f", {_LINEAGE}" if table in DATA_TABLES and table not in ("quarantine", "unmapped_codes") else "")
            con.execute(f"create or replace table {table} ({columns})")


def build_publication(output_dir: Path, run_id: str, rules: Rules, as_of: date, run_record: dict,
                      validation: ValidationReport | None) -> Path:
    lake = Lake(output_dir / "lake")
    record_run(lake, run_record)
    publication = staging_dir(output_dir, run_id)
    publication.mkdir(parents=True, exist_ok=True)
    temporary_warehouse = output_dir / f".{WAREHOUSE_NAME}.{run_id}.tmp"
    temporary_warehouse.unlink(missing_ok=True)
    with connect(temporary_warehouse, temp_dir=output_dir / ".tmp") as con:
        create_lake_views(con, lake)
        install_rules(con, rules, as_of)
        built = build_models(con)
        crash_point("classify")
        for table in MART_TABLES:
            con.execute("copy (select * from " + table + ") to $target (format parquet, compression zstd)",
                        {"target": str(publication / f"{table}.parquet")})
        _drop_working_tables(con, built)
        apply_comments(con)
        comment_rules_settings(con, rules)
        con.execute("checkpoint")
    _publish_analytics(output_dir, run_id, temporary_warehouse)
    crash_point("publish")
    os.replace(temporary_warehouse, output_dir / WAREHOUSE_NAME)
    _point_current_at(output_dir, publication)
    _prune_publications(output_dir, keep=publication)
    return publication


def remove_stale_temporaries(output_dir: Path) -> int:
    """What a killed run leaves behind: catalogs never switched in (so nobody can be reading them), and its
    scratch folder OUTPUT/.tmp (decompressed copies of exports, DuckDB spill files), which holds patient data
    and belongs to no one once the run that wrote it is gone. Called under the run lock."""
    stale = [*output_dir.glob(f".{WAREHOUSE_NAME}.*.tmp"), *output_dir.glob(".current.tmp"),
             *(output_dir / "analytics").glob(f".{ANALYTICS_NAME}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    scratch = output_dir / ".tmp"
    leftovers = list(scratch.iterdir()) if scratch.is_dir() else []
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stale) + len(leftovers)


def _publish_analytics(output_dir: Path, run_id: str, warehouse: Path) -> None:
    """The pseudonymised mart beside the identified warehouse, switched in the same way (if a key is set)."""
    key = pseudonym_key()
    if key is None:
        print(f"pseudonymised analytics mart not written: set {KEY_VARIABLE} to publish it")
        return
    folder = output_dir / "analytics"
    folder.mkdir(exist_ok=True)
    temporary = folder / f".{ANALYTICS_NAME}.{run_id}.tmp"
    build_analytics(warehouse, MART_TABLES, temporary, key)
    os.replace(temporary, folder / ANALYTICS_NAME)


def _drop_working_tables(con: duckdb.DuckDBPyConnection, built: list[str]) -> None:
    """Staging and intermediate models are steps, not products: the catalog keeps the marts and rules."""
    for table in built:
        if table not in MART_TABLES:
            con.execute(f"drop table if exists {table}")


def _point_current_at(output_dir: Path, publication: Path) -> None:
    """OUTPUT/current -> publications/<run_id>, switched atomically (a new link renamed over the old)."""
    link = output_dir / "current"
    temporary = output_dir / ".current.tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(publication.relative_to(output_dir), target_is_directory=True)
    os.replace(temporary, link)


def _prune_publications(output_dir: Path, keep: Path) -> None:
    """Keep the last few publications (an analyst may hold an old catalog open) and no more."""
    folders = sorted(p for p in (output_dir / "publications").iterdir() if p.is_dir())
    for folder in folders[:-PUBLICATIONS_KEPT]:
        if folder != keep:
            shutil.rmtree(folder, ignore_errors=True)


def comment_rules_settings(con: duckdb.DuckDBPyConnection, rules: Rules) -> None:
    """Each rules_settings column explained by the rules file itself: what it means and where it comes from."""
    columns = {name for (name,) in con.execute(
        "select column_name from duckdb_columns() where table_name = 'rules_settings'").fetchall()}
    for name in sorted(columns & set(rules.settings)):
        unit = f" [{rules.units[name]}]" if rules.units.get(name) else ""
        text = f"{rules.descriptions.get(name, name)}{unit}. Source: {rules.sources.get(name, 'rules file')}"
        con.execute(f"comment on column rules_settings.{name} is {_quote_literal(text)}")


def apply_comments(con: duckdb.DuckDBPyConnection) -> None:
    """COMMENT ON every table and column described in transforms/schema.yaml (and the marts' own docs)."""
    schema = yaml.safe_load((TRANSFORMS_DIR / "schema.yaml").read_text(encoding="utf-8"))
    lineage = schema.get("lineage", {})
    existing = {
        (table, column) for table, column in con.execute(
            "select table_name, column_name from duckdb_columns() where schema_name = 'main'"
        ).fetchall()
    }
    tables = {name for name, _ in existing}
    for table, spec in schema["tables"].items():
        if table not in tables:
            continue
        kind = "view" if con.execute(
            "select count(*) from duckdb_views() where view_name = $t", {"t": table}
        ).fetchone()[0] else "table"
        con.execute(f"comment on {kind} {table} is {_quote_literal(spec['description'])}")
        for column, text in {**lineage, **spec.get("columns", {})}.items():
            if (table, column) in existing:
                con.execute(f"comment on column {table}.{column} is {_quote_literal(str(text))}")
