"""The nightly pipeline as a Prefect flow: ingest -> validate -> commit -> classify -> publish.

The flow is a short ordered script; every task calls plain functions of the other modules, which tests
call directly. Only file I/O that can fail for passing reasons (a drop folder on a network share) retries.

No `from __future__ import annotations` here: Prefect validates a served flow's parameters from their
annotations at run time, and string annotations leave its parameter model undefined ("NightlyModel is not
fully defined"), so every run started from the deployment would fail.
"""
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture, wait

from b12lab.common.duck import connect, interrupt_behind, release_freed_memory
from b12lab.common.faults import crash_point
from b12lab.common.layout import WAREHOUSE_NAME, OutputLayout, PublicationLayout
from b12lab.common.settings import Settings, load_settings
from b12lab.flows.alarms import (FeedShare, check_quarantined_shares, missing_analytes,
                                 name_missing_analytes, name_suspected_unmapped, suspected_unmapped)
from b12lab.flows.cluster import in_flow_run, on_cluster
from b12lab.flows.configuration import load_configuration
from b12lab.flows.progress import tracked
from b12lab.flows.run_log import NOT_ON_TERMINAL, run_log
from b12lab.ingest import (ExportFile, FileAccount, LabMapping, ReconciliationError, discover_exports, ingest_file,
                           ingest_small_files)
from b12lab.ingest.contract import files_label, known_by_name
from b12lab.ingest.digests import DigestCache
from b12lab.ingest.object_store import ObjectDigests, drop_location, is_remote, stage_drop
from b12lab.common.file_names import reported_name
from b12lab.lake.lake import Lake, LakeDamaged
from b12lab.lake.locking import RunLock, run_lock
from b12lab.lake.runs import RunRecord
from b12lab.publish import publication as publish
from b12lab.publish import buckets as patient_buckets
from b12lab.publish.incremental import BuildStart, choose_start, models_to_build
from b12lab.quality.validation import CriticalExpectationFailed, ValidationReport, validate_lake_files
from b12lab.report import page as report
from b12lab.report.worklists import WORKLISTS_DIR_NAME
from b12lab.rules.rules_file import Rules
from b12lab.publish import dbt_build as transforms


OUTPUT_UMASK = 0o027
NIGHTLY, REPRODUCTION = "nightly", "reproduction"


class RunFailed(RuntimeError):
    """A run that stopped: one line naming the cause and the log file that holds the details."""


class NoExportFiles(RuntimeError):
    pass


def prepare_output(layout: OutputLayout) -> None:
    """Create the output folder if need be and prove it writable, before anything is read."""
    # Everything a run writes holds patient data: readable by the owner and the group, nobody else.
    os.umask(OUTPUT_UMASK)
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        probe = layout.root / f".write-test.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise PermissionError(f"cannot write to the output folder {layout.root}: {error.strerror or error}") \
            from None


