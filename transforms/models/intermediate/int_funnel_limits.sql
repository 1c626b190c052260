-- grain: one as-of date, measure and denominator n: the funnel plot's control limits for a unit of n patients.
-- rule (Spiegelhalter, Statistics in Medicine 2005, "Funnel plots for comparing institutional performance"):
-- the limits are the quantiles of the rate a unit of n patients shows when its true rate is the overall rate
-- p0: 95 % limits at probabilities 0.025 and 0.975 (about 2 standard deviations), 99.8 % limits at 0.001 and
-- 0.999 (about 3). For n up to var funnel_exact_max_denominator, the exact binomial quantile, not interpolated:
-- r_q is the smallest r with P(X <= r) >= q for X ~ Binomial(n, p0), and the limit is r_q / n, so that a rate
-- above an upper limit is a count above r_q (a tail probability of at most 1 - q) and a rate below a lower
-- limit a count below r_q (a tail probability under q). The limits the report draws are therefore the limits a
-- practice's position is decided on (practice_measures: above when rate > upper_998, below when
-- rate < lower_998); drawn against n they are steps. Where a limit r_q / n falls on the wrong side of p0 (a few
-- patients and p0 near 0 or 1) it is p0 itself, which decides every count the same way (the binomial median
-- lies between floor(n p0) and ceil(n p0)). Spiegelhalter's interpolation between counts is not used: it
-- smooths the line but puts n of n above it for every small n (8 of 8 when p0 is 0.62, which chance gives 2 %
-- of the time), so the line would disagree with the counts (docs/clinical-decisions.md).
-- Above the exact range the normal approximation p0 +/- z * sqrt(p0 (1 - p0) / n), clipped to [0, 1] (seed
-- funnel_bounds: the probabilities and their z), which there differs from the exact limit by less than a tenth
-- of a percentage point. p0 of 0 or 1 gives limits of 0 or 1; no overall rate (no patient in the denominator)
-- gives no limits.
-- The denominators are every practice's on every date (practice_measures joins them) and, on the run's date,
-- a grid from 1 to above the largest practice's denominator for drawing the funnel (mart funnel_limits): every
-- n up to var funnel_grid_every_denominator_up_to, where the steps are wide, and log-spaced steps above.
with

run_as_of as (
    -- the latest date evaluated is the run's
    select max(stg_as_of_dates.as_of) as as_of
    from {{ ref('stg_as_of_dates') }} as stg_as_of_dates
),

unit_denominators as (
    select distinct
        int_measure_counts.as_of,
        int_measure_counts.measure,
        int_measure_counts.overall_rate as p0,
        int_measure_counts.denominator as n
    from {{ ref('int_measure_counts') }} as int_measure_counts
    where int_measure_counts.denominator > 0
      and int_measure_counts.overall_rate is not null
),

largest_on_run_date as (
    select
        int_measure_counts.as_of,
        int_measure_counts.measure,
        any_value(int_measure_counts.overall_rate) filter (where int_measure_counts.practice is null) as p0,
        greatest({{ var('funnel_grid_min_denominator') }}, max(int_measure_counts.denominator) filter (where int_measure_counts.practice is not null))
            as largest
    from {{ ref('int_measure_counts') }} as int_measure_counts
    inner join run_as_of
        on run_as_of.as_of = int_measure_counts.as_of
    group by int_measure_counts.as_of, int_measure_counts.measure
),

