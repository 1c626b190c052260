-- grain: one as-of date D (stg_as_of_dates), patient and under-monitoring reason as of D (a patient may have
-- several).
-- rule (CLINICAL_RULES section 5, Under-monitored); every window includes both ends, "monitoring result"
-- means a b12, holotc or mma result counted on D, and each reason runs only when its switch is on in the
-- profile:
--   PA_NO_POST_TREATMENT_RECHECK  PA, a treatment start S with D on or after S + pa_recheck_window_end_days,
--                                 and no monitoring result from S + pa_recheck_window_start_days to
--                                 S + pa_recheck_window_end_days ("recheck B12 after 3-6 months of treatment")
--   PA_OVERDUE_ANNUAL_B12         PA, and no monitoring result from D - pa_annual_recheck_days to D
--                                 ("continue annual B12 screening lifelong")
--   BORDERLINE_NO_MMA             status borderline_needs_mma and the index result collected on or before
--                                 D - borderline_mma_grace_days
--   SUPPLEMENTED_NO_MMA           on B12 at D, a b12 result and no mma result from
--                                 D - supplemented_mma_lookback_days to D ("measure MMA as the primary test")
--   TREATED_BELOW_TARGET          PA, a treatment start S, and the latest b12 result collected on or after
--                                 S + below_target_after_treatment_days is not at target (> 300 pmol/L, > 400 pg/mL)
-- PA, S, status and on B12 are those of int_patient_status on D. detail says in words what was missing, with
-- the dates of the window; it never names the patient. cohort_under_monitored is this model on the run's
-- as_of; the report's trend counts it on every month end.
with

settings as (
    select rules_settings.*
    from rules_settings
),

monitoring_results as (
    select
        int_classified_results.patient_id,
        int_classified_results.analyte,
        int_classified_results.collected_at,
        int_classified_results.collected_on,
        int_classified_results.value_reported,
        int_classified_results.unit_reported,
        int_classified_results.comparator,
        int_classified_results.at_target,
        int_classified_results.target_applied,
        int_classified_results.compared_unit,
        int_classified_results.severity,
        int_classified_results.value_si,
        int_classified_results.source_file,
        int_classified_results.source_row,
        int_classified_results.counted_from,
        int_classified_results.counted_through
    from int_classified_results
    where int_classified_results.analyte in ('b12', 'holotc', 'mma')
      and int_classified_results.category is not null
),

patient_facts as (
    select
        int_patient_status.as_of,
        int_patient_status.patient_id,
        int_patient_status.status,
        int_patient_status.has_pa,
        int_patient_status.on_b12,
        int_patient_status.index_analyte,
        int_patient_status.index_category,
        int_patient_status.index_value,
        int_patient_status.index_unit,
        int_patient_status.index_comparator,
        int_patient_status.index_date,
        int_patient_status.treatment_start,
        int_patient_status.practice
    from int_patient_status
),

pa_no_post_treatment_recheck as (
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        'PA_NO_POST_TREATMENT_RECHECK' as reason,
        'B12 treatment started ' || strftime(patient_facts.treatment_start, '%Y-%m-%d')
            || '; no b12, holotc or mma result from '
            || strftime(patient_facts.treatment_start + settings.pa_recheck_window_start_days, '%Y-%m-%d')
            || ' to ' || strftime(patient_facts.treatment_start + settings.pa_recheck_window_end_days, '%Y-%m-%d')
            as detail,
        patient_facts.practice
    from patient_facts
    cross join settings
    where settings.reason_pa_no_post_treatment_recheck_enabled
      and patient_facts.has_pa
      and patient_facts.treatment_start is not null
      and patient_facts.as_of >= patient_facts.treatment_start + settings.pa_recheck_window_end_days
      and not exists (
          select 1
          from monitoring_results
          where monitoring_results.patient_id = patient_facts.patient_id
            and patient_facts.as_of between monitoring_results.counted_from and monitoring_results.counted_through
            and monitoring_results.collected_on
                between patient_facts.treatment_start + settings.pa_recheck_window_start_days
                    and patient_facts.treatment_start + settings.pa_recheck_window_end_days
      )
),

last_monitoring_result as (
    -- only PA patients can be overdue, so the others are not looked up (on each of many dates)
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        max(monitoring_results.collected_on) as last_collected_on
    from patient_facts
    inner join monitoring_results
        on monitoring_results.patient_id = patient_facts.patient_id
       and patient_facts.as_of between monitoring_results.counted_from and monitoring_results.counted_through
    where patient_facts.has_pa
    group by patient_facts.as_of, patient_facts.patient_id
),

pa_overdue_annual_b12 as (
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        'PA_OVERDUE_ANNUAL_B12' as reason,
        'no b12, holotc or mma result from '
            || strftime(patient_facts.as_of - settings.pa_annual_recheck_days, '%Y-%m-%d')
            || ' to ' || strftime(patient_facts.as_of, '%Y-%m-%d')
            || coalesce('; last on ' || strftime(last_monitoring_result.last_collected_on, '%Y-%m-%d'),
                        '; none on record')
            as detail,
        patient_facts.practice
    from patient_facts
    cross join settings
    left join last_monitoring_result
        on last_monitoring_result.patient_id = patient_facts.patient_id
       and last_monitoring_result.as_of = patient_facts.as_of
    where settings.reason_pa_overdue_annual_b12_enabled
      and patient_facts.has_pa
      and (
          last_monitoring_result.last_collected_on is null
          or last_monitoring_result.last_collected_on < patient_facts.as_of - settings.pa_annual_recheck_days
      )
),

