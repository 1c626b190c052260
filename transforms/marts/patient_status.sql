-- grain: one patient known from any input, with the patient-level status as of the run's as-of date.
-- rule: CLINICAL_RULES section 3, computed in int_status_on_date for the as-of date (see there): the index
-- result is the most recent b12 or holotc result within the lookback, and the status rules run top to
-- bottom (B12_DEFICIENT / HOLOTC_DEFICIENT, FUNCTIONAL_MMA, MMA_ON_SUPPLEMENT, BORDERLINE_MMA_NORMAL,
-- BORDERLINE_NEEDS_MMA, NORMAL, NO_RECENT_RESULT). index_value and index_unit are as the lab reported them
-- (what the clinician reads; index_comparator keeps "<" or ">" of a censored result), index_value_si in the
-- canonical unit. has_pa and on_b12 follow section 4 as of the same date.
with

settings as (
    select
        rules_settings.as_of,
        rules_settings.rules_version,
        rules_settings.rules_profile
    from rules_settings
),

status_as_of as (
    select int_status_on_date.*
    from int_status_on_date
    inner join settings
        on int_status_on_date.evaluated_on = settings.as_of
),

final as (
    select
        int_patients_known.patient_id,
        status_as_of.status,
        status_as_of.rule_id,
        status_as_of.index_analyte,
        status_as_of.index_value,
        status_as_of.index_unit,
        status_as_of.index_date,
        status_as_of.index_category,
        coalesce(int_patient_pa.has_pa, false) as has_pa,
        status_as_of.on_b12,
        status_as_of.index_comparator,
        status_as_of.index_value_si,
        status_as_of.index_unit_si,
        status_as_of.mma_value,
        status_as_of.mma_unit,
        status_as_of.mma_date,
        status_as_of.mma_category,
        int_patient_pa.pa_evidence,
        int_patient_b12_treatment.treatment_start,
        int_patients_known.practice,
        settings.as_of,
        settings.rules_version,
        settings.rules_profile
    from int_patients_known
    cross join settings
    inner join status_as_of
        on status_as_of.patient_id = int_patients_known.patient_id
    left join int_patient_pa
        on int_patient_pa.patient_id = int_patients_known.patient_id
    left join int_patient_b12_treatment
        on int_patient_b12_treatment.patient_id = int_patients_known.patient_id
    order by int_patients_known.patient_id
)

select * from final
