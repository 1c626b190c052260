"""A task's small files read together: FHIR Bundles of one resource type, CSV files of one kind.

A night of per-patient files (FHIR Bundles, as Synthea and many EHR exports write them, or a CSV per patient)
brings thousands of exports of a few records each (each Bundle is an export per resource type it holds). One
by one, each pays about thirty DuckDB statements of a millisecond or more, whatever its size. Here a task's
small files are gathered into reads: readable Bundles of one resource type, or CSV files of one kind in the
contract layout with the same columns. A read's records go into raw_file together (each file's numbered
apart: record_file), through the kind's row model once, and into the lake in one statement per lake table
(Lake.write_query_per_file): the same lake files, rows and accounts as one by one, file for file. What keeps
them the same:

- A file with a file-level reason (a Bundle that cannot be read whole, a CSV file that cannot be read or
  whose header lacks or repeats a column) is ingested on its own, where that reason quarantines its records.
  Those records are quarantined whatever came before, and none of them is accepted, so such a file neither
  depends on the reads around it nor changes them.
- The Bundles of a read pool their Medication and Organization entries (fhir_references); a Bundle that
  gives a resource under a Type/id that an earlier Bundle of the read gives otherwise starts a new read.
- Lab results stay in file order: a result that repeats one of an earlier file of the read is dropped as a
  duplicate (lab_duplicates.sql), as the lake check drops it when the earlier file was ingested first; each read's
  lake files join the duplicate check of the files after it, and a lab file that starts another read ends the
  lab read before it. A registry kind's duplicates are counted within one file (record_file in its row
  model), as ever.
- A file that is read on its own in any case (a CSV file through a site's mapping) ends the reads before it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from b12lab.ingest.accounting import FileAccount
from b12lab.ingest.contract import ExportFile, files_label
from b12lab.ingest.fhir_reader import BundleRead, load_bundles, read_bundle
from b12lab.ingest.file_ingest import (ingest_errors, ingest_file, load_csv_export, prepare_connection,
                                      store_records)
from b12lab.lake.lake import Lake

# A read holds its files' records in memory, as DuckDB reads them: at most about this many bytes of them.
READ_BYTES = 32 << 20


@dataclass
class _Read:
    """Small files to be read together: Bundles of one resource type (key ("bundle", type)), or CSV files of
    one kind with the same columns (key ("csv", kind), their records gathered in the temp tables
    small_<kind>_records and small_<kind>_trailer_rows as they come)."""

    key: tuple[str, str]
    exports: list[ExportFile] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    size: int = 0
    bundles: list[BundleRead] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)
    columns: tuple[str, ...] = ()

    @property
    def table(self) -> str:
        return self.exports[0].kind.table

    @property
    def staged(self) -> tuple[str, str]:
        """A CSV read's tables of records and trailer rows (kind names are identifiers: labs, patients, ...)."""
        return f"small_{self.key[1]}_records", f"small_{self.key[1]}_trailer_rows"

    def agrees_with(self, bundle: BundleRead) -> bool:
        return all(self.references.get(reference, line) == line for reference, _, line in bundle.references)