@dataclass
class RunSummary:
    """A run as it goes: its `runs` record (`as_record`) and, for the run summary, what each file became."""

    run_id: str
    kind: str
    as_of: date
    flow_run_id: str | None
    started_at: datetime
    rules_version: str
    rules_profile: str
    status: str = "running"
    message: str = ""
    finished_at: datetime | None = None
    files: list[FileAccount] = field(default_factory=list)
    committed: bool = False  # the files' rows are in the lake: only then are the valid ones "accepted"
    files_skipped: list[str] = field(default_factory=list)
    files_ignored: list[str] = field(default_factory=list)
    export_digests: dict[str, int] = field(default_factory=dict)  # sha256 computed / remembered (find_exports)
    expectations_evaluated: int = 0
    expectations_failed: list[str] = field(default_factory=list)
    expectation_warnings: list[str] = field(default_factory=list)
    feeds: list[FeedShare] = field(default_factory=list)
    suspected_unmapped_analytes: list[dict] = field(default_factory=list)
    analytes_missing: list[dict] = field(default_factory=list)
    warehouse: Path | None = None
    publication: Path | None = None  # the publication folder, once switched in
    data_docs: Path | None = None
    log_file: Path | None = None

    def total(self, attribute: str) -> int:
        return sum(getattr(account, attribute) for account in self.files)

    @property
    def rows_accepted(self) -> int | None:
        """Rows accepted into the lake; None for a run that stopped with files not committed."""
        return self.total("rows_accepted") if self.committed or not self.files else None

    def as_record(self) -> RunRecord:
        return RunRecord(
            run_id=self.run_id, kind=self.kind, flow_run_id=self.flow_run_id, as_of=self.as_of,
            started_at=self.started_at, finished_at=self.finished_at, status=self.status, message=self.message,
            rules_version=self.rules_version, rules_profile=self.rules_profile,
            files_ingested=len(self.files), files_skipped=len(self.files_skipped),
            rows_read=self.total("rows_read"), rows_accepted=self.rows_accepted,
            rows_quarantined=self.total("rows_quarantined"), rows_dropped=self.total("rows_dropped"),
            expectations_evaluated=self.expectations_evaluated,
            expectations_failed=len(self.expectations_failed),
            expectation_warnings=len(self.expectation_warnings),
        )

    def to_json(self) -> str:
        """The run summary: the `runs` record's fields, then the lists behind its counts and the paths."""
        payload = self.as_record().as_dict()
        payload["rows_out_of_scope"] = self.total("rows_out_of_scope")
        payload["rows_in_scope"] = self.total("rows_in_scope")
        payload["suspected_unmapped_analytes"] = self.suspected_unmapped_analytes
        payload["analytes_missing"] = self.analytes_missing
        uncommitted = self.rows_accepted is None
        if uncommitted:  # what ingest found valid, never called accepted: none of it reached the lake
            payload["rows_valid_not_committed"] = self.total("rows_accepted")
        payload["files"] = []
        for account in self.files:
            fields = {k: v for k, v in asdict(account).items() if k != "by_reason"}
            if uncommitted:
                fields = {("rows_valid_not_committed" if k == "rows_accepted" else k): v for k, v in fields.items()}
            fields["committed"] = not uncommitted
            fields["rows_out_of_scope"] = account.rows_out_of_scope
            fields["rows_in_scope"] = account.rows_in_scope
            fields["by_reason"] = [{"outcome": o, "reason": r, "rows": n}
                                   for (o, r), n in sorted(account.by_reason.items())]
            payload["files"].append(fields)
        payload["feeds"] = [feed.as_dict() for feed in self.feeds]
        payload["files_skipped"] = self.files_skipped
        payload["files_ignored"] = self.files_ignored
        payload["export_digests"] = self.export_digests
        payload["expectations_failed_list"] = self.expectations_failed
        payload["expectation_warnings_list"] = self.expectation_warnings
        for name in ("warehouse", "publication", "data_docs", "log_file"):
            value = getattr(self, name)
            payload[name] = str(value) if value else None
        return json.dumps(payload, indent=2, default=str)


@task(retries=2, retry_delay_seconds=5)
def find_exports(input_dir: Path, digests_file: Path,
                 mapping: LabMapping | None = None) -> tuple[list[ExportFile], list[Path], dict[str, int]]:
    """The drop folder's exports, each with its content's sha256: computed for a file new or changed since
    the last night, remembered for the others (b12lab.ingest.digests); the files ignored; how many digests
    were computed and how many remembered."""
    digests = DigestCache.load(digests_file)
    exports, ignored = discover_exports(input_dir, mapping, digests)
    digests.save()
    return exports, ignored, {"computed": digests.computed, "remembered": digests.reused}


@task(retries=2, retry_delay_seconds=5)
def find_object_store_exports(url: str, layout: OutputLayout, committed: set[str], mapping: LabMapping | None = None
                              ) -> tuple[list[ExportFile], list[Path], dict[str, int]]:
    """find_exports for a drop on an object store: the drop staged in OUTPUT/.tmp/drop/ (only what the night
    must read is downloaded: b12lab.ingest.object_store), then read as a local folder."""
    digests = ObjectDigests.load(layout.object_digests)
    staged = stage_drop(url, layout.staged_drop, digests, committed, lambda name: known_by_name(name, mapping))
    exports, ignored = discover_exports(staged.folder, mapping, staged.digests)
    digests.save()
    print(f"{url}: {staged.downloaded + staged.placeholders} objects, {staged.downloaded} downloaded "
          f"({staged.downloaded_bytes / 1e6:.1f} MB), {staged.placeholders} not downloaded (already ingested, "
          "or not export files)")
    return exports, ignored, {"computed": staged.digests.computed, "remembered": staged.digests.reused,
                              "downloaded": staged.downloaded}


# Files under this size are ingested several to a task: a Prefect task and a DuckDB connection cost about
# 0.1 s each, which dominates a one-row file (a folder of 3000 such files took 8 minutes one per task).
SMALL_FILE_BYTES = 1 << 20
SMALL_FILES_PER_TASK = 250


