-- grain: one patient of cohort_deficient: a row of the care teams' worklists/deficient/ files.
-- rule: the deficient patients in the order a care team should act on them, `position` 1 the most urgent:
-- neurological involvement first (the seed deficient_actions: seek urgent specialist advice); then untreated
-- before treated; then the lowest index value in pmol/L (b12 or holotc; an index not in pmol/L, the elevated MMA
-- of MMA_ON_SUPPLEMENT, after those); then the oldest index date; then patient_id, so the order never varies.
-- next_action and the situation are cohort_deficient's (deficient_actions by situation: neurological_involvement,
-- else untreated or treated; a treated patient is not told to start B12), as the worklist mart's DEFICIENT items. Values are written as the laboratory reported them
-- (comparator and number); practice is trimmed, "(no practice)" when there is none.
with

deficient_patients as (
    select
        cohort_deficient.*,
        case
            when cohort_deficient.index_unit_si = 'pmol/L' then cohort_deficient.index_value_si
        end as index_value_pmol_l
    from {{ ref('cohort_deficient') }} as cohort_deficient
),

prioritised as (
    select
        row_number() over (
            order by
                deficient_patients.neuro_involvement desc nulls last,
                deficient_patients.treatment = 'treated',
                deficient_patients.index_value_pmol_l asc nulls last,
                deficient_patients.index_date asc nulls last,
                deficient_patients.patient_id
        ) as position,
        deficient_patients.patient_id,
        {{ practice_label('deficient_patients.practice') }} as practice,
        deficient_patients.rule_id,
        deficient_patients.treatment,
        deficient_patients.index_analyte,
        {{ reported_value('deficient_patients.index_comparator', 'deficient_patients.index_value') }}
            as index_value,
        deficient_patients.index_unit,
        deficient_patients.index_date,
        deficient_patients.index_value_pmol_l,
        case
            when deficient_patients.mma_value is not null then {{ number_text('deficient_patients.mma_value') }}
        end as mma_value,
        deficient_patients.mma_unit,
        deficient_patients.mma_date,
        deficient_patients.has_pa,
        deficient_patients.on_b12,
        deficient_patients.treatment_start,
        deficient_patients.neuro_involvement,
        deficient_patients.neuro_detail,
        deficient_patients.next_action
    from deficient_patients
),

final as (
    select * from prioritised
    order by prioritised.position
)

select * from final
