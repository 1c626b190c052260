-- grain: one as-of date D (stg_as_of_dates) and patient known from any input, with the patient-level status
-- as of D.
-- rule: the patient status (docs/models.md), computed in int_status_on_date for D itself (see there): the index result
-- is the most recent b12 or holotc result within the lookback, and the status rules run top to bottom
-- (B12_DEFICIENT / HOLOTC_DEFICIENT, FUNCTIONAL_MMA, MMA_ON_SUPPLEMENT, BORDERLINE_MMA_NORMAL,
-- BORDERLINE_NEEDS_MMA, NORMAL, NO_RECENT_RESULT). has_pa and treatment_start follow docs/models.md (PA and treatment) as of D.
-- deceased (clinical rules release 3): the patient died on or before D (a death date on or before D, or a death
-- without a date, which counts as on or before any D); deceased_on is that death date. A deceased patient keeps
-- this row, and every cohort, reason, flag, worklist, measure and treatment_response leaves them out as of D;
-- on an earlier D, while alive, they count.
-- patient_status is this model on the run's as_of; the report's trend counts it on every month end.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

status_on_as_of as (
    select int_status_on_date.*
    from {{ rebuilt_patients_only(ref('int_status_on_date')) }} as int_status_on_date
    where int_status_on_date.evaluated_on = int_status_on_date.as_of
),

final as (
    select
        status_on_as_of.as_of,
        int_patients_known.patient_id,
        status_on_as_of.status,
        status_on_as_of.rule_id,
        status_on_as_of.index_analyte,
        status_on_as_of.index_value,
        status_on_as_of.index_unit,
        status_on_as_of.index_date,
        status_on_as_of.index_category,
        coalesce(int_patient_pa.has_pa, false) as has_pa,
        status_on_as_of.on_b12,
        status_on_as_of.index_comparator,
        status_on_as_of.index_value_si,
        status_on_as_of.index_unit_si,
        status_on_as_of.mma_value,
        status_on_as_of.mma_unit,
        status_on_as_of.mma_date,
        status_on_as_of.mma_category,
        int_patient_pa.pa_evidence,
        int_patient_b12_treatment.treatment_start,
        int_patients_known.practice,
        int_patients_known.deceased
            and coalesce(int_patients_known.death_date <= status_on_as_of.as_of, true) as deceased,
        case
            when int_patients_known.death_date <= status_on_as_of.as_of then int_patients_known.death_date
        end as deceased_on
    from status_on_as_of
    inner join {{ rebuilt_patients_only(ref('int_patients_known')) }} as int_patients_known
        on int_patients_known.patient_id = status_on_as_of.patient_id
    left join {{ rebuilt_patients_only(ref('int_patient_pa')) }} as int_patient_pa
        on int_patient_pa.patient_id = int_patients_known.patient_id
       and int_patient_pa.as_of = status_on_as_of.as_of
    left join {{ rebuilt_patients_only(ref('int_patient_b12_treatment')) }} as int_patient_b12_treatment
        on int_patient_b12_treatment.patient_id = int_patients_known.patient_id
       and int_patient_b12_treatment.as_of = status_on_as_of.as_of
)

select * from {{ built_in_buckets_or('final') }}