class _SmallFiles:
    """The reads of one task's small files, in the files' order, and the accounts of the files ingested."""

    def __init__(self, con: duckdb.DuckDBPyConnection, lake: Lake, run_id: str, ingest_date: date,
                 earlier_lab_files: list[Path]):
        self.con, self.lake, self.run_id, self.ingest_date = con, lake, run_id, ingest_date
        self.lab_files = list(earlier_lab_files)
        self.accounts: dict[int, FileAccount] = {}
        self.reads: dict[tuple[str, str], _Read] = {}

    def add(self, position: int, export: ExportFile) -> None:
        if export.bundle:
            with ingest_errors(export.display_name):
                bundle = read_bundle(export)
            if bundle.problem:
                self._alone(position, export)
            else:
                self._add_bundle(position, export, bundle)
        elif export.format == "csv" and export.mapping is None:
            self._add_csv(position, export)
        else:
            self.finish_all()
            self._alone(position, export)

    def finish_all(self) -> None:
        for key in list(self.reads):
            self._finish(key)

    def _alone(self, position: int, export: ExportFile) -> None:
        self.accounts[position] = ingest_file(self.con, export, self.lake, self.run_id, self.ingest_date,
                                              list(self.lab_files))
        self._ingested([export])

    def _ingested(self, exports: list[ExportFile]) -> None:
        if exports[0].kind.table == "lab_results":
            self.lab_files.extend(self.lake.data_file("lab_results", export.source_hash) for export in exports)

    def _read_for(self, key: tuple[str, str], table: str, fits) -> _Read:
        """The read the next file of `key` joins: the pending one if `fits(read)`, else a new one. Lab files
        keep their order: one lab read pending at a time."""
        read = self.reads.get(key)
        if read is not None and not fits(read):
            self._finish(key)
        if table == "lab_results":
            for other in [other for other, pending in self.reads.items() if other != key and pending.table == table]:
                self._finish(other)
        return self.reads.setdefault(key, _Read(key))

    def _add_bundle(self, position: int, export: ExportFile, bundle: BundleRead) -> None:
        read = self._read_for(("bundle", export.fhir_resource), export.kind.table,
                              lambda read: read.agrees_with(bundle) and read.size + bundle.lines.nbytes <= READ_BYTES)
        read.exports.append(export)
        read.positions.append(position)
        read.bundles.append(bundle)
        read.references.update((reference, line) for reference, _, line in bundle.references)
        read.size += bundle.lines.nbytes

    def _add_csv(self, position: int, export: ExportFile) -> None:
        con = self.con
        with ingest_errors(export.display_name):
            prepare_connection(con)
            missing_columns, repeated_column, problem = load_csv_export(con, export, self.lake)
            if missing_columns or repeated_column or problem:
                self.accounts[position] = store_records(con, [export], self.lake, self.run_id, self.ingest_date,
                                                        list(self.lab_files), missing_columns, repeated_column,
                                                        problem)[0]
                self._ingested([export])
                return
            columns = tuple(name for name, in con.execute(
                "select column_name from duckdb_columns() where table_name = 'raw_file' order by column_index"
            ).fetchall())
            # set aside: finishing a read below makes raw_file anew
            con.execute("alter table raw_file rename to small_csv_file")
            con.execute("alter table trailer_rows rename to small_csv_file_trailer_rows")
            size = export.path.stat().st_size
            read = self._read_for(("csv", export.kind.name), export.kind.table,
                                  lambda read: read.columns == columns and read.size + size <= READ_BYTES)
            records, trailer_rows = read.staged
            if not read.exports:
                read.columns = columns
                con.execute(f"create or replace temp table {records} as from small_csv_file limit 0")
                con.execute(f"create or replace temp table {trailer_rows} as from small_csv_file_trailer_rows limit 0")
            offset = len(read.exports) << 32  # record_file
            con.execute(f"insert into {records} select * replace (source_row + $offset as source_row) "
                        "from small_csv_file", {"offset": offset})
            con.execute(f"insert into {trailer_rows} select source_row + $offset from small_csv_file_trailer_rows",
                        {"offset": offset})
            con.execute("drop table small_csv_file")
            con.execute("drop table small_csv_file_trailer_rows")
        read.exports.append(export)
        read.positions.append(position)
        read.size += size

    def _finish(self, key: tuple[str, str]) -> None:
        read = self.reads.pop(key)
        exports, con = read.exports, self.con
        with ingest_errors(files_label(exports)):
            prepare_connection(con)
            if read.bundles:
                load_bundles(con, read.bundles, exports[0].fhir_resource)
            else:
                records, trailer_rows = read.staged
                con.execute(f"create or replace temp table raw_file as from {records}")
                con.execute(f"create or replace temp table trailer_rows as from {trailer_rows}")
                con.execute(f"drop table {records}")
                con.execute(f"drop table {trailer_rows}")
            accounts = store_records(con, exports, self.lake, self.run_id, self.ingest_date, list(self.lab_files))
        for position, account in zip(read.positions, accounts):
            self.accounts[position] = account
        self._ingested(exports)


def ingest_small_files(con: duckdb.DuckDBPyConnection, exports: list[ExportFile], lake: Lake, run_id: str,
                       ingest_date: date, earlier_lab_files: list[Path]) -> list[FileAccount]:
    """The files' accounts, in the order of `exports`; each lab file is checked for duplicates against the
    lake files of `earlier_lab_files` and of every lab file before it, as if each had been ingested alone."""
    small_files = _SmallFiles(con, lake, run_id, ingest_date, earlier_lab_files)
    for position, export in enumerate(exports):
        small_files.add(position, export)
    small_files.finish_all()
    return [small_files.accounts[position] for position in range(len(exports))]
