-- grain: one patient and item as of the as-of date: an under-monitoring reason (cohort_under_monitored), a
-- flag (patient_flags), DEFICIENT (cohort_deficient) or BORDERLINE_NEEDS_MMA (cohort_borderline, mma_status
-- needed); a patient has a row for each item that applies to them.
-- rule: the care teams' worklist, one thing to do per row. urgency and next_action are the item's in
-- worklist_items, which numbers every item 1, 2, 3... (1 the most urgent) in the order of the tiers of the seed
-- worklist_tiers and, within a tier, of the item's own table:
--   1  DEFICIENT with neurological involvement (deficient_actions: seek urgent specialist advice)
--   2  the flag FOLATE_BEFORE_B12 (folic acid before B12 can mask the anaemia while nerve damage goes on)
--   3  DEFICIENT, untreated
--   4  every under-monitoring reason, by reason_codes.urgency
--   5  every other flag, by flag_codes.urgency
--   6  DEFICIENT, treated
--   7  BORDERLINE_NEEDS_MMA
-- (with the seed vocabulary: 1 to 3, then the nine reasons 4 to 12, the four other flags 13 to 16, 17 and 18).
-- next_action: reason_codes, flag_codes, cohort_deficient's for DEFICIENT (deficient_actions by situation:
-- neurological_involvement, else untreated or treated; a treated patient is not told to start B12), and the tier's own for BORDERLINE_NEEDS_MMA (order MMA).
-- open_since, since when the gap is open: for a reason its open_since (the day its window closed, see
-- int_under_monitored), or the index date of the patient's status when the reason has none; for a flag its
-- flag_date; for DEFICIENT and BORDERLINE_NEEDS_MMA the index date. practice: the patient's practice (patient_status)
-- trimmed, "(no practice)" when there is none. detail says in words what is behind the item; never the patient.
-- An untreated deficient patient with an earlier B12 record says so, lest its treatment_start read as treatment:
-- "previous course started <date>, not active on <as_of>", or, when a course is active on as_of but began too
-- late to count, "B12 first started <date>, none active on the result's date or started within <n> days after".
with

settings as (
    select run_as_of.as_of, rules_settings.deficient_treated_within_days
    from {{ source('rules', 'rules_settings') }} as rules_settings
    cross join {{ ref('stg_run_as_of') }} as run_as_of
),

urgency_scale as (
    select worklist_items.item, worklist_items.code, worklist_items.urgency, worklist_items.next_action
    from {{ ref('worklist_items') }} as worklist_items
),

reason_items as (
    select
        cohort_under_monitored.patient_id,
        cohort_under_monitored.reason as item,
        cohort_under_monitored.reason as code,
        cohort_under_monitored.detail,
        cohort_under_monitored.open_since,
        null as next_action
    from {{ ref('cohort_under_monitored') }} as cohort_under_monitored
),

flag_items as (
    select
        patient_flags.patient_id,
        patient_flags.flag as item,
        patient_flags.flag as code,
        patient_flags.detail,
        patient_flags.flag_date as open_since,
        null as next_action
    from {{ ref('patient_flags') }} as patient_flags
),

deficient_items as (
    select
        cohort_deficient.patient_id,
        'DEFICIENT' as item,
        cohort_deficient.situation as code,
        cohort_deficient.rule_id || ': ' || cohort_deficient.index_analyte || ' '
            || {{ reported_value('cohort_deficient.index_comparator', 'cohort_deficient.index_value') }}
            || coalesce(' ' || cohort_deficient.index_unit, '')
            || ' on ' || {{ iso_date('cohort_deficient.index_date') }}
            || '; ' || cohort_deficient.treatment
            || case
                when cohort_deficient.treatment <> 'untreated' or cohort_deficient.treatment_start is null then ''
                when cohort_deficient.on_b12 then
                    ' (B12 first started ' || {{ iso_date('cohort_deficient.treatment_start') }}
                    || ', none active on the result''s date or started within '
                    || settings.deficient_treated_within_days || ' days after)'
                else ' (previous course started ' || {{ iso_date('cohort_deficient.treatment_start') }}
                    || ', not active on ' || {{ iso_date('settings.as_of') }} || ')'
            end
            || coalesce('; neurological features: ' || cohort_deficient.neuro_detail, '')
            as detail,
        cohort_deficient.index_date as open_since,
        cohort_deficient.next_action
    from {{ ref('cohort_deficient') }} as cohort_deficient
    cross join settings
),

borderline_items as (
    select
        cohort_borderline.patient_id,
        'BORDERLINE_NEEDS_MMA' as item,
        'needs_mma' as code,
        cohort_borderline.index_category || ' ' || cohort_borderline.index_analyte || ' '
            || {{ reported_value('cohort_borderline.index_comparator', 'cohort_borderline.index_value') }}
            || coalesce(' ' || cohort_borderline.index_unit, '')
            || ' on ' || {{ iso_date('cohort_borderline.index_date') }}
            || '; no mma result around it: MMA needed'
            as detail,
        cohort_borderline.index_date as open_since,
        null as next_action
    from {{ ref('cohort_borderline') }} as cohort_borderline
    where cohort_borderline.mma_status = 'needed'
),

all_items as (
    select * from reason_items
    union all
    select * from flag_items
    union all
    select * from deficient_items
    union all
    select * from borderline_items
),

final as (
    select
        {{ practice_label('patient_status.practice') }} as practice,
        all_items.patient_id,
        all_items.item,
        urgency_scale.urgency,
        coalesce(all_items.next_action, urgency_scale.next_action) as next_action,
        all_items.detail,
        coalesce(all_items.open_since, patient_status.index_date) as open_since
    from all_items
    left join urgency_scale
        on urgency_scale.item = all_items.item
       and urgency_scale.code = all_items.code
    left join {{ ref('patient_status') }} as patient_status
        on patient_status.patient_id = all_items.patient_id
    order by
        {{ practice_label('patient_status.practice') }},
        urgency_scale.urgency,
        coalesce(all_items.open_since, patient_status.index_date) nulls first,
        all_items.patient_id,
        all_items.item
)

select * from final
