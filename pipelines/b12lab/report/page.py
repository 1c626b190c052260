"""The QI analyst's morning report: OUTPUT/report/index.html, written after every published run.

One self-contained page (inline CSS, charts as inline SVG, no script, no external resource), so it opens from
a file or as an email attachment. It shows counts only, never a patient identifier; the identified lists for
care teams are the worklists beside it (`b12lab.report.worklists`), readable by owner and group only.

The report reads the publication's warehouse and nothing else (plus the run summary and the GX Data Docs
beside it): every count is computed by the models, and this module only selects and renders.
- header: the run (`runs`), the rules version and profile (`rules_settings`);
- headline counts per cohort, reason and flag (mart `cohort_counts`, whole population, the run's date), each
  with its change since the latest earlier published nightly run (`run_metrics`);
- the quality measures (`practice_measures`, `funnel_limits`, seed `measures`): per measure a funnel plot of the
  practices' rates with control limits, the outliers named, and the monthly trend of the rate with its
  denominator, each with the table of its numbers;
- does treatment work? (`treatment_response_summary`): per follow-up window and route class the shares no
  longer deficient and at target, with their Wilson intervals, and the recheck coverage of closed windows;
- the same counts per practice (`cohort_counts` by practice), as a table and a chart, and a page per practice
  (report/practices/<practice>.html) with its measures, trends and worklist counts;
- the trend: `cohort_counts` on every month end the models evaluated (stg_as_of_dates);
- the labels, definitions and urgency of cohorts, reasons and flags: the vocabulary tables (`cohort_codes`,
  `reason_codes`, `flag_codes`);
- the distribution of counted B12 results with the rules' thresholds;
- a banner at the top when the run received no new data or the population is empty, with the date data was
  last received;
- data quality: the row accounting of the mart `data_quality` (this run and all runs) and the Great
  Expectations results (`runs`, run_summary.json), with a link to the run's Data Docs.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np

from b12lab.common.layout import CATALOGUE_NAME, REPORT_NAME, SUMMARY_NAME, WAREHOUSE_NAME
from b12lab.common.unmapped import mapping_line
from b12lab.common.file_names import reported_name
from b12lab.report import charts
from b12lab.report.chart_cache import chart_cache
from b12lab.report.measures import MeasureData, last_data_received, read_measures
from b12lab.report.template import long_date, render_page, render_practice_page
from b12lab.report.worklists import NO_PRACTICE_LABEL, Worklist, write_worklists

REPORT_DIR_NAME = REPORT_NAME
# The report's link to the run's Data Docs: a link inside the report folder to ../gx/data_docs, so that the
# page's relative link works however the folder is reached (OUTPUT/report is itself a link).
DATA_DOCS_LINK = "data-docs"
# The report's link to dbt's catalogue of the publication (catalogue/index.html beside report/), made like the
# Data Docs link.
CATALOGUE_LINK = "catalogue"
# The pages per practice, beside the main page: report/practices/<practice-slug>.html (the worklists' slugs).
PRACTICES_DIR_NAME = "practices"
# The trend's three lines, metrics of cohort_counts.
TREND_METRICS = ("deficient", "borderline", "under_monitored")


@dataclass
class ReportData:
    run: dict
    settings: dict
    metrics: dict[str, int]
    by_practice: list[dict]                      # practice, and one count per metric key
    vocabulary: dict = field(default_factory=dict)  # cohorts {code: (label, definition)}, reasons, flags
    previous: dict | None = None                 # {"run_id", "as_of", "metrics": {key: value}}
    trend: list[charts.TrendPoint] = field(default_factory=list)
    b12_values: np.ndarray = field(default_factory=lambda: np.empty(0))
    b12_censored: int = 0
    b12_period: tuple[date | None, date | None] = (None, None)
    b12_units: list[tuple[str, int]] = field(default_factory=list)
    files_this_run: list[dict] = field(default_factory=list)
    accounting: dict = field(default_factory=dict)  # {"this_run": {...}, "total": {...}}
    outcomes: list[dict] = field(default_factory=list)
    quarantine_by_file: list[dict] = field(default_factory=list)
    suspected_unmapped: list[dict] = field(default_factory=list)  # first in the data-quality section
    missing_analytes: list[dict] = field(default_factory=list)
    unreadable_fields: list[dict] = field(default_factory=list)  # source_file, table_name, field, counts
    not_counted: list[dict] = field(default_factory=list)        # accepted, not counted: reason (status), counts
    validation: dict = field(default_factory=dict)
    worklists: list[dict] = field(default_factory=list)
    measures: list[MeasureData] = field(default_factory=list)
    treatment: list[dict] = field(default_factory=list)  # treatment_response_summary, every practice and the whole
    banner: dict | None = None                   # {"headline", "detail"}: an empty night says so
    catalogue: str | None = None                 # relative link to dbt's catalogue, when the publication has one
    practice_pages: list[tuple[str, str]] = field(default_factory=list)  # (practice, relative link)
    # when the report was built: one timestamp, shown in the masthead and footer and written to the log
    generated_at: datetime = field(default_factory=lambda: datetime.now().astimezone())


# --- reading the publication ---------------------------------------------------------------------------


def _rows(con: duckdb.DuckDBPyConnection, query: str, params: dict | None = None) -> list[dict]:
    result = con.execute(query, params or {})
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def headline_metrics(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """metric key -> distinct patients, from cohort_counts: the whole population on the run's date."""
    return {metric: int(patients) for metric, patients in con.execute("""
        select cohort_counts.metric, cohort_counts.patients
        from cohort_counts
        inner join rules_settings on rules_settings.as_of = cohort_counts.as_of
        where cohort_counts.practice is null
        order by cohort_counts.metric""").fetchall()}


