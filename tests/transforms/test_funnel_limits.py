"""The funnel plots' control limits (int_funnel_limits) against hand-computed values, and practice_measures'
position, run as dbt compiles them on hand-made measure counts.

The exact limits follow Spiegelhalter (Statistics in Medicine 2005), worked here for p0 = 0.5, n = 20 and
q = 0.975: P(X <= 13) = 0.942341 < 0.975 <= P(X <= 14) = 0.979305, so r_q = 14, a = (0.979305 - 0.975) /
(0.979305 - 0.942341) = 0.116470, and the upper 95 % limit is (14 - 0.116470) / 20 = 0.694176. The other values
were worked the same way from the binomial probabilities (n choose r) p0^r (1 - p0)^(n - r).
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from tests.helpers.models import _create_seed, compiled_models, seeds

AS_OF = dt.date(2026, 10, 31)

# (p0, n) -> (lower_998, lower_95, upper_95, upper_998, below_if_fewer_than, above_if_more_than)
HAND_COMPUTED = {
    (0.5, 20): (0.136736, 0.255824, 0.694176, 0.813264, 3, 17),
    (0.1, 50): (0.0, 0.013863, 0.179723, 0.240128, 0, 13),      # lower 99.8 %: negative before clipping
    (0.3, 200): (0.200523, 0.235031, 0.362041, 0.400105, 41, 81),
    (0.62, 8): (0.012450, 0.197862, 0.871303, 0.994275, 1, 8),
}


def model_sql(name: str) -> str:
    return next(model.compiled for model in compiled_models() if model.name == name)


def limits_for(units: list[tuple[str | None, int, int]], overall: tuple[int, int]) -> duckdb.DuckDBPyConnection:
    """A connection holding int_measure_counts for one measure on AS_OF (units: practice, numerator,
    denominator; overall: the whole population's), with int_funnel_limits and practice_measures built."""
    con = duckdb.connect()
    con.execute("create table rules_settings as select $as_of::date as as_of", {"as_of": AS_OF})
    con.execute("create table stg_as_of_dates as select $as_of::date as as_of", {"as_of": AS_OF})
    _create_seed(con, seeds()["funnel_bounds"])
    con.execute("create table int_measure_counts (as_of date, practice varchar, measure varchar, numerator bigint, "
                "denominator bigint, rate double, overall_rate double)")
    numerator, denominator = overall
    p0 = numerator / denominator if denominator else None
    rows = [(None, numerator, denominator)] + units
    con.executemany("insert into int_measure_counts values (?, ?, 'm', ?, ?, ?, ?)",
                    [[AS_OF, practice, n, d, n / d if d else None, p0] for practice, n, d in rows])
    con.execute(f"create table int_funnel_limits as {model_sql('int_funnel_limits')}")
    con.execute(f"create table practice_measures as {model_sql('practice_measures')}")
    return con


def limits_row(con, denominator: int) -> tuple:
    return con.execute("select lower_998, lower_95, upper_95, upper_998, below_if_fewer_than, above_if_more_than "
                       "from int_funnel_limits where denominator = ?", [denominator]).fetchall()[0]


@pytest.mark.parametrize(("p0", "n"), list(HAND_COMPUTED))
def test_exact_limits_equal_the_hand_computed_values(p0, n):
    # a population of 1000 patients with rate p0 exactly, and one practice of n patients
    con = limits_for([("Practice A", 0, n)], (round(p0 * 1000), 1000))
    *limits, below, above = limits_row(con, n)
    expected = HAND_COMPUTED[(p0, n)]
    assert limits == pytest.approx(list(expected[:4]), abs=1e-6)
    assert (below, above) == expected[4:]


def test_large_denominators_use_the_normal_approximation():
    con = limits_for([("Big", 2000, 10_000)], (4_000, 20_000))  # p0 = 0.2
    lower_998, lower_95, upper_95, upper_998, below, above = limits_row(con, 10_000)
    sd = (0.2 * 0.8 / 10_000) ** 0.5
    assert (lower_95, upper_95) == pytest.approx((0.2 - 1.959964 * sd, 0.2 + 1.959964 * sd), abs=1e-9)
    assert (lower_998, upper_998) == pytest.approx((0.2 - 3.090232 * sd, 0.2 + 3.090232 * sd), abs=1e-9)
    assert (below, above) == (None, None)
    # and the exact limits just below the switch are within a tenth of a percentage point of it
    con = limits_for([("Exact", 1000, 5_000)], (4_000, 20_000))
    exact = limits_row(con, 5_000)[:4]
    sd = (0.2 * 0.8 / 5_000) ** 0.5
    normal = (0.2 - 3.090232 * sd, 0.2 - 1.959964 * sd, 0.2 + 1.959964 * sd, 0.2 + 3.090232 * sd)
    assert exact == pytest.approx(normal, abs=1e-3)


def test_limits_narrow_as_the_denominator_grows_and_the_grid_reaches_past_the_largest_practice():
    con = limits_for([("Small", 3, 10), ("Large", 30, 100)], (300, 1000))
    curve = con.execute("select denominator, lower_998, upper_998 from int_funnel_limits order by denominator"
                        ).fetchall()
    assert curve[0][0] == 1 and curve[-1][0] >= 110
    widths = [upper - lower for _, lower, upper in curve]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(widths[5:], widths[6:]))


def test_a_rate_of_0_or_1_everywhere_has_limits_at_that_rate():
    con = limits_for([("A", 0, 10)], (0, 50))
    assert limits_row(con, 10) == (0.0, 0.0, 0.0, 0.0, None, None)
    assert con.execute("select position from practice_measures where practice = 'A'").fetchall() == [("within",)]
    con = limits_for([("A", 10, 10)], (50, 50))
    assert limits_row(con, 10) == (1.0, 1.0, 1.0, 1.0, None, None)


def position(con, practice: str) -> str:
    return con.execute("select position from practice_measures where practice = ?", [practice]).fetchall()[0][0]


def test_position_is_decided_on_the_counts_at_the_binomial_quantiles():
    # p0 = 0.5 and n = 20: a count above 17 is above, below 3 is below (hand-computed above)
    units = [("At 17", 17, 20), ("At 18", 18, 20), ("At 3", 3, 20), ("At 2", 2, 20), ("Empty", 0, 0)]
    con = limits_for(units, (500, 1000))
    assert [position(con, name) for name, _, _ in units] == ["within", "above", "within", "below", None]
    # the interpolated line alone would call 8 of 8 above at p0 = 0.62; chance gives it 2 % of the time
    con = limits_for([("Eight of eight", 8, 8)], (620, 1000))
    (upper_998,), = con.execute("select upper_998 from practice_measures where practice = 'Eight of eight'"
                                ).fetchall()
    assert upper_998 < 1.0 and position(con, "Eight of eight") == "within"
    # and the whole population's own row is within its limits
    assert con.execute("select position from practice_measures where practice is null").fetchall() == [("within",)]
