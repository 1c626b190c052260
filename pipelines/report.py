"""The QI analyst's morning report: OUTPUT/report/index.html, written after every published run.

One self-contained page (inline CSS, charts as inline SVG, no script, no external resource), so it opens from
a file or as an email attachment. It shows counts only, never a patient identifier; the identified lists for
care teams are the worklists beside it (`pipelines.worklists`), readable by owner and group only.

What the page holds, and where each number comes from:
- header: the run (`runs`), the rules version and profile (`rules_settings`);
- headline counts per cohort, reason and flag (the marts), each with its change since the latest earlier
  published run; the history is OUTPUT/lake/run_metrics/<run_id>.parquet (run_id, as_of, metric, value);
- the same counts per practice (the marts' `practice`), as a table and a chart;
- a 24-month trend: the model chain evaluated as of every month end in one build over the lake
  (`monthly_trend`), kept in OUTPUT/lake/trend_points/ and reused the next night for every month end that no
  newly ingested record can change (`trend_with_reuse`);
- the distribution of counted B12 results with the rules' thresholds;
- data quality: row accounting (`ingested_files`, `ingest_outcomes`, `quarantine`) and the Great
  Expectations results (`runs`, run_summary.json), with a link to the run's Data Docs.
"""
from __future__ import annotations

import calendar
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import report_charts as charts
from pipelines.duck import connect
from pipelines.lake import Lake
from pipelines.models import build_models
from pipelines.publish import REPORT_NAME, SUMMARY_NAME, WAREHOUSE_NAME, create_lake_views
from pipelines.report_template import render_page
from pipelines.rules import Rules, install_rules
from pipelines.worklists import FLAG_SEVERITY, NO_PRACTICE_LABEL, REASON_SEVERITY, Worklist, write_worklists

REPORT_DIR_NAME = REPORT_NAME
# The report's link to the run's Data Docs: a link inside the report folder to ../gx/data_docs, so that the
# page's relative link works however the folder is reached (OUTPUT/report is itself a link).
DATA_DOCS_LINK = "data-docs"
METRICS_TABLE = "run_metrics"
TREND_TABLE = "trend_points"
TREND_MONTHS = 24

REASONS = (
    "PA_NO_POST_TREATMENT_RECHECK", "PA_OVERDUE_ANNUAL_B12", "BORDERLINE_NO_MMA", "SUPPLEMENTED_NO_MMA",
    "TREATED_BELOW_TARGET", "DEFICIENT_NO_IF_ANTIBODY", "DEFICIENT_NO_BLOOD_COUNT", "PA_NOT_ON_TREATMENT",
    "TREATED_MARKERS_NOT_NORMAL",
)
FLAGS = (
    "FOLATE_BEFORE_B12", "MACROCYTOSIS_NOT_TESTED", "METFORMIN_B12_NOT_TESTED", "MMA_RENAL_CAVEAT",
    "B12_INJECTIONS_WITHOUT_DEFICIENCY",
)
assert set(REASONS) == set(REASON_SEVERITY)
assert set(FLAGS) == set(FLAG_SEVERITY)


@dataclass(frozen=True)
class Metric:
    """One headline count: distinct patients of `table` (where `column` = `code`, when given)."""
    key: str
    label: str
    table: str
    column: str | None = None
    code: str | None = None

    def count_sql(self, by_practice: bool) -> tuple[str, dict]:
        where = f"where {self.column} = $code" if self.column else ""
        params = {"code": self.code} if self.column else {}
        if by_practice:
            return (f"select coalesce(nullif(trim(practice), ''), $no_practice) as practice, "
                    f"count(distinct patient_id) from {self.table} {where} group by 1",
                    {**params, "no_practice": NO_PRACTICE_LABEL})
        return f"select count(distinct patient_id) from {self.table} {where}", params


METRICS = (
    Metric("patients", "Patients known", "patient_status"),
    Metric("deficient", "Deficient", "cohort_deficient"),
    Metric("deficient_untreated", "Deficient, untreated", "cohort_deficient", "treatment", "untreated"),
    Metric("deficient_neuro", "Deficient, neurological features", "cohort_deficient", "neuro_involvement", True),
    Metric("borderline", "Borderline", "cohort_borderline"),
    Metric("borderline_needs_mma", "Borderline, MMA needed", "cohort_borderline", "mma_status", "needed"),
    Metric("borderline_mma_normal", "Borderline, MMA normal", "cohort_borderline", "mma_status", "normal"),
    Metric("under_monitored", "Under-monitored", "cohort_under_monitored"),
    *(Metric(f"under_monitored.{reason}", reason, "cohort_under_monitored", "reason", reason) for reason in REASONS),
    *(Metric(f"flag.{flag}", flag, "patient_flags", "flag", flag) for flag in FLAGS),
)
METRIC_KEYS = tuple(metric.key for metric in METRICS)


