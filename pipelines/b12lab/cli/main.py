"""The `b12lab` command line: run, synth, sql, serve and notify.

Whatever goes wrong, a command exits non-zero with one line on standard error that names the cause (and,
for a run, its log file), never a traceback: 1 for an error, 130 for an interrupt (SIGINT, Ctrl-C), 143
for SIGTERM. Exit 0 means the command did everything it promises (for `run`: published).
"""
from __future__ import annotations

import atexit
import os
import signal
import sys
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import click

from b12lab.cli.notifications import SHORTEST_SILENCE_HOURS
from b12lab.common.settings import DEFAULTS

# Set before Prefect is imported: this machine has no internet, and telemetry errors would fill the logs.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# Dask's scheduler and nannies (--workers) log each worker and connection at INFO, which would double a night's
# terminal output; their warnings and errors still show. An environment variable, so the processes Dask and
# `serve` start read it too.
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
# A Dask worker stopped in the middle of a task (a Ctrl-C) leaves a semaphore that multiprocessing's resource
# tracker frees as the command exits, with a warning on standard error below the command's one line.
os.environ.setdefault("PYTHONWARNINGS", "ignore:resource_tracker:UserWarning")
# Prefect's logging as the command line wants it: progress on stdout, no traceback (b12lab/cli/logging.yml).
os.environ.setdefault("PREFECT_LOGGING_SETTINGS_PATH", str(Path(__file__).with_name("logging.yml")))


_exit_status = {"code": 0}
EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 1, 128 + signal.SIGINT, 128 + signal.SIGTERM


def _leave_without_interpreter_teardown() -> None:
    """Registered first, so it runs after every other exit handler (Prefect stops its server in one).

    After a Prefect task has run in a process that used DuckDB, the interpreter's final teardown makes
    DuckDB's bindings print pages of "nanobind: leaked ..." noise. All work and all clean-up are done by
    now; skipping that last teardown keeps the operator's terminal and the scheduler's log clean.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status["code"])


atexit.register(_leave_without_interpreter_teardown)


class CommandFailed(Exception):
    """A command's one-line failure, already worded for the operator."""


class Interrupted(BaseException):
    """SIGTERM outside a flow run (inside one, Prefect's own handler raises its TerminationSignal)."""

    def __init__(self, signum: int):
        self.signal = signum


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)


