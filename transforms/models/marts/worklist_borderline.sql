-- grain: one patient of cohort_borderline: a row of the care teams' worklists/borderline/ files.
-- rule: the borderline patients in the order a care team should act on them, `position` 1 the most urgent: MMA
-- needed (mma_status needed: order one) before MMA normal; then the oldest index date; then patient_id, so the
-- order never varies. Values are written as the laboratory reported them (comparator and number); practice is
-- trimmed, "(no practice)" when there is none.
with

prioritised as (
    select
        row_number() over (
            order by
                cohort_borderline.mma_status <> 'needed',
                cohort_borderline.index_date asc nulls last,
                cohort_borderline.patient_id
        ) as position,
        cohort_borderline.patient_id,
        {{ practice_label('cohort_borderline.practice') }} as practice,
        cohort_borderline.rule_id,
        cohort_borderline.mma_status,
        cohort_borderline.index_analyte,
        {{ reported_value('cohort_borderline.index_comparator', 'cohort_borderline.index_value') }}
            as index_value,
        cohort_borderline.index_unit,
        cohort_borderline.index_date,
        case
            when cohort_borderline.mma_value is not null then {{ number_text('cohort_borderline.mma_value') }}
        end as mma_value,
        cohort_borderline.mma_unit,
        cohort_borderline.mma_date,
        cohort_borderline.has_pa,
        cohort_borderline.on_b12
    from {{ ref('cohort_borderline') }} as cohort_borderline
),

final as (
    select * from prioritised
    order by prioritised.position
)

select * from final
