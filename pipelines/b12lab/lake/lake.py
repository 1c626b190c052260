"""The append-only Parquet lake: where accepted and quarantined rows live, and how a file is committed.

Layout under OUTPUT/lake/:

    lab_results/<source_hash>.parquet      accepted lab rows of one ingested file
    patients/ diagnoses/ medications/      accepted registry rows, same naming
    quarantine/<source_hash>.parquet       rejected rows of one file, with reason and raw text
    unmapped_codes/<source_hash>.parquet   out-of-scope codes of one lab file, counted (no row text)
    unreadable_fields/<source_hash>.parquet  optional fields given but unreadable in one file's accepted
                                           rows, counted per field (no row text)
    ingest_outcomes/<run_id>.parquet       rows per file, outcome and reason (the accounting)
    ingested_files/<run_id>.parquet        one row per file ingested by a run: the commit record
    runs/<run_id>.parquet                  one row per pipeline run

A file's data Parquet is written first and its `ingested_files` row last, in one file renamed into place,
so a run killed at any point leaves either a committed file or Parquet that no commit record names. The
latter is invisible to readers (they keep only committed hashes) and removed by the next run.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from b12lab.lake.runs import RUNS_SCHEMA

COMMIT_TABLE = "ingested_files"
OUTCOMES_TABLE = "ingest_outcomes"
RUNS_TABLE = "runs"
# The headline counts of each published nightly run, for the next night's "changes since" (cohort_counts).
METRICS_TABLE = "run_metrics"

# Every lake table's columns and types, declared here once. The warehouse's empty tables (publication), the
# ingest's column lists (ingest/contract.py) and the lake's writers read them; models/sources.yml and the GX
# suites are checked against them (tests/ingest/test_lake_contract.py).

# A list of text values, as DuckDB writes a varchar[] column to Parquet.
TEXT_LIST = pa.list_(pa.field("element", pa.string()))

# Where a row came from, on every row of the accepted-row tables and the quarantine.
LINEAGE_SCHEMA = pa.schema([
    ("source_file", pa.string()), ("source_row", pa.int64()), ("source_hash", pa.string()),
    ("ingest_run", pa.string()),
])

# The data tables: accepted rows (typed by the kind's row model, b12lab/ingest/sql/<kind>_rows.sql) with their
# lineage, the quarantine, the out-of-scope codes counted per lab file, and the unreadable optional fields
# counted per file.
DATA_SCHEMAS = {
    "lab_results": pa.schema([
        ("patient_id", pa.string()), ("accession", pa.string()), ("analyte", pa.string()), ("loinc", pa.string()),
        ("local_code", pa.string()), ("test_name", pa.string()), ("collected_at", pa.timestamp("us")),
        ("resulted_at", pa.timestamp("us")), ("value_raw", pa.string()), ("unit_raw", pa.string()),
        ("comparator", pa.string()), ("value_reported", pa.float64()), ("unit_reported", pa.string()),
        ("value_si", pa.float64()), ("unit_si", pa.string()), ("value_text", pa.string()),
        ("reference_range", pa.string()), ("ref_low_si", pa.float64()), ("ref_high_si", pa.float64()),
        ("abnormal_flag", pa.string()), ("status", pa.string()), ("performing_lab", pa.string()),
        *LINEAGE_SCHEMA,
    ]),
    "patients": pa.schema([
        ("patient_id", pa.string()), ("birth_date", pa.date32()), ("birth_date_precision", pa.string()),
        ("sex", pa.string()), ("practice", pa.string()), ("death_date", pa.date32()), ("deceased", pa.bool_()),
        *LINEAGE_SCHEMA,
    ]),
    "diagnoses": pa.schema([
        ("patient_id", pa.string()), ("code_system", pa.string()), ("code", pa.string()),
        ("code_normalised", pa.string()), ("recorded_at", pa.date32()), ("recorded_at_precision", pa.string()),
        *LINEAGE_SCHEMA,
    ]),
    "medications": pa.schema([
        ("patient_id", pa.string()), ("drug", pa.string()), ("atc_code", pa.string()), ("route", pa.string()),
        ("route_terms", TEXT_LIST), ("dose", pa.string()), ("start_date", pa.date32()),
        ("end_date", pa.date32()),
        *LINEAGE_SCHEMA,
    ]),
    "quarantine": pa.schema([
        *LINEAGE_SCHEMA,
        ("table_name", pa.string()), ("reason", pa.string()), ("raw", pa.string()),
    ]),
    "unmapped_codes": pa.schema([
        ("source_file", pa.string()), ("source_hash", pa.string()), ("ingest_run", pa.string()),
        ("code_system", pa.string()), ("code", pa.string()), ("display", pa.string()), ("rows", pa.int64()),
        ("first_seen", pa.date32()), ("last_seen", pa.date32()), ("suggested_analyte", pa.string()),
    ]),
    # An optional field (a lab result's resulted_at, reference_range) given in a file but unreadable: the
    # accepted rows that lost it, per file and field. The row is kept, the field stored null.
    "unreadable_fields": pa.schema([
        ("source_file", pa.string()), ("source_hash", pa.string()), ("ingest_run", pa.string()),
        ("table_name", pa.string()), ("field", pa.string()), ("rows", pa.int64()),
    ]),
}
DATA_TABLES = tuple(DATA_SCHEMAS)

# The bookkeeping tables' columns, written out: a run that ingested a file with no record has no outcome
# row, and a Parquet file inferred from no rows would have no columns, which no reader can open.
BOOKKEEPING_SCHEMAS = {
    COMMIT_TABLE: pa.schema([
        ("source_file", pa.string()), ("source_hash", pa.string()), ("kind", pa.string()),
        ("ingest_run", pa.string()), ("committed_at", pa.timestamp("us")), ("rows_read", pa.int64()),
        ("rows_accepted", pa.int64()), ("rows_quarantined", pa.int64()), ("rows_dropped", pa.int64()),
    ]),
    OUTCOMES_TABLE: pa.schema([
        ("source_file", pa.string()), ("source_hash", pa.string()), ("ingest_run", pa.string()),
        ("outcome", pa.string()), ("reason", pa.string()), ("rows", pa.int64()),
    ]),
    RUNS_TABLE: RUNS_SCHEMA,  # b12lab/lake/runs.py
    METRICS_TABLE: pa.schema([
        ("run_id", pa.string()), ("as_of", pa.date32()), ("metric", pa.string()), ("value", pa.int64()),
    ]),
}

LAKE_SCHEMAS = {**DATA_SCHEMAS, **BOOKKEEPING_SCHEMAS}

# The DuckDB type of each Arrow type the lake's schemas use.
_DUCKDB_TYPES = {pa.string(): "varchar", pa.int64(): "bigint", pa.float64(): "double", pa.date32(): "date",
                 pa.timestamp("us"): "timestamp", pa.bool_(): "boolean", TEXT_LIST: "varchar[]"}


def table_ddl(table: str) -> str:
    """The lake table's columns as a DuckDB column list (`patient_id varchar, ...`), for a table created
    empty."""
    return ", ".join(f"{column.name} {_DUCKDB_TYPES[column.type]}" for column in LAKE_SCHEMAS[table])


def empty_relation_sql(table: str) -> str:
    """A relation with the lake table's declared columns and no row, to complete files written before a column
    was added (`union all by name`)."""
    columns = ", ".join(f"cast(null as {_DUCKDB_TYPES[column.type]}) as {column.name}" for column in LAKE_SCHEMAS[table])
    return f"select {columns} where false"


class LakeDamaged(RuntimeError):
    """A file the lake cannot do without is unreadable."""


@dataclass(frozen=True)
class Lake:
    root: Path

    def table_dir(self, table: str) -> Path:
        return self.root / table

    def data_file(self, table: str, source_hash: str) -> Path:
        return self.table_dir(table) / f"{source_hash}.parquet"

    def files(self, table: str) -> list[Path]:
        directory = self.table_dir(table)
        return sorted(directory.glob("*.parquet")) if directory.exists() else []

    def committed_hashes(self) -> set[str]:
        files = self.files(COMMIT_TABLE)
        if not files:
            return set()
        return set(pq.read_table(files, columns=["source_hash"]).column("source_hash").to_pylist())

    def run_ids(self) -> set[str]:
        """Every run with a record: published, failed or interrupted."""
        return {path.stem for path in self.files(RUNS_TABLE)}

    def committed_files(self, table: str, committed: set[str] | None = None) -> list[Path]:
        """The table's files whose export is committed; `committed`: the commit records' hashes, when the
        caller has read them already (they are read from every run's commit file)."""
        committed = self.committed_hashes() if committed is None else committed
        return [path for path in self.files(table) if path.stem in committed]

    def remove_uncommitted(self) -> int:
        """Delete data Parquet left by an interrupted ingest; return how many files were removed."""
        committed = self.committed_hashes()
        removed = 0
        for table in DATA_TABLES:
            for path in self.files(table):
                if path.stem not in committed:
                    path.unlink()
                    removed += 1
        for table in (COMMIT_TABLE, OUTCOMES_TABLE, RUNS_TABLE):
            for leftover in self.table_dir(table).glob("*.tmp") if self.table_dir(table).exists() else []:
                leftover.unlink()
                removed += 1
        return removed

    def write_query(self, con: duckdb.DuckDBPyConnection, query: str, params: dict, target: Path) -> None:
        """Write a query's result to one Parquet file, atomically (temporary name, then rename)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".parquet.tmp")
        con.execute(
            f"copy ({query}) to $target (format parquet, compression zstd)",
            {**params, "target": str(temporary)},
        )
        os.replace(temporary, target)

    @contextmanager
    def scratch(self, prefix: str) -> Iterator[Path]:
        """A scratch folder of the output's own (OUTPUT/.tmp, beside the lake), removed after."""
        root = self.root.parent / ".tmp"
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=prefix) as folder:
            yield Path(folder)

    def write_query_per_file(self, con: duckdb.DuckDBPyConnection, query: str, params: dict,
                             targets: list[Path]) -> None:
        """Write a query's rows to one Parquet file per target, in one pass: its last column file_index (not
        written) is the index of the row's target; each target is written atomically, one with no row too.

        For a task that reads many small files at once: one DuckDB statement for all of them, where a statement
        per file costs milliseconds each."""
        with self.scratch("lake-write-") as scratch:
            parts = scratch / "parts"
            con.execute(f"copy ({query}) to $target (format parquet, compression zstd, partition_by (file_index))",
                        {**params, "target": str(parts)})
            empty = scratch / "empty.parquet"
            for index, target in enumerate(targets):
                target.parent.mkdir(parents=True, exist_ok=True)
                # data_<n>.parquet, in the order DuckDB wrote them
                written = sorted((parts / f"file_index={index}").glob("*.parquet"),
                                 key=lambda path: int(path.stem.rsplit("_", 1)[-1]))
                if len(written) == 1:
                    os.replace(written[0], target)
                    continue
                temporary = target.with_suffix(".parquet.tmp")
                if written:  # DuckDB split one target's rows over several files (rows not together): joined
                    con.execute("copy (select * from read_parquet($parts, hive_partitioning = false)) to $target "
                                "(format parquet, compression zstd)",
                                {"parts": [str(path) for path in written], "target": str(temporary)})
                else:
                    if not empty.exists():
                        con.execute(f"copy (select * exclude (file_index) from ({query}) limit 0) to $target "
                                    "(format parquet, compression zstd)", {**params, "target": str(empty)})
                    shutil.copyfile(empty, temporary)
                os.replace(temporary, target)

    def remove_unreadable_bookkeeping(self) -> int:
        """Delete bookkeeping files with no column (written by earlier versions for a file with no record):
        they hold no row, and every reader of the table fails on them.

        A file that is not Parquet at all (damaged on disk) is set aside as <name>.damaged when it is headline
        history (run_metrics: the next report then compares with an earlier run, or with none), and stops the
        run in one line naming it when it is a commit, outcome or run record, which the lake cannot do without."""
        removed = 0
        for table in BOOKKEEPING_SCHEMAS:
            for path in self.files(table):
                try:
                    columns = len(pq.read_schema(path))
                except (OSError, pa.ArrowException) as error:
                    if table == METRICS_TABLE:
                        path.rename(path.with_name(path.name + ".damaged"))
                        print(f"lake file {table}/{path.name} is damaged ({type(error).__name__}): set aside as "
                              f"{path.name}.damaged; the report compares with an earlier run")
                        removed += 1
                        continue
                    raise LakeDamaged(f"lake file {table}/{path.name} is damaged and cannot be read "
                                      f"({type(error).__name__}): restore it from a backup") from error
                if columns == 0:
                    path.unlink()
                    removed += 1
        return removed

    def append_rows(self, table: str, name: str, rows: list[dict]) -> Path:
        """Write bookkeeping rows (commit records, outcomes, runs) with the table's own columns, atomically."""
        return self.append_records(table, name, pa.Table.from_pylist(rows, schema=BOOKKEEPING_SCHEMAS[table]))

    def append_records(self, table: str, name: str, records: pa.Table) -> Path:
        """Write a small bookkeeping table (commit record, outcomes, runs) as one new file, atomically."""
        if records.num_columns == 0:
            raise ValueError(f"refusing to write a {table} file with no column")
        target = self.table_dir(table) / f"{name}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp")
        pq.write_table(records, temporary)
        os.replace(temporary, target)
        return target
