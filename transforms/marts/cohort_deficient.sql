-- grain: one patient whose status as of the as-of date is deficient.
-- rule (CLINICAL_RULES section 5, Deficient): every patient with status deficient, with the rule_id and the
-- index result as reported (value, unit, date; for MMA_ON_SUPPLEMENT the index is the elevated MMA), and
-- treatment: "treated" when a B12 medication record is active on the index date (started on or before it,
-- no end date or ending after it) or starts on it or up to deficient_treated_within_days after it
-- (records starting after as-of are not yet known), else "untreated": the seed says these levels
-- "mandate urgent intervention", so the untreated are the ones to act on.
with

settings as (
    select
        rules_settings.as_of,
        rules_settings.deficient_treated_within_days
    from rules_settings
),

deficient_patients as (
    select patient_status.*
    from patient_status
    where patient_status.status = 'deficient'
),

treated_patients as (
    select distinct deficient_patients.patient_id
    from deficient_patients
    inner join stg_medications
        on stg_medications.patient_id = deficient_patients.patient_id
    cross join settings
    where stg_medications.is_b12_drug
      and stg_medications.start_date <= settings.as_of
      and (
          -- active on the index date
          (
              stg_medications.start_date <= deficient_patients.index_date
              and (stg_medications.end_date is null or stg_medications.end_date > deficient_patients.index_date)
          )
          -- or starting within the treatment window after it
          or stg_medications.start_date between deficient_patients.index_date
              and deficient_patients.index_date + settings.deficient_treated_within_days
      )
),

final as (
    select
        deficient_patients.patient_id,
        deficient_patients.rule_id,
        deficient_patients.index_value,
        deficient_patients.index_unit,
        deficient_patients.index_date,
        case when treated_patients.patient_id is not null then 'treated' else 'untreated' end as treatment,
        deficient_patients.index_analyte,
        deficient_patients.index_comparator,
        deficient_patients.index_value_si,
        deficient_patients.index_unit_si,
        deficient_patients.mma_value,
        deficient_patients.mma_unit,
        deficient_patients.mma_date,
        deficient_patients.has_pa,
        deficient_patients.on_b12,
        deficient_patients.treatment_start,
        deficient_patients.practice
    from deficient_patients
    left join treated_patients
        on treated_patients.patient_id = deficient_patients.patient_id
    order by deficient_patients.patient_id
)

select * from final
