"""The report page of the sample run: its numbers against the warehouse, no identifiers, self-contained, and
rendered in a real browser (headless Debian chromium driven by Playwright)."""
from __future__ import annotations

import calendar
import csv
import os
import re
import shutil
from dataclasses import replace
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb
import pyarrow.parquet as pq
import pytest

from b12lab.common.paths import VOCABULARY_DIR
from b12lab.report import page as report
from b12lab.common.duck import connect
from b12lab.lake.lake import Lake
from b12lab.publish.publication import create_lake_views
from b12lab.rules.rules_file import load_rules
from b12lab.report.template import render_page
from tests.conftest import SAMPLE_AS_OF
from tests.helpers.trend import month_ends, trend_by_rebuilding

REASONS = ("PA_NO_POST_TREATMENT_RECHECK", "PA_OVERDUE_ANNUAL_B12", "BORDERLINE_NO_MMA", "SUPPLEMENTED_NO_MMA",
           "TREATED_BELOW_TARGET", "DEFICIENT_NO_IF_ANTIBODY", "DEFICIENT_NO_BLOOD_COUNT", "PA_NOT_ON_TREATMENT",
           "TREATED_MARKERS_NOT_NORMAL")
FLAGS = ("FOLATE_BEFORE_B12", "MACROCYTOSIS_NOT_TESTED", "METFORMIN_B12_NOT_TESTED", "MMA_RENAL_CAVEAT",
         "B12_INJECTIONS_WITHOUT_DEFICIENCY")
# Release 2 situations the sample (500 patients) shows, every one of them.
SAMPLE_SHOWS = ("DEFICIENT_NO_IF_ANTIBODY", "DEFICIENT_NO_BLOOD_COUNT", "PA_NOT_ON_TREATMENT",
                "TREATED_MARKERS_NOT_NORMAL", "METFORMIN_B12_NOT_TESTED", "MMA_RENAL_CAVEAT",
                "B12_INJECTIONS_WITHOUT_DEFICIENCY", "deficient_neuro")
with (VOCABULARY_DIR / "measures.csv").open(encoding="utf-8") as _stream:
    MEASURES = [row["measure"] for row in csv.DictReader(_stream)]
CHARTS = {"practices", "trend", "b12-distribution", "treatment-response", *(f"funnel-{m}" for m in MEASURES),
          *(f"rate-trend-{m}" for m in MEASURES)}


# --- the expected numbers, counted here independently of b12lab.report.page ---------------------------------


def warehouse_counts(warehouse: Path) -> dict[str, int]:
    queries = {
        "patients": "select count(*) from patient_status where not deceased",  # the dead count in no metric
        "deficient": "select count(*) from cohort_deficient",
        "deficient_untreated": "select count(*) from cohort_deficient where treatment = 'untreated'",
        "deficient_neuro": "select count(*) from cohort_deficient where neuro_involvement",
        "borderline": "select count(*) from cohort_borderline",
        "borderline_needs_mma": "select count(*) from cohort_borderline where mma_status = 'needed'",
        "borderline_mma_normal": "select count(*) from cohort_borderline where mma_status = 'normal'",
        "under_monitored": "select count(distinct patient_id) from cohort_under_monitored",
        **{f"under_monitored.{r}": f"select count(*) from cohort_under_monitored where reason = '{r}'"
           for r in REASONS},
        **{f"flag.{f}": f"select count(*) from patient_flags where flag = '{f}'" for f in FLAGS},
        "flagged": "select count(distinct patient_id) from patient_flags",
    }
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {key: con.execute(query).fetchone()[0] for key, query in queries.items()}


# --- reading the page ---------------------------------------------------------------------------------------


