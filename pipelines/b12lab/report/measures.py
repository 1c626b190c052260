"""The report's quality indicators, read from the marts `practice_measures` and `funnel_limits` and the seed
`measures`: rates with their denominators and funnel-plot control limits, computed by the models; this module
only selects them.

A measure's `position` (above, below or within its 99.8 % limits) is the model's; whether that is good or bad
is the measure's `better` direction: a practice is a concern when it is below on a measure where higher is
better, or above on one where lower is better.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import duckdb


@dataclass(frozen=True)
class Measure:
    code: str
    label: str
    definition: str
    better: str            # higher or lower
    enabled_setting: str   # empty when always on
    source: str


@dataclass(frozen=True)
class Rate:
    """One unit's measure on one date (practice None: the whole population)."""
    as_of: date
    practice: str | None
    numerator: int
    denominator: int
    rate: float | None
    overall_rate: float | None
    lower_95: float | None
    upper_95: float | None
    lower_998: float | None
    upper_998: float | None
    position: str | None

    @property
    def is_outlier(self) -> bool:
        return self.position in ("above", "below")


@dataclass(frozen=True)
class Limits:
    denominator: int
    lower_95: float
    upper_95: float
    lower_998: float
    upper_998: float


@dataclass
class MeasureData:
    measure: Measure
    population: Rate | None                          # the run's date, whole population
    practices: list[Rate] = field(default_factory=list)   # the run's date, one per practice
    curve: list[Limits] = field(default_factory=list)     # funnel_limits, by denominator
    trend: dict[str | None, list[Rate]] = field(default_factory=dict)  # practice (None: all) -> oldest first

    def concern(self, rate: Rate) -> bool:
        """An outlier on the side where the measure is worse."""
        return (rate.position == "below" and self.measure.better == "higher") or \
               (rate.position == "above" and self.measure.better == "lower")

    @property
    def outliers(self) -> list[Rate]:
        return [rate for rate in self.practices if rate.is_outlier]

    def practice(self, name: str) -> Rate | None:
        return next((rate for rate in self.practices if rate.practice == name), None)


def read_measures(con: duckdb.DuckDBPyConnection) -> list[MeasureData]:
    """Every measure of the seed, in its display order, with its rates on the run's date and every trend date."""
    measures = [Measure(code, label, definition, better, enabled_setting or "", source)
                for code, label, definition, better, enabled_setting, source in con.execute(
                    "select measure, label, definition, better, enabled_setting, source from measures "
                    "order by display_order, measure").fetchall()]
    (as_of,), = con.execute("select as_of from rules_settings").fetchall()
    data = {measure.code: MeasureData(measure, None) for measure in measures}
    for row in con.execute("""
            select measure, as_of, practice, numerator, denominator, rate, overall_rate,
                   lower_95, upper_95, lower_998, upper_998, position
            from practice_measures
            order by measure, as_of, practice nulls first""").fetchall():
        code, *values = row
        rate = Rate(*values)
        item = data.get(code)
        if item is None:
            continue
        item.trend.setdefault(rate.practice, []).append(rate)
        if rate.as_of == as_of:
            if rate.practice is None:
                item.population = rate
            else:
                item.practices.append(rate)
    for code, denominator, *limits in con.execute("""
            select measure, denominator, lower_95, upper_95, lower_998, upper_998
            from funnel_limits order by measure, denominator""").fetchall():
        if code in data:
            data[code].curve.append(Limits(int(denominator), *limits))
    return [data[measure.code] for measure in measures]


def last_data_received(con: duckdb.DuckDBPyConnection):
    """When the lake last committed a file with an accepted row (None: never)."""
    (when,), = con.execute(
        "select max(committed_at) filter (where rows_accepted > 0) from ingested_files").fetchall()
    return when
