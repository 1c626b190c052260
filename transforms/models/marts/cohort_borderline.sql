-- grain: one patient whose status as of the as-of date is of the borderline cohort (status_codes):
-- borderline_needs_mma or borderline_mma_normal.
-- rule (docs/models.md, Borderline): the index result (borderline b12 or indeterminate holotc) as
-- reported, and mma_status: "needed" when no MMA result lies in the MMA window around the index result
-- (BORDERLINE_NEEDS_MMA), "normal" when the window holds only normal MMA results (BORDERLINE_MMA_NORMAL).
-- A patient deceased on or before as-of is in no cohort. A borderline index with an elevated MMA is deficient (FUNCTIONAL_MMA) and is in cohort_deficient instead.
with

borderline_patients as (
    select patient_status.*
    from {{ ref('patient_status') }} as patient_status
    inner join {{ ref('status_codes') }} as status_codes
        on status_codes.status = patient_status.status
    where status_codes.cohort = 'borderline'
      and patient_status.deceased is not true
),

final as (
    select
        borderline_patients.patient_id,
        borderline_patients.rule_id,
        borderline_patients.index_value,
        borderline_patients.index_unit,
        borderline_patients.index_date,
        case borderline_patients.status
            when 'borderline_needs_mma' then 'needed'
            when 'borderline_mma_normal' then 'normal'
        end as mma_status,
        borderline_patients.index_analyte,
        borderline_patients.index_category,
        borderline_patients.index_comparator,
        borderline_patients.index_value_si,
        borderline_patients.index_unit_si,
        borderline_patients.mma_value,
        borderline_patients.mma_unit,
        borderline_patients.mma_date,
        borderline_patients.has_pa,
        borderline_patients.on_b12,
        borderline_patients.practice
    from borderline_patients
    order by borderline_patients.patient_id
)

select * from final