def practice_metrics(con: duckdb.DuckDBPyConnection, metric_keys: list[str]) -> list[dict]:
    """One row per practice of any known patient ("(no practice)" for none), with a count per metric key."""
    table: dict[str, dict] = {}
    for practice, metric, patients in con.execute("""
            select cohort_counts.practice, cohort_counts.metric, cohort_counts.patients
            from cohort_counts
            inner join rules_settings on rules_settings.as_of = cohort_counts.as_of
            where cohort_counts.practice is not null""").fetchall():
        table.setdefault(practice, {key: 0 for key in metric_keys})[metric] = int(patients)
    rows = [{"practice": practice, **counts} for practice, counts in table.items()]
    return sorted(rows, key=lambda row: (row["practice"] == NO_PRACTICE_LABEL, row["practice"]))


def read_vocabulary(con: duckdb.DuckDBPyConnection) -> dict:
    """The cohorts, reasons and flags as the vocabulary tables name and order them."""
    def codes(table: str, column: str) -> list[dict]:
        return _rows(con, f"select {column} as code, label, definition, enabled_setting, urgency "
                          f"from {table} order by display_order")
    cohorts = {row["cohort"]: (row["label"], row["definition"])
               for row in _rows(con, "select cohort, label, definition from cohort_codes")}
    return {"cohorts": cohorts, "reasons": codes("reason_codes", "reason"), "flags": codes("flag_codes", "flag")}


def read_trend(con: duckdb.DuckDBPyConnection) -> list[charts.TrendPoint]:
    """Deficient, borderline and under-monitored patients on each date the models evaluated, oldest first
    (a date before any patient was known counts 0)."""
    counts: dict[date, dict[str, int]] = {}
    for as_of, metric, patients in con.execute(
            "select as_of, metric, patients from cohort_counts where practice is null and list_contains($m, metric)",
            {"m": list(TREND_METRICS)}).fetchall():
        counts.setdefault(as_of, {})[metric] = int(patients)
    return [charts.TrendPoint(as_of, *(counts[as_of].get(metric, 0) for metric in TREND_METRICS))
            for as_of in sorted(counts)]