grid_denominators as (
    -- every n from 1 to var funnel_grid_every_denominator_up_to (the count quantile's steps are wide there),
    -- and var funnel_grid_steps steps evenly spaced on a log scale from 1 to a little above the largest practice
    select distinct
        largest_on_run_date.as_of,
        largest_on_run_date.measure,
        largest_on_run_date.p0,
        grid.n
    from largest_on_run_date
    cross join lateral (
        select cast(greatest(1, round(exp(ln(largest_on_run_date.largest * {{ var('funnel_grid_headroom') }})
                                          * steps.step / {{ var('funnel_grid_steps') }}))) as bigint) as n
        from range({{ var('funnel_grid_steps') }} + 1) as steps(step)
        union
        select every_n.n
        from range(1, {{ var('funnel_grid_every_denominator_up_to') }} + 1) as every_n(n)
        where every_n.n <= largest_on_run_date.largest * {{ var('funnel_grid_headroom') }}
    ) as grid
    where largest_on_run_date.p0 is not null
),

denominators as (
    select unit_denominators.as_of, unit_denominators.measure, unit_denominators.p0, unit_denominators.n
    from unit_denominators
    union
    select grid_denominators.as_of, grid_denominators.measure, grid_denominators.p0, grid_denominators.n
    from grid_denominators
),

probabilities as (
    select funnel_bounds.bound, funnel_bounds.probability as q, funnel_bounds.z
    from {{ ref('funnel_bounds') }} as funnel_bounds
),

exact_terms as (
    select
        terms.as_of,
        terms.measure,
        terms.p0,
        terms.n,
        terms.r,
        exp(lgamma(terms.n + 1) - lgamma(terms.r + 1) - lgamma(terms.n - terms.r + 1)
            + terms.r * ln(terms.p0) + (terms.n - terms.r) * ln(1 - terms.p0)) as probability_r
    from (
        select denominators.*, unnest(range(0, denominators.n + 1)) as r
        from denominators
        where denominators.n <= {{ var('funnel_exact_max_denominator') }}
          and denominators.p0 > 0
          and denominators.p0 < 1
    ) as terms
),

exact_cumulative as (
    select
        exact_terms.*,
        sum(exact_terms.probability_r) over (
            partition by exact_terms.as_of, exact_terms.measure, exact_terms.n
            order by exact_terms.r
            rows between unbounded preceding and current row
        ) as probability_up_to_r
    from exact_terms
),

exact_quantiles as (
    select
        exact_cumulative.as_of,
        exact_cumulative.measure,
        exact_cumulative.p0,
        exact_cumulative.n,
        probabilities.bound,
        min(exact_cumulative.r) filter (where exact_cumulative.probability_up_to_r >= probabilities.q) as r_q
    from exact_cumulative
    cross join probabilities
    group by exact_cumulative.as_of, exact_cumulative.measure, exact_cumulative.p0, exact_cumulative.n,
             probabilities.bound
),

exact_limits as (
    -- r_q / n, kept on its side of p0 (lower limits at most p0, upper at least p0)
    select
        exact_quantiles.as_of,
        exact_quantiles.measure,
        exact_quantiles.n,
        exact_quantiles.bound,
        case
            when exact_quantiles.bound like 'lower%' then least(exact_quantiles.p0, exact_quantiles.r_q / exact_quantiles.n)
            else greatest(exact_quantiles.p0, exact_quantiles.r_q / exact_quantiles.n)
        end as limit_value,
        exact_quantiles.r_q
    from exact_quantiles
),

other_limits as (
    -- p0 of 0 or 1 (every unit's rate is p0), or n above the exact range (normal approximation)
    select
        denominators.as_of,
        denominators.measure,
        denominators.n,
        probabilities.bound,
        case
            when denominators.p0 in (0, 1) then denominators.p0
            else least(1, greatest(0,
                denominators.p0
                + probabilities.z * sqrt(denominators.p0 * (1 - denominators.p0) / denominators.n)
            ))
        end as limit_value,
        cast(null as bigint) as r_q
    from denominators
    cross join probabilities
    where denominators.p0 in (0, 1) or denominators.n > {{ var('funnel_exact_max_denominator') }}
),

limits as (
    select * from exact_limits
    union all
    select * from other_limits
),

final as (
    select
        denominators.as_of,
        denominators.measure,
        denominators.n as denominator,
        denominators.p0 as overall_rate,
        max(limits.limit_value) filter (where limits.bound = 'lower_95') as lower_95,
        max(limits.limit_value) filter (where limits.bound = 'upper_95') as upper_95,
        max(limits.limit_value) filter (where limits.bound = 'lower_998') as lower_998,
        max(limits.limit_value) filter (where limits.bound = 'upper_998') as upper_998,
        max(limits.r_q) filter (where limits.bound = 'lower_998') as below_if_fewer_than,
        max(limits.r_q) filter (where limits.bound = 'upper_998') as above_if_more_than,
        denominators.n > {{ var('funnel_exact_max_denominator') }} and denominators.p0 > 0 and denominators.p0 < 1
            as normal_approximation
    from denominators
    inner join limits
        on limits.as_of = denominators.as_of
       and limits.measure = denominators.measure
       and limits.n = denominators.n
    group by denominators.as_of, denominators.measure, denominators.n, denominators.p0
)

select * from final
