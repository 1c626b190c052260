-- grain: one diagnosis record from the registry.
-- rule: codes are compared on code_normalised (upper case, dots and spaces removed). The lake already
-- carries it; it is recomputed here when missing so that a record is never lost to a null.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

diagnosis_records as (
    select
        diagnoses.patient_id,
        diagnoses.code_system,
        diagnoses.code,
        diagnoses.code_normalised,
        diagnoses.recorded_at
    from {{ rebuilt_patients_only(source('lake', 'diagnoses')) }} as diagnoses
),

final as (
    select
        diagnosis_records.patient_id,
        diagnosis_records.code_system,
        diagnosis_records.code,
        coalesce(
            diagnosis_records.code_normalised,
            upper(replace(replace(diagnosis_records.code, '.', ''), ' ', ''))
        ) as code_normalised,
        diagnosis_records.recorded_at
    from diagnosis_records
)

select * from {{ built_in_buckets_or('final') }}
