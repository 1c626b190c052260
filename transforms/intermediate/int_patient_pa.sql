-- grain: one patient with pernicious anaemia (PA) as of the as-of date; patients without PA have no row.
-- rule (CLINICAL_RULES section 4): PA is a diagnosis whose code system and normalised code are in the code
-- list pa_diagnosis (ICD-10 D51.0, ICD-9 281.0, SNOMED CT 84027009), or a counted positive intrinsic factor
-- antibody result, on or before as-of. A diagnosis without a recorded date counts: it is on the record now,
-- and dropping it would hide a PA patient from every monitoring rule.
with

settings as (
    select rules_settings.as_of
    from rules_settings
),

pa_codes as (
    select
        stg_rules_codes.code_system,
        stg_rules_codes.code_normalised
    from stg_rules_codes
    where stg_rules_codes.value_set = 'pa_diagnosis'
),

pa_diagnoses as (
    select
        stg_diagnoses.patient_id,
        min(stg_diagnoses.recorded_at) as first_evidence_on
    from stg_diagnoses
    inner join pa_codes
        on pa_codes.code_system = stg_diagnoses.code_system
       and pa_codes.code_normalised = stg_diagnoses.code_normalised
    cross join settings
    where stg_diagnoses.recorded_at <= settings.as_of
       or stg_diagnoses.recorded_at is null
    group by stg_diagnoses.patient_id
),

positive_if_antibody as (
    -- counted results are already limited to collection on or before as-of
    select
        int_classified_results.patient_id,
        min(int_classified_results.collected_on) as first_evidence_on
    from int_classified_results
    where int_classified_results.analyte = 'if_antibody'
      and int_classified_results.category = 'positive'
    group by int_classified_results.patient_id
),

final as (
    select
        coalesce(pa_diagnoses.patient_id, positive_if_antibody.patient_id) as patient_id,
        true as has_pa,
        case
            when pa_diagnoses.patient_id is not null and positive_if_antibody.patient_id is not null
                then 'diagnosis and if_antibody'
            when pa_diagnoses.patient_id is not null then 'diagnosis'
            else 'if_antibody'
        end as pa_evidence,
        least(pa_diagnoses.first_evidence_on, positive_if_antibody.first_evidence_on) as pa_first_evidence_on
    from pa_diagnoses
    full outer join positive_if_antibody
        on positive_if_antibody.patient_id = pa_diagnoses.patient_id
)

select * from final
