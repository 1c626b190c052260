"""The append-only Parquet lake: where accepted and quarantined rows live, and how a file is committed.

Layout under OUTPUT/lake/:

    lab_results/<source_hash>.parquet      accepted lab rows of one ingested file
    patients/ diagnoses/ medications/      accepted registry rows, same naming
    quarantine/<source_hash>.parquet       rejected rows of one file, with reason and raw text
    unmapped_codes/<source_hash>.parquet   out-of-scope codes of one lab file, counted (no row text)
    ingest_outcomes/<run_id>.parquet       rows per file, outcome and reason (the accounting)
    ingested_files/<run_id>.parquet        one row per file ingested by a run: the commit record
    runs/<run_id>.parquet                  one row per pipeline run

A file's data Parquet is written first and its `ingested_files` row last, in one file renamed into place,
so a run killed at any point leaves either a committed file or Parquet that no commit record names. The
latter is invisible to readers (they keep only committed hashes) and removed by the next run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

DATA_TABLES = ("lab_results", "patients", "diagnoses", "medications", "quarantine", "unmapped_codes")
COMMIT_TABLE = "ingested_files"
OUTCOMES_TABLE = "ingest_outcomes"
RUNS_TABLE = "runs"


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

    def committed_files(self, table: str) -> list[Path]:
        committed = self.committed_hashes()
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

    def append_records(self, table: str, name: str, records: pa.Table) -> Path:
        """Write a small bookkeeping table (commit record, outcomes, runs) as one new file, atomically."""
        target = self.table_dir(table) / f"{name}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp")
        pq.write_table(records, temporary)
        os.replace(temporary, target)
        return target
