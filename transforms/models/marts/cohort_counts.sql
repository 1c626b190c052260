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

-- A patient has one row of int_patient_status per date, in one practice: the metrics read from its columns are
-- counts of one scan by date, practice, status and PA, and a population count is the sum of its practices'
-- counts. The other metrics count distinct patients per practice, as a patient may have several rows there.
status_counts as (
    select
        patients_on_date.as_of,
        patients_on_date.practice,
        patients_on_date.status,
        patients_on_date.has_pa,
        count(*) as patients
    from patients_on_date
    group by patients_on_date.as_of, patients_on_date.practice, patients_on_date.status, patients_on_date.has_pa
),

status_metrics as (
    select status_counts.as_of, status_counts.practice, 'patients' as metric, status_counts.patients
    from status_counts
    union all
    select status_counts.as_of, status_counts.practice, statuses.cohort, status_counts.patients
    from status_counts
    inner join statuses on statuses.status = status_counts.status
    where statuses.cohort <> ''
    union all
    select status_counts.as_of, status_counts.practice, status_counts.status, status_counts.patients
    from status_counts
    inner join statuses on statuses.status = status_counts.status
    where statuses.cohort = 'borderline'
    -- the denominators and numerators of the report's measures (seed measures)
    union all
    select status_counts.as_of, status_counts.practice, 'tested', status_counts.patients
    from status_counts
    where status_counts.status <> 'not_tested'
    union all
    select status_counts.as_of, status_counts.practice, 'pa', status_counts.patients
    from status_counts
    where status_counts.has_pa
    union all
    select status_counts.as_of, status_counts.practice, 'deficient_without_pa', status_counts.patients
    from status_counts
    where status_counts.status = 'deficient' and not status_counts.has_pa
),

-- The other metrics' members: (date, patient, practice, metric) from the per-date models, one row per date,
-- patient and metric (each model's grain, which its unique test holds; a patient under-monitored for several
-- reasons, or with several flags, is one member of under_monitored and of flagged), so that a metric's count
-- is a count of rows: a count of distinct patients over 5M members cost about 10 s at 1M patients. Those models
-- already leave out a patient deceased on the date, and a patient's practice is the same on every date
-- (int_patients_known): each member takes its practice from its own row, or from the patient's, instead of a
-- join to every patient on every date (at 1M patients, 24M rows joined to 5M members cost half this model).
patient_practices as (
    select int_patients_known.patient_id, {{ practice_label('int_patients_known.practice') }} as practice
    from {{ ref('int_patients_known') }} as int_patients_known
),

every_date_members as (
    select distinct
        int_under_monitored.as_of,
        int_under_monitored.patient_id,
        {{ practice_label('int_under_monitored.practice') }} as practice,
        'under_monitored' as metric
    from {{ ref('int_under_monitored') }} as int_under_monitored
    union all
    select
        int_under_monitored.as_of,
        int_under_monitored.patient_id,
        {{ practice_label('int_under_monitored.practice') }},
        'under_monitored.' || int_under_monitored.reason
    from {{ ref('int_under_monitored') }} as int_under_monitored
    union all
    select int_deficient_treatment.as_of, int_deficient_treatment.patient_id, patient_practices.practice,
           'deficient_untreated'
    from {{ ref('int_deficient_treatment') }} as int_deficient_treatment
    inner join patient_practices on patient_practices.patient_id = int_deficient_treatment.patient_id
    where int_deficient_treatment.treatment = 'untreated'
    -- treated_at_target_3_6m: the 3-6 month windows of int_treatment_response with a b12 result, and those at target
    union all
    select
        int_treatment_response.as_of,
        int_treatment_response.patient_id,
        {{ practice_label('int_treatment_response.practice') }},
        'treated_3_6m_with_result'
    from {{ ref('int_treatment_response') }} as int_treatment_response
    where int_treatment_response.window = '3-6m' and int_treatment_response.result_date is not null
    union all
    select
        int_treatment_response.as_of,
        int_treatment_response.patient_id,
        {{ practice_label('int_treatment_response.practice') }},
        'treated_3_6m_at_target'
    from {{ ref('int_treatment_response') }} as int_treatment_response
    where int_treatment_response.window = '3-6m' and int_treatment_response.at_target
),

-- the run's as_of only: what only its marts hold, and its living patients' practices (read apart from
-- patients_on_date, which is then read once and never held whole: 24M rows at 1M patients)
run_date_patients as (
    select
        int_patient_status.as_of,
        int_patient_status.patient_id,
        {{ practice_label('int_patient_status.practice') }} as practice
    from {{ ref('int_patient_status') }} as int_patient_status
    inner join run_as_of on run_as_of.as_of = int_patient_status.as_of
    where int_patient_status.deceased is not true
),

run_date_members as (
    select cohort_deficient.patient_id, 'deficient_neuro' as metric
    from {{ ref('cohort_deficient') }} as cohort_deficient
    where cohort_deficient.neuro_involvement
    union all
    select distinct patient_flags.patient_id, 'flagged'
    from {{ ref('patient_flags') }} as patient_flags
    union all
    select patient_flags.patient_id, 'flag.' || patient_flags.flag
    from {{ ref('patient_flags') }} as patient_flags
),

other_members as (
    select every_date_members.as_of, every_date_members.patient_id, every_date_members.practice,
           every_date_members.metric
    from every_date_members
    union all
    select run_date_patients.as_of, run_date_patients.patient_id, run_date_patients.practice, run_date_members.metric
    from run_date_members
    inner join run_date_patients on run_date_patients.patient_id = run_date_members.patient_id
),

practice_counts as (
    select status_metrics.as_of, status_metrics.practice, status_metrics.metric, cast(sum(status_metrics.patients) as bigint) as patients
    from status_metrics
    group by status_metrics.as_of, status_metrics.practice, status_metrics.metric
    union all
    select other_members.as_of, other_members.practice, other_members.metric, count(*) as patients
    from other_members
    group by other_members.as_of, other_members.practice, other_members.metric
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
    select distinct status_counts.as_of, status_counts.practice
    from status_counts
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
    select practice_counts.as_of, practice_counts.practice, practice_counts.metric, practice_counts.patients
    from practice_counts
    union all
    select practice_counts.as_of, null, practice_counts.metric, cast(sum(practice_counts.patients) as bigint)
    from practice_counts
    group by practice_counts.as_of, practice_counts.metric
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
