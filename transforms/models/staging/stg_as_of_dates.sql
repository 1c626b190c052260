-- grain: one as-of date D that the models evaluate.
-- rule: a publication is as of one date, the run's as_of (stg_run_as_of), and it also holds the report's
-- trend: the last day of each of the trend_months - 1 months before the run's month (a dbt variable, 24 by
-- default), so this model holds trend_months dates, the run's as_of the latest. Every date-dependent rule
-- (which results count, lookbacks and windows, medication active on D, PA and treatment known on D, the
-- under-monitoring reasons) reads its dates from here and keeps them in its grain, so that one build
-- evaluates every date with the same definitions. The marts select the run's as_of; cohort_counts counts
-- every date.
with

run_as_of as (
    select stg_run_as_of.as_of
    from {{ ref('stg_run_as_of') }} as stg_run_as_of
),

months_before as (
    select range as months_back
    from range({{ var('trend_months') }})
),

month_ends as (
    select
        case
            when months_before.months_back = 0 then run_as_of.as_of
            else cast(last_day(run_as_of.as_of - to_months(months_before.months_back)) as date)
        end as as_of
    from run_as_of
    cross join months_before
),

final as (
    select distinct month_ends.as_of
    from month_ends
)

select * from final
