"""A task's small files: the FHIR Bundles of one resource type read together, every other file on its own.

A night of per-patient FHIR Bundles brings thousands of exports of a few records each (each Bundle is an
export per resource type it holds). One by one, each pays about thirty DuckDB statements of a millisecond or
more, whatever its size. Here a task's readable Bundles of one resource type are read into raw_file together
(load_bundles numbers each file's records apart), go through the kind's row model once, and are written to
the lake in one statement per lake table (Lake.write_query_per_file): the same lake files, rows and accounts
as one by one, file for file. What keeps them the same:

- A Bundle that cannot be read whole (truncated, not JSON) is ingested on its own, where its problem
  quarantines its records as unreadable_file.
- The Bundles read together pool their Medication and Organization entries (fhir_references); a Bundle that
  gives a resource under a Type/id that an earlier Bundle of the read gives otherwise starts a new read.
- Lab results stay in file order: a result that repeats one of an earlier Bundle of the read is dropped as a
  duplicate (lab_rows.sql), as the lake check drops it when the earlier file was ingested first; each read's
  lake files join the duplicate check of the files after it. A registry kind's duplicates are counted within
  one file (record_file in its row model), as ever.
- A file that is not a Bundle ends the reads before it, so the files of the task keep their order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from b12lab.ingest.accounting import FileAccount
from b12lab.ingest.contract import ExportFile
from b12lab.ingest.file_ingest import ingest_errors, ingest_file, prepare_connection, store_records
from b12lab.ingest.fhir_reader import BundleRead, load_bundles, read_bundle
from b12lab.lake.lake import Lake

# A read holds its Bundles' records in memory as text, as DuckDB reads them: at most about this many bytes.
READ_BYTES = 32 << 20


@dataclass
class _Read:
    """Bundles of one resource type to be read together, and the referenced resources they give."""

    exports: list[ExportFile] = field(default_factory=list)
    bundles: list[BundleRead] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)
    size: int = 0

    def agrees_with(self, bundle: BundleRead) -> bool:
        return all(self.references.get(reference, line) == line for reference, _, line in bundle.references)

    def add(self, export: ExportFile, bundle: BundleRead) -> None:
        self.exports.append(export)
        self.bundles.append(bundle)
        self.references.update((reference, line) for reference, _, line in bundle.references)
        self.size += bundle.lines.nbytes


def ingest_small_files(con: duckdb.DuckDBPyConnection, exports: list[ExportFile], lake: Lake, run_id: str,
                       ingest_date: date, earlier_lab_files: list[Path]) -> list[FileAccount]:
    """The files' accounts, in the order of `exports`; each lab file is checked for duplicates against the
    lake files of `earlier_lab_files` and of every lab file before it, as if each had been ingested alone."""
    lab_files = list(earlier_lab_files)
    accounts: dict[int, FileAccount] = {}
    reads: dict[str, _Read] = {}  # by resource type
    positions: dict[str, list[int]] = {}

    def finish(resource_type: str) -> None:
        read = reads.pop(resource_type, None)
        if read is None:
            return
        for position, account in zip(positions.pop(resource_type), _ingest_read(con, read, lake, run_id,
                                                                                 ingest_date, lab_files)):
            accounts[position] = account
        if read.exports[0].kind.table == "lab_results":
            lab_files.extend(lake.data_file("lab_results", export.source_hash) for export in read.exports)

    for position, export in enumerate(exports):
        bundle = None
        if export.bundle:
            with ingest_errors(export.display_name):
                bundle = read_bundle(export)
        if bundle is None or bundle.problem:
            for resource_type in list(reads):
                finish(resource_type)
            accounts[position] = ingest_file(con, export, lake, run_id, ingest_date, list(lab_files))
            if export.kind.table == "lab_results":
                lab_files.append(lake.data_file("lab_results", export.source_hash))
            continue
        read = reads.get(export.fhir_resource)
        if read is not None and (not read.agrees_with(bundle) or read.size + bundle.lines.nbytes > READ_BYTES):
            finish(export.fhir_resource)
        reads.setdefault(export.fhir_resource, _Read()).add(export, bundle)
        positions.setdefault(export.fhir_resource, []).append(position)
    for resource_type in list(reads):
        finish(resource_type)
    return [accounts[position] for position in range(len(exports))]


def _ingest_read(con: duckdb.DuckDBPyConnection, read: _Read, lake: Lake, run_id: str, ingest_date: date,
                 lab_files: list[Path]) -> list[FileAccount]:
    exports = read.exports
    name = exports[0].display_name + (f" and {len(exports) - 1} more" if len(exports) > 1 else "")
    with ingest_errors(name):
        prepare_connection(con)
        load_bundles(con, read.bundles, exports[0].fhir_resource)
        return store_records(con, exports, lake, run_id, ingest_date, list(lab_files))
