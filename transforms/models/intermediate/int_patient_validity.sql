-- grain: one known patient, with valid_until: the first date after the run's as-of date D on which any of the
-- patient's rows in the patient-level models, as of D, might change as the as-of date moves on.
-- rule: a patient-level rule compares an as-of date with one of the patient's own dates e (a result's
-- collection, a medication's start or end, a diagnosis, the death) or with e plus a number of days k of the
-- rules (a lookback, a window's edge, a grace period: every *_days setting). Its outcome can only change on
-- e + k (the as-of date reaches it) or e + k + 1 (the as-of date passes it), k = 0 included. valid_until is
-- the earliest of those after D ('infinity' when there is none). A patient with an under-monitoring reason on
-- D is valid for one day: the reason's detail names dates counted back from D. The next night's build
-- rebuilds the patients whose valid_until has come (incremental.rebuild_patients) and carries everyone else's rows.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

run as (
    select stg_run_as_of.as_of
    from {{ ref('stg_run_as_of') }} as stg_run_as_of
),

day_offsets as (
    select 0 as days
    union
    select distinct settings.days
    from (
        unpivot (select columns('.*_days$') from {{ source('rules', 'rules_settings') }})
        on columns(*) into name setting value days
    ) as settings
    where settings.days > 0
),

patient_dates as (
    select lab_results.patient_id, cast(lab_results.collected_at as date) as on_date
    from {{ rebuilt_patients_only(source('lake', 'lab_results')) }} as lab_results
    union
    select stg_medications.patient_id, stg_medications.start_date
    from {{ rebuilt_patients_only(ref('stg_medications')) }} as stg_medications
    union
    select stg_medications.patient_id, stg_medications.end_date
    from {{ rebuilt_patients_only(ref('stg_medications')) }} as stg_medications
    union
    select stg_diagnoses.patient_id, cast(stg_diagnoses.recorded_at as date)
    from {{ rebuilt_patients_only(ref('stg_diagnoses')) }} as stg_diagnoses
    union
    select int_patients_known.patient_id, int_patients_known.death_date
    from {{ rebuilt_patients_only(ref('int_patients_known')) }} as int_patients_known
),

boundaries as (
    select patient_dates.patient_id, min(patient_dates.on_date + day_offsets.days + passed.day) as first_boundary
    from patient_dates
    cross join day_offsets
    cross join (values (0), (1)) as passed (day)
    cross join run
    where patient_dates.on_date + day_offsets.days + passed.day > run.as_of
    group by patient_dates.patient_id
),

reason_today as (
    select distinct int_under_monitored.patient_id
    from {{ rebuilt_patients_only(ref('int_under_monitored')) }} as int_under_monitored
    inner join run
        on int_under_monitored.as_of = run.as_of
),

final as (
    select
        int_patients_known.patient_id,
        case
            when int_patients_known.patient_id in (select reason_today.patient_id from reason_today)
                then run.as_of + 1
            else coalesce(boundaries.first_boundary, date 'infinity')
        end as valid_until
    from {{ rebuilt_patients_only(ref('int_patients_known')) }} as int_patients_known
    cross join run
    left join boundaries
        on boundaries.patient_id = int_patients_known.patient_id
)

select * from {{ built_in_buckets_or('final') }}