class Page(HTMLParser):
    """Elements by attribute, and the text inside each, from the report's HTML."""

    VOID = {"meta", "link", "br", "img", "input", "hr", "source", "col", "wbr", "area", "base"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.tags: list[str] = []
        self.text_parts: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        self.tags.append(tag)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_startendtag(self, tag, attrs):
        self.elements.append({"tag": tag, "attrs": dict(attrs), "text": ""})
        self.tags.append(tag)

    def handle_endtag(self, tag):
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index]["tag"] == tag:
                del self._open[index:]
                break

    def handle_data(self, data):
        self.text_parts.append(data)
        for element in self._open:
            element["text"] += data

    def with_attr(self, name: str, value: str | None = None) -> list[dict]:
        return [e for e in self.elements if name in e["attrs"] and (value is None or e["attrs"][name] == value)]

    def one(self, name: str, value: str | None = None) -> dict:
        found = self.with_attr(name, value)
        assert len(found) == 1, f"expected one element with {name}={value!r}, found {len(found)}"
        return found[0]


def as_int(text: str) -> int:
    return int(text.strip().replace(",", ""))


@pytest.fixture(scope="module")
def page_path(sample_output) -> Path:
    return sample_output / "report" / "index.html"


@pytest.fixture(scope="module")
def html(page_path) -> str:
    assert page_path.exists(), "the run did not write report/index.html"
    return page_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(html) -> Page:
    return Page(html)


@pytest.fixture(scope="module")
def expected(sample_output) -> dict[str, int]:
    return warehouse_counts(sample_output / "warehouse.duckdb")


@pytest.fixture(scope="module")
def run_record(sample_output) -> dict:
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        result = con.execute("select * from runs where status = 'published'")
        names = [d[0] for d in result.description]
        return dict(zip(names, result.fetchone()))


# --- (a) content -------------------------------------------------------------------------------------------


def test_header_names_the_run_the_rules_and_the_date(page, run_record, sample_output):
    assert page.one("data-as-of")["attrs"]["data-as-of"] == SAMPLE_AS_OF
    assert page.one("data-run-id")["attrs"]["data-run-id"] == run_record["run_id"]
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        version, profile = con.execute("select rules_version, rules_profile from rules_settings").fetchone()
    rules = page.one("data-rules-version")["attrs"]
    assert (rules["data-rules-version"], rules["data-rules-profile"]) == (version, profile)
    generated = datetime.fromisoformat(page.one("id", "generated-at")["attrs"]["data-generated-at"])
    # the footer names the same moment as the masthead (and as the run's log line "report generated at")
    assert page.one("id", "footer-generated-at")["attrs"]["data-generated-at"] == generated.isoformat()
    assert generated.date() >= run_record["started_at"].date()


def test_headline_numbers_equal_the_warehouse_counts(page, expected):
    shown = {e["attrs"]["data-metric"]: e for e in page.with_attr("data-metric")}
    assert set(shown) == set(expected) - {"flagged"}  # patients with any flag: a column of the practice table
    for key, count in expected.items():
        if key == "flagged":
            continue
        assert int(shown[key]["attrs"]["data-value"]) == count, key
        assert as_int(shown[key]["text"]) == count, key
    assert expected["deficient"] and expected["borderline"] and expected["under_monitored"], "sample lost its cohorts"
    for code in SAMPLE_SHOWS:
        key = code if code in expected else next(k for k in expected if k.endswith("." + code))
        assert expected[key] > 0, f"the sample report shows no {code}"


def test_a_first_run_says_so_instead_of_a_change(page):
    deltas = page.with_attr("data-delta")
    assert deltas and all(d["attrs"]["data-delta"] == "" and d["text"] == "first run" for d in deltas)


def test_counts_by_practice_add_up_and_match_the_marts(page, expected, sample_output):
    cells = page.with_attr("data-practice-metric")
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        by_practice = dict(con.execute(
            "select coalesce(practice, '(no practice)'), count(*) from cohort_deficient group by 1").fetchall())
        practices = {p for (p,) in con.execute("select distinct coalesce(practice, '(no practice)') from patient_status").fetchall()}
    rows = {e["attrs"]["data-practice"] for e in page.with_attr("data-practice") if e["tag"] == "tr"}
    assert rows == practices
    for key in ("deficient", "deficient_untreated", "borderline", "under_monitored", "flag.FOLATE_BEFORE_B12",
                *(f"under_monitored.{r}" for r in REASONS)):
        values = [int(c["attrs"]["data-value"]) for c in cells if c["attrs"]["data-practice-metric"] == key]
        assert sum(values) == expected[key], key
    deficient_cells = [c for c in cells if c["attrs"]["data-practice-metric"] == "deficient"]
    assert len(deficient_cells) == len(practices)