@dataclass
class ReportData:
    run: dict
    settings: dict
    metrics: dict[str, int]
    by_practice: list[dict]                      # practice, and one count per metric key
    previous: dict | None = None                 # {"run_id", "as_of", "metrics": {key: value}}
    trend: list[charts.TrendPoint] = field(default_factory=list)
    trend_seconds: float | None = None
    b12_values: np.ndarray = field(default_factory=lambda: np.empty(0))
    b12_censored: int = 0
    b12_period: tuple[date | None, date | None] = (None, None)
    b12_units: list[tuple[str, int]] = field(default_factory=list)
    files_this_run: list[dict] = field(default_factory=list)
    accounting: dict = field(default_factory=dict)  # {"this_run": {...}, "total": {...}}
    outcomes: list[dict] = field(default_factory=list)
    quarantine_by_file: list[dict] = field(default_factory=list)
    validation: dict = field(default_factory=dict)
    worklists: list[dict] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    build_seconds: float | None = None


# --- reading the publication ---------------------------------------------------------------------------


def _rows(con: duckdb.DuckDBPyConnection, query: str, params: dict | None = None) -> list[dict]:
    result = con.execute(query, params or {})
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def headline_metrics(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """metric key -> number of distinct patients, from the publication's marts."""
    values = {}
    for metric in METRICS:
        query, params = metric.count_sql(by_practice=False)
        values[metric.key] = int(con.execute(query, params).fetchone()[0])
    return values


def practice_metrics(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """One row per practice of any known patient ("(no practice)" for none), with a count per metric key."""
    table: dict[str, dict] = {}
    for metric in METRICS:
        query, params = metric.count_sql(by_practice=True)
        for practice, count in con.execute(query, params).fetchall():
            table.setdefault(practice, {key: 0 for key in METRIC_KEYS})[metric.key] = int(count)
    flagged = con.execute(
        "select coalesce(nullif(trim(practice), ''), $no_practice), count(distinct patient_id) "
        "from patient_flags group by 1", {"no_practice": NO_PRACTICE_LABEL}).fetchall()
    for practice, count in flagged:
        table.setdefault(practice, {key: 0 for key in METRIC_KEYS})["flagged"] = int(count)
    rows = [{"practice": practice, "flagged": 0, **counts} for practice, counts in table.items()]
    return sorted(rows, key=lambda row: (row["practice"] == NO_PRACTICE_LABEL, row["practice"]))


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


def data_quality(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    files = _rows(con, """
        select source_file, kind, rows_read, rows_accepted, rows_quarantined, rows_dropped
        from ingested_files where ingest_run = $run_id order by source_file""", {"run_id": run_id})
    columns = "count(*) as files, coalesce(sum(rows_read), 0) as rows_read, " \
              "coalesce(sum(rows_accepted), 0) as rows_accepted, " \
              "coalesce(sum(rows_quarantined), 0) as rows_quarantined, coalesce(sum(rows_dropped), 0) as rows_dropped"
    this_run = _rows(con, f"select {columns} from ingested_files where ingest_run = $run_id", {"run_id": run_id})[0]
    total = _rows(con, f"select {columns} from ingested_files")[0]
    # Out of scope (a code that maps to no analyte) is not damage: shown apart from the rows in scope, so that
    # the quarantine is read against the rows the pipeline is about.
    out_of_scope = _rows(con, """
        select coalesce(sum(rows) filter (where ingest_run = $run_id), 0) as this_run, coalesce(sum(rows), 0) as total
        from ingest_outcomes where outcome = 'dropped' and reason = 'out_of_scope'""", {"run_id": run_id})[0]
    for key, counts in (("this_run", this_run), ("total", total)):
        counts["rows_out_of_scope"] = int(out_of_scope[key])
        counts["rows_in_scope"] = int(counts["rows_read"]) - counts["rows_out_of_scope"]
        counts["rows_dropped_in_scope"] = int(counts["rows_dropped"]) - counts["rows_out_of_scope"]
    outcomes = _rows(con, """
        select outcome, reason,
               coalesce(sum(rows) filter (where ingest_run = $run_id), 0) as this_run,
               sum(rows) as total
        from ingest_outcomes
        where outcome <> 'accepted'
        group by outcome, reason
        order by outcome desc, total desc, reason""", {"run_id": run_id})
    quarantine = _rows(con, """
        select source_file, table_name, reason,
               count(*) filter (where ingest_run = $run_id) as this_run,
               count(*) as total
        from quarantine
        group by source_file, table_name, reason
        order by source_file, total desc, reason""", {"run_id": run_id})
    return {"files": files, "this_run": this_run, "total": total, "outcomes": outcomes, "quarantine": quarantine}


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
        "failed_list": summary.get("expectations_failed_list", []),
        "files_skipped": len(summary.get("files_skipped", [])) if isinstance(summary.get("files_skipped"), list)
        else int(run.get("files_skipped") or 0),
        "data_docs": link,
    }


# --- history of headline metrics -----------------------------------------------------------------------


def write_run_metrics(lake: Lake, run_id: str, as_of: date, metrics: dict[str, int]) -> Path:
    """OUTPUT/lake/run_metrics/<run_id>.parquet, written atomically (one new file per run)."""
    for leftover in lake.table_dir(METRICS_TABLE).glob("*.tmp"):  # a run killed while writing
        leftover.unlink(missing_ok=True)
    table = pa.table({
        "run_id": pa.array([run_id] * len(metrics), pa.string()),
        "as_of": pa.array([as_of] * len(metrics), pa.date32()),
        "metric": pa.array(list(metrics), pa.string()),
        "value": pa.array(list(metrics.values()), pa.int64()),
    })
    return lake.append_records(METRICS_TABLE, run_id, table)


def previous_metrics(con: duckdb.DuckDBPyConnection, lake: Lake, run: dict) -> dict | None:
    """The metrics of the most recent live (nightly) publication before `run` that recorded them, or None
    (first run). Reproductions for earlier dates are never compared with."""
    recorded = {path.stem: path for path in lake.files(METRICS_TABLE)}
    earlier = con.execute("""
        select run_id, as_of from runs
        where status = 'published' and coalesce(kind, 'nightly') = 'nightly'
          and run_id <> $run_id and started_at < $started_at
        order by started_at desc""", {"run_id": run["run_id"], "started_at": run["started_at"]}).fetchall()
    for run_id, as_of in earlier:
        if run_id in recorded:
            table = pq.read_table(recorded[run_id], columns=["metric", "value"]).to_pylist()
            return {"run_id": run_id, "as_of": as_of, "metrics": {r["metric"]: r["value"] for r in table}}
    return None


# --- the 24-month trend ----------------------------------------------------------------------------------


def month_ends(as_of: date, months: int = TREND_MONTHS) -> list[date]:
    """The last `months` month ends up to as_of, oldest first; the as-of month's point is as_of itself."""
    dates = []
    year, month = as_of.year, as_of.month
    for _ in range(months):
        end = date(year, month, calendar.monthrange(year, month)[1])
        dates.append(min(end, as_of))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return dates[::-1]


# The per-date intermediate models behind patient_status and cohort_under_monitored: the marts hold the run's
# as_of only, these hold every date of the build.
TREND_TABLES = ("int_patient_status", "int_under_monitored")


def evaluate_trend(con: duckdb.DuckDBPyConnection, rules: Rules, dates: list[date]) -> list[charts.TrendPoint]:
    """Deficient, borderline and under-monitored patients as of each date, from the lake tables in `con`:
    one build of the models behind patient_status and cohort_under_monitored with every date as an as-of
    date (`build_models(as_of_dates=...)`), counted per date the way the publication's headline counts them.
    """
    if not dates:
        return []
    # rules_settings needs one as-of date; the models the trend builds take theirs from the as-of dates.
    install_rules(con, rules, max(dates))
    build_models(con, tables=TREND_TABLES, as_of_dates=dates)
    status_counts = {as_of: (deficient, borderline) for as_of, deficient, borderline in con.execute("""
        select
            as_of,
            count(*) filter (where status = 'deficient'),
            count(*) filter (where status in ('borderline_needs_mma', 'borderline_mma_normal'))
        from int_patient_status
        group by as_of""").fetchall()}
    under_monitored_counts = dict(con.execute(
        "select as_of, count(distinct patient_id) from int_under_monitored group by as_of").fetchall())
    points = []
    for as_of in dates:
        deficient, borderline = status_counts.get(as_of, (0, 0))  # no known patient yet: nothing to count
        points.append(charts.TrendPoint(as_of, int(deficient), int(borderline),
                                        int(under_monitored_counts.get(as_of, 0))))
    return points


def monthly_trend(lake: Lake, rules: Rules, dates: list[date], temp_dir: Path | None = None) -> list[charts.TrendPoint]:
    """Deficient, borderline and under-monitored patients as of each date, with the same SQL and rules as the
    publication, in one in-memory DuckDB over the lake.

    One set-based build for all dates (`evaluate_trend`), not a build per date: every date-dependent model
    keeps the as-of date in its grain, so which results count (collected on or before the date, corrections
    and duplicates resolved as of it), lookbacks and windows, medication active on the date, PA and treatment
    known on it and each under-monitoring reason are evaluated for every date at once. The counts equal a
    full publication build as of each date (tests/pipelines/test_report.py and tests/transforms/test_trend.py
    compare them); the cost is about that of two publication builds, whatever the number of dates. The
    models no trend count reads (result_classification, patient_flags, the other cohorts) are not built.
    """
    if not dates:
        return []
    with connect(temp_dir=temp_dir) as con:
        create_lake_views(con, lake)
        return evaluate_trend(con, rules, dates)


def rules_fingerprint(rules: Rules) -> str:
    """What the trend's numbers depend on in the rules: every setting and code, not the as-of date."""
    content = json.dumps({"version": rules.version, "profile": rules.profile, "settings": dict(rules.settings),
                          "codes": sorted(rules.codes)}, sort_keys=True, default=str)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def earliest_new_date(lake: Lake, since_run: str) -> date | None:
    """The earliest clinical date (collection, diagnosis, medication start) among the records committed by
    runs after `since_run`; None when nothing was committed since. A month end before it cannot have changed:
    every rule only counts records dated on or before its as-of date. Registry-only patients are left out on
    purpose: a patient without results is never deficient, borderline or under-monitored."""
    files = [p for p in lake.files("ingested_files")]
    if not files:
        return None
    committed = pq.read_table(files, columns=["source_hash", "ingest_run"]).to_pylist()
    new = [row["source_hash"] for row in committed if row["ingest_run"] > since_run]
    if not new:
        return None
    dated = {"lab_results": "collected_at", "diagnoses": "recorded_at", "medications": "start_date"}
    earliest: list[date] = []
    with duckdb.connect() as con:
        for table, column in dated.items():
            paths = [str(path) for h in new if (path := lake.data_file(table, h)).exists()]
            if paths:
                value = con.execute(f"select min(cast({column} as date)) from read_parquet($p)", {"p": paths}).fetchone()[0]
                if value is not None:
                    earliest.append(value)
    # New files that hold no dated record (a patients file) change nothing the trend counts.
    return min(earliest) if earliest else date.max


def reusable_points(lake: Lake, fingerprint: str, dates: list[date]) -> dict[date, charts.TrendPoint]:
    """Points of the latest earlier trend with the same rules that no record committed since can change."""
    files = sorted(lake.files(TREND_TABLE), key=lambda path: path.stem)
    for path in reversed(files):
        rows = pq.read_table(path).to_pylist()
        if not rows or rows[0]["rules_fingerprint"] != fingerprint:
            continue
        changed_from = earliest_new_date(lake, since_run=path.stem)
        wanted = set(dates)
        return {
            row["month_end"]: charts.TrendPoint(row["month_end"], row["deficient"], row["borderline"],
                                                row["under_monitored"])
            for row in rows
            if row["month_end"] in wanted and (changed_from is None or row["month_end"] < changed_from)
        }
    return {}


def trend_with_reuse(lake: Lake, rules: Rules, run_id: str, dates: list[date], latest: charts.TrendPoint,
                     temp_dir: Path | None = None) -> tuple[list[charts.TrendPoint], int]:
    """The trend over `dates`, recomputing only what new data can have changed; returns (points, recomputed).

    The last date is the run's as-of date, whose counts the publication already holds (`latest`). Points are
    saved as OUTPUT/lake/trend_points/<run_id>.parquet for the next night.
    """
    fingerprint = rules_fingerprint(rules)
    known = reusable_points(lake, fingerprint, dates[:-1])
    missing = [d for d in dates[:-1] if d not in known]
    computed = {point.month_end: point for point in monthly_trend(lake, rules, missing, temp_dir)} if missing else {}
    points = [known.get(d) or computed[d] for d in dates[:-1]] + [latest]
    table = pa.table({
        "month_end": pa.array([p.month_end for p in points], pa.date32()),
        "deficient": pa.array([p.deficient for p in points], pa.int64()),
        "borderline": pa.array([p.borderline for p in points], pa.int64()),
        "under_monitored": pa.array([p.under_monitored for p in points], pa.int64()),
        "rules_fingerprint": pa.array([fingerprint] * len(points), pa.string()),
    })
    lake.append_records(TREND_TABLE, run_id, table)
    return points, len(missing)


# --- building the page -----------------------------------------------------------------------------------


def gather(con: duckdb.DuckDBPyConnection, publication: Path, run_id: str) -> ReportData:
    """Everything the page shows that the publication holds (all but history, trend and worklists)."""
    run = read_run(con, run_id)
    values, censored, period, units = b12_distribution(con)
    quality = data_quality(con, run_id)
    return ReportData(
        run=run,
        settings=read_settings(con),
        metrics=headline_metrics(con),
        by_practice=practice_metrics(con),
        b12_values=values,
        b12_censored=censored,
        b12_period=period,
        b12_units=units,
        files_this_run=quality["files"],
        accounting={"this_run": quality["this_run"], "total": quality["total"]},
        outcomes=quality["outcomes"],
        quarantine_by_file=quality["quarantine"],
        validation=validation_results(publication, run),
    )


def worklist_index(worklists: list[Worklist], report_dir: Path) -> list[dict]:
    """Per practice, the worklist file and row count of each cohort (counts and relative links only)."""
    rows: dict[str, dict] = {}
    for worklist in worklists:
        row = rows.setdefault(worklist.practice, {"practice": worklist.practice})
        row[worklist.cohort] = {"rows": worklist.rows,
                                "href": Path(os.path.relpath(worklist.path, report_dir)).as_posix()}
    return sorted(rows.values(), key=lambda row: (row["practice"] == NO_PRACTICE_LABEL, row["practice"]))


def write_page(report_dir: Path, html: str) -> Path:
    """report_dir/index.html, replaced atomically (readers see the old page or the new one)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / "index.html"
    temporary = report_dir / ".index.html.tmp"
    temporary.write_text(html, encoding="utf-8")
    os.chmod(temporary, 0o640)  # owner and group only, like every other output
    os.replace(temporary, target)
    return target


def build_report(output_dir: Path, publication: Path, run_id: str, rules: Rules, live: bool = True,
                 trend_months: int = TREND_MONTHS) -> Path:
    """Write the report and worklists of run `run_id` into publication/report/, from the publication's
    warehouse (before it is switched in: a report that cannot be built stops the publication); return the page.

    A live (nightly) run compares itself with the previous live one and records its counts and trend for the
    next night; a reproduction for an earlier date leaves that history alone.
    """
    started = time.perf_counter()
    output_dir, publication = Path(output_dir), Path(publication)
    report_dir = publication / REPORT_DIR_NAME
    lake = Lake(output_dir / "lake")
    with duckdb.connect(str(publication / WAREHOUSE_NAME), read_only=True) as con:
        data = gather(con, publication, run_id)
        if data.run.get("status") != "published":
            raise ValueError(f"run {run_id} is not publishing: no report")
        if live:
            data.previous = previous_metrics(con, lake, data.run)
            write_run_metrics(lake, run_id, data.run["as_of"], data.metrics)
        worklists = write_worklists(con, report_dir, run_tag=run_id)
    data.worklists = worklist_index(worklists, report_dir)

    trend_started = time.perf_counter()
    dates = month_ends(data.run["as_of"], trend_months)
    latest = charts.TrendPoint(dates[-1], data.metrics["deficient"], data.metrics["borderline"],
                               data.metrics["under_monitored"])
    if live:
        data.trend, recomputed = trend_with_reuse(lake, rules, run_id, dates, latest, temp_dir=output_dir / ".tmp")
    else:
        data.trend = monthly_trend(lake, rules, dates[:-1], temp_dir=output_dir / ".tmp") + [latest]
        recomputed = len(dates) - 1
    data.trend_seconds = time.perf_counter() - trend_started
    data.build_seconds = time.perf_counter() - started  # before rendering: the page cannot time itself
    page = write_page(report_dir, render_page(data))
    print(f"report built in {time.perf_counter() - started:.1f} s, of which the "
          f"{len(data.trend)}-month trend {data.trend_seconds:.1f} s, {recomputed} month ends recomputed")
    return page
