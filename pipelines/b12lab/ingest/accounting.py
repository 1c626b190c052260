"""Every row of a file accounted for: read = accepted + quarantined + dropped, always.

FileAccount is what happened to one file's rows, counted per outcome and reason from parsed_rows; a run whose
accounts do not reconcile stops (ReconciliationError). The file-level quarantine outcomes are set here too:
a header that lacks columns of the kind (missing_columns), names one twice (duplicate_columns), or a file that
could not be read whole (unreadable_file) quarantines every record of the file; the account keeps the
problem, and it is printed in one line (file name and problem only, never row content).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from b12lab.ingest.contract import ExportFile

# The file-level quarantine reasons (set in Python; the row models set the row-level ones).
UNREADABLE_FILE = "unreadable_file"
DUPLICATE_COLUMNS = "duplicate_columns"


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
    # Optional fields given but unreadable: field -> accepted rows stored without it (lake unreadable_fields).
    unreadable_fields: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_quarantined + self.rows_dropped


class ReconciliationError(RuntimeError):
    pass


def file_account(con: duckdb.DuckDBPyConnection, export: ExportFile) -> FileAccount:
    """The file's account: its records read (raw_file), and what became of each (parsed_rows)."""
    account = FileAccount(source_file=export.name, source_hash=export.source_hash, kind=export.kind.name)
    rows = con.execute(
        "select outcome, coalesce(reason, ''), count(*) from parsed_rows group by all order by all"
    ).fetchall()
    for outcome, reason, count in rows:
        account.by_reason[(outcome, reason)] = count
        if outcome == "accepted":
            account.rows_accepted += count
        elif outcome == "quarantined":
            account.rows_quarantined += count
        else:
            account.rows_dropped += count
    account.rows_read = con.execute("select count(*) from raw_file").fetchone()[0]
    return account


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