def print_accounts(accounts: list[FileAccount], committed: bool) -> None:
    """A line per file. Its rows are accepted only once committed: before that (a run that stopped) they are
    the rows found valid, and the line says they were not committed. Files whose name may carry a person's
    name (per-patient Bundles, hundreds a night) are printed by their pattern, one line per pattern with the
    number of files and their summed counts."""
    accepted, not_committed = ("accepted", "") if committed else ("valid", ": not committed")
    for name, files, read, valid, quarantined, dropped in summed_by_reported_name(accounts):
        counted = f"{name} ({files} files)" if files > 1 else name  # as the report's tables say it
        print(f"{counted}: read {read}, {accepted} {valid}, quarantined {quarantined}, dropped {dropped}"
              f"{not_committed}")


def summed_by_reported_name(accounts: list[FileAccount]) -> list[tuple[str, int, int, int, int, int]]:
    """(reported name, files, read, accepted, quarantined, dropped) in the order files were ingested: a file
    shown by its own name alone, the files shown by one pattern together where the first of them came."""
    sums: dict[tuple[str, int | None], list[int]] = {}
    for position, account in enumerate(accounts):
        name = reported_name(account.source_file)
        by_pattern = name != account.source_file
        counts = sums.setdefault((name, None if by_pattern else position), [0, 0, 0, 0, 0])
        for index, value in enumerate((1, account.rows_read, account.rows_accepted, account.rows_quarantined,
                                       account.rows_dropped)):
            counts[index] += value
    return [(name, *counts) for (name, _), counts in sums.items()]


@task
def ingest_export(export: ExportFile, layout: OutputLayout, run_id: str, ingest_date: date,
                  earlier_lab_files: list[Path]) -> FileAccount:
    lake = Lake(layout.lake)
    with connect(temp_dir=layout.scratch) as con:
        return ingest_file(con, export, lake, run_id, ingest_date, earlier_lab_files)


@task
def ingest_small_exports(exports: list[ExportFile], layout: OutputLayout, run_id: str, ingest_date: date,
                         earlier_lab_files: list[Path]) -> list[FileAccount]:
    """Small files through one connection, FHIR Bundles of one resource type read together
    (b12lab/ingest/batched_ingest.py); each lab file is checked for duplicates against the lake and every lab
    file before it, exactly as if each had its own task."""
    with connect(temp_dir=layout.scratch) as con:
        return ingest_small_files(con, exports, Lake(layout.lake), run_id, ingest_date, earlier_lab_files)


def is_small(export: ExportFile) -> bool:
    """A file ingested several to a task, and which may share the machine with another chain of them."""
    return export.path.stat().st_size < SMALL_FILE_BYTES


def ingest_batches(exports: list[ExportFile]) -> list[list[ExportFile]]:
    """The new files in discovery order, cut into tasks: a large file alone, runs of small files together."""
    batches: list[list[ExportFile]] = []
    last_batch_is_small = False
    for export in exports:
        small = is_small(export)
        if small and last_batch_is_small and len(batches[-1]) < SMALL_FILES_PER_TASK:
            batches[-1].append(export)
        else:
            batches.append([export])
        last_batch_is_small = small
    return batches


def _submit_batch(batch: list[ExportFile], layout: OutputLayout, run_id: str, ingest_date: date,
                  earlier_lab_files: list[Path], wait_for: list) -> PrefectFuture:
    if len(batch) == 1:
        return ingest_export.submit(batch[0], layout, run_id, ingest_date, earlier_lab_files, wait_for=wait_for)
    return ingest_small_exports.submit(batch, layout, run_id, ingest_date, earlier_lab_files, wait_for=wait_for)


