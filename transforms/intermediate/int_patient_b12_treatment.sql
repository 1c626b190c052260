-- grain: one patient with at least one B12 medication record started on or before as-of.
-- rule (CLINICAL_RULES section 4): the treatment start S is the start date of the patient's first B12
-- medication record (hydroxocobalamin, cyanocobalamin or methylcobalamin, any route). Records that start
-- after as-of are not known on the as-of date and are ignored, so a report for a past date is reproducible;
-- records without a start date cannot place S and are ignored too.
with

settings as (
    select rules_settings.as_of
    from rules_settings
),

b12_records as (
    select
        stg_medications.patient_id,
        stg_medications.start_date,
        stg_medications.end_date
    from stg_medications
    cross join settings
    where stg_medications.is_b12_drug
      and stg_medications.start_date <= settings.as_of
),

final as (
    select
        b12_records.patient_id,
        min(b12_records.start_date) as treatment_start,
        count(*) as b12_record_count
    from b12_records
    group by b12_records.patient_id
)

select * from final
