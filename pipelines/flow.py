"""The nightly pipeline as a Prefect flow: ingest -> validate -> commit -> classify -> publish.

The flow is a short ordered script; every task calls plain functions of the other modules, which tests
call directly. Only file I/O that can fail for passing reasons (a drop folder on a network share) retries.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
from prefect import flow, task

from pipelines import publish, report
from pipelines.duck import check_memory_limit, connect, release_freed_memory
from pipelines.ingest import (ExportFile, FileAccount, ReconciliationError, discover_exports, ingest_file)
from pipelines.mapping import LabMapping, load_mapping
from pipelines.lake import Lake
from pipelines.locking import run_lock
from pipelines.progress import tracked
from pipelines.rules import Rules, load_rules
from pipelines.validate import CriticalExpectationFailed, ValidationReport, validate_lake_files


OUTPUT_UMASK = 0o027


@dataclass
class RunSummary:
    run_id: str
    as_of: date
    started_at: datetime
    rules_version: str
    rules_profile: str
    status: str = "running"
    message: str = ""
    finished_at: datetime | None = None
    files: list[FileAccount] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    files_ignored: list[str] = field(default_factory=list)
    expectations_evaluated: int = 0
    expectations_failed: list[str] = field(default_factory=list)
    expectation_warnings: list[str] = field(default_factory=list)
    warehouse: Path | None = None
    publication: Path | None = None
    data_docs: Path | None = None

    def total(self, attribute: str) -> int:
        return sum(getattr(account, attribute) for account in self.files)

    def as_record(self) -> dict:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "message": self.message,
            "rules_version": self.rules_version,
            "rules_profile": self.rules_profile,
            "files_ingested": len(self.files),
            "files_skipped": len(self.files_skipped),
            "rows_read": self.total("rows_read"),
            "rows_accepted": self.total("rows_accepted"),
            "rows_quarantined": self.total("rows_quarantined"),
            "rows_dropped": self.total("rows_dropped"),
            "expectations_evaluated": self.expectations_evaluated,
            "expectations_failed": len(self.expectations_failed),
            "expectation_warnings": len(self.expectation_warnings),
        }

    def to_json(self) -> str:
        payload = self.as_record()
        payload["files"] = [
            {**{k: v for k, v in asdict(a).items() if k != "by_reason"},
             "by_reason": [{"outcome": o, "reason": r, "rows": n} for (o, r), n in sorted(a.by_reason.items())]}
            for a in self.files
        ]
        payload["files_skipped"] = self.files_skipped
        payload["files_ignored"] = self.files_ignored
        payload["expectations_failed_list"] = self.expectations_failed
        payload["expectation_warnings_list"] = self.expectation_warnings
        for name in ("warehouse", "publication", "data_docs"):
            value = getattr(self, name)
            payload[name] = str(value) if value else None
        return json.dumps(payload, indent=2, default=str)


@task(retries=2, retry_delay_seconds=5)
def find_exports(input_dir: Path, mapping: LabMapping | None = None) -> tuple[list[ExportFile], list[Path]]:
    return discover_exports(input_dir, mapping)


# Files under this size are ingested several to a task: a Prefect task and a DuckDB connection cost about
# 0.1 s each, which dominates a one-row file (a folder of 3000 such files took 8 minutes one per task).
SMALL_FILE_BYTES = 1 << 20
SMALL_FILES_PER_TASK = 250


def _print_account(account: FileAccount) -> None:
    print(f"{account.source_file}: read {account.rows_read}, accepted {account.rows_accepted}, "
          f"quarantined {account.rows_quarantined}, dropped {account.rows_dropped}")


@task
def ingest_export(export: ExportFile, lake_root: Path, run_id: str, ingest_date: date,
                  earlier_lab_files: list[Path]) -> FileAccount:
    lake = Lake(lake_root)
    with connect(temp_dir=lake_root.parent / ".tmp") as con:
        account = ingest_file(con, export, lake, run_id, ingest_date, earlier_lab_files)
    _print_account(account)
    return account


@task
def ingest_small_exports(exports: list[ExportFile], lake_root: Path, run_id: str, ingest_date: date,
                         earlier_lab_files: list[Path]) -> list[FileAccount]:
    """Small files in order, through one connection; each lab file is checked for duplicates against the
    lake and every lab file before it, exactly as if each had its own task."""
    lake, lab_files, accounts = Lake(lake_root), list(earlier_lab_files), []
    with connect(temp_dir=lake_root.parent / ".tmp") as con:
        for export in exports:
            account = ingest_file(con, export, lake, run_id, ingest_date, list(lab_files))
            _print_account(account)
            accounts.append(account)
            if export.kind.table == "lab_results":
                lab_files.append(lake.data_file("lab_results", export.source_hash))
    return accounts


def ingest_batches(exports: list[ExportFile]) -> list[list[ExportFile]]:
    """The new files in discovery order, cut into tasks: a large file alone, runs of small files together."""
    batches: list[list[ExportFile]] = []
    last_batch_is_small = False
    for export in exports:
        small = export.path.stat().st_size < SMALL_FILE_BYTES
        if small and last_batch_is_small and len(batches[-1]) < SMALL_FILES_PER_TASK:
            batches[-1].append(export)
        else:
            batches.append([export])
        last_batch_is_small = small
    return batches


@task
def reconcile(accounts: list[FileAccount]) -> None:
    broken = [a.source_file for a in accounts if not a.reconciles]
    if broken:
        raise ReconciliationError(
            f"rows read != accepted + quarantined + dropped in {', '.join(broken)}: nothing was committed"
        )


@task
def validate_new_rows(lake_root: Path, source_hashes: list[str], gx_dir: Path, today: date) -> ValidationReport:
    # The files are read in batches (pipelines/validate.py): memory does not grow with the run's rows.
    files = publish.new_rows_files(Lake(lake_root), source_hashes)
    report = validate_lake_files(files, gx_dir, today, temp_dir=lake_root.parent / ".tmp")
    release_freed_memory()
    for outcome in report.warnings:
        print(f"expectation warning: {outcome.description}")
    return report


@task
def commit(lake_root: Path, run_id: str, accounts: list[FileAccount]) -> None:
    publish.commit_files(Lake(lake_root), run_id, accounts)


@task
def build_and_publish(output_dir: Path, run_id: str, rules: Rules, as_of: date, summary_record: dict,
                      validation: ValidationReport | None) -> Path:
    return publish.build_publication(output_dir, run_id, rules, as_of, summary_record, validation)


@task
def write_report(output_dir: Path, run_id: str, rules: Rules) -> Path:
    """OUTPUT/report/index.html and the worklists, from the publication just switched in."""
    return report.build_report(output_dir, run_id, rules)


def run_pipeline(input_dir: Path, output_dir: Path, as_of: date | None = None, rules_file: Path | None = None,
                 profile: str | None = None, mapping: str | None = None) -> RunSummary:
    """The pipeline's steps in order; the Prefect flow `nightly` is this function."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    # Configuration errors are caught before any data is touched.
    rules = load_rules(rules_file, profile)
    lab_mapping = load_mapping(mapping)
    check_memory_limit()
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    # Everything a run writes holds patient data: readable by the owner and the group, nobody else.
    os.umask(OUTPUT_UMASK)
    output_dir.mkdir(parents=True, exist_ok=True)
    as_of = as_of or date.today()
    summary = RunSummary(
        # Microseconds: run ids sort in the order the runs started, which the report's trend reuse relies on.
        run_id=datetime.now().strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6],
        as_of=as_of, started_at=datetime.now(), rules_version=rules.version, rules_profile=rules.profile,
    )
    lake = Lake(output_dir / "lake")
    with run_lock(output_dir):
        try:
            _run_steps(input_dir, output_dir, lake, rules, summary, lab_mapping)
        except Exception as error:
            summary.status = "failed"
            summary.message = str(error).splitlines()[0] if str(error) else type(error).__name__
            summary.finished_at = datetime.now()
            publish.record_run(lake, summary.as_record())
            publish.write_summary(output_dir, summary.run_id, summary.to_json())
            raise
    return summary