def read_treatment_response(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The rows of treatment_response_summary (the whole population first, windows in time), as the model
    computed them: counts, shares and their Wilson intervals."""
    return _rows(con, "select * from treatment_response_summary")


def read_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    rows = _rows(con, "select * from runs where run_id = $run_id order by status = 'published' desc limit 1",
                 {"run_id": run_id})
    if not rows:
        raise ValueError(f"run {run_id} is not in the warehouse's runs table")
    return rows[0]


def read_settings(con: duckdb.DuckDBPyConnection) -> dict:
    return _rows(con, "select * from rules_settings")[0]


def b12_distribution(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, int, tuple, list]:
    """Counted B12 results in pmol/L (a censored result at its bound), how many are censored, their period,
    and how many were reported in each unit."""
    # A float array, not Python objects: millions of results at population scale (8 bytes each instead of ~60).
    values = np.asarray(con.execute(
        "select value_si from result_classification where analyte = 'b12' and value_si is not null"
    ).fetchnumpy()["value_si"], dtype=float)
    censored, first, last = con.execute(
        "select count(*) filter (where comparator is not null), min(collected_on), max(collected_on) "
        "from result_classification where analyte = 'b12'").fetchone()
    units = con.execute(
        "select unit_reported, count(*) from result_classification where analyte = 'b12' "
        "group by 1 order by 2 desc").fetchall()
    return values, int(censored), (first, last), units


def data_quality(con: duckdb.DuckDBPyConnection) -> dict:
    """The row accounting of the mart data_quality: the suspected unmapped analytes (each with the line that would
    read it) and the analytes that did not arrive, this run's files, the accounting of this run and of all runs,
    the rows by outcome and reason, the quarantine by file."""
    accounting = {"this_run": {}, "total": {}}
    for field, this_run, all_runs in con.execute("""
            select field, this_run, all_runs
            from data_quality
            where section = 'accounting' and source_file is null""").fetchall():
        accounting["this_run"][field], accounting["total"][field] = this_run, all_runs
    files: dict[str, dict] = {}
    for source_file, kind, field, this_run in con.execute("""
            select source_file, kind, field, this_run
            from data_quality
            where section = 'accounting' and source_file is not null
            order by source_file""").fetchall():
        files.setdefault(source_file, {"source_file": source_file, "kind": kind})[field] = this_run
    outcomes = _rows(con, """
        select outcome, reason, this_run, all_runs as total
        from data_quality
        where section = 'outcome'
        order by outcome desc, all_runs desc, reason""")
    quarantine = _rows(con, """
        select source_file, table_name, reason, this_run, all_runs as total
        from data_quality
        where section = 'quarantine'
        order by source_file, all_runs desc, reason""")
    suspected = _rows(con, """
        select code_system, code, display, analyte, this_run, all_runs as total
        from data_quality
        where section = 'suspected_unmapped'
        order by this_run desc, all_runs desc, code_system, code""")
    for line in suspected:
        line["mapping_line"] = mapping_line(line["code_system"], line["code"], line["analyte"], line["display"])
    missing = _rows(con, """
        select analyte, source_file, all_runs as total
        from data_quality
        where section = 'missing_analyte'
        order by analyte""")
    unreadable = _rows(con, """
        select source_file, table_name, field, this_run, all_runs as total
        from data_quality
        where section = 'unreadable_field'
        order by source_file, field""")
    not_counted = _rows(con, """
        select reason, this_run, all_runs as total
        from data_quality
        where section = 'not_counted'
        order by reason""")
    return {"files": by_reported_name([file for file in files.values() if file["files"]], ("kind",)),
            **accounting, "outcomes": outcomes,
            "quarantine": by_reported_name(quarantine, ("table_name", "reason")),
            "unreadable_fields": by_reported_name(unreadable, ("table_name", "field")),
            "not_counted": not_counted, "suspected": suspected, "missing": missing}


def by_reported_name(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Rows per source file, with a file name that may carry a person's name (a per-patient Bundle) shown by
    its pattern: such files are summed into one row per pattern and `keys`, with the number of files."""
    merged: dict[tuple, dict] = {}
    for row in rows:
        name = reported_name(row["source_file"])
        key = (name, *(row.get(k) for k in keys))
        if key not in merged:
            merged[key] = {**row, "source_file": name, "file_count": 1}
            continue
        target = merged[key]
        target["file_count"] += 1
        for column, value in row.items():
            if column not in keys and column != "source_file" and isinstance(value, (int, float)) \
                    and isinstance(target.get(column), (int, float)):
                target[column] += value
    for row in merged.values():
        if row["file_count"] > 1:
            row["source_file"] = f"{row['source_file']} ({row['file_count']} files)"
    return list(merged.values())


def catalogue_link(publication: Path) -> str | None:
    """A link inside the report folder to ../catalogue (dbt's catalogue of this publication), and its href; None
    when the publication has no catalogue."""
    if not (publication / CATALOGUE_NAME / "index.html").exists():
        return None
    report_dir = publication / REPORT_DIR_NAME
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / CATALOGUE_LINK).unlink(missing_ok=True)
    (report_dir / CATALOGUE_LINK).symlink_to(Path("..") / CATALOGUE_NAME, target_is_directory=True)
    return f"{CATALOGUE_LINK}/index.html"