class _SignalsSeen:
    """Which signals reached the process, whatever handler was installed when they came: Python's C-level
    handler writes each one's number to the wakeup fd. Needed because a Ctrl-C or SIGTERM that lands inside
    a DuckDB query comes back as DuckDB's own "Query interrupted", which does not say which it was."""

    def __init__(self):
        self._read, write = os.pipe()
        for end in (self._read, write):
            os.set_blocking(end, False)
        signal.set_wakeup_fd(write)

    def last(self, default: int) -> int:
        try:
            seen = os.read(self._read, 1024)
        except BlockingIOError:
            seen = b""
        wanted = [number for number in seen if number in (signal.SIGINT, signal.SIGTERM)]
        return wanted[-1] if wanted else default


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def entry_point() -> None:
    """The `b12lab` console script: every outcome becomes an exit status and at most one line on stderr."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    # Also when started in the background by a shell that set SIGINT to be ignored: SIGINT stops a run.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signals = _SignalsSeen()
    code = 0
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as leaving:
        code = leaving.exit_code
    except click.ClickException as error:  # bad usage: click's own message and status (2)
        error.show()
        code = error.exit_code
    except CommandFailed as error:
        click.echo(f"b12lab: error: {error}", err=True)
        code = EXIT_ERROR
    except BaseException as error:  # noqa: BLE001 (the promise: no traceback reaches the terminal)
        # An interrupt: KeyboardInterrupt, click's Abort (what click makes of it), ours, or Prefect's
        # TerminationSignal (its SIGTERM handler during a flow run).
        # Also one that Prefect's engine failed to handle: the interrupt is then the error's context.
        from b12lab.common.duck import interrupt_behind

        interrupt = error if isinstance(error, click.exceptions.Abort) else interrupt_behind(error)
        if interrupt is not None:
            signum = signals.last(default=getattr(interrupt, "signal", signal.SIGINT))
            code = EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT
            click.echo(f"b12lab: interrupted ({signal.Signals(signum).name}): nothing half-done was published; "
                       "the next run carries on", err=True)
        else:
            click.echo(f"b12lab: error: {_one_line(error)}", err=True)
            code = EXIT_ERROR
    _exit_status["code"] = code
    sys.exit(code)


def _fail(message: str) -> None:
    raise CommandFailed(message)


@contextmanager
def _usage_errors_of_options(profile: bool = True, mapping: bool = True):
    """Checking the configuration: a profile or mapping name that does not exist is a usage error of its
    option (click's message, exit 2) when it came from the option; anything else is one line and exit 1."""
    from b12lab.flows.configuration import CONFIGURATION_ERRORS
    from b12lab.ingest import UnknownMapping
    from b12lab.rules.rules_file import UnknownProfile

    try:
        yield
    except (UnknownProfile, UnknownMapping) as error:
        option = "--profile" if isinstance(error, UnknownProfile) else "--mapping"
        if (profile if option == "--profile" else mapping):
            raise click.BadParameter(_one_line(error), ctx=click.get_current_context(silent=True),
                                     param_hint=f"'{option}'") from None
        _fail(_one_line(error))
    except CONFIGURATION_ERRORS as error:
        _fail(_one_line(error))


def _a_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """An output folder option: it may not exist yet (it is created), but it may not be a file."""
    if value is not None and value.exists() and not value.is_dir():
        raise click.BadParameter(f"{value} is a file, not a folder")
    return value


def _a_drop(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | str | None:
    """The --input option: a folder, or an object store's URL (kept as text: a Path would fold its //)."""
    from b12lab.ingest.object_store import drop_location

    return None if value is None else drop_location(value)


def _a_scheduler_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from b12lab.common.settings import DASK_ADDRESS

    if value is not None and not DASK_ADDRESS.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a Dask scheduler address (for example tcp://10.0.0.5:8786)")
    return value


def _check_drop(drop: Path | str) -> None:
    """A folder that is there, or an object store's prefix that can be listed: one line otherwise."""
    from b12lab.ingest.object_store import DropUnreadable, is_remote, list_drop

    if not is_remote(drop):
        if not Path(drop).is_dir():
            _fail(f"input folder not found: {drop}")
        return
    try:
        list_drop(str(drop))
    except DropUnreadable as error:
        _fail(str(error))


# `run` and `serve`: where the flow's tasks run (README.md, Running on a cluster).
_WORKERS_HELP = ("Ingest and validate the export files on a local Dask cluster of N worker processes (one "
                 "thread each); the models and the report stay in this process. Default: all in this process.")
_BUCKETS_HELP = ("Split the patients a night builds into N buckets by a hash of patient_id, each built by a task "
                 "of its own (on the cluster's workers with --workers or --dask-address) (env B12LAB_BUCKETS)  "
                 "[default: 1]")
_DASK_ADDRESS_HELP = ("Ingest and validate the export files on the existing Dask cluster whose scheduler is at "
                      "this address (env B12LAB_DASK_ADDRESS); its workers must reach the input and output "
                      "folders at the same paths.")


def _placement(workers: int | None, dask_address: str | None, settings):
    """Where the tasks run: an option beats the setting B12LAB_DASK_ADDRESS; both options are a usage error.
    An existing cluster is tried at once: one that does not answer is an error (1) before anything starts."""
    from b12lab.flows.cluster import ClusterUnreachable, Placement, check_reachable

    if workers is not None and dask_address is not None:
        raise click.UsageError("--workers (a local cluster) and --dask-address (an existing one) exclude each other")
    placement = Placement(workers=workers, address=None if workers else dask_address or settings.dask_address)
    if placement.address:
        try:
            check_reachable(placement.address)
        except ClusterUnreachable as error:
            _fail(str(error))
    return placement


@contextmanager
def _prefect_api():
    """The Prefect API the run reports to: PREFECT_API_URL when set (a running server: the UI shows the
    run), else a temporary server of our own for this process.

    Ours runs in its own session, so a Ctrl-C at the terminal reaches the run, which reports how it ended
    before the server is stopped (Prefect's own temporary server shares the terminal's signals, dies first,
    and leaves the run retrying a closed port for minutes).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    import logging
    import subprocess

    from prefect.server.api.server import SubprocessASGIServer

    class SessionServer(SubprocessASGIServer):
        def _run_uvicorn_command(self):
            popen = subprocess.Popen

            def in_own_session(*args, **kwargs):
                return popen(*args, **{**kwargs, "start_new_session": True})

            subprocess.Popen = in_own_session
            try:
                return super()._run_uvicorn_command()
            finally:
                subprocess.Popen = popen

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    # Its start and stop messages point at web pages this machine may not reach; the run prints its own.
    server_logger = logging.getLogger("prefect")
    server_logger.setLevel(logging.WARNING)
    server = SessionServer()
    try:
        server.start(timeout=120)
        server_logger.setLevel(logging.INFO)
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        # Send the run's last logs and events while the server still listens: a worker left with them
        # retries a closed port for a minute at exit.
        for worker in (APILogWorker, EventsWorker):
            worker.drain_all(timeout=10)
        server_logger.setLevel(logging.WARNING)
        server.stop()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Find patients with vitamin B12 deficiency and pernicious anaemia who are missed, half-diagnosed or
    no longer monitored, in a health system's bulk lab exports."""


@main.command()
@click.option("--input", "input_dir", required=True, callback=_a_drop, metavar="DIR|URL",
              help="Drop folder of export files (labs*.csv[.gz], patients*, diagnoses*, medications*), or an "
                   "object store's URL (s3://bucket/prefix, gs://..., az://...; README: Input).")
@click.option("--output", "output_dir", required=True, type=click.Path(path_type=Path), callback=_a_folder,
              help="Output folder: lake, publications, warehouse.duckdb, report.")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Classify patients as of this date (YYYY-MM-DD). Default: today. A date before the live "
                   "publication's is a reproduction, written to OUTPUT/as-of/<date>/; a future date is refused.")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), default=None,
              help="Rules file (YAML). Default: the shipped rules (seed guidance).")
