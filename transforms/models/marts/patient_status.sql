-- grain: one patient known from any input, with the patient-level status as of the run's as-of date.
-- rule: docs/models.md, Patient status, computed in int_status_on_date for the as-of date (see there and
-- int_patient_status): the index result is the most recent b12 or holotc result within the lookback, and the
-- status rules run top to bottom (B12_DEFICIENT / HOLOTC_DEFICIENT, FUNCTIONAL_MMA, MMA_ON_SUPPLEMENT,
-- BORDERLINE_MMA_NORMAL, BORDERLINE_NEEDS_MMA, NORMAL, NO_RECENT_RESULT). index_value and index_unit are as
-- the lab reported them (what the clinician reads; index_comparator keeps "<" or ">" of a censored result),
-- index_value_si in the canonical unit. has_pa and on_b12 follow docs/models.md (PA and treatment) as of the same date.
-- deceased / deceased_on: the patient died on or before as-of (int_patient_status); such a patient keeps this row
-- and is in no cohort, reason, flag, worklist, measure or treatment_response.
{{ config(materialized='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"),
                  "{{ forget_rebuilt_patients(run_date_only=true) }}"]) }}
with

settings as (
    select
        stg_run_as_of.as_of,
        rules_settings.rules_version,
        rules_settings.rules_profile
    from {{ source('rules', 'rules_settings') }} as rules_settings
    cross join {{ ref('stg_run_as_of') }} as stg_run_as_of
),

status_as_of as (
    select int_patient_status.*
    from {{ rebuilt_patients_only(ref('int_patient_status')) }} as int_patient_status
    inner join settings
        on int_patient_status.as_of = settings.as_of
),

final as (
    select
        status_as_of.patient_id,
        status_as_of.status,
        status_as_of.rule_id,
        status_as_of.index_analyte,
        status_as_of.index_value,
        status_as_of.index_unit,
        status_as_of.index_date,
        status_as_of.index_category,
        status_as_of.has_pa,
        status_as_of.on_b12,
        status_as_of.index_comparator,
        status_as_of.index_value_si,
        status_as_of.index_unit_si,
        status_as_of.mma_value,
        status_as_of.mma_unit,
        status_as_of.mma_date,
        status_as_of.mma_category,
        status_as_of.pa_evidence,
        status_as_of.treatment_start,
        status_as_of.practice,
        status_as_of.deceased,
        status_as_of.deceased_on,
        settings.as_of,
        settings.rules_version,
        settings.rules_profile
    from status_as_of
    cross join settings
    order by status_as_of.patient_id
)

select * from {{ built_in_buckets_or('final') }}
