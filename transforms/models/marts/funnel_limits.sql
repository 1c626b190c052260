-- grain: one measure and denominator n, on the run's as_of.
-- rule: the control limits of int_funnel_limits (95 % and 99.8 % around the whole population's rate, the exact
-- binomial count quantile over n) for every practice's denominator and a grid of denominators from 1 to above
-- the largest practice's: the curves of the report's funnel plots, which the report draws without computing
-- (as steps: the limit of each n holds for n alone).
with

run_as_of as (
    select stg_run_as_of.as_of
    from {{ ref('stg_run_as_of') }} as stg_run_as_of
),

final as (
    select
        int_funnel_limits.as_of,
        int_funnel_limits.measure,
        int_funnel_limits.denominator,
        int_funnel_limits.overall_rate,
        int_funnel_limits.lower_95,
        int_funnel_limits.upper_95,
        int_funnel_limits.lower_998,
        int_funnel_limits.upper_998,
        int_funnel_limits.normal_approximation
    from {{ ref('int_funnel_limits') }} as int_funnel_limits
    inner join run_as_of
        on run_as_of.as_of = int_funnel_limits.as_of
    order by int_funnel_limits.measure, int_funnel_limits.denominator
)

select * from final
