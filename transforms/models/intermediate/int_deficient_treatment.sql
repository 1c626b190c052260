-- grain: one as-of date D (stg_as_of_dates) and patient whose status as of D is deficient.
-- rule (docs/models.md, Deficient): treatment is "treated" when a B12 medication record known on D (started
-- on or before D) is active on the index date (started on or before it, no end date or ending after it) or
-- starts on it or up to deficient_treated_within_days after it, else "untreated". cohort_deficient reads this
-- model on the run's as_of; cohort_counts counts deficient_untreated on every date, so the report's measure
-- "deficient and untreated" has a trend computed by the same rule. A patient deceased on D is left out.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

settings as (
    select rules_settings.deficient_treated_within_days
    from {{ source('rules', 'rules_settings') }} as rules_settings
),

deficient_on_date as (
    select
        int_patient_status.as_of,
        int_patient_status.patient_id,
        int_patient_status.index_date
    from {{ rebuilt_patients_only(ref('int_patient_status')) }} as int_patient_status
    where int_patient_status.status = 'deficient'
      and int_patient_status.deceased is not true
),

treated_on_date as (
    select distinct deficient_on_date.as_of, deficient_on_date.patient_id
    from deficient_on_date
    inner join {{ rebuilt_patients_only(ref('stg_medications')) }} as stg_medications
        on stg_medications.patient_id = deficient_on_date.patient_id
    cross join settings
    where stg_medications.is_b12_drug
      and stg_medications.start_date <= deficient_on_date.as_of
      and (
          -- active on the index date
          (
              stg_medications.start_date <= deficient_on_date.index_date
              and (stg_medications.end_date is null or stg_medications.end_date > deficient_on_date.index_date)
          )
          -- or starting within the treatment window after it
          or stg_medications.start_date between deficient_on_date.index_date
              and deficient_on_date.index_date + settings.deficient_treated_within_days
      )
),

final as (
    select
        deficient_on_date.as_of,
        deficient_on_date.patient_id,
        case when treated_on_date.patient_id is not null then 'treated' else 'untreated' end as treatment
    from deficient_on_date
    left join treated_on_date
        on treated_on_date.as_of = deficient_on_date.as_of
       and treated_on_date.patient_id = deficient_on_date.patient_id
)

select * from {{ built_in_buckets_or('final') }}
