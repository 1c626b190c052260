"""The reference the report's trend must equal: the way it was first computed, one full publication build
per date.

`pipelines.report.monthly_trend` evaluates every month end in one set-based build. This module keeps the
per-date computation it replaced, so tests can compare the two: for each date, install the rules as of that
date, build every model as a publication does, and count the marts the way the report's headline does.
Slow (a build per date) and obviously right, which is the point.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import date

import duckdb

from pipelines.models import build_models
from pipelines.report_charts import TrendPoint
from pipelines.rules import Rules, install_rules


def headline_point(con: duckdb.DuckDBPyConnection, as_of: date) -> TrendPoint:
    """The trend's three counts from the marts of a publication build as of `as_of`."""
    deficient, borderline = con.execute(
        "select count(*) filter (where status = 'deficient'), "
        "count(*) filter (where status in ('borderline_needs_mma', 'borderline_mma_normal')) "
        "from patient_status").fetchone()
    under_monitored = con.execute("select count(distinct patient_id) from cohort_under_monitored").fetchone()[0]
    return TrendPoint(as_of, int(deficient), int(borderline), int(under_monitored))


def trend_by_rebuilding(open_lake: Callable[[], duckdb.DuckDBPyConnection], rules: Rules,
                        dates: list[date]) -> list[TrendPoint]:
    """One full build per date: `open_lake()` returns a fresh connection holding the lake tables."""
    points = []
    for as_of in dates:
        with open_lake() as con:
            install_rules(con, rules, as_of)
            build_models(con)
            points.append(headline_point(con, as_of))
    return points