def treatment_counts(warehouse: Path, practice: str | None = None) -> dict[tuple[str, str], tuple]:
    """(window, route class or "all") -> (begun, with a result, not deficient, at target, closed, closed with a
    result), counted here from treatment_response, independently of treatment_response_summary."""
    sql = """select "window", route_class, count(*), count(result_date), count(*) filter (where not_deficient),
                    count(*) filter (where at_target), count(*) filter (where window_closed),
                    count(*) filter (where window_closed and result_date is not null)
             from treatment_response where $practice is null or practice = $practice
             group by grouping sets (("window", route_class), ("window"))"""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {(window, route or "all"): tuple(counts)
                for window, route, *counts in con.execute(sql, {"practice": practice}).fetchall()}


def test_the_treatment_section_counts_treatment_response(page, sample_output):
    counted = treatment_counts(sample_output / "warehouse.duckdb")
    assert {route for _, route in counted} >= {"intramuscular", "oral"}, "the sample has both route classes"
    assert {window for window, _ in counted} == {"1m", "3-6m", "12m"}, "the sample reaches every window"
    [table] = [e for e in page.with_attr("id", "table-treatment-response")]
    assert table["attrs"]["data-practice"] == ""
    rows = [e for e in page.elements if e["tag"] == "tr" and "data-route-class" in e["attrs"]]
    assert len(rows) == 3 * 4  # three windows, three route classes and all
    cells = [e for e in page.with_attr("data-share")]
    for index, row in enumerate(rows):
        key = (row["attrs"]["data-window"], row["attrs"]["data-route-class"])
        begun, with_result, not_deficient, at_target, closed, closed_with_result = counted.get(key, (0,) * 6)
        assert (int(row["attrs"]["data-windows-begun"]), int(row["attrs"]["data-with-result"])) == (begun, with_result)
        shares = {c["attrs"]["data-share"]: (int(c["attrs"]["data-count"]), int(c["attrs"]["data-of"]))
                  for c in cells[3 * index: 3 * index + 3]}
        assert shares == {"not_deficient": (not_deficient, with_result), "at_target": (at_target, with_result),
                          "recheck": (closed_with_result, closed)}, key
    chart = page.one("id", "chart-treatment-response")
    assert float(chart["attrs"]["data-reference"]) == 0.885
    assert "seed: 88.5 % (oral, 1 month)" in chart["text"]


def test_every_chart_is_an_inline_svg_with_a_title_and_axes(page, html):
    charts = {e["attrs"].get("data-chart") for e in page.elements if e["tag"] == "svg"}
    assert charts == CHARTS
    for name, title, axis in (("practices", "by practice", "Patients (count)"),
                              ("trend", "month end", "Patients (count)"),
                              ("b12-distribution", "Serum B12", "pmol/L, log scale")):
        svg = next(e for e in page.elements if e["tag"] == "svg" and e["attrs"].get("data-chart") == name)
        assert title in svg["text"] and axis in svg["text"], name
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "element ids repeat across the page (inline SVGs would clash)"


def test_the_page_is_self_contained(page, html):
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(page.tags)
    assert "@import" not in html and "url(http" not in html
    for element in page.elements:
        for name in ("src", "href", "xlink:href"):
            target = element["attrs"].get(name)
            if target:
                parsed = urlparse(target)
                assert not parsed.scheme and not parsed.netloc and not target.startswith("/"), target
    # the only absolute URL left is the SVG namespace's name, which is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= {"http://www.w3.org/2000/svg"}


def test_no_patient_identifier_appears_in_the_page(html, sample_output):
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        identifiers = {p for (p,) in con.execute(
            "select patient_id from patient_status union select patient_id from lab_results "
            "union select patient_id from cohort_under_monitored").fetchall() if p}
    assert identifiers
    assert not [p for p in identifiers if p in html]


