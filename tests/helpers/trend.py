"""The reference the trend must equal: one full publication build per date.

The models evaluate every month end in one set-based build (stg_as_of_dates, counted in cohort_counts). This
module keeps the per-date computation, so tests can compare the two: for each date, install the rules as of
that date, build every model as a publication does, and count the marts the way the report's headline does.
Slow (a build per date) and obviously right, which is the point. `month_ends` is the trend's dates in Python,
which stg_as_of_dates must equal.
"""
from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import date

import duckdb

from tests.helpers.models import build_models
from b12lab.report.charts import TrendPoint
from b12lab.rules.rules_file import Rules, install_rules


def month_ends(as_of: date, months: int) -> list[date]:
    """The last `months` month ends up to as_of, oldest first; the as-of month's point is as_of itself."""
    dates = []
    year, month = as_of.year, as_of.month
    for _ in range(months):
        end = date(year, month, calendar.monthrange(year, month)[1])
        dates.append(min(end, as_of))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return dates[::-1]


def headline_point(con: duckdb.DuckDBPyConnection, as_of: date) -> TrendPoint:
    """The trend's three counts from the marts of a publication build as of `as_of` (the dead keep their status
    row but count in no metric)."""
    deficient, borderline = con.execute(
        "select count(*) filter (where status = 'deficient'), "
        "count(*) filter (where status in ('borderline_needs_mma', 'borderline_mma_normal')) "
        "from patient_status where not deceased").fetchone()
    under_monitored = con.execute("select count(distinct patient_id) from cohort_under_monitored").fetchone()[0]
    return TrendPoint(as_of, int(deficient), int(borderline), int(under_monitored))


def trend_by_rebuilding(open_lake: Callable[[], duckdb.DuckDBPyConnection], rules: Rules,
                        dates: list[date]) -> list[TrendPoint]:
    """One full build per date: `open_lake()` returns a fresh connection holding the lake tables."""
    points = []
    for as_of in dates:
        with open_lake() as con:
            install_rules(con, rules, as_of)
            build_models(con, as_of=as_of)
            points.append(headline_point(con, as_of))
    return points