def _ingest_in_chains(exports: list[ExportFile], layout: OutputLayout, lake: Lake, run_id: str,
                      ingest_date: date, others_in_one_chain: bool) -> list[FileAccount]:
    """The new files' ingest tasks, submitted to the flow's task runner; their accounts in discovery order, as
    one after another.

    Lab files stay one after another: each is checked for duplicates against the lake files of every lab file
    before it (`earlier_lab_files`), which exist only once that file's task has written them, so each lab
    batch waits for the one before (`wait_for`), exactly the one-after-another order. Every other file
    (patients, diagnoses, medications, their FHIR resources) reads nothing another task writes: on a cluster
    those batches run at once, beside the lab chain and each other; in process (`others_in_one_chain`) they
    run one after another in a second chain beside the lab chain, so that at most two DuckDB connections
    work at once. The flow waits for every task before it looks at one, so a failed night never leaves a
    task still writing to the lake."""
    labs = [export for export in exports if export.kind.table == "lab_results"]
    others = [export for export in exports if export.kind.table != "lab_results"]
    futures, lab_files, previous_lab_task, previous_other_task = [], lake.committed_files("lab_results"), None, None
    for batch in ingest_batches(labs):
        previous_lab_task = _submit_batch(batch, layout, run_id, ingest_date, list(lab_files),
                                          wait_for=[previous_lab_task] if previous_lab_task else [])
        futures.append(previous_lab_task)
        lab_files.extend(lake.data_file("lab_results", export.source_hash) for export in batch)
    for batch in ingest_batches(others):
        waits_for = [previous_other_task] if others_in_one_chain and previous_other_task else []
        previous_other_task = _submit_batch(batch, layout, run_id, ingest_date, [], wait_for=waits_for)
        futures.append(previous_other_task)
    wait(futures)
    by_hash = {}
    for future in futures:  # the first failure in submission order (a lab file's first) stops the run
        result = future.result()
        for account in result if isinstance(result, list) else [result]:
            by_hash[account.source_hash] = account
    return [by_hash[export.source_hash] for export in exports]


def _ingest_one_after_another(exports: list[ExportFile], layout: OutputLayout, lake: Lake, run_id: str,
                              ingest_date: date) -> list[FileAccount]:
    """The new files' ingest tasks in discovery order, one at a time: one DuckDB connection's memory at most."""
    accounts, lab_files = [], lake.committed_files("lab_results")
    for batch in tracked(ingest_batches(exports), "ingesting", label=files_label):
        if len(batch) == 1:
            accounts.append(ingest_export(batch[0], layout, run_id, ingest_date, list(lab_files)))
        else:
            accounts.extend(ingest_small_exports(batch, layout, run_id, ingest_date, list(lab_files)))
        lab_files.extend(lake.data_file("lab_results", export.source_hash)
                         for export in batch if export.kind.table == "lab_results")
    return accounts


def ingest_exports(exports: list[ExportFile], layout: OutputLayout, lake: Lake, run_id: str,
                   ingest_date: date) -> list[FileAccount]:
    """The new files' accounts in discovery order. On a cluster, every batch the lab chain allows at once. In
    process, one after another when any file is large (each could use DuckDB's whole memory limit); when
    all are small (a night of per-patient FHIR Bundles: thousands of exports of a few rows, each paying a
    fixed cost of about 30 ms of DuckDB statements), the lab files and the others in two chains at once, which
    keeps both cores busy (within a flow run: called on its own, one after another)."""
    if on_cluster():
        return _ingest_in_chains(exports, layout, lake, run_id, ingest_date, others_in_one_chain=False)
    all_small = all(is_small(export) for export in exports)
    has_both = len({export.kind.table == "lab_results" for export in exports}) == 2
    if all_small and has_both and in_flow_run():
        return _ingest_in_chains(exports, layout, lake, run_id, ingest_date, others_in_one_chain=True)
    return _ingest_one_after_another(exports, layout, lake, run_id, ingest_date)


@task
def reconcile(accounts: list[FileAccount]) -> None:
    broken = [a.source_file for a in accounts if not a.reconciles]
    if broken:
        raise ReconciliationError(
            f"rows read != accepted + quarantined + dropped in {', '.join(broken)}: nothing was committed"
        )


@task
def validate_new_rows(layout: OutputLayout, source_hashes: list[str], gx_dir: Path, today: date) -> ValidationReport:
    # GX validates the rows in SQL (b12lab/quality/validation.py): memory does not grow with the run's rows.
    files = publish.new_rows_files(Lake(layout.lake), source_hashes)
    report = validate_lake_files(files, gx_dir, today, temp_dir=layout.scratch)
    release_freed_memory()
    return report


@task
def commit(layout: OutputLayout, run_id: str, accounts: list[FileAccount]) -> None:
    publish.commit_files(Lake(layout.lake), run_id, accounts)


@task
def prepare_warehouse(layout: OutputLayout, publication: PublicationLayout, rules: Rules, as_of: date,
                      run_record: RunRecord, reproduction: bool) -> tuple[Path, BuildStart]:
    """The publication's warehouse with the models' sources, and how it started (a copy of the live one or
    empty)."""
    start = choose_start(layout.live.warehouse, Lake(layout.lake), rules, as_of, reproduction)
    return publish.prepare_warehouse(layout, publication, rules, as_of, run_record, start), start


@task
def assign_buckets(layout: OutputLayout, warehouse: Path, buckets: int, run_id: str, start: BuildStart) -> int:
    return patient_buckets.assign_buckets(warehouse, buckets, layout.scratch, run_id, start.incremental)


