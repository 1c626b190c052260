-- grain: one as-of date (stg_as_of_dates), practice (null: the whole population) and measure (seed measures).
-- rule: a measure is a rate whose numerator and denominator are metrics of cohort_counts (the seed names them),
-- so each is counted exactly as the report's counts are. Every practice with a patient on the date has a row
-- for every measure (a denominator of 0 gives no rate); overall_rate is the whole population's rate on the same
-- date, the centre of the funnel plot's control limits.
with

measures as (
    select measures.measure, measures.numerator, measures.denominator
    from {{ ref('measures') }} as measures
),

counts as (
    select cohort_counts.as_of, cohort_counts.practice, cohort_counts.metric, cohort_counts.patients
    from {{ ref('cohort_counts') }} as cohort_counts
),

measure_counts as (
    select
        denominators.as_of,
        denominators.practice,
        measures.measure,
        coalesce(numerators.patients, 0) as numerator,
        denominators.patients as denominator
    from measures
    inner join counts as denominators
        on denominators.metric = measures.denominator
    left join counts as numerators
        on numerators.metric = measures.numerator
       and numerators.as_of = denominators.as_of
       and numerators.practice is not distinct from denominators.practice
),

overall as (
    select
        measure_counts.as_of,
        measure_counts.measure,
        case when measure_counts.denominator > 0
             then measure_counts.numerator / measure_counts.denominator end as overall_rate
    from measure_counts
    where measure_counts.practice is null
),

final as (
    select
        measure_counts.as_of,
        measure_counts.practice,
        measure_counts.measure,
        measure_counts.numerator,
        measure_counts.denominator,
        case when measure_counts.denominator > 0
             then measure_counts.numerator / measure_counts.denominator end as rate,
        overall.overall_rate
    from measure_counts
    inner join overall
        on overall.as_of = measure_counts.as_of
       and overall.measure = measure_counts.measure
)

select * from final