def test_thresholds_shown_are_the_rules_in_force(page, sample_output):
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        settings = con.execute("select b12_deficient_below_pmol_l, b12_borderline_max_pmol_l, "
                               "b12_target_above_pmol_l from rules_settings").fetchone()
    figure = page.one("id", "chart-b12")["attrs"]
    shown = tuple(float(figure[f"data-threshold-{name}"]) for name in ("deficient", "borderline", "target"))
    assert shown == settings
    cells = {e["attrs"]["data-threshold"]: float(e["attrs"]["data-value"]) for e in page.with_attr("data-threshold")}
    assert (cells["deficient"], cells["borderline"], cells["target"]) == settings


def test_thresholds_follow_the_rules_not_the_code(sample_output, tmp_path):
    """Change the rules in a copy of the warehouse: the chart, its legend and the table follow."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(sample_output / "warehouse.duckdb", copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("update rules_settings set b12_deficient_below_pmol_l = 141.5, b12_borderline_max_pmol_l = 262.5,"
                    " b12_target_above_pmol_l = 333.25, pa_annual_recheck_days = 400")
        run_id = con.execute("select run_id from runs where status = 'published'").fetchone()[0]
        data = report.gather(con, sample_output, run_id)
    rendered = Page(render_page(data))
    figure = rendered.one("id", "chart-b12")["attrs"]
    assert (figure["data-threshold-deficient"], figure["data-threshold-borderline"],
            figure["data-threshold-target"]) == ("141.5", "262.5", "333.25")
    svg = next(e for e in rendered.elements if e["tag"] == "svg" and e["attrs"].get("data-chart") == "b12-distribution")
    for label in ("Deficient below 141.5 pmol/L", "Borderline up to 262.5 pmol/L", "Treatment target above 333.25 pmol/L"):
        assert label in svg["text"]
    overdue = rendered.one("data-card", "under_monitored.PA_OVERDUE_ANNUAL_B12")
    assert "last 400 days" in overdue["text"]


def test_the_trend_covers_24_month_ends_and_ends_at_the_headline(page, expected):
    rows = [e["attrs"] for e in page.elements if e["tag"] == "tr" and "data-month-end" in e["attrs"]]
    ends = [date.fromisoformat(r["data-month-end"]) for r in rows]
    assert len(ends) == 24 and ends == sorted(ends)
    assert ends[-1] == date.fromisoformat(SAMPLE_AS_OF)
    assert all(end.day == calendar.monthrange(end.year, end.month)[1] for end in ends[:-1])
    last = rows[-1]
    assert (int(last["data-deficient"]), int(last["data-borderline"]), int(last["data-under-monitored"])) == (
        expected["deficient"], expected["borderline"], expected["under_monitored"])
    svg = next(e for e in page.elements if e["tag"] == "svg" and e["attrs"].get("data-chart") == "trend")
    assert "last 24 months" in svg["text"]


def test_the_trend_is_the_whole_model_chain_as_of_each_date(sample_output):
    """The published trend (cohort_counts on every date of stg_as_of_dates, one dbt build) equals a full
    publication build as of each date (the per-date reference of tests/helpers/trend.py), for all 24 month
    ends of the sample, which are the month ends Python counts."""
    lake, rules = Lake(sample_output / "lake"), load_rules()
    dates = month_ends(date.fromisoformat(SAMPLE_AS_OF), 24)

    def open_lake() -> duckdb.DuckDBPyConnection:
        con = connect()
        create_lake_views(con, lake)
        return con

    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        points = report.read_trend(con)
    assert [point.month_end for point in points] == dates
    assert points == trend_by_rebuilding(open_lake, rules, dates)
    assert points[0] != points[-1], "the sample should move over two years"


def test_data_quality_matches_the_accounting_and_gx(page, sample_output, run_record):
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        totals = con.execute("select count(*), sum(rows_read), sum(rows_accepted), sum(rows_quarantined), "
                             "sum(rows_dropped) from ingested_files").fetchone()
        by_reason = dict(con.execute("select reason, sum(rows) from ingest_outcomes where outcome <> 'accepted' "
                                     "group by reason").fetchall())
        preliminary = con.execute("select count(*) from lab_results where status = 'P'").fetchone()[0]
    for scope in ("this_run", "total"):  # one run: this run is everything
        shown = [int(page.one("data-accounting", f"{scope}.{key}")["attrs"]["data-value"])
                 for key in ("files", "rows_read", "rows_accepted", "rows_quarantined", "rows_dropped")]
        assert shown == list(totals)
        # Out of scope is shown apart: in scope + out of scope = read, and the quarantine is read against it.
        scope_counts = {key: int(page.one("data-accounting", f"{scope}.{key}")["attrs"]["data-value"])
                        for key in ("rows_in_scope", "rows_out_of_scope", "rows_dropped_in_scope")}
        assert scope_counts["rows_out_of_scope"] == by_reason["out_of_scope"] > 0
        assert scope_counts["rows_in_scope"] + scope_counts["rows_out_of_scope"] == totals[1]
        assert scope_counts["rows_dropped_in_scope"] == totals[4] - by_reason["out_of_scope"]
    outcome_rows = {e["attrs"]["data-reason"]: e for e in page.with_attr("data-reason")}
    assert set(outcome_rows) == set(by_reason)
    # Results kept but not counted (preliminary, FHIR unknown) are named apart from the outcomes.
    not_counted = {e["attrs"]["data-not-counted"]: int(e["attrs"]["data-value"])
                   for e in page.with_attr("data-not-counted")}
    assert not_counted == {"status_preliminary": preliminary} and preliminary > 0
    gx = {e["attrs"]["data-gx"]: int(e["attrs"]["data-value"]) for e in page.with_attr("data-gx")}
    assert gx == {"evaluated": run_record["expectations_evaluated"], "failed": run_record["expectations_failed"],
                  "warnings": run_record["expectation_warnings"]}
    assert gx["evaluated"] > 0
    link = page.one("id", "data-docs-link")["attrs"]["href"]
    # Relative to the page, so it works however the report folder is reached (OUTPUT/report is a link).
    assert link == "data-docs/index.html"
    assert (sample_output / "report" / link).resolve() == (
        sample_output / "publications" / run_record["run_id"] / "gx" / "data_docs" / "index.html").resolve()
    assert (sample_output / "report" / link).resolve().is_file()


def test_headline_history_is_kept_in_the_lake(sample_output, run_record, expected):
    path = sample_output / "lake" / "run_metrics" / f"{run_record['run_id']}.parquet"
    table = pq.read_table(path).to_pylist()
    assert {row["run_id"] for row in table} == {run_record["run_id"]}
    assert {row["as_of"] for row in table} == {date.fromisoformat(SAMPLE_AS_OF)}
    # the headline counts, and the measures' terms that are not cards of their own
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        terms = {"tested": "select count(*) from patient_status where status <> 'not_tested' and not deceased",
                 "pa": "select count(*) from patient_status where has_pa and not deceased",
                 "deficient_without_pa": "select count(*) from cohort_deficient where not has_pa",
                 "treated_3_6m_with_result": """select count(*) from treatment_response
                                                where "window" = '3-6m' and result_date is not null""",
                 "treated_3_6m_at_target": """select count(*) from treatment_response
                                              where "window" = '3-6m' and at_target"""}
        terms = {key: con.execute(sql).fetchall()[0][0] for key, sql in terms.items()}
    assert {row["metric"]: row["value"] for row in table} == {**expected, **terms}
    assert not list(path.parent.glob("*.tmp"))


def test_changes_are_against_the_latest_earlier_published_run_with_metrics():
    with duckdb.connect() as con:
        con.execute("create table run_metrics (run_id varchar, as_of date, metric varchar, value bigint)")
        for run_id, deficient in (("r1", 3), ("r2", 4), ("r3c", 7), ("r4-later", 9)):
            con.execute("insert into run_metrics values (?, '2026-01-01', 'deficient', ?)", [run_id, deficient])
        con.execute("create table runs (run_id varchar, kind varchar, status varchar, started_at timestamp, as_of date)")
        con.execute("""insert into runs values
            ('r1', null, 'published', '2026-01-01 02:00', '2026-01-01'),
            ('r2', 'nightly', 'published', '2026-01-02 02:00', '2026-01-02'),
            ('r3', 'nightly', 'failed',    '2026-01-03 02:00', '2026-01-03'),
            ('r3b', 'nightly', 'published','2026-01-03 03:00', '2026-01-03'),
            ('r3c', 'reproduction', 'published','2026-01-03 04:00', '2025-06-30'),
            ('r4', 'nightly', 'published', '2026-01-04 02:00', '2026-01-04'),
            ('r4-later', 'nightly', 'published', '2026-01-05 02:00', '2026-01-05')""")
        current = {"run_id": "r4", "started_at": datetime(2026, 1, 4, 2)}
        previous = report.previous_metrics(con, current)
        # r3b recorded none; r3c is a reproduction for an earlier date, never compared with
        assert previous["run_id"] == "r2" and previous["metrics"] == {"deficient": 4}
        assert report.previous_metrics(con, {"run_id": "r1", "started_at": datetime(2026, 1, 1, 2)}) is None


def test_changes_since_the_previous_run_are_shown(sample_output, run_record, expected):
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        data = report.gather(con, sample_output, run_record["run_id"])
    before = {**expected, "deficient": expected["deficient"] - 2, "borderline": expected["borderline"] + 3}
    data = replace(data, previous={"run_id": "20260101T020000-abcdef", "as_of": date(2026, 10, 30), "metrics": before})
    rendered = Page(render_page(data))
    deltas = {card["attrs"]["data-card"]: first_after(rendered, card, "data-delta")["attrs"]["data-delta"]
              for card in rendered.with_attr("data-card")}
    assert deltas["deficient"] == "+2" and deltas["borderline"] == "-3" and deltas["under_monitored"] == "0"
    assert first_after(rendered, rendered.one("data-card", "deficient"), "data-delta")["text"] == "▲ 2"
    assert "20260101T020000-abcdef" in rendered.one("id", "headline")["text"]


def first_after(page: Page, element: dict, attribute: str) -> dict:
    """The first element after `element` (in document order) that has `attribute`."""
    index = page.elements.index(element)
    return next(e for e in page.elements[index + 1:] if attribute in e["attrs"])


def test_text_is_escaped(sample_output, run_record):
    with duckdb.connect(str(sample_output / "warehouse.duckdb"), read_only=True) as con:
        data = report.gather(con, sample_output, run_record["run_id"])
    hostile = '<script>alert("x")</script> & Co'
    data.by_practice[0]["practice"] = hostile
    data.files_this_run[0]["source_file"] = "<img src=x onerror=alert(1)>.csv"
    html = render_page(data)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html


# --- (b) in a real browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser_page(page_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra: make test")
    from b12lab.report.screenshot import chromium_path, launch

    if chromium_path() is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            problems, requests = [], []
            tab.on("console", lambda message: message.type in ("error", "warning") and problems.append(message.text))
            tab.on("pageerror", lambda error: problems.append(str(error)))
            tab.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
            tab.on("request", lambda request: requests.append(request.url))
            tab.goto(page_path.resolve().as_uri(), wait_until="load")
            yield tab, problems, requests
        finally:
            browser.close()


def test_browser_loads_the_page_from_a_file_without_errors_or_network(browser_page, page_path):
    tab, problems, requests = browser_page
    assert problems == []
    assert requests == [page_path.resolve().as_uri()]
    assert tab.title().startswith("B12 monitoring report")


def test_browser_renders_every_chart(browser_page):
    tab, _, _ = browser_page
    charts = tab.locator("svg[data-chart]")
    assert charts.count() == len(CHARTS)
    for index in range(charts.count()):
        box = charts.nth(index).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150, charts.nth(index).get_attribute("data-chart")
        # drawn: the chart holds painted paths, not an empty frame
        assert charts.nth(index).locator("path").count() > 10


def test_browser_shows_the_warehouse_counts(browser_page, expected):
    tab, _, _ = browser_page
    shown = tab.eval_on_selector_all(
        "[data-metric]", "elements => elements.map(e => [e.dataset.metric, e.innerText, e.offsetHeight])")
    assert {key for key, _, _ in shown} == set(expected) - {"flagged"}
    for key, text, height in shown:
        assert as_int(text) == expected[key], key
        assert height > 0, f"{key} is not visible"


def test_browser_shows_the_treatment_section(browser_page, sample_output):
    tab, _, _ = browser_page
    tab.click('nav a[href="#treatment"]')
    section = tab.locator("#treatment")
    assert section.is_visible() and section.locator("h2").inner_text() == "Does treatment work?"
    chart = section.locator('svg[data-chart="treatment-response"]')
    box = chart.bounding_box()
    assert box and box["width"] > 600 and box["height"] > 250
    reference = chart.locator("text", has_text="seed: 88.5 % (oral, 1 month)")
    assert reference.count() >= 1 and reference.first.is_visible()
    counted = treatment_counts(sample_output / "warehouse.duckdb")
    shown = tab.eval_on_selector_all(
        "#treatment tr[data-route-class]",
        "rows => rows.map(r => [r.dataset.window, r.dataset.routeClass, r.cells[3].innerText, r.cells[4].innerText])")
    assert len(shown) == 12
    for window, route, with_result, not_deficient in shown:
        _, expected_with_result, expected_not_deficient, *_ = counted.get((window, route), (0,) * 6)
        assert as_int(with_result) == expected_with_result
        if expected_with_result:
            share = 100 * expected_not_deficient / expected_with_result
            assert not_deficient.startswith(f"{share:.1f} %"), (window, route)
            assert f"{expected_not_deficient} of {expected_with_result}" in not_deficient
        else:
            assert not_deficient.strip() == "–"


def test_browser_follows_the_data_docs_link_to_a_file(browser_page):
    tab, _, _ = browser_page
    href = tab.eval_on_selector("#data-docs-link", "a => a.href")
    assert href.startswith("file://") and Path(unquote(urlparse(href).path)).is_file()


# --- end to end: history across runs, and a broken report does not unpublish a run -----------------------


def tiny_exports(folder: Path) -> Path:
    from b12lab.ingest import EXPORT_KINDS
    from tests.helpers.exports import lab_row, write_csv, write_labs

    write_labs(folder / "labs_1.csv", [
        lab_row(patient_id="T1", accession="A1", result_value="120", collected_at="2026-03-01"),
        lab_row(patient_id="T2", accession="A2", result_value="200", collected_at="2026-03-01"),
    ])
    write_csv(folder / "patients.csv", EXPORT_KINDS["patients"].columns, [
        ["T1", "1950-01-01", "F", "Riverside & <Co>"], ["T2", "1960-01-01", "M", ""], ["T3", "1970-01-01", "F", "Hillview"]])
    return folder


@pytest.mark.usefixtures("prefect_harness")
def test_runs_keep_the_history_and_a_report_that_cannot_be_built_stops_the_publication(tmp_path, monkeypatch):
    from b12lab.flows.nightly import nightly
    from tests.helpers.exports import lab_row, write_labs

    inputs, output = tiny_exports(tmp_path / "in"), tmp_path / "out"
    first = nightly(input_dir=inputs, output_dir=output, as_of=date(2026, 6, 30))
    page = Page((output / "report" / "index.html").read_text(encoding="utf-8"))
    assert page.one("data-metric", "deficient")["attrs"]["data-value"] == "1"
    assert first_after(page, page.one("data-card", "deficient"), "data-delta")["text"] == "first run"
    assert {e["attrs"]["data-practice"] for e in page.with_attr("data-practice") if e["tag"] == "tr"} == {
        "Riverside & <Co>", "(no practice)", "Hillview"}

    write_labs(inputs / "labs_2.csv", [lab_row(patient_id="T3", accession="A3", result_value="90",
                                               collected_at="2026-05-01")])
    second = nightly(input_dir=inputs, output_dir=output, as_of=date(2026, 6, 30))
    page = Page((output / "report" / "index.html").read_text(encoding="utf-8"))
    assert page.one("data-run-id")["attrs"]["data-run-id"] == second["run_id"]
    assert page.one("data-metric", "deficient")["attrs"]["data-value"] == "2"
    assert first_after(page, page.one("data-card", "deficient"), "data-delta")["attrs"]["data-delta"] == "+1"
    assert first["run_id"] in page.one("id", "headline")["text"]
    assert page.one("data-accounting", "this_run.files")["attrs"]["data-value"] == "1"
    assert page.one("data-accounting", "total.files")["attrs"]["data-value"] == "3"
    metrics = sorted(p.stem for p in (output / "lake" / "run_metrics").glob("*.parquet"))
    assert metrics == sorted([first["run_id"], second["run_id"]])
    worklist = output / "report" / "worklists" / "deficient"
    assert sorted(p.name for p in worklist.iterdir()) == ["hillview.csv", "no-practice.csv", "riverside-and-co.csv"]

    def broken(*args, **kwargs):
        raise RuntimeError("report broke")

    from b12lab.flows.nightly import RunFailed

    monkeypatch.setattr(report, "build_report", broken)
    before = {name: (output / name).read_bytes() for name in ("report/index.html", "warehouse.duckdb")}
    current = os.readlink(output / "current")
    with pytest.raises(RunFailed, match="^report broke"):  # a night with no new file: its report is all it adds
        nightly(input_dir=inputs, output_dir=output, as_of=date(2026, 6, 30))
    # The report is part of the publication: nothing was switched in, the previous one is whole.
    assert {name: (output / name).read_bytes() for name in before} == before
    assert os.readlink(output / "current") == current
    runs = pq.read_table(output / "lake" / "runs").to_pylist()
    assert sorted(r["status"] for r in runs) == ["failed", "published", "published"]




def test_data_quality_lists_suspected_unmapped_and_missing_analytes_first(sample_output, run_record, tmp_path):
    """Read from the mart data_quality as a night with a B12 test under an unknown code would publish it."""
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(sample_output / "warehouse.duckdb", warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("""
            insert into data_quality (section, source_file, code_system, code, display, analyte, this_run, all_runs)
            values ('suspected_unmapped', null, 'local', 'SB12', 'Serum vitamin B12', 'b12', 412, 830),
                   ('suspected_unmapped', null, 'http://loinc.org', '16695-9', 'Cobalamin, blood', 'b12', 0, 7),
                   ('missing_analyte', 'labs_valley.csv', null, null, null, null, 0, 0)""")
        con.execute("update data_quality set analyte = 'mma', all_runs = 54 where section = 'missing_analyte'")
        quality = report.data_quality(con)
        data = report.gather(con, sample_output, run_record["run_id"])
    assert [(s["code"], s["this_run"], s["mapping_line"]) for s in quality["suspected"]] == [
        ("SB12", 412, 'local_codes: {"SB12": b12}'),
        ("16695-9", 0, 'transforms/seeds/reference/ref_analyte_codes.csv: loinc,16695-9,b12,"Cobalamin, blood"')]
    assert quality["missing"] == [{"analyte": "mma", "source_file": "labs_valley.csv", "total": 54}]
    html = render_page(data)
    section = html[html.index('<section id="quality">'):]
    section = section[:section.index("</section>")]
    assert section.index('id="table-suspected-unmapped"') < section.index('id="table-missing-analytes"') \
        < section.index('id="table-accounting"')
    assert 'data-code="SB12" data-analyte="b12"' in section and "local_codes: {&#34;SB12&#34;: b12}" in section


def test_a_night_without_suspects_shows_no_such_panel(html):
    assert 'id="table-suspected-unmapped"' not in html and 'id="table-missing-analytes"' not in html
