"""Each chart drawn once per content (b12lab/report/chart_cache.py)."""
from __future__ import annotations

from datetime import date

from b12lab.report import charts
from b12lab.report.chart_cache import chart_cache

POINTS = [charts.TrendPoint(date(2026, 9, 30), 3, 5, 7), charts.TrendPoint(date(2026, 10, 31), 4, 5, 6)]


def test_a_chart_with_the_same_numbers_is_read_from_the_cache_and_other_numbers_are_drawn(tmp_path):
    folder = tmp_path / "charts"
    with chart_cache(folder):
        drawn = charts.trend_chart(POINTS)
    [kept] = folder.glob("*.svg")
    assert kept.read_text() == drawn == charts.trend_chart(POINTS)  # the same as drawn without a cache
    kept.write_text("<svg>kept</svg>")  # what the cache holds is what a second report shows
    with chart_cache(folder):
        assert charts.trend_chart(POINTS) == "<svg>kept</svg>"
        other = charts.trend_chart(POINTS[:1])
    assert other.startswith("<svg") and other != drawn
    assert len(list(folder.glob("*.svg"))) == 2


def test_after_a_report_only_the_charts_it_used_are_kept(tmp_path):
    folder = tmp_path / "charts"
    with chart_cache(folder):
        charts.trend_chart(POINTS)
    with chart_cache(folder):
        kept = charts.trend_chart(POINTS[:1])
    assert [path.read_text() for path in folder.glob("*.svg")] == [kept]


def test_without_a_cache_nothing_is_written(tmp_path):
    with chart_cache(None):
        assert charts.trend_chart(POINTS).startswith("<svg")
    assert list(tmp_path.iterdir()) == []
