-- grain: one as-of date D (stg_as_of_dates) and patient with at least one B12 medication record started on
-- or before D.
-- rule (docs/models.md, PA and treatment): the treatment start S is the start date of the patient's first B12
-- medication record (hydroxocobalamin, cyanocobalamin or methylcobalamin, any route). Records that start
-- after D are not known on D and are ignored, so a report for a past date is reproducible; records without a
-- start date cannot place S and are ignored too.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

as_of_dates as (
    select stg_as_of_dates.as_of
    from {{ ref('stg_as_of_dates') }} as stg_as_of_dates
),

b12_records as (
    select
        as_of_dates.as_of,
        stg_medications.patient_id,
        stg_medications.start_date,
        stg_medications.end_date
    from {{ rebuilt_patients_only(ref('stg_medications')) }} as stg_medications
    inner join as_of_dates
        on stg_medications.start_date <= as_of_dates.as_of
    where stg_medications.is_b12_drug
),

final as (
    select
        b12_records.as_of,
        b12_records.patient_id,
        min(b12_records.start_date) as treatment_start,
        count(*) as b12_record_count
    from b12_records
    group by b12_records.as_of, b12_records.patient_id
)

select * from {{ built_in_buckets_or('final') }}