@task
def build_bucket(layout: OutputLayout, warehouse: Path, run_id: str, bucket: int, as_of: date,
                 parse_cache: Path | None) -> patient_buckets.BucketBuild:
    """One bucket's patients' patient-level models, in a DuckDB file of its own (b12lab.publish.buckets)."""
    work = layout.dbt_work / "buckets" / f"{bucket:04d}"
    transforms.reuse_parse(parse_cache, work)
    built = patient_buckets.build_bucket(warehouse, bucket,
                                         patient_buckets.bucket_folder(layout.scratch, run_id, bucket), work, as_of,
                                         layout.scratch, patient_buckets.records_folder(layout.scratch, run_id))
    release_freed_memory()
    return built


@task
def register_buckets(layout: OutputLayout, warehouse: Path, built: list) -> None:
    patient_buckets.register_buckets(warehouse, built, layout.scratch)


def build_in_buckets(layout: OutputLayout, warehouse: Path, start: BuildStart, run_id: str, as_of: date,
                     buckets: int) -> None:
    """Tonight's patients' patient-level models built bucket by bucket, each bucket a task (on the cluster's
    workers when there is one), their files then listed in the warehouse for its build to read (docs/buckets.md).
    Nothing to do with one bucket, or on a night whose build does not rebuild any patient."""
    if buckets < 2 or models_to_build(warehouse, as_of).select:
        return
    patients = assign_buckets(layout, warehouse, buckets, run_id, start)
    if not patients:
        print(f"buckets: no patient to build tonight in any of the {buckets} buckets")
        return
    # dbt's parse of the project, made once here and copied to each bucket's work folder: a bucket then
    # starts in a second instead of parsing the project again.
    parse_cache = transforms.parse(layout.dbt_work, warehouse, as_of)
    arguments = [(layout, warehouse, run_id, bucket, as_of, parse_cache) for bucket in range(buckets)]
    if on_cluster():
        futures = [build_bucket.submit(*call) for call in arguments]
        wait(futures)
        built = [future.result() for future in futures]
    else:
        built = [build_bucket(*call) for call in tracked(arguments, "buckets", label=lambda call: f"bucket {call[3]}")]
    built = [build for build in built if build.patients]
    register_buckets(layout, warehouse, built)
    slowest = max(built, key=lambda build: build.seconds)
    print(f"buckets: {patients} patients built in {len(built)} of {buckets} buckets "
          f"({'on the cluster' if on_cluster() else 'in process'}; the slowest, bucket {slowest.bucket}, "
          f"{slowest.patients} patients in {slowest.seconds:.1f} s); the warehouse's build reads their "
          f"{len(patient_buckets.patient_level_models())} patient-level models' rows")


@task
def build_models(layout: OutputLayout, warehouse: Path, as_of: date) -> list[str]:
    """`dbt build`: seeds, models and their data tests, each result a line of this run's log; a failed model
    or error-severity test stops the run before the switch. A night with no patient to rebuild on the live
    publication's date builds only the models of the night's accounting (the rest is already in the copy), and
    any other night on a copy builds every model but not the seeds (the copy's are tonight's)."""
    logger = get_run_logger()  # dbt reports from its own threads, where print is not this run's log
    selection = models_to_build(warehouse, as_of)
    # A build of every model, on a night that will generate the catalogue afresh (no page of this project in
    # the work folder: a first night, a new version), writes its manifest for the catalogue to reuse.
    write_manifest = not selection.select and not transforms.catalogue_cached(layout.dbt_work)
    # A line per seed, model and test (about 200): the log file and the UI keep them, the terminal the summary.
    result = transforms.build(warehouse, layout.dbt_work, as_of, select=list(selection.select),
                              exclude=list(selection.exclude), write_manifest=write_manifest,
                              log=lambda line: logger.info(line, extra=NOT_ON_TERMINAL))
    for warning in result.warnings:
        logger.warning(f"dbt test warning: {warning}")
    if result.retried_on_one_thread:
        print(f"models: {', '.join(result.retried_on_one_thread)} ran out of memory on every core and were built "
              f"on one thread (B12LAB_MEMORY_LIMIT {load_settings().memory_limit})")
    scope = f" ({selection.scope})" if selection.scope else ""
    print(f"models built: {len(result.built)} models and seeds, {result.tests_passed} data tests passed{scope}")
    return result.built


