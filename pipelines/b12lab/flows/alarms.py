"""What a night's row accounting must not keep quiet about, judged after ingest and before anything is committed.

- The quarantine share, over the records in scope (read less the out-of-scope drops: a lipid panel in the
  extract is not damage and must not dilute it), per feed: a night's files of one kind and site together
  (b12lab.ingest.accounting.feed_of). A feed beyond B12LAB_MAX_QUARANTINE_SHARE stops the run; a file beyond it
  in a feed that is not is named, not fatal (one tiny per-patient Bundle cannot fail a night).
- Suspected unmapped analytes: out-of-scope codes whose test name or display matches an analyte's names (seed
  ref_analyte_names), named with their rows and the line that would read them; with
  B12LAB_FAIL_ON_SUSPECTED_UNMAPPED they stop the run.
- Missing analytes: an analyte accepted on earlier nights of which a night that brought lab rows accepted none.

Messages name files, codes, test names and counts, never a row's content.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from b12lab.common.duck import connect
from b12lab.common.settings import variable
from b12lab.common.unmapped import mapping_line
from b12lab.ingest import FileAccount
from b12lab.lake.lake import COMMIT_TABLE, Lake


class TooMuchQuarantined(RuntimeError):
    pass


class SuspectedUnmappedAnalyte(RuntimeError):
    pass


@dataclass
class FeedShare:
    """A feed's quarantine over its records in scope, this night."""

    feed: str
    kind: str
    files: list[str]
    rows_read: int
    rows_out_of_scope: int
    rows_in_scope: int
    rows_quarantined: int
    # Files whose own share is beyond the limit in a feed that is not.
    files_over_share: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.rows_quarantined / self.rows_in_scope if self.rows_in_scope else 0.0

    def as_dict(self) -> dict:
        return {"feed": self.feed, "kind": self.kind, "files": self.files, "rows_read": self.rows_read,
                "rows_out_of_scope": self.rows_out_of_scope, "rows_in_scope": self.rows_in_scope,
                "rows_quarantined": self.rows_quarantined, "quarantined_share": round(self.share, 6),
                "files_over_share": self.files_over_share}


def _share(account: FileAccount) -> float:
    return account.rows_quarantined / account.rows_in_scope if account.rows_in_scope else 0.0


def feed_shares(accounts: list[FileAccount], max_share: float) -> list[FeedShare]:
    """Each feed of the night with its quarantine over the records in scope, in the order first met."""
    feeds: dict[tuple[str, str], list[FileAccount]] = {}
    for account in accounts:
        feeds.setdefault((account.kind, account.feed or account.source_file), []).append(account)
    shares = []
    for (kind, feed), members in feeds.items():
        share = FeedShare(
            feed=feed, kind=kind, files=[a.source_file for a in members],
            rows_read=sum(a.rows_read for a in members),
            rows_out_of_scope=sum(a.rows_out_of_scope for a in members),
            rows_in_scope=sum(a.rows_in_scope for a in members),
            rows_quarantined=sum(a.rows_quarantined for a in members))
        if len(members) > 1:
            share.files_over_share = [a.source_file for a in members if _share(a) > max_share]
        shares.append(share)
    return shares


def _main_reason(accounts: list[FileAccount]) -> str:
    rows_by_reason: dict[str, int] = {}
    for account in accounts:
        for (outcome, reason), rows in account.by_reason.items():
            if outcome == "quarantined":
                rows_by_reason[reason] = rows_by_reason.get(reason, 0) + rows
    return max(sorted(rows_by_reason), key=lambda reason: rows_by_reason[reason]) if rows_by_reason else "none"


def check_quarantined_shares(accounts: list[FileAccount], max_share: float) -> list[FeedShare]:
    """The night's feeds; stop the run (nothing is committed) at the first feed quarantined beyond the allowed
    share of its records in scope. A file beyond it in a feed within it is printed, one line."""
    shares = feed_shares(accounts, max_share)
    for share in shares:
        members = [a for a in accounts if a.source_file in share.files and a.kind == share.kind]
        for name in share.files_over_share:
            account = next(a for a in members if a.source_file == name)
            print(f"{name}: {account.rows_quarantined} of {account.rows_in_scope} records in scope quarantined "
                  f"({_share(account):.0%}), more than the {max_share:.0%} allowed; its feed {share.feed} "
                  f"({len(share.files)} files) is within it ({share.share:.0%}), so the run goes on")
        if share.rows_in_scope and share.share > max_share:
            name = share.files[0] if len(share.files) == 1 else f"feed {share.feed} ({len(share.files)} files)"
            missing = sorted({column for a in members for column in a.missing_columns})
            missing_text = f" (missing columns: {', '.join(missing)})" if missing else ""
            out_of_scope = (f"; {share.rows_out_of_scope} more out of scope" if share.rows_out_of_scope else "")
            raise TooMuchQuarantined(
                f"{name}: {share.rows_quarantined} of {share.rows_in_scope} records in scope quarantined "
                f"({share.share:.0%}, mostly {_main_reason(members)}{out_of_scope}){missing_text}, more than the "
                f"{max_share:.0%} allowed ({variable('max_quarantine_share')}): nothing was committed")
    return shares