def _run_steps(input_dir: Path, output_dir: Path, lake: Lake, rules: Rules, summary: RunSummary,
               mapping: LabMapping | None = None) -> None:
    removed = lake.remove_uncommitted() + publish.remove_stale_temporaries(output_dir)
    if removed:
        print(f"removed {removed} uncommitted files left by an interrupted run")
    exports, ignored = find_exports(input_dir, mapping)
    summary.files_ignored = [path.name for path in ignored]
    for path in ignored:
        print(f"{path.name}: not an export file (expected labs*, patients*, diagnoses*, medications* .csv[.gz], "
              "or FHIR <ResourceType>*.ndjson[.gz]); ignored")

    committed = lake.committed_hashes()
    new_exports, seen = [], set(committed)
    for export in exports:
        if export.source_hash in seen:
            summary.files_skipped.append(export.name)
        else:
            seen.add(export.source_hash)
            new_exports.append(export)
    print(f"{len(new_exports)} new export files, {len(summary.files_skipped)} already ingested")

    ingest_date = date.today()
    lab_files = lake.committed_files("lab_results")
    for batch in tracked(ingest_batches(new_exports), "ingesting",
                         label=lambda b: b[0].name if len(b) == 1 else f"{b[0].name} and {len(b) - 1} more"):
        if len(batch) == 1:
            summary.files.append(ingest_export(batch[0], lake.root, summary.run_id, ingest_date, list(lab_files)))
        else:
            summary.files.extend(ingest_small_exports(batch, lake.root, summary.run_id, ingest_date,
                                                      list(lab_files)))
        lab_files.extend(lake.data_file("lab_results", export.source_hash)
                         for export in batch if export.kind.table == "lab_results")
    reconcile(summary.files)

    validation = None
    gx_dir = publish.staging_dir(output_dir, summary.run_id) / "gx"
    if new_exports:
        validation = validate_new_rows(lake.root, [e.source_hash for e in new_exports], gx_dir, ingest_date)
        summary.expectations_evaluated = validation.evaluated
        summary.expectations_failed = [o.description for o in validation.critical_failures]
        summary.expectation_warnings = [o.description for o in validation.warnings]
        summary.data_docs = validation.data_docs_index
        if validation.critical_failures:
            raise CriticalExpectationFailed(
                f"critical expectation failed: {validation.critical_failures[0].description}"
                + (f" (and {len(validation.critical_failures) - 1} more)" if len(validation.critical_failures) > 1 else "")
            )
        commit(lake.root, summary.run_id, summary.files)

    summary.status = "published"
    summary.finished_at = datetime.now()
    publication = build_and_publish(output_dir, summary.run_id, rules, summary.as_of, summary.as_record(), validation)
    summary.publication = publication
    summary.warehouse = output_dir / "warehouse.duckdb"
    publish.write_summary(output_dir, summary.run_id, summary.to_json())
    # The run has published: a report that cannot be built is logged, not a failed run.
    report_state = write_report(output_dir, summary.run_id, rules, return_state=True)
    if report_state.is_failed():
        print(f"report not written: {report_state.message}")


@flow(name="b12lab-nightly", log_prints=True)
def nightly(input_dir: Path, output_dir: Path, as_of: date | None = None, rules_file: Path | None = None,
            profile: str | None = None, mapping: str | None = None) -> dict:
    """Ingest the drop folder, validate, classify every patient as of `as_of`, publish the warehouse.
    `mapping`: a mapping file or shipped mapping name for lab CSVs in a site's own layout."""
    summary = run_pipeline(input_dir, output_dir, as_of, rules_file, profile, mapping)
    return summary.as_record()
