-- grain: one patient and one date on which the patient-level status is evaluated.
-- rule: the status of CLINICAL_RULES section 3 is needed on the run's as-of date for every known patient
-- (patient_status), and on each date a folic acid record started, on or before as-of, for the patient who
-- received it (FOLATE_BEFORE_B12: "folic acid started while status was deficient or borderline_needs_mma").
-- Evaluating both with the same model keeps one definition of the status.
with

settings as (
    select rules_settings.as_of
    from rules_settings
),

as_of_dates as (
    select
        int_patients_known.patient_id,
        settings.as_of as evaluated_on
    from int_patients_known
    cross join settings
),

folic_acid_start_dates as (
    select
        stg_medications.patient_id,
        stg_medications.start_date as evaluated_on
    from stg_medications
    cross join settings
    where stg_medications.is_folic_acid
      and stg_medications.start_date <= settings.as_of
),

final as (
    select as_of_dates.patient_id, as_of_dates.evaluated_on from as_of_dates
    union
    select folic_acid_start_dates.patient_id, folic_acid_start_dates.evaluated_on from folic_acid_start_dates
)

select * from final
