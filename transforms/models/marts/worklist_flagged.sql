-- grain: one patient with at least one flag in patient_flags: a row of the care teams' worklists/flagged/ files,
-- all the patient's flags joined.
-- rule: flags and details list the patient's flags most urgent first (flag_codes.urgency, then the code), each
-- detail with its flag's date ("no date" when it has none); priority is the urgency of the most urgent flag;
-- next_action each flag's action once, most urgent first. The patients in the order a care team should act on
-- them, `position` 1 the most urgent: by priority; then the oldest flag date (none first); then patient_id, so
-- the order never varies. The status is patient_status'; practice is patient_status' trimmed, "(no practice)"
-- when there is none.
with

patient_flag_codes as (
    select
        patient_flags.patient_id,
        patient_flags.flag,
        patient_flags.flag_date,
        patient_flags.detail,
        flag_codes.urgency,
        flag_codes.next_action
    from {{ ref('patient_flags') }} as patient_flags
    inner join {{ ref('flag_codes') }} as flag_codes
        on flag_codes.flag = patient_flags.flag
),

flags as (
    select
        patient_flag_codes.patient_id,
        min(patient_flag_codes.urgency) as priority,
        min(patient_flag_codes.flag_date) as first_flag_date,
        string_agg(patient_flag_codes.flag, '; '
                   order by patient_flag_codes.urgency, patient_flag_codes.flag) as flags,
        string_agg(patient_flag_codes.flag
                   || ' (' || coalesce({{ iso_date('patient_flag_codes.flag_date') }}, 'no date') || '): '
                   || patient_flag_codes.detail, ' | '
                   order by patient_flag_codes.urgency, patient_flag_codes.flag) as details
    from patient_flag_codes
    group by patient_flag_codes.patient_id
),

distinct_actions as (
    -- each action once (two flags can share one), at the urgency of its most urgent flag
    select
        patient_flag_codes.patient_id,
        patient_flag_codes.next_action,
        min(patient_flag_codes.urgency) as urgency
    from patient_flag_codes
    group by patient_flag_codes.patient_id, patient_flag_codes.next_action
),

actions as (
    select
        distinct_actions.patient_id,
        string_agg(distinct_actions.next_action, '; '
                   order by distinct_actions.urgency, distinct_actions.next_action) as next_action
    from distinct_actions
    group by distinct_actions.patient_id
),

prioritised as (
    select
        row_number() over (
            order by
                flags.priority,
                flags.first_flag_date asc nulls first,
                flags.patient_id
        ) as position,
        flags.patient_id,
        {{ practice_label('patient_status.practice') }} as practice,
        flags.flags,
        flags.priority,
        flags.first_flag_date,
        patient_status.status,
        patient_status.rule_id,
        patient_status.has_pa,
        patient_status.on_b12,
        actions.next_action,
        flags.details
    from flags
    inner join {{ ref('patient_status') }} as patient_status
        on patient_status.patient_id = flags.patient_id
    left join actions
        on actions.patient_id = flags.patient_id
),

final as (
    select * from prioritised
    order by prioritised.position
)

select * from final
