-- grain: one as-of date D (stg_as_of_dates) and patient with pernicious anaemia (PA) as of D; patients
-- without PA on D have no row for D.
-- rule (docs/models.md, PA and treatment): PA is a diagnosis whose code system and normalised code are in the code
-- list pa_diagnosis (ICD-10 D51.0, ICD-9 281.0, SNOMED CT 84027009), or a counted positive intrinsic factor
-- antibody result, on or before D. A diagnosis without a recorded date counts: it is on the record now,
-- and dropping it would hide a PA patient from every monitoring rule.
-- pa_first_evidence_on: the earliest dated evidence (a PA diagnosis's recorded_at or a positive IF antibody's
-- collection date); pa_has_undated_diagnosis: a PA diagnosis without a date is on record, which counts as
-- known long enough for PA_NOT_ON_TREATMENT (clinical rules release 2).
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

as_of_dates as (
    select stg_as_of_dates.as_of
    from {{ ref('stg_as_of_dates') }} as stg_as_of_dates
),

pa_codes as (
    select
        stg_rules_codes.code_system,
        stg_rules_codes.code_normalised
    from {{ ref('stg_rules_codes') }} as stg_rules_codes
    where stg_rules_codes.value_set = 'pa_diagnosis'
),

pa_diagnoses as (
    select
        as_of_dates.as_of,
        stg_diagnoses.patient_id,
        min(stg_diagnoses.recorded_at) as first_evidence_on,
        bool_or(stg_diagnoses.recorded_at is null) as has_undated_diagnosis
    from {{ rebuilt_patients_only(ref('stg_diagnoses')) }} as stg_diagnoses
    inner join pa_codes
        on pa_codes.code_system = stg_diagnoses.code_system
       and pa_codes.code_normalised = stg_diagnoses.code_normalised
    inner join as_of_dates
        on stg_diagnoses.recorded_at <= as_of_dates.as_of
        or stg_diagnoses.recorded_at is null
    group by as_of_dates.as_of, stg_diagnoses.patient_id
),

positive_if_antibody as (
    -- results counted on D are collected on or before D
    select
        as_of_dates.as_of,
        int_classified_results.patient_id,
        min(int_classified_results.collected_on) as first_evidence_on
    from {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
    inner join as_of_dates
        on as_of_dates.as_of between int_classified_results.counted_from and int_classified_results.counted_through
    where int_classified_results.analyte = 'if_antibody'
      and int_classified_results.category = 'positive'
    group by as_of_dates.as_of, int_classified_results.patient_id
),

final as (
    select
        coalesce(pa_diagnoses.as_of, positive_if_antibody.as_of) as as_of,
        coalesce(pa_diagnoses.patient_id, positive_if_antibody.patient_id) as patient_id,
        true as has_pa,
        case
            when pa_diagnoses.patient_id is not null and positive_if_antibody.patient_id is not null
                then 'diagnosis and if_antibody'
            when pa_diagnoses.patient_id is not null then 'diagnosis'
            else 'if_antibody'
        end as pa_evidence,
        least(pa_diagnoses.first_evidence_on, positive_if_antibody.first_evidence_on) as pa_first_evidence_on,
        coalesce(pa_diagnoses.has_undated_diagnosis, false) as pa_has_undated_diagnosis
    from pa_diagnoses
    full outer join positive_if_antibody
        on positive_if_antibody.patient_id = pa_diagnoses.patient_id
       and positive_if_antibody.as_of = pa_diagnoses.as_of
)

select * from {{ built_in_buckets_or('final') }}