@task
def finish_warehouse(layout: OutputLayout, publication: PublicationLayout, rules: Rules, run_id: str,
                     start: BuildStart, built: list[str]) -> Path:
    return publish.finish_warehouse(layout, publication, rules, run_id, start, built)


@task
def write_catalogue(layout: OutputLayout, publication: PublicationLayout) -> Path:
    """dbt's static catalogue (models, columns, tests, lineage) for analysts, one self-contained page."""
    return transforms.docs(publication.warehouse, layout.dbt_work, publication.catalogue_page, log=lambda line: None)


@task
def write_report(layout: OutputLayout, publication: PublicationLayout, run_id: str, live: bool) -> Path:
    """The report and worklists, into the publication before it is switched in: part of what it publishes."""
    previous = layout.live.report.resolve() / WORKLISTS_DIR_NAME if live and layout.live.report.is_dir() else None
    return report.build_report(publication.root, run_id, live=live, chart_folder=layout.chart_cache,
                               previous_worklists=previous)


@task
def switch_in(layout: OutputLayout, publication: PublicationLayout, kind: str, as_of: date) -> PublicationLayout:
    """Make the finished publication live (a nightly run) or move it to OUTPUT/as-of/<date>/ (a reproduction);
    return where it is read from now."""
    if kind == NIGHTLY:
        # Read here, never a task parameter: the key must not reach Prefect's records of the run.
        publish.switch_live(layout, publication, load_settings().key())
        return layout.live
    return publish.switch_reproduction(layout, publication, as_of)


def new_run_id() -> str:
    # Microseconds: run ids sort in the order the runs started.
    return datetime.now().strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6]


def run_pipeline(input_dir: Path | str, output_dir: Path, as_of: date | None = None, rules_file: Path | None = None,
                 profile: str | None = None, max_quarantine_share: float | None = None,
                 flow_run_id: str | None = None, mapping: str | None = None,
                 buckets: int | None = None) -> RunSummary:
    """The pipeline's steps in order; the Prefect flow `nightly` is this function. `max_quarantine_share`
    overrides the setting (B12LAB_MAX_QUARANTINE_SHARE).

    Whatever stops it (an error, an interrupt) is recorded in the `runs` table, the run summary and the log
    file before it is raised; an error is raised again as RunFailed, one line that names the log file.
    """
    input_dir = drop_location(input_dir)
    today = date.today()
    as_of = as_of or today
    # Configuration errors are caught before any data is touched.
    configuration = load_configuration(rules_file, profile, mapping, max_quarantine_share=max_quarantine_share,
                                       buckets=buckets, as_of=as_of, today=today, input_dir=input_dir)
    rules, settings = configuration.rules, configuration.settings
    if not is_remote(input_dir) and not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    layout = OutputLayout.of(output_dir, settings.dbt_work_dir)
    prepare_output(layout)
    run_id = new_run_id()
    lake = Lake(layout.lake)
    with run_log(layout.log(run_id)) as log, run_lock(layout.lock) as lock:
        lock.record(run_id=run_id, flow_run_id=flow_run_id)
        try:  # first: every later step reads the bookkeeping tables
            removed = lake.remove_unreadable_bookkeeping()
        except LakeDamaged as error:  # no run record can be written to a lake that cannot be read
            log.write_traceback(error)
            raise RunFailed(f"{error} (details: {log.path})") from error
        close_abandoned_run(layout, lake, lock, run_id)
        removed += lake.remove_uncommitted() + publish.remove_stale_temporaries(layout)
        if removed:
            print(f"removed {removed} unfinished files left by an interrupted run")
        live_as_of = publish.live_as_of(layout)
        kind = REPRODUCTION if live_as_of is not None and as_of < live_as_of else NIGHTLY
        summary = RunSummary(run_id=run_id, kind=kind, as_of=as_of, flow_run_id=flow_run_id, started_at=datetime.now(),
                             rules_version=rules.version, rules_profile=rules.profile, log_file=log.path)
        print(f"run {run_id} ({kind}) as of {as_of.isoformat()}; log: {log.path}")
        try:
            if kind == NIGHTLY:
                _run_steps(input_dir, layout, lake, rules, summary, settings, configuration.mapping)
            else:
                print(f"{as_of.isoformat()} is before the live publication's date ({live_as_of.isoformat()}): "
                      f"a reproduction from the lake as committed, written to "
                      f"{layout.reproduction(as_of).root}; the drop folder is not read and the live "
                      "publication is left alone")
                _publish(layout, lake, rules, summary, settings)
        except BaseException as error:
            interrupt = interrupt_behind(error)
            interrupted = interrupt is not None
            summary.status = "interrupted" if interrupted else "failed"
            cause = type(interrupt).__name__ if interrupted else (str(error).splitlines() or [type(error).__name__])[0]
            summary.message = cause
            summary.finished_at = datetime.now()
            log.write_traceback(error)
            if not summary.committed:
                print_accounts(summary.files, committed=False)
            publish.record_run(lake, summary.as_record())
            kept_with = layout.publication(run_id) if kind == NIGHTLY else None
            publish.write_summary(layout, kept_with, summary.to_json(), latest=kind == NIGHTLY)
            if interrupted:
                if isinstance(interrupt, Exception):  # DuckDB's own word for a Ctrl-C
                    raise KeyboardInterrupt from error
                raise interrupt from None  # the signal itself, also when Prefect failed handling it
            raise RunFailed(f"{cause} (details: {log.path})") from error
    return summary


