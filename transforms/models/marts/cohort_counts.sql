-- grain: one as-of date, practice (null: the whole population) and metric.
-- rule: the report's counts, each the number of distinct patients, computed once here so that the headline,
-- the practice table and the trend count the same way. Every date of stg_as_of_dates (the run's as_of and
-- the month ends of the trend) has the counts a date-dependent intermediate model gives: patients (every
-- patient known from any input, as patient_status counts them; one whose records all come later is
-- not_tested on the date), deficient, borderline (status_codes.cohort), borderline_needs_mma, borderline_mma_normal,
-- under_monitored and under_monitored.<reason>, and the terms of the report's measures (seed measures): tested
-- (status other than not_tested: a b12 or holotc result in the lookback), pa (PA known on the date),
-- deficient_without_pa, deficient_untreated (int_deficient_treatment), treated_3_6m_with_result and
-- treated_3_6m_at_target (int_treatment_response: 3-6 month windows with a b12 result, and those at target). The run's as_of also has the counts
-- only its marts hold: deficient_neuro, flagged (any flag) and flag.<flag>. A practice is the patient's
-- practice trimmed, "(no practice)" when there is none; every metric of a date has a row for the whole
-- population (a date before any patient was known included) and for every practice with a patient on that
-- date, 0 when none is counted. A patient deceased on a date (int_patient_status.deceased) is counted in no
-- metric of that date, patients included: the dead are in no numerator or denominator.
with

run_as_of as (
    select stg_run_as_of.as_of
    from {{ ref('stg_run_as_of') }} as stg_run_as_of
),

statuses as (
    select status_codes.status, status_codes.cohort
    from {{ ref('status_codes') }} as status_codes
),

patients_on_date as (
    select
        int_patient_status.as_of,
        int_patient_status.patient_id,
        int_patient_status.status,
        int_patient_status.has_pa,
        {{ practice_label('int_patient_status.practice') }} as practice
    from {{ ref('int_patient_status') }} as int_patient_status
    where int_patient_status.deceased is not true
),

every_date_members as (
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, 'patients' as metric
    from patients_on_date
    union all
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, statuses.cohort
    from patients_on_date
    inner join statuses on statuses.status = patients_on_date.status
    where statuses.cohort <> ''
    union all
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, patients_on_date.status
    from patients_on_date
    inner join statuses on statuses.status = patients_on_date.status
    where statuses.cohort = 'borderline'
    union all
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, 'under_monitored'
    from {{ ref('int_under_monitored') }} as int_under_monitored
    inner join patients_on_date
        on patients_on_date.as_of = int_under_monitored.as_of
        and patients_on_date.patient_id = int_under_monitored.patient_id
    union all
    select
        patients_on_date.as_of,
        patients_on_date.patient_id,
        patients_on_date.practice,
        'under_monitored.' || int_under_monitored.reason
    from {{ ref('int_under_monitored') }} as int_under_monitored
    inner join patients_on_date
        on patients_on_date.as_of = int_under_monitored.as_of
        and patients_on_date.patient_id = int_under_monitored.patient_id
    -- the denominators and numerators of the report's measures (seed measures)
    union all
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, 'tested'
    from patients_on_date
    where patients_on_date.status <> 'not_tested'
    union all
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, 'pa'
    from patients_on_date
    where patients_on_date.has_pa
    union all
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, 'deficient_without_pa'
    from patients_on_date
    where patients_on_date.status = 'deficient' and not patients_on_date.has_pa
    union all
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, 'deficient_untreated'
    from {{ ref('int_deficient_treatment') }} as int_deficient_treatment
    inner join patients_on_date
        on patients_on_date.as_of = int_deficient_treatment.as_of
        and patients_on_date.patient_id = int_deficient_treatment.patient_id
    where int_deficient_treatment.treatment = 'untreated'
    -- treated_at_target_3_6m: the 3-6 month windows of int_treatment_response with a b12 result, and those at target
    union all
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, 'treated_3_6m_with_result'
    from {{ ref('int_treatment_response') }} as int_treatment_response
    inner join patients_on_date
        on patients_on_date.as_of = int_treatment_response.as_of
        and patients_on_date.patient_id = int_treatment_response.patient_id
    where int_treatment_response.window = '3-6m' and int_treatment_response.result_date is not null
    union all
    select patients_on_date.as_of, patients_on_date.patient_id, patients_on_date.practice, 'treated_3_6m_at_target'
    from {{ ref('int_treatment_response') }} as int_treatment_response
    inner join patients_on_date
        on patients_on_date.as_of = int_treatment_response.as_of
        and patients_on_date.patient_id = int_treatment_response.patient_id
    where int_treatment_response.window = '3-6m' and int_treatment_response.at_target
),

run_date_members as (
    select run_as_of.as_of, cohort_deficient.patient_id, 'deficient_neuro' as metric
    from {{ ref('cohort_deficient') }} as cohort_deficient
    cross join run_as_of
    where cohort_deficient.neuro_involvement
    union all
    select run_as_of.as_of, patient_flags.patient_id, 'flagged'
    from {{ ref('patient_flags') }} as patient_flags
    cross join run_as_of
    union all
    select run_as_of.as_of, patient_flags.patient_id, 'flag.' || patient_flags.flag
    from {{ ref('patient_flags') }} as patient_flags
    cross join run_as_of
),

members as (
    select every_date_members.as_of, every_date_members.patient_id, every_date_members.practice,
           every_date_members.metric
    from every_date_members
    union all
    select run_date_members.as_of, run_date_members.patient_id, patients_on_date.practice, run_date_members.metric
    from run_date_members
    inner join patients_on_date
        on patients_on_date.as_of = run_date_members.as_of
        and patients_on_date.patient_id = run_date_members.patient_id
),

metrics as (
    select metric, every_date
    from (
        select 'patients' as metric, true as every_date
        union all select 'deficient', true
        union all select 'borderline', true
        union all select 'under_monitored', true
        union all select 'tested', true
        union all select 'pa', true
        union all select 'deficient_without_pa', true
        union all select 'deficient_untreated', true
        union all select 'treated_3_6m_with_result', true
        union all select 'treated_3_6m_at_target', true
        union all select 'deficient_neuro', false
        union all select 'flagged', false
    )
    union all
    select statuses.status, true
    from statuses
    where statuses.cohort = 'borderline'
    union all
    select 'under_monitored.' || reason_codes.reason, true
    from {{ ref('reason_codes') }} as reason_codes
    union all
    select 'flag.' || flag_codes.flag, false
    from {{ ref('flag_codes') }} as flag_codes
),

practices_on_date as (
    select distinct patients_on_date.as_of, patients_on_date.practice
    from patients_on_date
    union all
    select stg_as_of_dates.as_of, null
    from {{ ref('stg_as_of_dates') }} as stg_as_of_dates
),

grid as (
    select practices_on_date.as_of, practices_on_date.practice, metrics.metric
    from practices_on_date
    cross join metrics
    cross join run_as_of
    where metrics.every_date or practices_on_date.as_of = run_as_of.as_of
),

counted as (
    select members.as_of, members.practice, members.metric, count(distinct members.patient_id) as patients
    from members
    group by grouping sets ((members.as_of, members.practice, members.metric), (members.as_of, members.metric))
),

final as (
    select
        grid.as_of,
        grid.practice,
        grid.metric,
        coalesce(counted.patients, 0) as patients
    from grid
    left join counted
        on counted.as_of = grid.as_of
        and counted.metric = grid.metric
        and counted.practice is not distinct from grid.practice
    order by grid.as_of, grid.practice nulls first, grid.metric
)

select * from final