def validation_results(publication: Path, run: dict) -> dict:
    """GX counts from `runs`, the failed expectations from the run's summary, and the Data Docs link."""
    summary_path = publication / SUMMARY_NAME
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    docs = publication / "gx" / "data_docs"
    warnings: dict[str, int] = {}
    for text in summary.get("expectation_warnings_list", []):
        warnings[text] = warnings.get(text, 0) + 1
    link = None
    if (docs / "index.html").exists():
        report_dir = publication / REPORT_DIR_NAME
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / DATA_DOCS_LINK).unlink(missing_ok=True)
        (report_dir / DATA_DOCS_LINK).symlink_to(Path("..") / "gx" / "data_docs", target_is_directory=True)
        link = f"{DATA_DOCS_LINK}/index.html"
    return {
        "evaluated": int(run.get("expectations_evaluated") or 0),
        "failed": int(run.get("expectations_failed") or 0),
        "warnings": int(run.get("expectation_warnings") or 0),
        "warning_list": sorted(warnings.items()),
        "files_skipped": len(summary.get("files_skipped", [])) if isinstance(summary.get("files_skipped"), list)
        else int(run.get("files_skipped") or 0),
        "data_docs": link,
    }


# --- history of headline metrics -----------------------------------------------------------------------


def previous_metrics(con: duckdb.DuckDBPyConnection, run: dict) -> dict | None:
    """The metrics of the most recent live (nightly) publication before `run` that recorded them, or None
    (first run). Reproductions for earlier dates are never compared with."""
    earlier = con.execute("""
        select runs.run_id, runs.as_of
        from runs
        where runs.status = 'published' and coalesce(runs.kind, 'nightly') = 'nightly'
          and runs.run_id <> $run_id and runs.started_at < $started_at
          and exists (select 1 from run_metrics where run_metrics.run_id = runs.run_id)
        order by runs.started_at desc
        limit 1""", {"run_id": run["run_id"], "started_at": run["started_at"]}).fetchall()
    if not earlier:
        return None
    run_id, as_of = earlier[0]
    metrics = dict(con.execute("select metric, value from run_metrics where run_id = $r", {"r": run_id}).fetchall())
    return {"run_id": run_id, "as_of": as_of, "metrics": metrics}


# --- building the page -----------------------------------------------------------------------------------


def gather(con: duckdb.DuckDBPyConnection, publication: Path, run_id: str) -> ReportData:
    """Everything the page shows that the publication holds (all but history, trend and worklists)."""
    run = read_run(con, run_id)
    values, censored, period, units = b12_distribution(con)
    quality = data_quality(con)
    return ReportData(
        run=run,
        settings=read_settings(con),
        metrics=(metrics := headline_metrics(con)),
        by_practice=practice_metrics(con, list(metrics)),
        vocabulary=read_vocabulary(con),
        trend=read_trend(con),
        b12_values=values,
        b12_censored=censored,
        b12_period=period,
        b12_units=units,
        files_this_run=quality["files"],
        accounting={"this_run": quality["this_run"], "total": quality["total"]},
        outcomes=quality["outcomes"],
        quarantine_by_file=quality["quarantine"],
        suspected_unmapped=quality["suspected"],
        missing_analytes=quality["missing"],
        unreadable_fields=quality["unreadable_fields"],
        not_counted=quality["not_counted"],
        validation=validation_results(publication, run),
        measures=read_measures(con),
        treatment=read_treatment_response(con),
        banner=empty_night_banner(metrics, quality["this_run"], last_data_received(con)),
        catalogue=catalogue_link(publication),
    )


def empty_night_banner(metrics: dict[str, int], this_run: dict, last_received) -> dict | None:
    """The banner of a night that received nothing new or knows no patient (else None): an empty page must
    never read as a good night."""
    since = (f"Data was last received on {long_date(last_received)}." if last_received
             else "No data has been received yet.")
    if not metrics.get("patients"):
        return {"headline": "No patient is known.",
                "detail": f"The population is empty, so every count below is 0 for want of data, not for want of "
                          f"problems. {since}"}
    if not int(this_run.get("rows_read") or 0):
        return {"headline": "No new data was received in this run.",
                "detail": f"The counts below are from the data received before. {since} "
                          "Check that the night's exports arrived."}
    return None