@click.option("--profile", default=None, help="Guideline profile in the rules file (seed, nice_ng239, bsh_2014).")
@click.option("--max-quarantine-share", type=float, default=None,
              help="Stop the run when more than this share of a feed's records in scope is quarantined "
                   f"(env B12LAB_MAX_QUARANTINE_SHARE)  [default: {DEFAULTS['max_quarantine_share']}]")
@click.option("--mapping", default=None, metavar="FILE|NAME",
              help="Mapping for lab CSVs in a site's own layout: a YAML file, or a shipped name (lab_csv, mimic3).")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N", help=_WORKERS_HELP)
@click.option("--dask-address", default=None, metavar="tcp://HOST:PORT", callback=_a_scheduler_address,
              help=_DASK_ADDRESS_HELP)
@click.option("--buckets", type=click.IntRange(min=1, max=4096), default=None, metavar="N", help=_BUCKETS_HELP)
def run(input_dir: Path | str, output_dir: Path, as_of, rules_file: Path | None, profile: str | None,
        max_quarantine_share: float | None, mapping: str | None, workers: int | None,
        dask_address: str | None, buckets: int | None) -> None:
    """Run the nightly pipeline once: ingest, validate, classify, publish."""
    from b12lab.common.layout import OutputLayout, PublicationLayout
    from b12lab.flows.configuration import load_configuration

    # Configuration is checked before Prefect starts, so a typo costs a second, not a server start-up.
    with _usage_errors_of_options():
        configuration = load_configuration(rules_file, profile, mapping, max_quarantine_share=max_quarantine_share,
                                           buckets=buckets, as_of=as_of.date() if as_of else None, today=date.today(),
                                           input_dir=input_dir)
    _check_drop(input_dir)
    placement = _placement(workers, dask_address, configuration.settings)
    # A quick look before Prefect starts; the flow itself holds the lock for the whole run.
    from b12lab.flows.nightly import prepare_output
    from b12lab.lake.locking import RunInProgress, check_unlocked

    layout = OutputLayout.of(output_dir, configuration.settings.dbt_work_dir)
    try:
        prepare_output(layout)
        check_unlocked(layout.lock)
    except (RunInProgress, PermissionError) as error:
        _fail(str(error))

    from b12lab.flows.cluster import flow_for
    from b12lab.flows.nightly import nightly

    if not placement.in_process:
        click.echo(f"ingest, validation and the patients' buckets run {placement.describe()}")
    try:
        with _prefect_api():
            record = flow_for(nightly, placement)(input_dir=input_dir, output_dir=output_dir,
                             as_of=as_of.date() if as_of else None, rules_file=rules_file, profile=profile,
                             max_quarantine_share=max_quarantine_share, mapping=mapping, buckets=buckets)
    except KeyboardInterrupt:  # past click, which would print an empty line for it
        raise Interrupted(signal.SIGINT) from None
    except Exception as error:  # the one line names the log file; the trace is in it
        _fail(_one_line(error))
    click.echo(
        f"published run {record['run_id']} ({record['kind']}) as of {record['as_of']}: read {record['rows_read']}, "
        f"accepted {record['rows_accepted']}, quarantined {record['rows_quarantined']}, "
        f"dropped {record['rows_dropped']}"
    )
    # The live links of OUTPUT (a nightly run) or the reproduction's folder: named alike.
    published = PublicationLayout(Path(record["warehouse"]).parent)
    click.echo(f"warehouse:   {published.warehouse.absolute()}")
    click.echo(f"report:      {(published.report / 'index.html').absolute()}")
    click.echo(f"run summary: {published.summary.absolute()}")
    click.echo(f"log:         {Path(record['log_file']).absolute()}")