borderline_no_mma as (
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        'BORDERLINE_NO_MMA' as reason,
        patient_facts.index_category || ' ' || patient_facts.index_analyte || ' '
            || coalesce(patient_facts.index_comparator, '') || printf('%.10g', patient_facts.index_value)
            || coalesce(' ' || patient_facts.index_unit, '')
            || ' on ' || strftime(patient_facts.index_date, '%Y-%m-%d')
            || '; no mma result from '
            || strftime(patient_facts.index_date + settings.mma_window_start_offset_days, '%Y-%m-%d')
            || ' to ' || strftime(
                least(patient_facts.index_date + settings.mma_window_end_offset_days, patient_facts.as_of),
                '%Y-%m-%d'
            )
            as detail,
        patient_facts.practice
    from patient_facts
    cross join settings
    where settings.reason_borderline_no_mma_enabled
      and patient_facts.status = 'borderline_needs_mma'
      and patient_facts.index_date <= patient_facts.as_of - settings.borderline_mma_grace_days
),

supplemented_lookback_results as (
    -- only patients on B12 can be SUPPLEMENTED_NO_MMA, so the others are not looked up (on each of many dates)
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        max(case when monitoring_results.analyte = 'b12' then monitoring_results.collected_on end)
            as last_b12_collected_on,
        count(*) filter (where monitoring_results.analyte = 'mma') as mma_result_count
    from patient_facts
    inner join monitoring_results
        on monitoring_results.patient_id = patient_facts.patient_id
       and patient_facts.as_of between monitoring_results.counted_from and monitoring_results.counted_through
    cross join settings
    where patient_facts.on_b12
      and monitoring_results.collected_on
          between patient_facts.as_of - settings.supplemented_mma_lookback_days and patient_facts.as_of
    group by patient_facts.as_of, patient_facts.patient_id
),

supplemented_no_mma as (
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        'SUPPLEMENTED_NO_MMA' as reason,
        'on B12 supplementation; b12 result on '
            || strftime(supplemented_lookback_results.last_b12_collected_on, '%Y-%m-%d')
            || '; no mma result from '
            || strftime(patient_facts.as_of - settings.supplemented_mma_lookback_days, '%Y-%m-%d')
            || ' to ' || strftime(patient_facts.as_of, '%Y-%m-%d')
            as detail,
        patient_facts.practice
    from patient_facts
    cross join settings
    inner join supplemented_lookback_results
        on supplemented_lookback_results.patient_id = patient_facts.patient_id
       and supplemented_lookback_results.as_of = patient_facts.as_of
    where settings.reason_supplemented_no_mma_enabled
      and patient_facts.on_b12
      and supplemented_lookback_results.last_b12_collected_on is not null
      and supplemented_lookback_results.mma_result_count = 0
),

b12_after_treatment_ranked as (
    -- only PA patients can be treated below target, so the others' results are not ranked (on each of many
    -- dates)
    select
        monitoring_results.*,
        patient_facts.as_of,
        patient_facts.treatment_start,
        row_number() over (
            partition by patient_facts.as_of, monitoring_results.patient_id
            order by
                monitoring_results.collected_at desc,
                monitoring_results.severity desc,
                monitoring_results.value_si,
                monitoring_results.source_file,
                monitoring_results.source_row
        ) as recency
    from monitoring_results
    inner join patient_facts
        on patient_facts.patient_id = monitoring_results.patient_id
       and patient_facts.as_of between monitoring_results.counted_from and monitoring_results.counted_through
    cross join settings
    where monitoring_results.analyte = 'b12'
      and patient_facts.has_pa
      and patient_facts.treatment_start is not null
      and monitoring_results.collected_on >= patient_facts.treatment_start + settings.below_target_after_treatment_days
),

treated_below_target as (
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        'TREATED_BELOW_TARGET' as reason,
        'latest b12 ' || coalesce(latest_b12.comparator, '') || printf('%.10g', latest_b12.value_reported)
            || coalesce(' ' || latest_b12.unit_reported, '')
            || ' on ' || strftime(latest_b12.collected_on, '%Y-%m-%d')
            || ' is not above the target of ' || printf('%.10g', latest_b12.target_applied)
            || ' ' || latest_b12.compared_unit
            || '; B12 treatment started ' || strftime(latest_b12.treatment_start, '%Y-%m-%d')
            as detail,
        patient_facts.practice
    from patient_facts
    cross join settings
    inner join b12_after_treatment_ranked as latest_b12
        on latest_b12.patient_id = patient_facts.patient_id
       and latest_b12.as_of = patient_facts.as_of
       and latest_b12.recency = 1
    where settings.reason_treated_below_target_enabled
      and patient_facts.has_pa
      and not latest_b12.at_target
),

all_reasons as (
    select * from pa_no_post_treatment_recheck
    union all
    select * from pa_overdue_annual_b12
    union all
    select * from borderline_no_mma
    union all
    select * from supplemented_no_mma
    union all
    select * from treated_below_target
),

final as (
    select
        all_reasons.as_of,
        all_reasons.patient_id,
        all_reasons.reason,
        all_reasons.detail,
        all_reasons.practice
    from all_reasons
)

select * from final
