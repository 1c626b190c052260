-- grain: one as-of date D (stg_as_of_dates), patient and under-monitoring reason as of D (a patient may have
-- several).
-- rule (docs/models.md: Cohorts, reasons and flags; release 2 under Codes); every window includes both ends, "monitoring
-- result" means a b12, holotc or mma result counted on D, and each reason runs only when its switch is on in
-- the profile:
--   PA_NO_POST_TREATMENT_RECHECK  PA, a treatment start S with D on or after S + pa_recheck_window_end_days,
--                                 and no monitoring result from S + pa_recheck_window_start_days to D (a late
--                                 recheck closes the gap; "recheck B12 after 3-6 months of treatment")
--   PA_OVERDUE_ANNUAL_B12         PA, and no monitoring result from D - pa_annual_recheck_days to D
--                                 ("continue annual B12 screening lifelong")
--   BORDERLINE_NO_MMA             status borderline_needs_mma and the index result collected on or before
--                                 D - borderline_mma_grace_days
--   SUPPLEMENTED_NO_MMA           on B12 at D, a b12 result and no mma result from
--                                 D - supplemented_mma_lookback_days to D ("measure MMA as the primary test")
--   TREATED_BELOW_TARGET          PA, a treatment start S, and the latest b12 result collected on or after
--                                 S + below_target_after_treatment_days is not at target (> 300 pmol/L, > 400 pg/mL)
--   DEFICIENT_NO_IF_ANTIBODY      status deficient (any rule_id), no PA, the index date on or before
--                                 D - deficient_if_antibody_grace_days, and no counted if_antibody result of
--                                 any value, ever ("test for anti-intrinsic factor antibodies")
--   DEFICIENT_NO_BLOOD_COUNT      status deficient, the index date on or before D - deficient_blood_count_grace_days,
--                                 and no counted hemoglobin or mcv result from the index date +
--                                 blood_count_window_start_offset_days to + blood_count_window_end_offset_days
--                                 ("check complete blood count for megaloblastic anemia")
--   PA_NOT_ON_TREATMENT           PA whose earliest evidence is on or before D - pa_known_for_days (or a PA
--                                 diagnosis without a date), and no B12 record that started on or before D and
--                                 has no end date or ends on or after D - pa_treatment_lapse_days
--                                 ("every 2-3 months lifelong")
--   TREATED_MARKERS_NOT_NORMAL    PA, a treatment start S, and the latest homocysteine collected on or after
--                                 S + markers_after_treatment_days is not below the target (at or above 10
--                                 umol/L), or the latest mma collected on or after that day is elevated
-- PA, S, status, the index date (patient_status.index_date: for MMA_ON_SUPPLEMENT the MMA's date) and on B12
-- are those of int_patient_status on D. detail says in words what was missing, with the dates of the window
-- and the values behind it; it never names the patient. open_since is the first day the reason applied, with
-- the records as they are on D (the day its window closed), "PA known from" being PA's earliest dated evidence
-- (none when a PA diagnosis without a date is on record), and a later of two dates winning:
--   PA_NO_POST_TREATMENT_RECHECK  S + pa_recheck_window_end_days, or PA known from
--   PA_OVERDUE_ANNUAL_B12         the last monitoring result + pa_annual_recheck_days + 1 day, or PA known from
--                                 (never tested: PA known from)
--   BORDERLINE_NO_MMA             the index date + borderline_mma_grace_days
--   SUPPLEMENTED_NO_MMA           the first b12 result of the lookback, or S (a b12 result before treatment)
--   TREATED_BELOW_TARGET          the date of that latest b12 result
--   DEFICIENT_NO_IF_ANTIBODY      the index date + deficient_if_antibody_grace_days
--   DEFICIENT_NO_BLOOD_COUNT      the index date + deficient_blood_count_grace_days
--   PA_NOT_ON_TREATMENT           PA known from + pa_known_for_days, or the last B12 record's end +
--                                 pa_treatment_lapse_days + 1 day (never treated: the former)
--   TREATED_MARKERS_NOT_NORMAL    the earliest of the latest homocysteine and mma that are not normal
-- A patient deceased on D (int_patient_status.deceased) has no reason on D: every reason starts from the
-- living patients' rows (patient_facts).
-- open_since is null only when there is no date to go by (a PA diagnosis without a date and no B12 test or
-- record). cohort_under_monitored is this model on the run's as_of; the report's trend counts it on every
-- month end.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

settings as (
    select rules_settings.*
    from {{ source('rules', 'rules_settings') }} as rules_settings
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
    from {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
    where int_classified_results.analyte in ('b12', 'holotc', 'mma')
      and int_classified_results.category is not null
),

patient_facts as (
    -- every reason starts from these rows: a patient deceased on D is left out here, once, rather than each
    -- reason's rows joined to every patient's status on every date afterwards (a join that alone took the
    -- model past a 64 MB limit for a bucket of 10,000 patients). Every reason below is about a patient with
    -- PA, on B12, deficient or borderline needing MMA on D, and reads only those rows (has_pa, on_b12 or
    -- status in its own conditions), so the others are left out here too: DuckDB writes these rows once for
    -- all the reasons, and every living patient's row on every date was 24M wide rows at 10M lab rows,
    -- spilled to disk and read back for each reason (the model about 50 s; with 14 % of the rows, 17 s). A new
    -- reason about other patients must widen this condition.
    select
        int_patient_status.as_of,
        int_patient_status.patient_id,
        int_patient_status.status,
        int_patient_status.rule_id,
        int_patient_status.has_pa,
        int_patient_pa.pa_first_evidence_on,
        coalesce(int_patient_pa.pa_has_undated_diagnosis, false) as pa_has_undated_diagnosis,
        -- the day PA is known from; null when a PA diagnosis without a date is on record (known "always")
        case when not coalesce(int_patient_pa.pa_has_undated_diagnosis, false)
            then int_patient_pa.pa_first_evidence_on end as pa_known_from,
        int_patient_status.on_b12,
        int_patient_status.index_analyte,
        int_patient_status.index_category,
        int_patient_status.index_value,
        int_patient_status.index_unit,
        int_patient_status.index_comparator,
        int_patient_status.index_date,
        int_patient_status.treatment_start,
        int_patient_status.practice
    from {{ rebuilt_patients_only(ref('int_patient_status')) }} as int_patient_status
    left join {{ rebuilt_patients_only(ref('int_patient_pa')) }} as int_patient_pa
        on int_patient_pa.patient_id = int_patient_status.patient_id
       and int_patient_pa.as_of = int_patient_status.as_of
    where int_patient_status.deceased is not true
      and (
          int_patient_status.has_pa
          or int_patient_status.on_b12
          or int_patient_status.status in ('deficient', 'borderline_needs_mma')
      )
),

pa_no_post_treatment_recheck as (
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        'PA_NO_POST_TREATMENT_RECHECK' as reason,
        'B12 treatment started ' || {{ iso_date('patient_facts.treatment_start') }}
            || '; no b12, holotc or mma result from '
            || {{ iso_date('patient_facts.treatment_start + settings.pa_recheck_window_start_days') }}
            || ' to ' || {{ iso_date('patient_facts.as_of') }}
            as detail,
        patient_facts.practice,
        greatest(patient_facts.treatment_start + settings.pa_recheck_window_end_days, patient_facts.pa_known_from)
            as open_since
    from patient_facts
    cross join settings
    -- "no result in the window" as an anti join rather than a correlated not exists: DuckDB plans the latter as
    -- a join on every correlated column that keeps its own copy of the rows it checks until the whole model is
    -- built; for a bucket of 10,000 patients that was about 10 MB more per reason, all reasons at once
    anti join monitoring_results
        on monitoring_results.patient_id = patient_facts.patient_id
       and patient_facts.as_of between monitoring_results.counted_from and monitoring_results.counted_through
       and monitoring_results.collected_on
           between patient_facts.treatment_start + settings.pa_recheck_window_start_days and patient_facts.as_of
    where settings.reason_pa_no_post_treatment_recheck_enabled
      and patient_facts.has_pa
      and patient_facts.treatment_start is not null
      and patient_facts.as_of >= patient_facts.treatment_start + settings.pa_recheck_window_end_days
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
            || {{ iso_date('patient_facts.as_of - settings.pa_annual_recheck_days') }}
            || ' to ' || {{ iso_date('patient_facts.as_of') }}
            || coalesce('; last on ' || {{ iso_date('last_monitoring_result.last_collected_on') }},
                        '; none on record')
            as detail,
        patient_facts.practice,
        greatest(
            last_monitoring_result.last_collected_on + settings.pa_annual_recheck_days + 1,
            patient_facts.pa_known_from
        ) as open_since
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
            || {{ reported_value('patient_facts.index_comparator', 'patient_facts.index_value') }}
            || coalesce(' ' || patient_facts.index_unit, '')
            || ' on ' || {{ iso_date('patient_facts.index_date') }}
            || '; no mma result from '
            || {{ iso_date('patient_facts.index_date + settings.mma_window_start_offset_days') }}
            || ' to ' || {{ iso_date('least(patient_facts.index_date + settings.mma_window_end_offset_days, patient_facts.as_of)') }}
            as detail,
        patient_facts.practice,
        patient_facts.index_date + settings.borderline_mma_grace_days as open_since
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
        min(case when monitoring_results.analyte = 'b12' then monitoring_results.collected_on end)
            as first_b12_collected_on,
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
            || {{ iso_date('supplemented_lookback_results.last_b12_collected_on') }}
            || '; no mma result from '
            || {{ iso_date('patient_facts.as_of - settings.supplemented_mma_lookback_days') }}
            || ' to ' || {{ iso_date('patient_facts.as_of') }}
            as detail,
        patient_facts.practice,
        greatest(supplemented_lookback_results.first_b12_collected_on, patient_facts.treatment_start) as open_since
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
        'latest b12 ' || {{ reported_value('latest_b12.comparator', 'latest_b12.value_reported') }}
            || coalesce(' ' || latest_b12.unit_reported, '')
            || ' on ' || {{ iso_date('latest_b12.collected_on') }}
            || ' is not above the target of ' || {{ number_text('latest_b12.target_applied') }}
            || ' ' || latest_b12.compared_unit
            || '; B12 treatment started ' || {{ iso_date('latest_b12.treatment_start') }}
            as detail,
        patient_facts.practice,
        latest_b12.collected_on as open_since
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

deficient_facts as (
    -- deficient patients on D, with their index result in words (value as reported, date)
    select
        patient_facts.*,
        'deficient (' || patient_facts.rule_id || ': ' || patient_facts.index_analyte || ' '
            || {{ reported_value('patient_facts.index_comparator', 'patient_facts.index_value') }}
            || coalesce(' ' || patient_facts.index_unit, '')
            || ' on ' || {{ iso_date('patient_facts.index_date') }} || ')' as index_in_words
    from patient_facts
    where patient_facts.status = 'deficient'
),

if_antibody_results as (
    -- any counted intrinsic factor antibody result (positive, negative, equivocal or other text)
    select
        int_classified_results.patient_id,
        int_classified_results.counted_from,
        int_classified_results.counted_through
    from {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
    where int_classified_results.analyte = 'if_antibody'
),

deficient_no_if_antibody as (
    select
        deficient_facts.as_of,
        deficient_facts.patient_id,
        'DEFICIENT_NO_IF_ANTIBODY' as reason,
        deficient_facts.index_in_words || '; no pernicious anaemia on record and no intrinsic factor antibody result'
            || ' on or before ' || {{ iso_date('deficient_facts.as_of') }}
            as detail,
        deficient_facts.practice,
        deficient_facts.index_date + settings.deficient_if_antibody_grace_days as open_since
    from deficient_facts
    cross join settings
    anti join if_antibody_results
        on if_antibody_results.patient_id = deficient_facts.patient_id
       and deficient_facts.as_of between if_antibody_results.counted_from and if_antibody_results.counted_through
    where settings.reason_deficient_no_if_antibody_enabled
      and not deficient_facts.has_pa
      and deficient_facts.index_date <= deficient_facts.as_of - settings.deficient_if_antibody_grace_days
),

blood_count_results as (
    select
        int_classified_results.patient_id,
        int_classified_results.collected_on,
        int_classified_results.counted_from,
        int_classified_results.counted_through
    from {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
    where int_classified_results.analyte in ('hemoglobin', 'mcv')
),

deficient_no_blood_count as (
    select
        deficient_facts.as_of,
        deficient_facts.patient_id,
        'DEFICIENT_NO_BLOOD_COUNT' as reason,
        deficient_facts.index_in_words || '; no hemoglobin or mcv result from '
            || {{ iso_date('deficient_facts.index_date + settings.blood_count_window_start_offset_days') }}
            || ' to '
            || {{ iso_date(
                'least(deficient_facts.index_date + settings.blood_count_window_end_offset_days, deficient_facts.as_of)'
            ) }}
            as detail,
        deficient_facts.practice,
        deficient_facts.index_date + settings.deficient_blood_count_grace_days as open_since
    from deficient_facts
    cross join settings
    anti join blood_count_results
        on blood_count_results.patient_id = deficient_facts.patient_id
       and deficient_facts.as_of between blood_count_results.counted_from and blood_count_results.counted_through
       and blood_count_results.collected_on
           between deficient_facts.index_date + settings.blood_count_window_start_offset_days
               and deficient_facts.index_date + settings.blood_count_window_end_offset_days
    where settings.reason_deficient_no_blood_count_enabled
      and deficient_facts.index_date <= deficient_facts.as_of - settings.deficient_blood_count_grace_days
),

pa_known_long_enough as (
    select patient_facts.*
    from patient_facts
    cross join settings
    where patient_facts.has_pa
      and (
          patient_facts.pa_has_undated_diagnosis
          or patient_facts.pa_first_evidence_on <= patient_facts.as_of - settings.pa_known_for_days
      )
),

pa_b12_records as (
    -- the B12 records of PA patients known on D (started on or before D)
    select
        pa_known_long_enough.as_of,
        pa_known_long_enough.patient_id,
        count(*) filter (
            where stg_medications.end_date is null
               or stg_medications.end_date >= pa_known_long_enough.as_of - settings.pa_treatment_lapse_days
        ) as current_record_count,
        max(stg_medications.end_date) as last_ended_on
    from pa_known_long_enough
    inner join {{ rebuilt_patients_only(ref('stg_medications')) }} as stg_medications
        on stg_medications.patient_id = pa_known_long_enough.patient_id
    cross join settings
    where stg_medications.is_b12_drug
      and stg_medications.start_date <= pa_known_long_enough.as_of
    group by pa_known_long_enough.as_of, pa_known_long_enough.patient_id
),

pa_not_on_treatment as (
    select
        pa_known_long_enough.as_of,
        pa_known_long_enough.patient_id,
        'PA_NOT_ON_TREATMENT' as reason,
        coalesce(
            'pernicious anaemia on record since ' || {{ iso_date('pa_known_long_enough.pa_first_evidence_on') }},
            'pernicious anaemia on record (diagnosis without a date)'
        )
            || case
                when pa_b12_records.patient_id is null then '; never treated'
                else '; last B12 record ended ' || {{ iso_date('pa_b12_records.last_ended_on') }}
            end
            || '; no B12 record active from '
            || {{ iso_date('pa_known_long_enough.as_of - settings.pa_treatment_lapse_days') }}
            || ' to ' || {{ iso_date('pa_known_long_enough.as_of') }}
            as detail,
        pa_known_long_enough.practice,
        greatest(
            pa_known_long_enough.pa_known_from + settings.pa_known_for_days,
            pa_b12_records.last_ended_on + settings.pa_treatment_lapse_days + 1
        ) as open_since
    from pa_known_long_enough
    cross join settings
    left join pa_b12_records
        on pa_b12_records.patient_id = pa_known_long_enough.patient_id
       and pa_b12_records.as_of = pa_known_long_enough.as_of
    where settings.reason_pa_not_on_treatment_enabled
      and coalesce(pa_b12_records.current_record_count, 0) = 0
),

markers_after_treatment_ranked as (
    -- homocysteine and mma results of treated PA patients from S + markers_after_treatment_days, latest first
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        patient_facts.treatment_start,
        int_classified_results.analyte,
        int_classified_results.collected_on,
        int_classified_results.value_reported,
        int_classified_results.unit_reported,
        int_classified_results.comparator,
        int_classified_results.category,
        int_classified_results.at_target,
        row_number() over (
            partition by patient_facts.as_of, patient_facts.patient_id, int_classified_results.analyte
            order by
                int_classified_results.collected_at desc,
                int_classified_results.severity desc,
                int_classified_results.value_si desc,
                int_classified_results.source_file,
                int_classified_results.source_row
        ) as recency
    from patient_facts
    inner join {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
        on int_classified_results.patient_id = patient_facts.patient_id
       and patient_facts.as_of
           between int_classified_results.counted_from and int_classified_results.counted_through
    cross join settings
    where patient_facts.has_pa
      and patient_facts.treatment_start is not null
      and int_classified_results.analyte in ('homocysteine', 'mma')
      and int_classified_results.category is not null
      and int_classified_results.collected_on >= patient_facts.treatment_start + settings.markers_after_treatment_days
),

markers_not_normal as (
    select
        markers_after_treatment_ranked.as_of,
        markers_after_treatment_ranked.patient_id,
        markers_after_treatment_ranked.treatment_start,
        string_agg(
            markers_after_treatment_ranked.analyte || ' '
                || {{ reported_value('markers_after_treatment_ranked.comparator',
                                     'markers_after_treatment_ranked.value_reported') }}
                || coalesce(' ' || markers_after_treatment_ranked.unit_reported, '')
                || ' on ' || {{ iso_date('markers_after_treatment_ranked.collected_on') }}
                || case
                    when markers_after_treatment_ranked.analyte = 'homocysteine'
                        then ' is not below the target of ' || {{ number_text('settings.homocysteine_above_target_from_umol_l') }}
                            || ' umol/L'
                    else ' is elevated'
                end,
            '; ' order by markers_after_treatment_ranked.analyte
        ) as markers_in_words,
        min(markers_after_treatment_ranked.collected_on) as first_not_normal_on
    from markers_after_treatment_ranked
    cross join settings
    where markers_after_treatment_ranked.recency = 1
      and (
          (markers_after_treatment_ranked.analyte = 'homocysteine' and not markers_after_treatment_ranked.at_target)
          or (markers_after_treatment_ranked.analyte = 'mma' and markers_after_treatment_ranked.category = 'elevated')
      )
    group by
        markers_after_treatment_ranked.as_of,
        markers_after_treatment_ranked.patient_id,
        markers_after_treatment_ranked.treatment_start
),

treated_markers_not_normal as (
    select
        patient_facts.as_of,
        patient_facts.patient_id,
        'TREATED_MARKERS_NOT_NORMAL' as reason,
        'latest ' || markers_not_normal.markers_in_words
            || '; B12 treatment started ' || {{ iso_date('markers_not_normal.treatment_start') }}
            as detail,
        patient_facts.practice,
        markers_not_normal.first_not_normal_on as open_since
    from patient_facts
    cross join settings
    inner join markers_not_normal
        on markers_not_normal.patient_id = patient_facts.patient_id
       and markers_not_normal.as_of = patient_facts.as_of
    where settings.reason_treated_markers_not_normal_enabled
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
    union all
    select * from deficient_no_if_antibody
    union all
    select * from deficient_no_blood_count
    union all
    select * from pa_not_on_treatment
    union all
    select * from treated_markers_not_normal
),

final as (
    select
        all_reasons.as_of,
        all_reasons.patient_id,
        all_reasons.reason,
        all_reasons.detail,
        all_reasons.practice,
        all_reasons.open_since
    from all_reasons
)

select * from {{ built_in_buckets_or('final') }}