@main.command()
@click.option("--patients", type=click.IntRange(min=1), required=True, help="Number of patients.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder to write.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed (same seed, same files).")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default="2021-01-01", show_default=True)
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default="2025-12-31", show_default=True)
@click.option("--format", "export_format", type=click.Choice(["csv", "fhir"]), default="csv", show_default=True,
              help="csv: the lab and registry CSVs; fhir: the same population as FHIR Bulk Data NDJSON.")
def synth(patients: int, out_dir: Path, seed: int, start, end, export_format: str) -> None:
    """Write a realistic synthetic export set in the input contract."""
    from b12lab.synth.csv_exports import synthesize
    from b12lab.synth.fhir_exports import synthesize_fhir

    if end <= start:
        _fail("--end must be after --start")
    write = synthesize_fhir if export_format == "fhir" else synthesize
    try:
        summary = write(patients, out_dir, seed=seed, start=start.date(), end=end.date())
    except OSError as error:
        _fail(f"cannot write the synthetic exports to {out_dir}: {error.strerror or _one_line(error)}")
    click.echo(f"wrote synthetic exports for {patients} patients to {out_dir}")
    for name, rows in sorted(summary.get("rows", {}).items()):
        click.echo(f"  {name}: {rows} rows")


def _local_timezone() -> str:
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:  # no zone configured on the host
        return "UTC"


# `serve`'s options: each overrides the setting of the same name (README.md, Settings), read when no option is given.
@main.command()
@click.option("--input", "input_dir", default=None, callback=_a_drop, metavar="DIR|URL",
              help="Drop folder read every night, or an object store's URL (env B12LAB_INPUT_DIR). Required.")
@click.option("--output", "output_dir", type=click.Path(path_type=Path), default=None, callback=_a_folder,
              help="Output folder (env B12LAB_OUTPUT_DIR). Required.")
@click.option("--cron", default=None,
              help=f"When to run, as a cron expression (env B12LAB_CRON)  [default: {DEFAULTS['cron']}]")
