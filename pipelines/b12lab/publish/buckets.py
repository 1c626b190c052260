"""Patient buckets: tonight's patient-level model work cut into N independent parts (docs/buckets.md).

A patient's rows in the patient-level models (the dbt project's incremental models) depend on that patient's
own records, the rules and the as-of dates, never on another patient. So the patients to build tonight (every
patient on a full night, those of `incremental.rebuild_patients` on an incremental one) are split by a hash of
`patient_id` into N buckets, and each bucket is built on its own, as a Prefect task that may run on a Dask
worker:

1. `assign_buckets` (the driver, in tonight's warehouse): the table `incremental.patient_buckets` names each
   patient to build and their bucket, `hash(patient_id) % N`. Assigned once, by the driver, so that every
   worker reads the same assignment whatever its DuckDB version.
2. `build_bucket` (a task per bucket): a DuckDB file of its own, OUTPUT/.tmp/buckets/<run_id>/<bucket>/,
   holding the bucket's patients' records (every lake table with a `patient_id`, restricted to them), the lake's
   other tables and the rules tables as they are in the warehouse; then `dbt build` of the patient-level models
   and the models and seeds they read, in that file: a full build of those patients. The warehouse is only
   read (a read-only attach), so any number of buckets read it at once.
3. `register_buckets` (the driver): the buckets' files listed in the warehouse (`incremental.bucket_files`).
   The warehouse's own `dbt build` then runs as on any night; as it starts it attaches those files read-only
   (the project's on-run-start). Each patient-level model's pre-hooks delete the rebuilt patients' rows and carry
   everyone else's, and its rows for the patients built tonight are read from the buckets' files (macro
   `built_in_buckets_or`) instead of computed. The aggregates, marts, tests and report are the driver's, from
   the whole population, as with one bucket. The files are then removed (`remove_buckets`), and the list and
   the assignment dropped (`forget_buckets`): the published warehouse is what one bucket gives.

With one bucket (the default) nothing here runs: the warehouse's build computes every row itself.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from b12lab.common.duck import connect
from b12lab.common.layout import WAREHOUSE_NAME
from b12lab.publish import dbt_build
from b12lab.publish.incremental import REBUILD_PATIENTS, SCHEMA

PATIENT_BUCKETS = f"{SCHEMA}.patient_buckets"
BUCKET_FILES = f"{SCHEMA}.bucket_files"  # the night's bucket files, attached by the warehouse's build
PARTITION_COLUMN = "b12lab_bucket"  # the hive partition of the night's records by bucket (records_folder)
# A bucket's build: the patient-level models (dbt's incremental models) and every node they read, seeds
# included (a bucket's file starts empty); no data test: the warehouse's build tests the rows it reads from them.
BUCKET_SELECTION = ("+config.materialized:incremental",)
# The warehouse's tables a bucket's models read besides the seeds it builds itself: the models' sources.
SOURCE_SCHEMA = "main"


@dataclass(frozen=True)
class BucketBuild:
    """What one bucket built: its file, how many patients and how long it took."""

    bucket: int
    warehouse: Path
    patients: int
    seconds: float


def night_folder(scratch: Path, run_id: str) -> Path:
    """Everything the night's buckets write: their files and the records split for them."""
    return scratch / "buckets" / run_id


def bucket_folder(scratch: Path, run_id: str, bucket: int) -> Path:
    # Each bucket's file is named warehouse.duckdb, as the warehouse's: dbt's profile names the file relative
    # to its folder, so every bucket's invocation has the same profile and dbt's parse of the project is reused.
    return night_folder(scratch, run_id) / f"{bucket:04d}"


def assign_buckets(warehouse: Path, buckets: int, scratch: Path, run_id: str, incremental: bool) -> int:
    """`incremental.patient_buckets`: each patient tonight's build covers, and their bucket; return how many.
    A warehouse that started as a copy of the live one (`incremental`) builds the patients of
    `incremental.rebuild_patients`; an empty one every patient with a record. Their records are then written
    once, split by bucket (`records_folder`): each bucket reads only its own, instead of every bucket scanning
    every lake row for its patients."""
    with connect(warehouse, temp_dir=scratch) as con:
        patient_tables = _patient_tables(con)
        if incremental:
            patients = f"select distinct patient_id from {REBUILD_PATIENTS}"
        else:
            patients = " union ".join(f"select patient_id from {SOURCE_SCHEMA}.{table}" for table in patient_tables)
        con.execute(f"create schema if not exists {SCHEMA}")
        con.execute(f"create or replace table {PATIENT_BUCKETS} as "
                    f"select patient_id, (hash(patient_id) % {int(buckets)})::integer as bucket "
                    f"from ({patients}) where patient_id is not null")
        records = records_folder(scratch, run_id)
        shutil.rmtree(records, ignore_errors=True)
        records.mkdir(parents=True)  # DuckDB makes the table's folder, not its parents
        for table in patient_tables:
            con.execute(f"copy (select {table}.*, patient_buckets.bucket as {PARTITION_COLUMN} "
                        f"from {SOURCE_SCHEMA}.{table} inner join {PATIENT_BUCKETS} as patient_buckets "
                        f"on {table}.patient_id = patient_buckets.patient_id) "
                        f"to '{_quoted(records / table)}' (format parquet, partition_by ({PARTITION_COLUMN}))")
        return con.execute(f"select count(*) from {PATIENT_BUCKETS}").fetchall()[0][0]


