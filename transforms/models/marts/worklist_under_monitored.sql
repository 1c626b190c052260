-- grain: one patient with at least one reason in cohort_under_monitored: a row of the care teams'
-- worklists/under_monitored/ files, all the patient's reasons joined.
-- rule: reasons and details list the patient's reasons most urgent first (reason_codes.urgency, then the code);
-- priority is the urgency of the most urgent; next_action each reason's action once, most urgent first. The
-- patients in the order a care team should act on them, `position` 1 the most urgent: deficient patients with
-- neurological involvement (cohort_deficient) first; then by priority; then the oldest last monitoring test (the
-- latest b12, holotc or mma result with a category in result_classification; never tested first); then the
-- oldest index date (none first); then patient_id, so the order never varies. The status and index result are
-- patient_status', values as the laboratory reported them; practice is patient_status' trimmed, "(no practice)"
-- when there is none.
with

patient_reasons as (
    select
        cohort_under_monitored.patient_id,
        cohort_under_monitored.reason,
        cohort_under_monitored.detail,
        reason_codes.urgency,
        reason_codes.next_action
    from {{ ref('cohort_under_monitored') }} as cohort_under_monitored
    inner join {{ ref('reason_codes') }} as reason_codes
        on reason_codes.reason = cohort_under_monitored.reason
),

reasons as (
    select
        patient_reasons.patient_id,
        min(patient_reasons.urgency) as priority,
        string_agg(patient_reasons.reason, '; '
                   order by patient_reasons.urgency, patient_reasons.reason) as reasons,
        string_agg(patient_reasons.reason || ': ' || patient_reasons.detail, ' | '
                   order by patient_reasons.urgency, patient_reasons.reason) as details
    from patient_reasons
    group by patient_reasons.patient_id
),

distinct_actions as (
    -- each action once (two reasons can share one), at the urgency of its most urgent reason
    select
        patient_reasons.patient_id,
        patient_reasons.next_action,
        min(patient_reasons.urgency) as urgency
    from patient_reasons
    group by patient_reasons.patient_id, patient_reasons.next_action
),

actions as (
    select
        distinct_actions.patient_id,
        string_agg(distinct_actions.next_action, '; '
                   order by distinct_actions.urgency, distinct_actions.next_action) as next_action
    from distinct_actions
    group by distinct_actions.patient_id
),

last_test as (
    select
        result_classification.patient_id,
        max(result_classification.collected_on) as last_test_date
    from {{ ref('result_classification') }} as result_classification
    where result_classification.analyte in ('b12', 'holotc', 'mma')
      and result_classification.category is not null
    group by result_classification.patient_id
),

prioritised as (
    select
        row_number() over (
            order by
                coalesce(cohort_deficient.neuro_involvement, false) desc,
                reasons.priority,
                last_test.last_test_date asc nulls first,
                patient_status.index_date asc nulls first,
                patient_status.patient_id
        ) as position,
        patient_status.patient_id,
        {{ practice_label('patient_status.practice') }} as practice,
        reasons.reasons,
        reasons.priority,
        last_test.last_test_date,
        patient_status.status,
        patient_status.rule_id,
        patient_status.index_analyte,
        {{ reported_value('patient_status.index_comparator', 'patient_status.index_value') }} as index_value,
        patient_status.index_unit,
        patient_status.index_date,
        patient_status.has_pa,
        patient_status.on_b12,
        patient_status.treatment_start,
        coalesce(cohort_deficient.neuro_involvement, false) as neuro_involvement,
        actions.next_action,
        reasons.details
    from reasons
    inner join {{ ref('patient_status') }} as patient_status
        on patient_status.patient_id = reasons.patient_id
    left join actions
        on actions.patient_id = reasons.patient_id
    left join {{ ref('cohort_deficient') }} as cohort_deficient
        on cohort_deficient.patient_id = reasons.patient_id
    left join last_test
        on last_test.patient_id = reasons.patient_id
),

final as (
    select * from prioritised
    order by prioritised.position
)

select * from final
