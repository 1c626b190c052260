"""Every row of a file accounted for: read = accepted + quarantined + dropped, always.

FileAccount is what happened to one file's rows, counted per outcome and reason from parsed_rows; a run whose
accounts do not reconcile stops (ReconciliationError). The file-level quarantine outcomes are set here too:
a header that lacks columns of the kind (missing_columns), names one twice (duplicate_columns), or a file that
could not be read whole (unreadable_file) quarantines every record of the file; the account keeps the
problem, and it is printed in one line (file name and problem only, never row content).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import duckdb

from b12lab.ingest.contract import ExportFile

# The file-level quarantine reasons (set in Python; the row models set the row-level ones).
UNREADABLE_FILE = "unreadable_file"
DUPLICATE_COLUMNS = "duplicate_columns"
# The drop rule of a record whose code maps to no analyte (lab_rows.sql).
OUT_OF_SCOPE = "out_of_scope"


@dataclass
class FileAccount:
    """What happened to every row of one file. read = accepted + quarantined + dropped, always."""

    source_file: str
    source_hash: str
    kind: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_dropped: int = 0
    by_reason: dict[tuple[str, str], int] = field(default_factory=dict)
    # Why the file as a whole could not be read (one line, no row content); empty for a readable file.
    problem: str = ""
    # The columns the file's header lacks (every record then quarantined as missing_columns).
    missing_columns: list[str] = field(default_factory=list)
    # The feed the file belongs to (feed_of): the quarantine share is judged over a night's files of one feed.
    feed: str = ""
    # Lab files: accepted rows per analyte, and the out-of-scope codes whose name suggests an analyte.
    accepted_by_analyte: dict[str, int] = field(default_factory=dict)
    suspected_unmapped: list[SuspectedCode] = field(default_factory=list)
    # Optional fields given but unreadable: field -> accepted rows stored without it (lake unreadable_fields).
    unreadable_fields: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_quarantined + self.rows_dropped

    @property
    def rows_out_of_scope(self) -> int:
        return self.by_reason.get(("dropped", OUT_OF_SCOPE), 0)

    @property
    def rows_in_scope(self) -> int:
        """The records about an analyte the pipeline keeps: read, less the out-of-scope drops. The quarantine
        share is taken over these (a lipid panel in the extract is not damage, and must not dilute it)."""
        return self.rows_read - self.rows_out_of_scope


@dataclass(frozen=True)
class SuspectedCode:
    """An out-of-scope code of one file whose test name or display matches an analyte's names
    (seed ref_analyte_names): most likely results of that analyte under a code nobody mapped."""

    code_system: str
    code: str
    display: str | None
    suggested_analyte: str
    rows: int


class ReconciliationError(RuntimeError):
    pass


def feed_of(export: ExportFile) -> str:
    """The feed an export file belongs to: a site's stream of one kind of file, night after night.

    A file read through a mapping belongs to the mapping's feed (one mapping is one site's layout); a FHIR
    Bundle to the Bundles of its resource type (a night's per-patient Bundles are one export); a FHIR NDJSON
    file to its resource type; any other file to its name with the numbers (dates, part numbers) and the
    extension taken out: labs_north_20261031.csv and labs_north-2.csv.gz are the feed labs_north*.
    """
    if export.mapping is not None:
        return f"{export.kind.name} through mapping {export.mapping.name}"
    if export.bundle:
        return f"{export.fhir_resource} in FHIR Bundles"
    if export.fhir_resource is not None:
        return f"{export.fhir_resource} NDJSON"
    stem = re.sub(r"[.](csv|txt)([.]gz)?$", "", export.path.name.lower())
    return re.sub(r"[-_. ]*[0-9]+", "", stem).strip("-_. ") + "*"


def file_accounts(con: duckdb.DuckDBPyConnection, exports: list[ExportFile]) -> list[FileAccount]:
    """The accounts of the files read into raw_file (one, or several read at once: record_file tells them
    apart): each file's records read (raw_file), and what became of each (parsed_rows)."""
    accounts = [FileAccount(source_file=export.name, source_hash=export.source_hash, kind=export.kind.name,
                            feed=feed_of(export)) for export in exports]
    rows = con.execute(
        "select record_file(source_row), outcome, coalesce(reason, ''), count(*) from parsed_rows "
        "group by all order by all"
    ).fetchall()
    for index, outcome, reason, count in rows:
        account = accounts[index]
        account.by_reason[(outcome, reason)] = count
        if outcome == "accepted":
            account.rows_accepted += count
        elif outcome == "quarantined":
            account.rows_quarantined += count
        else:
            account.rows_dropped += count
    for index, count in con.execute("select record_file(source_row), count(*) from raw_file group by all").fetchall():
        accounts[index].rows_read = count
    return accounts


def quarantine_whole_file(con: duckdb.DuckDBPyConnection, missing_columns: list[str], repeated_column: str,
                          problem: str) -> None:
    """The file-level reasons, strongest last: each sends every record of parsed_rows to quarantine."""
    if missing_columns:
        # Not the expected layout: no field can be trusted, so every record goes to quarantine.
        con.execute("update parsed_rows set outcome = 'quarantined', reason = 'missing_columns'")
    elif repeated_column:
        # Two columns of the same name: which one holds the value is anybody's guess.
        con.execute(f"update parsed_rows set outcome = 'quarantined', reason = '{DUPLICATE_COLUMNS}'")
    if problem:
        # Damaged: the records that could be read are kept, in quarantine, and none is trusted.
        con.execute(f"update parsed_rows set outcome = 'quarantined', reason = '{UNREADABLE_FILE}'")


def record_file_problems(account: FileAccount, export: ExportFile, missing_columns: list[str], problem: str) -> None:
    """The file-level reasons into the file's account, each printed in one line (no row content)."""
    if missing_columns:
        account.missing_columns = list(missing_columns)
        print(f"{export.display_name}: missing columns {', '.join(missing_columns)}: {account.rows_read} records, "
              "all quarantined as missing_columns")
    if problem:
        account.problem = problem
        # Recorded even when not one record could be read, so the accounting names the reason.
        account.by_reason.setdefault(("quarantined", UNREADABLE_FILE), 0)
        print(f"{export.display_name}: unreadable file ({problem}): {account.rows_read} records read, "
              f"all quarantined as {UNREADABLE_FILE}")