def records_folder(scratch: Path, run_id: str) -> Path:
    """Tonight's patients' records, a folder per source table and in it one per bucket (`b12lab_bucket=<n>`)."""
    return night_folder(scratch, run_id) / "records"


def build_bucket(warehouse: Path, bucket: int, folder: Path, dbt_work: Path, as_of: date,
                 scratch: Path, records: Path, memory_limit: str | None = None) -> BucketBuild:
    """The patient-level models of one bucket's patients, built in a DuckDB file of its own (`folder`): their
    records from `records` (assign_buckets), the other source tables from the warehouse. `memory_limit`: the
    bucket's DuckDB limit (unset: the memory_limit setting)."""
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    bucket_warehouse = folder / WAREHOUSE_NAME
    with connect(bucket_warehouse, temp_dir=scratch, memory_limit=memory_limit) as con:
        con.execute(f"attach '{_quoted(warehouse)}' as night (read_only)")
        sources = _source_tables(con, "night")
        patient_tables = set(_patient_tables(con, "night", sources))
        for table in sources:
            rows = f"night.{SOURCE_SCHEMA}.{table}"
            own = records / table / f"{PARTITION_COLUMN}={int(bucket)}"
            if table in patient_tables and any(own.glob("*.parquet")):  # a table with rows of its patients
                rows = f"read_parquet('{_quoted(own)}/*.parquet', hive_partitioning = false)"
            elif table in patient_tables:
                rows = f"(from {rows} limit 0)"
            con.execute(f"create table {SOURCE_SCHEMA}.{table} as select * from {rows}")
        patients = con.execute(f"select count(*) from night.{PATIENT_BUCKETS} where bucket = {int(bucket)}") \
            .fetchall()[0][0]
        con.execute("detach night")
    dbt_build.build(bucket_warehouse, dbt_work, as_of, select=list(BUCKET_SELECTION), data_tests=False,
                    log=lambda line: None, memory_limit=memory_limit)
    return BucketBuild(bucket, bucket_warehouse, patients, time.perf_counter() - started)


def register_buckets(warehouse: Path, built: list[BucketBuild], scratch: Path) -> None:
    """List the buckets' files in the warehouse (`incremental.bucket_files`): its build attaches them read-only
    as it starts (the dbt project's on-run-start) and each patient-level model reads its rows from them."""
    with connect(warehouse, temp_dir=scratch) as con:
        con.execute(f"create or replace table {BUCKET_FILES} (bucket integer, path varchar)")
        con.executemany(f"insert into {BUCKET_FILES} values (?, ?)",
                        [(build.bucket, str(build.warehouse.absolute())) for build in built])


def remove_buckets(scratch: Path, run_id: str) -> None:
    """The night's bucket files, once the warehouse's build has read them."""
    folder = night_folder(scratch, run_id)
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: another run's
        folder.parent.rmdir()


def forget_buckets(con: duckdb.DuckDBPyConnection) -> None:
    """After the warehouse's build: the night's assignment and the list of its bucket files are not published."""
    con.execute(f"drop table if exists {BUCKET_FILES}")
    con.execute(f"drop table if exists {PATIENT_BUCKETS}")


def patient_level_models() -> tuple[str, ...]:
    """The dbt project's patient-level models: its incremental models."""
    return tuple(sorted(path.stem for path in dbt_build.MODELS_DIR.rglob("*.sql")
                        if "materialized='incremental'" in path.read_text()))


def _patient_tables(con: duckdb.DuckDBPyConnection, database: str | None = None,
                    sources: list[str] | None = None) -> list[str]:
    """The source tables (`sources`, when already listed) with a patient_id column: the lake's records of
    patients."""
    sources = _source_tables(con, database) if sources is None else sources
    with_patients = {name for (name,) in con.execute(
        "select table_name from duckdb_columns() where database_name = coalesce($db, current_database()) "
        "and schema_name = $schema and column_name = 'patient_id'",
        {"db": database, "schema": SOURCE_SCHEMA}).fetchall()}
    return [table for table in sources if table in with_patients]


def _source_tables(con: duckdb.DuckDBPyConnection, database: str | None = None) -> list[str]:
    """The tables of the warehouse the models read as sources (models/sources.yml), present tonight."""
    wanted = dbt_build.source_tables()
    present = {name for (name,) in con.execute(
        "select table_name from duckdb_tables() where database_name = coalesce($db, current_database()) "
        "and schema_name = $schema", {"db": database, "schema": SOURCE_SCHEMA}).fetchall()}
    return [table for table in wanted if table in present]


def _quoted(path: Path) -> str:
    return str(Path(path).absolute()).replace("'", "''")
