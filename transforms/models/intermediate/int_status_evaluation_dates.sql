-- grain: one as-of date D (stg_as_of_dates), patient and date on which the patient-level status is evaluated
-- with what is known on D.
-- rule: the patient status (docs/models.md) is needed on D itself for every known patient
-- (patient_status), and on each date a folic acid record started, on or before D, for the patient who
-- received it (FOLATE_BEFORE_B12: "folic acid started while status was deficient or borderline_needs_mma").
-- Evaluating both with the same model keeps one definition of the status.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

as_of_dates as (
    select stg_as_of_dates.as_of
    from {{ ref('stg_as_of_dates') }} as stg_as_of_dates
),

as_of_evaluations as (
    select
        as_of_dates.as_of,
        int_patients_known.patient_id,
        as_of_dates.as_of as evaluated_on
    from {{ rebuilt_patients_only(ref('int_patients_known')) }} as int_patients_known
    cross join as_of_dates
),

folic_acid_start_dates as (
    select
        as_of_dates.as_of,
        stg_medications.patient_id,
        stg_medications.start_date as evaluated_on
    from {{ rebuilt_patients_only(ref('stg_medications')) }} as stg_medications
    inner join as_of_dates
        on stg_medications.start_date <= as_of_dates.as_of
    where stg_medications.is_folic_acid
),

final as (
    select as_of_evaluations.as_of, as_of_evaluations.patient_id, as_of_evaluations.evaluated_on
    from as_of_evaluations
    union
    select folic_acid_start_dates.as_of, folic_acid_start_dates.patient_id, folic_acid_start_dates.evaluated_on
    from folic_acid_start_dates
)

select * from {{ built_in_buckets_or('final') }}