def worklist_index(worklists: list[Worklist], report_dir: Path) -> list[dict]:
    """Per practice, the worklist file and row count of each cohort (counts and relative links only)."""
    rows: dict[str, dict] = {}
    for worklist in worklists:
        row = rows.setdefault(worklist.practice, {"practice": worklist.practice})
        row[worklist.cohort] = {"rows": worklist.rows,
                                "href": Path(os.path.relpath(worklist.path, report_dir)).as_posix()}
    return sorted(rows.values(), key=lambda row: (row["practice"] == NO_PRACTICE_LABEL, row["practice"]))


def write_practice_pages(report_dir: Path, data: ReportData, slugs: dict[str, str], run_tag: str) -> list[Path]:
    """report_dir/practices/<slug>.html for every practice of the main page, built whole under a temporary name
    and swapped in (a practice that has gone leaves no stale page)."""
    target = report_dir / PRACTICES_DIR_NAME
    for leftover in report_dir.glob(f".{PRACTICES_DIR_NAME}.*"):  # left by a run killed while writing
        shutil.rmtree(leftover, ignore_errors=True)
    building = report_dir / f".{PRACTICES_DIR_NAME}.{run_tag}.tmp"
    building.mkdir(mode=0o750, parents=True)
    written = []
    for practice, href in data.practice_pages:
        slug = slugs[practice]
        path = building / f"{slug}.html"
        path.write_text(render_practice_page(data, practice, slug), encoding="utf-8")
        os.chmod(path, 0o640)
        written.append(target / path.name)
    previous = report_dir / f".{PRACTICES_DIR_NAME}.{run_tag}.old"
    if target.exists():
        os.replace(target, previous)
    os.replace(building, target)
    shutil.rmtree(previous, ignore_errors=True)
    return written


def write_page(report_dir: Path, html: str) -> Path:
    """report_dir/index.html, replaced atomically (readers see the old page or the new one)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / "index.html"
    temporary = report_dir / ".index.html.tmp"
    temporary.write_text(html, encoding="utf-8")
    os.chmod(temporary, 0o640)  # owner and group only, like every other output
    os.replace(temporary, target)
    return target


def build_report(publication: Path, run_id: str, live: bool = True, chart_folder: Path | None = None,
                 previous_worklists: Path | None = None) -> Path:
    """Write the report and worklists of run `run_id` into publication/report/, from the publication's
    warehouse (before it is switched in: a report that cannot be built stops the publication); return the page.

    A live (nightly) run compares itself with the previous live one; a reproduction for an earlier date is
    compared with nothing. `chart_folder`: where the charts drawn before are kept (report/chart_cache.py).
    `previous_worklists`: the live publication's worklists, whose unchanged files are linked (worklists.py).
    """
    started = time.perf_counter()
    generated_at = datetime.now().astimezone()
    publication = Path(publication)
    report_dir = publication / REPORT_DIR_NAME
    with duckdb.connect(str(publication / WAREHOUSE_NAME), read_only=True) as con:
        data = gather(con, publication, run_id)
        data.generated_at = generated_at
        if data.run.get("status") != "published":
            raise ValueError(f"run {run_id} is not publishing: no report")
        if live:
            data.previous = previous_metrics(con, data.run)
        worklists = write_worklists(con, report_dir, run_tag=run_id, previous=previous_worklists)
    data.worklists = worklist_index(worklists, report_dir)
    slugs = {worklist.practice: worklist.path.stem for worklist in worklists}
    data.practice_pages = [(row["practice"], f"{PRACTICES_DIR_NAME}/{slugs[row['practice']]}.html")
                           for row in data.by_practice if row["practice"] in slugs]
    with chart_cache(chart_folder):
        write_practice_pages(report_dir, data, slugs, run_tag=run_id)
        page = write_page(report_dir, render_page(data))
    # the page's own timestamp, so that the log and the page name the same moment
    print(f"report generated at {generated_at.isoformat(timespec='seconds')} "
          f"(built in {time.perf_counter() - started:.1f} s)")
    return page
