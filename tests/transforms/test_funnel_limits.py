"""The funnel plots' control limits (int_funnel_limits) against hand-computed values, and practice_measures'
position, run as dbt compiles them on hand-made measure counts.

The exact limits are the binomial count quantile over n (Spiegelhalter, Statistics in Medicine 2005, without
his interpolation), worked here for p0 = 0.5, n = 20 and q = 0.975: P(X <= 13) = 0.942341 < 0.975 <=
P(X <= 14) = 0.979305, so r_q = 14 and the upper 95 % limit is 14 / 20 = 0.7. The other values were worked the
same way from the binomial probabilities (n choose r) p0^r (1 - p0)^(n - r).
"""
from __future__ import annotations

import datetime as dt
import random
from math import comb

import duckdb
import pytest

from tests.helpers.models import _create_seed, compiled_models, seeds

AS_OF = dt.date(2026, 10, 31)

# (p0, n) -> (lower_998, lower_95, upper_95, upper_998, below_if_fewer_than, above_if_more_than)
HAND_COMPUTED = {
    (0.5, 20): (0.15, 0.3, 0.7, 0.85, 3, 17),
    (0.1, 50): (0.0, 0.02, 0.18, 0.26, 0, 13),      # P(X = 0) = 0.005 >= 0.001: nothing can be below
    (0.3, 200): (0.205, 0.24, 0.365, 0.405, 41, 81),
    (0.62, 8): (0.125, 0.25, 0.875, 1.0, 1, 8),     # 8 of 8 has probability 0.022: not beyond 0.999
    (0.98, 1): (0.0, 0.98, 1.0, 1.0, 0, 1),         # r_q / n of 0.975 is 1, above p0: the lower 95 % is p0
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
    # every n up to the largest practice's times the headroom: the steps of the exact limits are drawn whole
    assert set(range(1, 111)) <= {n for n, _, _ in curve}
    # count quantiles over n step: from n to n + 1 a limit moves out by at most one count in n + 1, and the
    # funnel narrows overall
    widths = {n: upper - lower for n, lower, upper in curve}
    assert all(widths[n + 1] <= widths[n] + 2 / (n + 1) + 1e-9 for n in range(1, 110))
    assert widths[110] < widths[10] / 2


def test_a_rate_of_0_or_1_everywhere_has_limits_at_that_rate():
    con = limits_for([("A", 0, 10)], (0, 50))
    assert limits_row(con, 10) == (0.0, 0.0, 0.0, 0.0, None, None)
    assert con.execute("select position from practice_measures where practice = 'A'").fetchall() == [("within",)]
    con = limits_for([("A", 10, 10)], (50, 50))
    assert limits_row(con, 10) == (1.0, 1.0, 1.0, 1.0, None, None)


def position(con, practice: str) -> str:
    return con.execute("select position from practice_measures where practice = ?", [practice]).fetchall()[0][0]


def test_position_is_the_rate_against_the_drawn_limits_on_both_sides_of_each():
    # p0 = 0.5 and n = 20: limits 3 / 20 and 17 / 20 (hand-computed above); a rate on a limit is within
    units = [("At 17", 17, 20), ("At 18", 18, 20), ("At 3", 3, 20), ("At 2", 2, 20), ("Empty", 0, 0)]
    con = limits_for(units, (500, 1000))
    assert [position(con, name) for name, _, _ in units] == ["within", "above", "within", "below", None]
    # 8 of 8 at p0 = 0.62 (chance gives it 2 % of the time) is on the drawn upper 99.8 % limit, not above it
    con = limits_for([("Eight of eight", 8, 8), ("Seven of eight", 7, 8)], (620, 1000))
    rows = dict(con.execute("select practice, rate <= upper_998 from practice_measures where practice is not null"
                            ).fetchall())
    assert rows == {"Eight of eight": True, "Seven of eight": True}
    assert position(con, "Eight of eight") == "within"
    # and the whole population's own row is within its limits
    assert con.execute("select position from practice_measures where practice is null").fetchall() == [("within",)]


def test_position_against_the_normal_approximation_on_both_sides():
    # p0 = 0.2, n = 10,000: 99.8 % limits 0.2 -/+ 3.090232 * 0.004 = 0.187639 and 0.212361
    units = [("2124", 2124, 10_000), ("2123", 2123, 10_000), ("1877", 1877, 10_000), ("1876", 1876, 10_000)]
    con = limits_for(units, (4_000, 20_000))
    assert [position(con, name) for name, _, _ in units] == ["above", "within", "within", "below"]


def binomial_quantile(n: int, p0: float, q: float) -> int:
    cumulative = 0.0
    for r in range(n + 1):
        cumulative += comb(n, r) * p0 ** r * (1 - p0) ** (n - r)
        if cumulative >= q:
            return r
    return n


def test_an_outlier_is_a_count_beyond_the_binomial_quantile_for_every_unit():
    # many small units at p0 = 0.3: above exactly when the count is above the 0.999 quantile, below exactly
    # when it is under the 0.001 one (worked in Python, independently of the model)
    generator = random.Random(7)
    units = []
    for index in range(150):
        n = generator.randint(1, 60)
        units.append((f"U{index}", generator.choice([0, n, generator.randint(0, n)]), n))
    con = limits_for(units, (300, 1000))
    for name, count, n in units:
        above, below = binomial_quantile(n, 0.3, 0.999), binomial_quantile(n, 0.3, 0.001)
        expected = "above" if count > above else "below" if count < below else "within"
        assert position(con, name) == expected, (name, count, n)
    mismatched = con.execute("""select count(*) from practice_measures
        where position is distinct from (case when rate > upper_998 then 'above' when rate < lower_998 then 'below'
                                              when rate is not null then 'within' end)""").fetchone()[0]
    assert mismatched == 0
