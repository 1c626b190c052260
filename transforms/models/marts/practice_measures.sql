-- grain: one as-of date (the run's as_of and each month end of the trend), practice (null: the whole
-- population) and measure (seed measures).
-- rule: each measure's numerator and denominator as cohort_counts counts them (int_measure_counts), the rate,
-- the whole population's rate on that date (overall_rate), and the funnel plot's control limits around it for
-- the practice's denominator (int_funnel_limits: 95 % and 99.8 %, the exact binomial count quantile over n).
-- position is "above" when rate > upper_998, "below" when rate < lower_998, else "within" (a difference that
-- chance explains): the limits the report draws are the ones the position is decided on. With exact limits a
-- rate above upper_998 is a count above the 0.999 binomial quantile (a tail probability of at most 0.001).
-- A denominator of 0 has no rate, no limits and no position.
-- Whether "above" is good or bad is the measure's better direction (seed measures).
with

measure_counts as (
    select int_measure_counts.*
    from {{ ref('int_measure_counts') }} as int_measure_counts
),

final as (
    select
        measure_counts.as_of,
        measure_counts.practice,
        measure_counts.measure,
        measure_counts.numerator,
        measure_counts.denominator,
        measure_counts.rate,
        measure_counts.overall_rate,
        int_funnel_limits.lower_95,
        int_funnel_limits.upper_95,
        int_funnel_limits.lower_998,
        int_funnel_limits.upper_998,
        case
            when measure_counts.rate is null or int_funnel_limits.denominator is null then null
            when measure_counts.rate > int_funnel_limits.upper_998 then 'above'
            when measure_counts.rate < int_funnel_limits.lower_998 then 'below'
            else 'within'
        end as position
    from measure_counts
    left join {{ ref('int_funnel_limits') }} as int_funnel_limits
        on int_funnel_limits.as_of = measure_counts.as_of
       and int_funnel_limits.measure = measure_counts.measure
       and int_funnel_limits.denominator = measure_counts.denominator
    order by measure_counts.as_of, measure_counts.measure, measure_counts.practice nulls first
)

select * from final
