-- grain: one patient known from any input (patient registry, diagnoses, medications or lab results).
-- rule (docs/models.md, Patient status): patient_status has a row for every known patient, tested or not, so the
-- spine is the union of every patient_id in every input; the registry adds practice, birth date and sex
-- when the patient is in it, with the death the registry records (death_date; deceased also when a FHIR
-- Patient says deceasedBoolean true without a date). Preliminary and future-dated results also make a patient known: they are
-- inputs, and "not tested" is the honest status for such a patient.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

patient_ids as (
    select patients.patient_id from {{ rebuilt_patients_only(source('lake', 'patients')) }} as patients
    union
    select diagnoses.patient_id from {{ rebuilt_patients_only(source('lake', 'diagnoses')) }} as diagnoses
    union
    select medications.patient_id from {{ rebuilt_patients_only(source('lake', 'medications')) }} as medications
    union
    select lab_results.patient_id from {{ rebuilt_patients_only(source('lake', 'lab_results')) }} as lab_results
),

registry as (
    select
        patients.patient_id,
        patients.birth_date,
        patients.sex,
        patients.practice,
        patients.death_date,
        coalesce(patients.deceased, patients.death_date is not null) as deceased,
        -- a patient in several registry files: the most recently ingested row wins (docs/data-model.md)
        row_number() over (
            partition by patients.patient_id
            order by patients.ingest_run desc nulls last, patients.source_file desc, patients.source_row desc
        ) as recency
    from {{ rebuilt_patients_only(source('lake', 'patients')) }} as patients
),

final as (
    select
        patient_ids.patient_id,
        registry.practice,
        registry.birth_date,
        registry.sex,
        registry.death_date,
        coalesce(registry.deceased, false) as deceased
    from patient_ids
    left join registry
        on registry.patient_id = patient_ids.patient_id
       and registry.recency = 1
    where patient_ids.patient_id is not null
)

select * from {{ built_in_buckets_or('final') }}