@click.option("--timezone", "timezone", default=None,
              help="Time zone of the cron expression (env B12LAB_TIMEZONE). Default: this machine's.")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), default=None,
              help="Rules file (env B12LAB_RULES). Default: the shipped rules.")
@click.option("--profile", default=None, help="Guideline profile (env B12LAB_PROFILE).")
@click.option("--max-quarantine-share", type=float, default=None,
              help=f"As for `run` (env B12LAB_MAX_QUARANTINE_SHARE)  [default: {DEFAULTS['max_quarantine_share']}]")
@click.option("--mapping", default=None, metavar="FILE|NAME", help="As for `run` (env B12LAB_MAPPING).")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="As for `run`: each night on a local Dask cluster of N worker processes.")
@click.option("--dask-address", default=None, metavar="tcp://HOST:PORT", callback=_a_scheduler_address,
              help="As for `run` (env B12LAB_DASK_ADDRESS).")
@click.option("--buckets", type=click.IntRange(min=1, max=4096), default=None, metavar="N",
              help="As for `run` (env B12LAB_BUCKETS).")
@click.option("--name", default="nightly", show_default=True, help="Deployment name.")
def serve(input_dir: Path | str | None, output_dir: Path | None, cron: str | None, timezone: str | None,
          rules_file: Path | None, profile: str | None, max_quarantine_share: float | None, mapping: str | None,
          workers: int | None, dask_address: str | None, buckets: int | None, name: str) -> None:
    """Serve the nightly flow on a cron schedule (a Prefect deployment); stop with Ctrl-C."""
    from b12lab.common.settings import load_settings
    from b12lab.flows.configuration import load_configuration

    # A profile or mapping name from an option is a usage error; from B12LAB_PROFILE / B12LAB_MAPPING, a setting's.
    with _usage_errors_of_options(profile=profile is not None, mapping=mapping is not None):
        settings = load_settings(input_dir=None if input_dir is None else str(input_dir), output_dir=output_dir,
                                 cron=cron, timezone=timezone, rules=rules_file, profile=profile,
                                 max_quarantine_share=max_quarantine_share, mapping=mapping, buckets=buckets)
        load_configuration(settings.rules, settings.profile, settings.mapping,
                           max_quarantine_share=settings.max_quarantine_share, input_dir=settings.input_dir)
    for option, value in (("--input", settings.input_dir), ("--output", settings.output_dir)):
        if value is None:
            variable = "B12LAB_INPUT_DIR" if option == "--input" else "B12LAB_OUTPUT_DIR"
            raise click.UsageError(f"Missing option '{option}' (or the environment variable {variable}).")
    from prefect.schedules import Cron
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        _fail("PREFECT_API_URL is not set: start a Prefect server (`prefect server start`) and point "
              "PREFECT_API_URL at it, so that the schedule outlives this process")
    try:
        schedule = Cron(settings.cron, timezone=settings.timezone or _local_timezone())
    except ValueError as error:
        _fail(f"--cron / B12LAB_CRON: {_one_line(error)}")
    placement = _placement(workers, dask_address, settings)

    from b12lab.flows.cluster import flow_for
    from b12lab.flows.nightly import nightly
    from b12lab.ingest.object_store import drop_location, is_remote

    mapping = settings.mapping
    drop = drop_location(settings.input_dir)
    _check_drop(drop)
    parameters = {"input_dir": drop if is_remote(drop) else str(drop.resolve()),
                  "output_dir": str(settings.output_dir.resolve()),
                  "rules_file": str(settings.rules.resolve()) if settings.rules else None,
                  "profile": settings.profile, "max_quarantine_share": settings.max_quarantine_share,
                  "buckets": settings.buckets,
                  "mapping": str(Path(mapping).resolve()) if mapping and Path(mapping).exists() else mapping}
    from b12lab.cli import serving

    def announce() -> None:
        click.echo(f"serving {nightly.name}/{name} ({settings.cron}, {schedule.timezone}) on "
                   f"{PREFECT_API_URL.value()}; stop with Ctrl-C or SIGTERM")
        if not placement.in_process:
            click.echo(f"each night's ingest, validation and patients' buckets run {placement.describe()}")

    # The runner hands the flow object itself, task runner and all, to each night's process.
    stopped = serving.serve(flow_for(nightly, placement), name=name, schedules=[schedule], parameters=parameters,
                            description="Nightly B12 pipeline: ingest, validate, classify, publish.",
                            announce=announce)
    if stopped.signum is None:
        return
    if stopped.run_in_progress:  # the night it was running ends Crashed: an interrupted run
        raise Interrupted(stopped.signum)
    click.echo(f"b12lab: serve stopped ({signal.Signals(stopped.signum).name}); no run was in progress", err=True)


