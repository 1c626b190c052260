"""The quality measures of the sample run: practice_measures counted as the marts count, the outlier the sample
makes, a funnel plot and a rate trend per measure with their text and numbers, a page per practice, and the
banner of an empty night; the pages opened in a real browser (headless Debian chromium)."""
from __future__ import annotations

import csv
import random
import re
from datetime import date
from pathlib import Path

import duckdb
import pytest

from b12lab.common.paths import VOCABULARY_DIR
from b12lab.report import charts
from b12lab.report.page import empty_night_banner
from b12lab.report.template import break_at_underscores
from tests.helpers.nights import flow_night
from tests.report.test_report import Page

with (VOCABULARY_DIR / "measures.csv").open(encoding="utf-8") as _stream:
    MEASURES = [row["measure"] for row in csv.DictReader(_stream)]
# The sample's practice that seldom adds B12 to routine bloods (b12lab.synth: PRACTICE_ROUTINE_B12_TESTING).
LOW_TESTING_PRACTICE = "Abbey Road Surgery"


def query(warehouse: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def warehouse(sample_output) -> Path:
    return sample_output / "warehouse.duckdb"


@pytest.fixture(scope="module")
def main_page(sample_output) -> Page:
    return Page((sample_output / "report" / "index.html").read_text(encoding="utf-8"))


def run_date_measures(warehouse: Path) -> dict[tuple, tuple]:
    """(measure, practice) -> (numerator, denominator, position), on the run's date."""
    return {(m, p): (n, d, pos) for m, p, n, d, pos in query(warehouse, """
        select measure, practice, numerator, denominator, position from practice_measures
        where as_of = (select as_of from rules_settings)""")}


# --- the mart -------------------------------------------------------------------------------------------------


def test_measures_count_as_the_marts_count(warehouse):
    measures = run_date_measures(warehouse)
    practice = "coalesce(nullif(trim(patient_status.practice), ''), '(no practice)')"
    independent = {
        "testing_coverage": f"select {practice}, count(*) filter (where status <> 'not_tested'), count(*) "
                            "from patient_status where not deceased group by 1",
        "deficient_untreated": f"select {practice}, count(*) filter (where treatment = 'untreated'), count(*) "
                               "from cohort_deficient as patient_status group by 1",
        "pa_not_on_treatment": f"""select {practice},
                count(*) filter (where patient_id in (select patient_id from cohort_under_monitored
                                                      where reason = 'PA_NOT_ON_TREATMENT')), count(*)
            from patient_status where has_pa and not deceased group by 1""",
        "deficient_no_if_antibody": f"""select {practice},
                count(*) filter (where patient_id in (select patient_id from cohort_under_monitored
                                                      where reason = 'DEFICIENT_NO_IF_ANTIBODY')), count(*)
            from cohort_deficient as patient_status where not has_pa group by 1""",
        "treated_at_target_3_6m": f"""select {practice}, count(*) filter (where at_target),
                count(*) filter (where result_date is not null)
            from treatment_response as patient_status where "window" = '3-6m' group by 1 having count(result_date) > 0""",
    }
    for measure, sql in independent.items():
        rows = query(warehouse, sql)
        assert rows, measure
        for name, numerator, denominator in rows:
            assert measures[(measure, name)][:2] == (numerator, denominator), (measure, name)
        total = (sum(r[1] for r in rows), sum(r[2] for r in rows))
        assert measures[(measure, None)][:2] == total, measure


def test_every_measure_has_a_row_per_practice_and_date_of_the_trend(warehouse):
    practices = {p for (p,) in query(warehouse, "select distinct practice from cohort_counts")}
    rows = query(warehouse, "select as_of, measure, count(*) from practice_measures group by all")
    dates = {as_of for as_of, _, _ in rows}
    assert len(dates) == 24
    assert {m for _, m, _ in rows} == set(MEASURES)
    (run_rows,), = query(warehouse, "select count(*) from practice_measures where as_of = "
                                    "(select as_of from rules_settings)")
    assert run_rows == len(MEASURES) * len(practices)


def test_the_sample_makes_one_practice_an_outlier_on_testing_coverage(warehouse):
    numerator, denominator, position = run_date_measures(warehouse)[("testing_coverage", LOW_TESTING_PRACTICE)]
    assert position == "below"
    (lower_998, overall), = query(warehouse, """select lower_998, overall_rate from practice_measures
        where as_of = (select as_of from rules_settings) and measure = 'testing_coverage' and practice = ?""",
                                  [LOW_TESTING_PRACTICE])
    assert numerator / denominator < lower_998 < overall


# --- the funnel plot itself -----------------------------------------------------------------------------------


def overlapping(boxes: list[tuple[str, tuple]]) -> list[tuple[str, str]]:
    return [(a, b) for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(boxes) for b, (bx0, by0, bx1, by1) in boxes[i + 1:]
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1]


def crowded_funnel(count: int = 40) -> tuple[list[charts.FunnelPoint], list[charts.FunnelCurve]]:
    """Many practices of similar size, most of them outside the 95 % limits: their labels compete for room."""
    generator = random.Random(11)
    points = [charts.FunnelPoint(f"Practice with a long name {i}", generator.randint(40, 60),
                                 generator.choice([0.05, 0.1, 0.9, 0.95, generator.random()]),
                                 "concern" if i % 4 == 0 else None, labelled=i % 5 != 4)
              for i in range(count)]
    curve = [charts.FunnelCurve(n, 0.5 - 1.5 / n ** 0.5, 0.5 - 1 / n ** 0.5, 0.5 + 1 / n ** 0.5, 0.5 + 1.5 / n ** 0.5)
             for n in range(1, 80)]
    return points, curve


def test_funnel_labels_never_overlap_and_only_points_outside_the_95_limits_are_named():
    points, curve = crowded_funnel()
    layout = charts.funnel_layout(points, curve, 0.5)
    boxes = [(label.point.practice, (label.box.x0, label.box.y0, label.box.x1, label.box.y1))
             for label in layout.labels]
    assert len(boxes) >= 10                      # most find room...
    assert overlapping(boxes) == []              # ...and no two drawn labels overlap
    named = {text for text, _ in boxes}
    assert named <= {p.practice for p in points if p.labelled}
    assert all(label.box.within(layout.plot) for label in layout.labels)
    # every point is named on hover, labelled or not; every label placed is drawn, with its own text
    svg = charts.funnel_chart("funnel-crowded", "Crowded", points, curve, 0.5)
    titles = re.findall(r'<g id="funnel-crowded-point-\d+"><title>([^<]*)</title>', svg)
    assert sorted(titles) == sorted(p.practice for p in points)
    drawn = re.findall(r'<g id="funnel-crowded-label-(\d+)">.*?<text [^>]*>([^<]*)</text></g>', svg)
    assert sorted((int(i), text) for i, text in drawn) == sorted(
        (label.index, label.point.practice) for label in layout.labels)


def test_a_label_box_is_as_wide_as_its_text_in_the_charts_font():
    # DejaVu Sans at 10 pt: "Rate" 4 characters, a capital R, "W" the widest letter; bold is wider
    assert charts.text_width("Rate", 10) == pytest.approx((695 + 613 + 392 + 615) / 100)
    assert charts.text_width("WWW", 10) > charts.text_width("iii", 10) * 3
    assert charts.text_width("Practice", 8, "bold") > charts.text_width("Practice", 8)
    assert charts.text_width("Ærø", 10) == pytest.approx(10 + 4.11 + 10)  # outside ASCII: a full em


def test_the_funnel_x_axis_ends_a_little_past_the_largest_practice_not_at_the_total():
    points = [charts.FunnelPoint("Small", 20, 0.4), charts.FunnelPoint("Large", 100, 0.45)]
    curve = [charts.FunnelCurve(n, 0.2, 0.3, 0.6, 0.7) for n in (*range(1, 111), 1_000)]  # 1,000: all practices
    layout = charts.funnel_layout(points, curve, 0.42)
    assert 100 < layout.right <= 110
    assert layout.x(0) == layout.plot.x0 and layout.x(layout.right) == layout.plot.x1


def test_a_funnel_with_no_denominator_says_so():
    svg = charts.funnel_chart("funnel-empty", "Empty", [charts.FunnelPoint("A", 0, 0.0)], [], None)
    assert "No practice has a patient in the denominator" in svg and "point-" not in svg


def test_a_code_wraps_only_at_its_underscores():
    assert str(break_at_underscores("DEFICIENT_NO_IF_ANTIBODY")) == "DEFICIENT_<wbr>NO_<wbr>IF_<wbr>ANTIBODY"
    assert str(break_at_underscores("A<B_C")) == "A&lt;B_<wbr>C"


# --- the main page ---------------------------------------------------------------------------------------------


def test_the_main_page_names_exactly_the_outliers_of_the_mart(main_page, warehouse):
    outliers = {(m, p): pos for (m, p), (_, _, pos) in run_date_measures(warehouse).items()
                if p is not None and pos in ("above", "below")}
    assert ("testing_coverage", LOW_TESTING_PRACTICE) in outliers
    named = {}
    for measure in MEASURES:
        block = main_page.one("data-outliers", measure)
        for element in main_page.with_attr("data-outlier"):
            if element["text"] and element["text"] in block["text"] and element in main_page.elements[
                    main_page.elements.index(block):main_page.elements.index(block) + 50]:
                named[(measure, element["attrs"]["data-outlier"])] = element["attrs"]["data-position"]
    assert named == outliers


def test_every_measure_has_a_funnel_plot_and_a_rate_trend_with_text_and_numbers(main_page, warehouse):
    practices = {p for (p,) in query(warehouse, "select distinct practice from cohort_counts where practice is not null")}
    for measure in MEASURES:
        for chart, axis in ((f"funnel-{measure}", "Denominator (patients)"),
                            (f"rate-trend-{measure}", "Month end")):
            svg = main_page.one("data-chart", chart)
            assert svg["attrs"]["aria-label"] and "Rate" in svg["text"] and axis in svg["text"], chart
        funnel_svg = main_page.one("data-chart", f"funnel-{measure}")["text"]
        assert "99.8 % limits" in funnel_svg and "95 % limits" in funnel_svg
    # the table of each funnel: all practices and one row per practice
    rows = query(warehouse, """select measure, coalesce(practice, ''), numerator, denominator from practice_measures
                               where as_of = (select as_of from rules_settings)""")
    shown = {(e["attrs"]["data-measure-unit"], int(e["attrs"]["data-numerator"]), int(e["attrs"]["data-denominator"]))
             for e in main_page.with_attr("data-measure-unit")}
    assert {(p, n, d) for _, p, n, d in rows} == shown
    assert len(practices) >= 7


def test_each_funnel_names_exactly_the_practices_outside_its_95_limits(main_page, warehouse):
    outside = query(warehouse, """select measure, practice from practice_measures
        where as_of = (select as_of from rules_settings) and practice is not null
          and (rate > upper_95 or rate < lower_95)""")
    assert ("testing_coverage", LOW_TESTING_PRACTICE) in outside
    for measure in MEASURES:
        label = re.compile(rf"funnel-{measure}-label-\d+")
        shown = {e["text"].strip() for e in main_page.elements
                 if e["tag"] == "g" and label.fullmatch(e["attrs"].get("id", ""))}
        assert shown == {p for m, p in outside if m == measure}, measure


def test_measure_definitions_in_the_warehouse_carry_the_rules_numbers(warehouse, main_page):
    definitions = dict(query(warehouse, "select measure, definition from measures"))
    (lookback,), = query(warehouse, "select lookback_days from rules_settings")
    assert not [d for d in definitions.values() if "{" in d]
    assert f"in the last {lookback:,} days" in definitions["testing_coverage"]


def test_the_main_page_links_the_catalogue_and_names_one_build_time(main_page, sample_output):
    href = main_page.one("id", "catalogue-link")["attrs"]["href"]
    assert (sample_output / "report" / href).resolve().is_file()
    assert (sample_output / "report" / href).resolve() == (sample_output / "current" / "catalogue" / "index.html").resolve()
    stamps = {e["attrs"]["data-generated-at"] for e in main_page.with_attr("data-generated-at")}
    assert len(stamps) == 1 and len(main_page.with_attr("data-generated-at")) == 2


def test_the_rate_trend_table_is_the_mart_on_each_month_end(main_page, warehouse):
    rows = query(warehouse, "select pm.measure, pm.as_of, pm.numerator, pm.denominator from practice_measures pm "
                            "inner join measures using (measure) where pm.practice is null "
                            "order by measures.display_order, pm.as_of")
    html_rows = [(e["attrs"]["data-measure-as-of"], int(e["attrs"]["data-numerator"]),
                  int(e["attrs"]["data-denominator"])) for e in main_page.with_attr("data-measure-as-of")]
    assert [(a.isoformat(), n, d) for _, a, n, d in rows] == html_rows


def test_an_ordinary_night_has_no_banner(main_page):
    assert not main_page.with_attr("id", "banner")


def test_the_banner_says_what_is_missing():
    assert empty_night_banner({"patients": 0}, {"rows_read": 0}, None)["headline"] == "No patient is known."
    quiet = empty_night_banner({"patients": 5}, {"rows_read": 0}, None)
    assert quiet["headline"] == "No new data was received in this run."
    assert empty_night_banner({"patients": 5}, {"rows_read": 10}, None) is None


# --- a page per practice ---------------------------------------------------------------------------------------


def practice_pages(sample_output) -> dict[str, Path]:
    pages = {}
    for path in sorted((sample_output / "report" / "practices").glob("*.html")):
        page = Page(path.read_text(encoding="utf-8"))
        pages[page.one("id", "practice-name")["attrs"]["data-practice"]] = path
    return pages


def test_every_practice_has_a_page_linked_from_the_main_page(sample_output, main_page, warehouse):
    pages = practice_pages(sample_output)
    practices = {p for (p,) in query(warehouse, "select distinct practice from cohort_counts where practice is not null")}
    assert set(pages) == practices
    links = {e["attrs"]["data-practice-page"]: e["attrs"]["href"] for e in main_page.with_attr("data-practice-page")}
    assert set(links) == practices
    for practice, href in links.items():
        assert (sample_output / "report" / href).resolve() == pages[practice].resolve()
        assert href in next(e for e in main_page.with_attr("data-practice-page", practice))["text"]


def test_a_practice_page_is_self_contained_and_names_no_patient(sample_output, warehouse):
    identifiers = {p for (p,) in query(warehouse, "select patient_id from patient_status")}
    for practice, path in practice_pages(sample_output).items():
        html = path.read_text(encoding="utf-8")
        page = Page(html)
        assert not {"script", "link", "img", "iframe", "object", "embed"} & set(page.tags), practice
        assert "url(http" not in html and "@import" not in html
        assert not [p for p in identifiers if re.search(rf"\b{re.escape(p)}\b", html)], practice
        assert path.stat().st_mode & 0o777 == 0o640


def test_a_practice_page_shows_the_warehouse_numbers(sample_output, warehouse):
    path = practice_pages(sample_output)[LOW_TESTING_PRACTICE]
    page = Page(path.read_text(encoding="utf-8"))
    measures = run_date_measures(warehouse)
    rows = {e["attrs"]["data-measure"]: e for e in page.with_attr("data-measure") if e["tag"] == "tr"}
    assert set(rows) == set(MEASURES)
    for measure, row in rows.items():
        numerator, denominator, position = measures[(measure, LOW_TESTING_PRACTICE)]
        assert (int(row["attrs"]["data-numerator"]), int(row["attrs"]["data-denominator"])) == (numerator, denominator)
        assert row["attrs"]["data-position"] == (position or "")
    assert "below limits: a concern" in rows["testing_coverage"]["text"]
    counts = dict(query(warehouse, """select metric, patients from cohort_counts
        where as_of = (select as_of from rules_settings) and practice = ?""", [LOW_TESTING_PRACTICE]))
    for cell in page.with_attr("data-practice-metric"):
        assert int(cell["attrs"]["data-value"]) == counts[cell["attrs"]["data-practice-metric"]]
    # its worklist counts are the rows of its worklist files
    slug = path.stem
    for element in page.with_attr("data-worklist"):
        cohort = element["attrs"]["data-worklist"]
        with (sample_output / "report" / "worklists" / cohort / f"{slug}.csv").open(encoding="utf-8-sig") as f:
            assert int(element["attrs"]["data-value"]) == len(list(csv.DictReader(f))), cohort
    # its trend: the practice's own rates on every month end
    trend = query(warehouse, "select as_of, numerator, denominator from practice_measures "
                             "where practice = ? and measure = 'testing_coverage' order by as_of",
                  [LOW_TESTING_PRACTICE])
    table = page.one("id", "table-measure-trend-testing_coverage")
    shown = [(e["attrs"]["data-measure-as-of"], int(e["attrs"]["data-numerator"]), int(e["attrs"]["data-denominator"]))
             for e in page.elements[page.elements.index(table):] if "data-measure-as-of" in e["attrs"]]
    assert shown[:len(trend)] == [(a.isoformat(), n, d) for a, n, d in trend]


# --- in a real browser -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra: make test")
    from b12lab.report.screenshot import chromium_path, launch

    if chromium_path() is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        instance = launch(playwright)
        try:
            yield instance
        finally:
            instance.close()


def open_in_browser(browser, path: Path):
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, requests = [], []
    tab.on("console", lambda message: message.type in ("error", "warning") and problems.append(message.text))
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on("request", lambda request: requests.append(request.url))
    tab.goto(path.resolve().as_uri(), wait_until="load")
    return tab, problems, requests


def assert_funnels_render(tab):
    for measure in MEASURES:
        chart = tab.locator(f'svg[data-chart^="funnel-{measure}"]')
        assert chart.count() == 1, measure
        box = chart.bounding_box()
        assert box and box["width"] > 250 and box["height"] > 150, measure
        assert chart.locator("path").count() > 10, measure


def test_browser_renders_the_funnel_plots_of_the_main_page(browser, sample_output, warehouse):
    path = sample_output / "report" / "index.html"
    tab, problems, requests = open_in_browser(browser, path)
    assert problems == [] and requests == [path.resolve().as_uri()]
    assert_funnels_render(tab)
    shown = tab.eval_on_selector_all("[data-measure-population]", "els => els.map(e => [e.dataset.measurePopulation, "
                                     "Number(e.dataset.numerator), Number(e.dataset.denominator), e.innerText])")
    measures = run_date_measures(warehouse)
    assert {m for m, _, _, _ in shown} == set(MEASURES)
    for measure, numerator, denominator, text in shown:
        assert (numerator, denominator) == measures[(measure, None)][:2]
        assert text.startswith(f"{numerator:,} of {denominator:,}")


def test_browser_draws_no_two_funnel_labels_over_each_other(browser, sample_output):
    tab, _, _ = open_in_browser(browser, sample_output / "report" / "index.html")
    for measure in MEASURES:
        boxes = tab.eval_on_selector_all(
            f'svg[data-chart="funnel-{measure}"] g[id^="funnel-{measure}-label-"] text',
            "els => els.map(e => { const r = e.getBoundingClientRect(); "
            "return [e.textContent, [r.left, r.top, r.right, r.bottom]]; })")
        assert overlapping([(text, tuple(box)) for text, box in boxes]) == [], measure
        titles = tab.eval_on_selector_all(f'svg[data-chart="funnel-{measure}"] g[id^="funnel-{measure}-point-"] > title',
                                          "els => els.map(e => e.textContent)")
        assert titles and all(":" in title and " of " in title for title in titles), measure


def test_browser_renders_a_practice_page_with_the_warehouse_numbers(browser, sample_output, warehouse):
    path = practice_pages(sample_output)[LOW_TESTING_PRACTICE]
    tab, problems, requests = open_in_browser(browser, path)
    assert problems == [] and requests == [path.resolve().as_uri()]
    chart = tab.locator('svg[data-chart^="practice-trends-"]')
    assert chart.count() == 1
    box = chart.bounding_box()
    assert box and box["width"] > 500 and box["height"] > 300
    # a panel per measure, each with the practice's line; each month's point names its numbers on hover
    assert chart.locator("path.practice-rate").count() == len(MEASURES)
    hovers = chart.locator("circle > title").all_text_contents()
    assert hovers and all(text.startswith(f"{LOW_TESTING_PRACTICE}, ") and " %" in text for text in hovers)
    measures = run_date_measures(warehouse)
    rows = tab.eval_on_selector_all("#table-practice-measures tr[data-measure]",
                                    "els => els.map(e => [e.dataset.measure, e.cells[1].innerText])")
    assert len(rows) == len(MEASURES)
    for measure, text in rows:
        numerator, denominator, _ = measures[(measure, LOW_TESTING_PRACTICE)]
        assert text == f"{numerator:,} of {denominator:,}", measure


def test_a_practice_page_shows_its_own_treatment_response(sample_output, warehouse):
    from tests.report.test_report import treatment_counts
    shown_any = False
    for practice, path in practice_pages(sample_output).items():
        page = Page(path.read_text(encoding="utf-8"))
        assert page.one("id", "table-treatment-response")["attrs"]["data-practice"] == practice
        counted = treatment_counts(warehouse.parent / "warehouse.duckdb", practice)
        rows = [e for e in page.elements if e["tag"] == "tr" and "data-route-class" in e["attrs"]]
        if not counted:
            assert rows == [], practice
            continue
        shown_any = True
        assert len(rows) == 12
        for row in rows:
            begun, with_result, *_ = counted.get((row["attrs"]["data-window"], row["attrs"]["data-route-class"]), (0, 0))
            assert (int(row["attrs"]["data-windows-begun"]), int(row["attrs"]["data-with-result"])) == (begun, with_result)
    assert shown_any


def test_a_measure_without_patients_says_so_plainly(sample_output, warehouse):
    empty = query(warehouse, """select practice, measure from practice_measures
        where as_of = (select as_of from rules_settings) and practice is not null and denominator = 0""")
    assert empty, "the sample has a practice with an empty denominator"
    pages = practice_pages(sample_output)
    for practice, measure in empty:
        html = pages[practice].read_text(encoding="utf-8")
        page = Page(html)
        row = next(e for e in page.with_attr("data-measure", measure) if e["tag"] == "tr")
        assert "no patients in the denominator" in row["text"] and "–" not in row["text"], (practice, measure)
        assert "no rate of" not in html


# --- an empty night, through the command users run -------------------------------------------------------------


def test_a_run_that_knows_no_patient_says_so_in_a_banner(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    sample = Path(__file__).resolve().parents[2] / "data" / "sample" / "labs_valley.csv"
    (drop / "labs_valley.csv").write_text(sample.read_text(encoding="utf-8").splitlines()[0] + "\n")
    assert flow_night(drop, tmp_path / "out")["status"] == "published"
    page = Page((tmp_path / "out" / "report" / "index.html").read_text(encoding="utf-8"))
    assert page.one("id", "banner")["text"].startswith("No patient is known.")


def test_a_rate_line_with_no_month_in_its_denominator_says_so():
    """A practice (or the population) whose denominator is empty every month gets a note, not a bare axis; a
    month without a rate breaks the line, and every month with one names its numbers on hover."""
    empty = [charts.RatePoint(date(2024, month, 28), 0, 0, None) for month in (1, 2, 3)]
    some = [charts.RatePoint(date(2024, 1, 28), 1, 4, 0.25), charts.RatePoint(date(2024, 2, 28), 0, 0, None),
            charts.RatePoint(date(2024, 3, 28), 3, 4, 0.75)]
    panels = charts.practice_trends_chart("practice-trends-x", "X: measures by month",
                                          [("Empty", empty, some), ("Some", some, some)], "X")
    assert panels.count("No patient in the denominator") == 1
    assert re.search(r'class="practice-rate" d="M[\d.]+ [\d.]+ M[\d.]+ [\d.]+"', panels)  # two points, no segment
    assert "<title>X, Jan 2024: 25 % (1 of 4)</title>" in panels and "Feb 2024" not in panels.split("<title>X, ")[-1]
    assert "No patient in the denominator" in charts.rate_trend_chart("rate-trend-x", "X: monthly trend", empty)
    assert "No patient in the denominator" not in charts.rate_trend_chart("rate-trend-x", "X: monthly trend", some)