def close_abandoned_run(layout: OutputLayout, lake: Lake, lock: RunLock, run_id: str) -> None:
    """A run named in the lock file was killed before it finished: record it, and end its Prefect flow run
    (left "Running" by a process that could not report) as Crashed. It ended when its log file was last
    written (its last sign of life), not when this run found it."""
    holder = lock.previous or {}
    abandoned = holder.get("run_id")
    if abandoned and abandoned not in lake.run_ids():
        last_log = layout.log(abandoned)
        ended = datetime.fromtimestamp(last_log.stat().st_mtime) if last_log.is_file() else None
        publish.record_run(lake, RunRecord(
            run_id=abandoned, status="crashed", finished_at=ended,
            message=f"the run ended without finishing (killed); found by run {run_id}"))
        print(f"run {abandoned} ended without finishing (killed): recorded as crashed")
    if holder.get("flow_run_id"):
        mark_flow_run_crashed(holder["flow_run_id"], run_id)


def mark_flow_run_crashed(flow_run_id: str, found_by: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and not state.is_final():
                client.set_flow_run_state(flow_run_id, Crashed(
                    message=f"the process running it was killed; found by b12lab run {found_by}"), force=True)
                print(f"flow run {flow_run_id} was left {state.name} by a killed process: marked Crashed")
    except Exception as error:  # another Prefect database, or none: the lake's record is what counts
        print(f"could not mark the killed run's flow run {flow_run_id} as crashed: {type(error).__name__}")


def _run_steps(input_dir: Path | str, layout: OutputLayout, lake: Lake, rules: Rules, summary: RunSummary,
               settings: Settings, mapping: LabMapping | None = None) -> None:
    try:
        _ingest_and_publish(input_dir, layout, lake, rules, summary, settings, mapping)
    finally:  # an object store's staged objects: patient data the lake now holds, or a failed night's
        shutil.rmtree(layout.staged_drop, ignore_errors=True)


def _ingest_and_publish(input_dir: Path | str, layout: OutputLayout, lake: Lake, rules: Rules,
                        summary: RunSummary, settings: Settings, mapping: LabMapping | None) -> None:
    committed = lake.committed_hashes()
    if is_remote(input_dir):
        exports, ignored, summary.export_digests = find_object_store_exports(input_dir, layout, set(committed),
                                                                             mapping)
    else:
        exports, ignored, summary.export_digests = find_exports(input_dir, layout.export_digests, mapping)
    summary.files_ignored = [path.name for path in ignored]
    for path in ignored:
        print(f"{reported_name(path.name)}: not an export file (expected labs*, patients*, diagnoses*, medications* .csv[.gz], "
              "or FHIR <ResourceType>*.ndjson[.gz]); ignored")
    if not exports:
        raise NoExportFiles(f"no export files in {input_dir}: is the share mounted?")

    new_exports, seen = [], set(committed)
    for export in exports:
        if export.source_hash in seen:
            summary.files_skipped.append(export.name)
        else:
            seen.add(export.source_hash)
            new_exports.append(export)
    print(f"{len(new_exports)} new export files, {len(summary.files_skipped)} already ingested (sha256 read for "
          f"{summary.export_digests['computed']} files new or changed since last hashed, remembered for "
          f"{summary.export_digests['remembered']} unchanged)")

    ingest_date = date.today()
    summary.files.extend(ingest_exports(new_exports, layout, lake, summary.run_id, ingest_date))
    reconcile(summary.files)
    summary.feeds = check_quarantined_shares(summary.files, settings.max_quarantine_share)
    # Named before anything is committed: on the terminal, in the run summary and, once published, in the report.
    summary.suspected_unmapped_analytes = suspected_unmapped(summary.files)
    summary.analytes_missing = missing_analytes(lake, summary.files)
    name_missing_analytes(summary.analytes_missing, sum(1 for a in summary.files if a.kind == "labs"))
    name_suspected_unmapped(summary.suspected_unmapped_analytes, settings.fail_on_suspected_unmapped)

    if new_exports:
        gx_dir = layout.publication(summary.run_id).gx
        new_hashes = [e.source_hash for e in new_exports]
        if on_cluster():  # on a worker: GX and its DuckDB database of the night's rows stay off the driver
            validation = validate_new_rows.submit(layout, new_hashes, gx_dir, ingest_date).result()
        else:
            validation = validate_new_rows(layout, new_hashes, gx_dir, ingest_date)
        for outcome in validation.warnings:  # printed here: a worker's prints miss the run's log file
            print(f"expectation warning: {outcome.description}")
        summary.expectations_evaluated = validation.evaluated
        summary.expectations_failed = [o.description for o in validation.critical_failures]
        summary.expectation_warnings = [o.description for o in validation.warnings]
        summary.data_docs = validation.data_docs_index
        if validation.critical_failures:
            raise CriticalExpectationFailed(
                f"critical expectation failed: {validation.critical_failures[0].description}"
                + (f" (and {len(validation.critical_failures) - 1} more)" if len(validation.critical_failures) > 1 else "")
            )
        commit(layout, summary.run_id, summary.files)
        summary.committed = True
        print_accounts(summary.files, committed=True)
    _publish(layout, lake, rules, summary, settings)


def _publish(layout: OutputLayout, lake: Lake, rules: Rules, summary: RunSummary, settings: Settings) -> None:
    """Build the whole publication (warehouse, marts, catalogue, report, worklists), then switch it in at once."""
    live = summary.kind == NIGHTLY
    publication = (layout.publication(summary.run_id) if live
                   else layout.reproduction_staging(summary.as_of, summary.run_id))
    summary.status = "published"  # its row in the warehouse it publishes; finished_at is stamped at the switch
    warehouse, start = prepare_warehouse(layout, publication, rules, summary.as_of, summary.as_record(), not live)
    build_in_buckets(layout, warehouse, start, summary.run_id, summary.as_of, settings.buckets)
    built = build_models(layout, warehouse, summary.as_of)
    patient_buckets.remove_buckets(layout.scratch, summary.run_id)
    crash_point("classify")
    summary.warehouse = finish_warehouse(layout, publication, rules, summary.run_id, start, built)
    write_catalogue(layout, publication)
    publish.write_summary(layout, publication, summary.to_json(), latest=False)
    write_report(layout, publication, summary.run_id, live)
    summary.finished_at = datetime.now()  # the switch is the run's last step: what follows is bookkeeping
    publish.stamp_finished(layout, publication, summary.run_id, summary.finished_at)
    switched_in = switch_in(layout, publication, summary.kind, summary.as_of)
    summary.publication = switched_in.root
    # A nightly run's warehouse is read through the fixed link OUTPUT/warehouse.duckdb.
    summary.warehouse = layout.live_link(WAREHOUSE_NAME) if live else switched_in.warehouse
    publish.record_run(lake, summary.as_record())
    if live:
        publish.record_metrics(lake, summary.run_id, summary.warehouse)
    publish.write_summary(layout, switched_in, summary.to_json(), latest=live)


@flow(name="b12lab-nightly", log_prints=True)
def nightly(input_dir: str | Path, output_dir: Path, as_of: date | None = None, rules_file: Path | None = None,
            profile: str | None = None, max_quarantine_share: float | None = None,
            mapping: str | None = None, buckets: int | None = None) -> dict:
    """Ingest the drop folder, validate, classify every patient as of `as_of`, publish the warehouse.
    `input_dir`: a folder, or an object store's URL (s3://bucket/prefix: b12lab.ingest.object_store);
    `mapping`: a mapping file or shipped mapping name for lab CSVs in a site's own layout;
    `max_quarantine_share`: overrides the setting B12LAB_MAX_QUARANTINE_SHARE; `buckets`: B12LAB_BUCKETS."""
    from prefect.runtime import flow_run

    summary = run_pipeline(input_dir, output_dir, as_of, rules_file, profile, max_quarantine_share,
                           flow_run_id=str(flow_run.id), mapping=mapping, buckets=buckets)
    return {**summary.as_record().as_dict(), "warehouse": str(summary.warehouse), "log_file": str(summary.log_file)}
