"""Ingest: the export files of a drop folder into the lake, every row of every file accounted for.

The row-level work is SQL run by DuckDB over a whole file at once; the Python finds the files, reads them
into the temp table raw_file, and moves the outcome into the lake. Two input formats feed the same machinery:
a CSV file is read as text fields into raw_file; a FHIR Bulk Data NDJSON file (or a FHIR Bundle) is read line
by line into fhir_lines, and a SQL model flattens each line into the same raw_file columns. From raw_file on,
both take the same path: the kind's row model, the lake files and the accounting. Damaged input never stops
the run: what could be read of it is quarantined, with the file's problem in its account.

Where each thing happens:

    contract.py        the export contract: export kinds and their columns, which file names are which kind,
                       ExportFile, discover_exports and what it ignores
    decoding.py        bytes into text: gzip by content, not-text signatures, BOM, UTF-16, Latin-1 lines;
                       the header's delimiter and column names
    csv_reader.py      a CSV file into raw_file (DuckDB's reader, Python's csv module as the fallback), and a
                       lab CSV in a site's own layout through its mapping
    fhir_reader.py     a FHIR NDJSON file or Bundle into raw_file, with the resources it references
    mapping.py         site mappings (mappings/*.yaml): a lab CSV's own layout translated into the contract
    macros.py          the SQL macros the row models call (iso_timestamp, partial_date, clean_identifier)
    deduplication.py   the keys of lab results already in the lake, for the duplicate check (and their cache)
    accounting.py      FileAccount, ReconciliationError, the file-level quarantine outcomes
    file_ingest.py     ingest_file: one export file through all of the above, into the lake (IngestError)
    batched_ingest.py  ingest_small_files: a task's small files, FHIR Bundles of one resource type read together
    sql/               the row model of each export kind, the fields model of each FHIR resource type
    mappings/          the shipped site mappings
"""
from b12lab.ingest.accounting import FileAccount, ReconciliationError
from b12lab.ingest.contract import (EXPORT_KINDS, LAB_COLUMNS, ExportFile, ExportKind, discover_exports,
                                    export_kind_of, fhir_resource_of, read_manifest)
from b12lab.ingest.batched_ingest import ingest_small_files
from b12lab.ingest.file_ingest import IngestError, ingest_file
from b12lab.ingest.mapping import LabMapping, MappingError, UnknownMapping, load_mapping

__all__ = [
    "EXPORT_KINDS", "LAB_COLUMNS", "ExportFile", "ExportKind", "FileAccount", "IngestError", "LabMapping",
    "MappingError", "ReconciliationError", "UnknownMapping", "discover_exports", "export_kind_of", "fhir_resource_of",
    "ingest_file", "ingest_small_files", "load_mapping", "read_manifest",
]