# --- suspected unmapped analytes --------------------------------------------------------------------------


def suspected_unmapped(accounts: list[FileAccount]) -> list[dict]:
    """The night's suspected unmapped analytes, one per code system, code and suggested analyte over all files,
    most rows first: its test name, rows, files and the line that would read it."""
    found: dict[tuple[str, str, str], dict] = {}
    for account in accounts:
        for code in account.suspected_unmapped:
            entry = found.setdefault((code.code_system, code.code, code.suggested_analyte), {
                "code_system": code.code_system, "code": code.code, "display": code.display,
                "suggested_analyte": code.suggested_analyte, "rows": 0, "files": [],
                "mapping_line": mapping_line(code.code_system, code.code, code.suggested_analyte, code.display)})
            entry["rows"] += code.rows
            entry["files"].append(account.source_file)
    return sorted(found.values(), key=lambda e: (-e["rows"], e["code_system"], e["code"]))


def describe_suspect(suspect: dict) -> str:
    """One line: which code, how many rows in which files, what it looks like and the line that reads it."""
    system = "LOINC" if suspect["code_system"] == "http://loinc.org" else f"code ({suspect['code_system']})"
    files = suspect["files"][0] if len(suspect["files"]) == 1 else f"{len(suspect['files'])} files"
    named = f" \"{suspect['display']}\"" if suspect["display"] else ""
    return (f"suspected unmapped analyte {suspect['suggested_analyte']}: {system} {suspect['code']}{named}, "
            f"{suspect['rows']} rows in {files} dropped as out_of_scope; to read them: {suspect['mapping_line']}")


def name_suspected_unmapped(suspects: list[dict], fail: bool) -> None:
    """Print each suspect in one line; with B12LAB_FAIL_ON_SUSPECTED_UNMAPPED, stop the run at the first."""
    for suspect in suspects:
        print(describe_suspect(suspect))
    if suspects and fail:
        more = f" (and {len(suspects) - 1} more)" if len(suspects) > 1 else ""
        raise SuspectedUnmappedAnalyte(
            f"{describe_suspect(suspects[0])}{more}; {variable('fail_on_suspected_unmapped')} is set: "
            "nothing was committed")


# --- analytes that stopped arriving -----------------------------------------------------------------------


def missing_analytes(lake: Lake, accounts: list[FileAccount]) -> list[dict]:
    """Analytes accepted in lab files committed on earlier nights of which this night's lab files, which did
    bring rows, accepted none: each with its rows accepted before and when it last arrived. Empty on a night
    with no lab row (the report's empty-night banner speaks for that one)."""
    labs = [a for a in accounts if a.kind == "labs"]
    if not sum(a.rows_read for a in labs):
        return []
    tonight = {analyte for a in labs for analyte, rows in a.accepted_by_analyte.items() if rows}
    lab_files = lake.committed_files("lab_results")
    if not lab_files:
        return []
    with connect() as con:
        commits = [str(path) for path in lake.files(COMMIT_TABLE)]
        rows = con.execute(
            "with accepted as (select analyte, source_hash, count(*) as rows from read_parquet($labs) group by all),"
            " commits as (select source_hash, max(committed_at) as committed_at from read_parquet($commits) "
            "group by all) "
            "select analyte, sum(rows)::bigint, max(commits.committed_at)::date "
            "from accepted left join commits using (source_hash) group by analyte order by analyte",
            {"labs": [str(path) for path in lab_files], "commits": commits}).fetchall()
    return [{"analyte": analyte, "rows_before": rows_before, "last_arrived": last.isoformat() if last else None}
            for analyte, rows_before, last in rows if analyte not in tonight]


def name_missing_analytes(missing: list[dict], lab_files: int) -> None:
    for entry in missing:
        print(f"analyte {entry['analyte']}: none accepted in this night's {lab_files} lab files; "
              f"{entry['rows_before']} accepted on earlier nights, last arrived {entry['last_arrived']}")
