"""The `b12lab` command line: run, synth, sql (and serve)."""
from __future__ import annotations

import atexit
import os
import sys
from datetime import date
from pathlib import Path

import click

# Set before Prefect is imported: this machine has no internet, and telemetry errors would fill the logs.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


_exit_status = {"code": 0}


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


def entry_point() -> None:
    """The `b12lab` console script: run the CLI and keep its exit status for the exit handler."""
    try:
        main()
    except SystemExit as leaving:
        code = leaving.code
        _exit_status["code"] = code if isinstance(code, int) else (0 if code is None else 1)
        raise


def _fail(message: str) -> None:
    click.echo(f"b12lab: error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Find patients with vitamin B12 deficiency and pernicious anaemia who are missed, half-diagnosed or
    no longer monitored, in a health system's bulk lab exports."""


@main.command()
@click.option("--input", "input_dir", required=True, type=click.Path(path_type=Path),
              help="Drop folder of export files (labs*.csv[.gz], patients*, diagnoses*, medications*).")
@click.option("--output", "output_dir", required=True, type=click.Path(path_type=Path),
              help="Output folder: lake, publications, warehouse.duckdb, report.")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Classify patients as of this date (YYYY-MM-DD). Default: today.")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), default=None,
              help="Rules file (YAML). Default: the shipped rules (seed guidance).")
@click.option("--profile", default=None, help="Guideline profile in the rules file (seed, nice_ng239, bsh_2014).")
@click.option("--mapping", default=None, metavar="FILE|NAME",
              help="Mapping for lab CSVs in a site's own layout: a YAML file, or a shipped name (lab_csv, mimic3).")
def run(input_dir: Path, output_dir: Path, as_of, rules_file: Path | None, profile: str | None,
        mapping: str | None) -> None:
    """Run the nightly pipeline once: ingest, validate, classify, publish."""
    from pipelines.mapping import MappingError, load_mapping
    from pipelines.rules import RulesError, load_rules

    # Configuration is checked before Prefect starts, so a typo costs a second, not a server start-up.
    from pipelines.duck import ConfigurationError, check_memory_limit

    try:
        load_rules(rules_file, profile)
        load_mapping(mapping)
        check_memory_limit()
    except (RulesError, MappingError, ConfigurationError, OSError) as error:
        _fail(str(error))
    if not input_dir.is_dir():
        _fail(f"input folder not found: {input_dir}")
    if output_dir.is_dir():
        # A quick look before Prefect starts; the flow itself holds the lock for the whole run.
        from pipelines.locking import RunInProgress, run_lock

        try:
            with run_lock(output_dir):
                pass
        except RunInProgress as error:
            _fail(str(error))

    from pipelines.flow import nightly

    try:
        record = nightly(input_dir=input_dir, output_dir=output_dir,
                         as_of=as_of.date() if as_of else None, rules_file=rules_file, profile=profile,
                         mapping=mapping)
    except Exception as error:  # one line for the operator; the full trace is in the Prefect logs
        _fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    click.echo(
        f"published run {record['run_id']} as of {record['as_of']}: read {record['rows_read']}, "
        f"accepted {record['rows_accepted']}, quarantined {record['rows_quarantined']}, "
        f"dropped {record['rows_dropped']}"
    )
    click.echo(f"warehouse:   {(output_dir / 'warehouse.duckdb').resolve()}")
    click.echo(f"run summary: {(output_dir / 'run_summary.json').resolve()}")
    report = output_dir / "report" / "index.html"
    if report.exists():
        click.echo(f"report:      {report.resolve()}")


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
    from pipelines.synth import synthesize
    from pipelines.synth_fhir import synthesize_fhir

    if end <= start:
        _fail("--end must be after --start")
    write = synthesize_fhir if export_format == "fhir" else synthesize
    summary = write(patients, out_dir, seed=seed, start=start.date(), end=end.date())
    click.echo(f"wrote synthetic exports for {patients} patients to {out_dir}")
    for name, rows in sorted(summary.get("rows", {}).items()):
        click.echo(f"  {name}: {rows} rows")


def _local_timezone() -> str:
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:  # no zone configured on the host
        return "UTC"


@main.command()
@click.option("--input", "input_dir", envvar="B12LAB_INPUT_DIR", required=True, type=click.Path(path_type=Path),
              help="Drop folder read every night (env B12LAB_INPUT_DIR).")
@click.option("--output", "output_dir", envvar="B12LAB_OUTPUT_DIR", required=True, type=click.Path(path_type=Path),
              help="Output folder (env B12LAB_OUTPUT_DIR).")
@click.option("--cron", envvar="B12LAB_CRON", default="0 2 * * *", show_default=True,
              help="When to run, as a cron expression (env B12LAB_CRON).")
@click.option("--timezone", "timezone", envvar="B12LAB_TIMEZONE", default=None,
              help="Time zone of the cron expression (env B12LAB_TIMEZONE). Default: this machine's.")
@click.option("--rules", "rules_file", envvar="B12LAB_RULES", type=click.Path(path_type=Path), default=None)
@click.option("--profile", envvar="B12LAB_PROFILE", default=None)
@click.option("--name", default="nightly", show_default=True, help="Deployment name.")
def serve(input_dir: Path, output_dir: Path, cron: str, timezone: str | None, rules_file: Path | None,
          profile: str | None, name: str) -> None:
    """Serve the nightly flow on a cron schedule (a Prefect deployment); stop with Ctrl-C."""
    from pipelines.rules import RulesError, load_rules

    try:
        load_rules(rules_file, profile)
    except (RulesError, OSError) as error:
        _fail(str(error))
    from prefect.schedules import Cron

    from pipelines.flow import nightly

    parameters = {"input_dir": str(input_dir.resolve()), "output_dir": str(output_dir.resolve()),
                  "rules_file": str(rules_file.resolve()) if rules_file else None, "profile": profile}
    nightly.serve(name=name, schedules=[Cron(cron, timezone=timezone or _local_timezone())],
                  parameters=parameters, description="Nightly B12 pipeline: ingest, validate, classify, publish.")


@main.command()
@click.argument("query", required=False)
@click.option("--output", "output_dir", type=click.Path(path_type=Path), default=Path("output"), show_default=True,
              help="Output folder holding warehouse.duckdb.")
def sql(query: str | None, output_dir: Path) -> None:
    """Query the warehouse read-only: one QUERY, or an interactive prompt without one."""
    from pipelines.analyst_sql import interactive, run_query

    warehouse = output_dir / "warehouse.duckdb"
    if not warehouse.exists():
        _fail(f"no warehouse at {warehouse}: run `b12lab run` first")
    try:
        if query:
            click.echo(run_query(warehouse, query))
        else:
            interactive(warehouse)
    except Exception as error:
        _fail(str(error).splitlines()[0])


if __name__ == "__main__":
    entry_point()