@main.command()
@click.option("--webhook", "webhook_url", required=True, metavar="URL",
              help="Address Prefect POSTs to (JSON) when a night fails, crashes or stays silent.")
@click.option("--silence-hours", type=click.FloatRange(min=SHORTEST_SILENCE_HOURS), default=26,
              show_default=True,
              help="Alert when no nightly run completed for this long (a short one, down to 0.003 = 11 s, "
                   "shows the alert arriving).")
def notify(webhook_url: str, silence_hours: float) -> None:
    """Alert a person through Prefect when a night fails, crashes or stays silent: creates or updates the
    Webhook block and two automations on the Prefect server of PREFECT_API_URL."""
    from datetime import timedelta
    from urllib.parse import urlsplit

    from prefect.settings import PREFECT_API_URL

    address = urlsplit(webhook_url)
    if address.scheme not in ("http", "https") or not address.netloc:
        raise click.BadParameter(f"{webhook_url} is not an http(s) address", param_hint="'--webhook'")
    if not PREFECT_API_URL.value():
        _fail("PREFECT_API_URL is not set: the automations live on the Prefect server that `serve` reports to; "
              "point PREFECT_API_URL at it")
    from b12lab.cli import notifications
    from b12lab.flows.nightly import nightly

    try:
        made = notifications.set_up(webhook_url, nightly.name, timedelta(hours=silence_hours))
    except Exception as error:
        _fail(f"cannot set up the notifications on {PREFECT_API_URL.value()}: {_one_line(error)}")
    click.echo(f"webhook block {notifications.BLOCK_NAME!r} ({made.block_id}) POSTs to {address.scheme}://"
               f"{address.netloc}/...")
    for name, automation_id in made.automation_ids.items():
        click.echo(f"automation {name!r} ({automation_id})")


@main.command()
@click.argument("query", required=False)
@click.option("--output", "output_dir", type=click.Path(path_type=Path), default=Path("output"), show_default=True,
              callback=_a_folder, help="Output folder holding warehouse.duckdb.")
@click.option("--format", "output_format", type=click.Choice(["table", "csv", "json", "markdown"]), default="table",
              show_default=True, help="How results are written: every row and column, in any format.")
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the result of QUERY to this file instead of the terminal.")
def sql(query: str | None, output_dir: Path, output_format: str, out_file: Path | None) -> None:
    """Query the warehouse read-only: one QUERY, or an interactive prompt without one (.help lists its
    commands; its history is kept in ~/.b12lab_sql_history)."""
    from b12lab.cli.sql_shell import interactive, run_query
    from b12lab.common.layout import WAREHOUSE_NAME, OutputLayout

    if out_file is not None and not query:
        raise click.UsageError("--out needs a QUERY: the prompt writes to the terminal")
    warehouse = OutputLayout.of(output_dir).live_link(WAREHOUSE_NAME)
    if not warehouse.exists():
        _fail(f"no warehouse at {warehouse}: run `b12lab run` first")
    try:
        if not query:
            interactive(warehouse, output_format)
            return
        text = run_query(warehouse, query, output_format)
    except Exception as error:
        _fail(_one_line(error))
    if out_file is None:
        click.echo(text)
        return
    try:
        out_file.write_text(text + "\n", encoding="utf-8")
    except OSError as error:
        _fail(f"cannot write {out_file}: {error.strerror or _one_line(error)}")
    click.echo(f"wrote {out_file}", err=True)


if __name__ == "__main__":
    entry_point()
