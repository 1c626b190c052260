"""The report's charts as the SVG they are: well-formed, self-contained, and drawing exactly their numbers."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from datetime import date

import pytest

from b12lab.report import charts

SVG = "{http://www.w3.org/2000/svg}"
THRESHOLDS = charts.B12Thresholds(150, 258, 300)
BARS = [charts.PracticeBars("Abbey Road Surgery", 3, 0, 5, 1), charts.PracticeBars("Elm <Grove> & Co", 0, 2, 1, 0)]
TREND = [charts.TrendPoint(date(2026, month, 28), month, 2 * month, 10) for month in (1, 2, 3)]
SHARES = [charts.ResponseShare("1m", "oral", 0.5, 0.2, 0.8, 2, 4), charts.ResponseShare("3m", "oral", None, None, None, 0, 0),
          charts.ResponseShare("1m", "intramuscular", 1.0, 0.6, 1.0, 3, 3)]


def every_chart() -> dict[str, str]:
    return {
        "practices": charts.practice_chart(BARS),
        "practices-empty": charts.practice_chart([]),
        "trend": charts.trend_chart(TREND),
        "trend-empty": charts.trend_chart([]),
        "b12-distribution": charts.b12_histogram([40.0, 99.5, 151.0, 300.0, 2000.0, 0.0], THRESHOLDS),
        "b12-empty": charts.b12_histogram([], THRESHOLDS),
        "treatment": charts.treatment_response_chart("treatment-response", ["1m", "3m"],
                                                     [("No longer deficient", SHARES), ("At target", [])],
                                                     ("No longer deficient", "1m", 0.885, "seed: 88.5 %")),
        "funnel": charts.funnel_chart("funnel-x", "X", [charts.FunnelPoint("A", 10, 0.2, "concern", True)],
                                      [charts.FunnelCurve(n, 0.1, 0.2, 0.3, 0.4) for n in range(1, 20)], 0.3),
        "practice-trends": charts.practice_trends_chart("practice-trends-a", "A", [], "A"),
        "rate-trend": charts.rate_trend_chart("rate-trend-x", "X", [charts.RatePoint(date(2026, 1, 31), 2, 10, 0.2),
                                                                   charts.RatePoint(date(2026, 2, 28), 0, 0, None)]),
    }


def test_the_rate_trend_names_its_line_and_its_bars_in_one_legend_row():
    root = ElementTree.fromstring(every_chart()["rate-trend"])
    labels = {text.text: float(text.get("y")) for text in root.iter(f"{SVG}text")}
    assert labels["All practices: rate"] == labels["Denominator (right axis)"]


@pytest.mark.parametrize("name", list(every_chart()))
def test_every_chart_is_one_well_formed_svg_element_with_its_label(name):
    svg = every_chart()[name]
    root = ElementTree.fromstring(svg)  # raises on a stray "<" or "&" from a practice's name
    assert root.tag == f"{SVG}svg" and root.get("role") == "img" and root.get("aria-label")
    assert not re.search(r"(href|src)=", svg)  # nothing to fetch


def test_the_histogram_draws_every_positive_result_once_in_bins_of_a_log_axis():
    root = ElementTree.fromstring(every_chart()["b12-distribution"])
    counts = [int(m.group(1)) for title in root.iter(f"{SVG}title")
              if (m := re.search(r": (\d+) results", title.text or ""))]
    assert sum(counts) == 5  # six values, one of them 0 (not on a log axis)
    labels = [text.text for text in root.iter(f"{SVG}text")]
    for label in ("Deficient below 150 pmol/L", "Borderline up to 258 pmol/L", "Treatment target above 300 pmol/L",
                  "Serum B12 (pmol/L, log scale)"):
        assert label in labels


def test_a_log_axis_names_1_2_and_5_times_each_power_of_ten_in_its_range():
    ticks = charts._log_ticks(36.0, 2200.0)
    assert [value for value, labelled in ticks if labelled] == [50, 100, 200, 500, 1000, 2000]
    assert all(36.0 <= value <= 2200.0 for value, _ in ticks)
    assert (40, False) in ticks and (3000, False) not in ticks


def test_each_practice_has_a_bar_per_cohort_naming_its_count_on_hover():
    root = ElementTree.fromstring(every_chart()["practices"])
    titles = [title.text for title in root.iter(f"{SVG}title")]
    assert len(titles) == 2 * 4
    assert "Abbey Road Surgery, Under-monitored: 5" in titles and "Elm <Grove> & Co, Borderline: 2" in titles
    # the practice with most patients first
    names = [text.text for text in root.iter(f"{SVG}text") if text.text in ("Abbey Road Surgery", "Elm <Grove> & Co")]
    assert names == ["Abbey Road Surgery", "Elm <Grove> & Co"]


def test_the_treatment_chart_draws_each_share_with_its_interval_and_count_and_the_reference():
    root = ElementTree.fromstring(every_chart()["treatment"])
    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert texts.count("n=4") == 1 and texts.count("n=3") == 1 and "n=0" not in texts  # no share: not drawn
    assert "No follow-up result yet" in texts  # the empty panel says why
    assert texts.count("seed: 88.5 %") == 2   # beside its star, and in the legend
    hovers = [title.text for title in root.iter(f"{SVG}title")]
    assert "oral, 1m: 2 of 4 (50 %, 95 % interval 20-80 %)" in hovers
