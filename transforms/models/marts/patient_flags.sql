-- grain: one patient and safety or case-finding flag, as of the as-of date.
-- rule (docs/models.md, Flags), each flag only when its switch is on in the profile:
--   FOLATE_BEFORE_B12        a folic acid record started (on or before as-of) on a date when the patient's
--                            status, evaluated on that date with the same rules as patient_status
--                            (int_status_on_date), was deficient or borderline_needs_mma, and no B12 treatment
--                            had started on or before that date ("never administer folic acid before treating
--                            B12 deficiency"). flag_date: the first such folic acid start.
--   MACROCYTOSIS_NOT_TESTED  a macrocytic MCV result (above mcv_macrocytosis_above) with no b12 or holotc
--                            result from macrocytosis_window_before_days before it to
--                            macrocytosis_window_after_days after it, once that many days have passed
--                            (the MCV is on or before as-of - macrocytosis_window_after_days).
--                            flag_date: the latest such MCV; detail counts the earlier ones.
-- and (clinical rules release 2, beyond the seed):
--   METFORMIN_B12_NOT_TESTED a metformin record active at as-of (started on or before it, no end date or ending
--                            after it), the patient's first metformin start on or before
--                            as-of - metformin_min_duration_days, and no b12 or holotc result from
--                            as-of - metformin_b12_lookback_days to as-of. flag_date: the first metformin start.
--   MMA_RENAL_CAVEAT         status FUNCTIONAL_MMA or MMA_ON_SUPPLEMENT (patient_status), and an egfr result
--                            below egfr_renal_impairment_below (a censored one only when every value consistent
--                            with it is) from egfr_mma_window_days before to egfr_mma_window_days after the
--                            deciding MMA (patient_status.mma_date). flag_date: that MMA's date; detail: the
--                            lowest such eGFR.
--   B12_INJECTIONS_WITHOUT_DEFICIENCY  a B12 record given intramuscularly (route in intramuscular_route) active
--                            at as-of, no PA, and never a b12 or holotc result deficient, borderline or
--                            indeterminate nor an elevated mma result (counted on as-of). flag_date: the start of
--                            the patient's first intramuscular B12 record.
-- No flag for a patient deceased on or before as-of (patient_status.deceased).
-- MACROCYTOSIS_NOT_TESTED looks back as far as the status does (clinical rules release 3): only macrocytic MCVs
-- collected on or after as-of - lookback_days count.
with

settings as (
    select rules_settings.* exclude (as_of), stg_run_as_of.as_of
    from {{ source('rules', 'rules_settings') }} as rules_settings
    cross join {{ ref('stg_run_as_of') }} as stg_run_as_of
),

b12_treatment as (
    select
        int_patient_b12_treatment.patient_id,
        int_patient_b12_treatment.treatment_start
    from {{ ref('int_patient_b12_treatment') }} as int_patient_b12_treatment
    inner join settings
        on int_patient_b12_treatment.as_of = settings.as_of
),

status_as_known_on_as_of as (
    -- the status on each evaluation date, with the results counted on the run's as_of
    select int_status_on_date.*
    from {{ ref('int_status_on_date') }} as int_status_on_date
    inner join settings
        on int_status_on_date.as_of = settings.as_of
),

folic_acid_starts as (
    select distinct
        stg_medications.patient_id,
        stg_medications.start_date
    from {{ ref('stg_medications') }} as stg_medications
    cross join settings
    where stg_medications.is_folic_acid
      and stg_medications.start_date <= settings.as_of
),

folic_acid_before_b12 as (
    select
        folic_acid_starts.patient_id,
        folic_acid_starts.start_date,
        status_then.status,
        status_then.rule_id,
        status_then.index_analyte,
        status_then.index_value,
        status_then.index_unit,
        status_then.index_comparator,
        status_then.index_date,
        b12_treatment.treatment_start,
        row_number() over (
            partition by folic_acid_starts.patient_id order by folic_acid_starts.start_date
        ) as occurrence
    from folic_acid_starts
    inner join status_as_known_on_as_of as status_then
        on status_then.patient_id = folic_acid_starts.patient_id
       and status_then.evaluated_on = folic_acid_starts.start_date
    left join b12_treatment
        on b12_treatment.patient_id = folic_acid_starts.patient_id
    where status_then.status in ('deficient', 'borderline_needs_mma')
      and (b12_treatment.treatment_start is null or b12_treatment.treatment_start > folic_acid_starts.start_date)
),

folate_before_b12 as (
    select
        folic_acid_before_b12.patient_id,
        'FOLATE_BEFORE_B12' as flag,
        folic_acid_before_b12.start_date as flag_date,
        'folic acid started ' || {{ iso_date('folic_acid_before_b12.start_date') }}
            || ' while status was ' || folic_acid_before_b12.status
            || ' (' || folic_acid_before_b12.rule_id || ': ' || folic_acid_before_b12.index_analyte || ' '
            || {{ reported_value('folic_acid_before_b12.index_comparator', 'folic_acid_before_b12.index_value') }}
            || coalesce(' ' || folic_acid_before_b12.index_unit, '')
            || ' on ' || {{ iso_date('folic_acid_before_b12.index_date') }} || ')'
            || coalesce(
                '; B12 treatment started later, on ' || {{ iso_date('folic_acid_before_b12.treatment_start') }},
                '; no B12 treatment started'
            ) as detail
    from folic_acid_before_b12
    cross join settings
    where settings.flag_folate_before_b12_enabled
      and folic_acid_before_b12.occurrence = 1
),

b12_or_holotc_results as (
    select
        int_classified_results.patient_id,
        int_classified_results.collected_on
    from {{ ref('int_classified_results') }} as int_classified_results
    cross join settings
    where int_classified_results.analyte in ('b12', 'holotc')
      and int_classified_results.category is not null
      and settings.as_of between int_classified_results.counted_from and int_classified_results.counted_through
),

untested_macrocytosis as (
    select
        mcv.patient_id,
        mcv.collected_on,
        mcv.value_reported,
        mcv.unit_reported,
        mcv.comparator,
        row_number() over (
            partition by mcv.patient_id
            order by mcv.collected_on desc, mcv.value_si desc, mcv.source_file, mcv.source_row
        ) as recency,
        count(*) over (partition by mcv.patient_id) as untested_count,
        min(mcv.collected_on) over (partition by mcv.patient_id) as first_untested_on
    from {{ ref('int_classified_results') }} as mcv
    cross join settings
    where mcv.analyte = 'mcv'
      and mcv.category = 'macrocytic'
      and settings.as_of between mcv.counted_from and mcv.counted_through
      and mcv.collected_on <= settings.as_of - settings.macrocytosis_window_after_days
      and mcv.collected_on >= settings.as_of - settings.lookback_days
      and not exists (
          select 1
          from b12_or_holotc_results
          where b12_or_holotc_results.patient_id = mcv.patient_id
            and b12_or_holotc_results.collected_on
                between mcv.collected_on - settings.macrocytosis_window_before_days
                    and mcv.collected_on + settings.macrocytosis_window_after_days
      )
),

macrocytosis_not_tested as (
    select
        untested_macrocytosis.patient_id,
        'MACROCYTOSIS_NOT_TESTED' as flag,
        untested_macrocytosis.collected_on as flag_date,
        'MCV ' || {{ reported_value('untested_macrocytosis.comparator', 'untested_macrocytosis.value_reported') }}
            || coalesce(' ' || untested_macrocytosis.unit_reported, '')
            || ' on ' || {{ iso_date('untested_macrocytosis.collected_on') }}
            || '; no b12 or holotc result from '
            || {{ iso_date('untested_macrocytosis.collected_on - settings.macrocytosis_window_before_days') }}
            || ' to '
            || {{ iso_date('untested_macrocytosis.collected_on + settings.macrocytosis_window_after_days') }}
            || case
                when untested_macrocytosis.untested_count > 1
                    then '; ' || untested_macrocytosis.untested_count || ' untested macrocytic MCV results since '
                        || {{ iso_date('untested_macrocytosis.first_untested_on') }}
                else ''
            end as detail
    from untested_macrocytosis
    cross join settings
    where settings.flag_macrocytosis_not_tested_enabled
      and untested_macrocytosis.recency = 1
),

metformin_records as (
    select
        stg_medications.patient_id,
        min(stg_medications.start_date) as first_start,
        count(*) filter (
            where stg_medications.end_date is null or stg_medications.end_date > settings.as_of
        ) as active_record_count
    from {{ ref('stg_medications') }} as stg_medications
    cross join settings
    where stg_medications.is_metformin
      and stg_medications.start_date <= settings.as_of
    group by stg_medications.patient_id
),

last_b12_or_holotc as (
    select
        b12_or_holotc_results.patient_id,
        max(b12_or_holotc_results.collected_on) as last_collected_on
    from b12_or_holotc_results
    group by b12_or_holotc_results.patient_id
),

metformin_b12_not_tested as (
    select
        metformin_records.patient_id,
        'METFORMIN_B12_NOT_TESTED' as flag,
        metformin_records.first_start as flag_date,
        'metformin since ' || {{ iso_date('metformin_records.first_start') }}
            || '; no b12 or holotc result from '
            || {{ iso_date('settings.as_of - settings.metformin_b12_lookback_days') }}
            || ' to ' || {{ iso_date('settings.as_of') }}
            || coalesce('; last on ' || {{ iso_date('last_b12_or_holotc.last_collected_on') }}, '; never tested')
            as detail
    from metformin_records
    cross join settings
    left join last_b12_or_holotc
        on last_b12_or_holotc.patient_id = metformin_records.patient_id
    where settings.flag_metformin_b12_not_tested_enabled
      and metformin_records.active_record_count > 0
      and metformin_records.first_start <= settings.as_of - settings.metformin_min_duration_days
      and (
          last_b12_or_holotc.last_collected_on is null
          or last_b12_or_holotc.last_collected_on < settings.as_of - settings.metformin_b12_lookback_days
      )
),

mma_decided as (
    select
        patient_status.patient_id,
        patient_status.rule_id,
        patient_status.mma_value,
        patient_status.mma_unit,
        patient_status.mma_date
    from {{ ref('patient_status') }} as patient_status
    where patient_status.rule_id in ('FUNCTIONAL_MMA', 'MMA_ON_SUPPLEMENT')
      and patient_status.mma_date is not null
),

low_egfr_near_mma as (
    select
        mma_decided.patient_id,
        mma_decided.rule_id,
        mma_decided.mma_value,
        mma_decided.mma_unit,
        mma_decided.mma_date,
        egfr.collected_on as egfr_date,
        egfr.comparator as egfr_comparator,
        egfr.value_reported as egfr_value,
        egfr.unit_reported as egfr_unit,
        row_number() over (
            partition by mma_decided.patient_id
            order by egfr.value_si, egfr.collected_at desc, egfr.source_file, egfr.source_row
        ) as lowest
    from mma_decided
    inner join {{ ref('int_classified_results') }} as egfr
        on egfr.patient_id = mma_decided.patient_id
    cross join settings
    where egfr.analyte = 'egfr'
      and egfr.value_si is not null
      and settings.as_of between egfr.counted_from and egfr.counted_through
      and egfr.collected_on
          between mma_decided.mma_date - settings.egfr_mma_window_days
              and mma_decided.mma_date + settings.egfr_mma_window_days
      and (
          (egfr.comparator is null and egfr.value_si < settings.egfr_renal_impairment_below)
          or (egfr.comparator = '<' and egfr.value_si <= settings.egfr_renal_impairment_below)
          or (egfr.comparator = '<=' and egfr.value_si < settings.egfr_renal_impairment_below)
      )
),

mma_renal_caveat as (
    select
        low_egfr_near_mma.patient_id,
        'MMA_RENAL_CAVEAT' as flag,
        low_egfr_near_mma.mma_date as flag_date,
        low_egfr_near_mma.rule_id || ' rests on mma ' || {{ number_text('low_egfr_near_mma.mma_value') }}
            || coalesce(' ' || low_egfr_near_mma.mma_unit, '')
            || ' on ' || {{ iso_date('low_egfr_near_mma.mma_date') }}
            || '; eGFR ' || {{ reported_value('low_egfr_near_mma.egfr_comparator', 'low_egfr_near_mma.egfr_value') }}
            || coalesce(' ' || low_egfr_near_mma.egfr_unit, '')
            || ' on ' || {{ iso_date('low_egfr_near_mma.egfr_date') }}
            || ': MMA rises with renal impairment' as detail
    from low_egfr_near_mma
    cross join settings
    where settings.flag_mma_renal_caveat_enabled
      and low_egfr_near_mma.lowest = 1
),

intramuscular_b12 as (
    select
        stg_medications.patient_id,
        min(stg_medications.start_date) as first_start,
        count(*) filter (
            where stg_medications.end_date is null or stg_medications.end_date > settings.as_of
        ) as active_record_count
    from {{ ref('stg_medications') }} as stg_medications
    cross join settings
    where stg_medications.is_b12_drug
      and stg_medications.is_intramuscular
      and stg_medications.start_date <= settings.as_of
    group by stg_medications.patient_id
),

pa_on_as_of as (
    select int_patient_pa.patient_id
    from {{ ref('int_patient_pa') }} as int_patient_pa
    inner join settings
        on int_patient_pa.as_of = settings.as_of
),

abnormal_b12_markers as (
    select distinct int_classified_results.patient_id
    from {{ ref('int_classified_results') }} as int_classified_results
    cross join settings
    where settings.as_of between int_classified_results.counted_from and int_classified_results.counted_through
      and (
          (int_classified_results.analyte in ('b12', 'holotc')
           and int_classified_results.category in ('deficient', 'borderline', 'indeterminate'))
          or (int_classified_results.analyte = 'mma' and int_classified_results.category = 'elevated')
      )
),

b12_injections_without_deficiency as (
    select
        intramuscular_b12.patient_id,
        'B12_INJECTIONS_WITHOUT_DEFICIENCY' as flag,
        intramuscular_b12.first_start as flag_date,
        'intramuscular B12 since ' || {{ iso_date('intramuscular_b12.first_start') }}
            || ', active on ' || {{ iso_date('settings.as_of') }}
            || '; no pernicious anaemia, and no deficient, borderline or indeterminate b12 or holotc'
            || ' and no elevated mma result on record'
            || coalesce('; last b12 or holotc on ' || {{ iso_date('last_b12_or_holotc.last_collected_on') }}, '')
            as detail
    from intramuscular_b12
    cross join settings
    left join last_b12_or_holotc
        on last_b12_or_holotc.patient_id = intramuscular_b12.patient_id
    where settings.flag_b12_injections_without_deficiency_enabled
      and intramuscular_b12.active_record_count > 0
      and intramuscular_b12.patient_id not in (select pa_on_as_of.patient_id from pa_on_as_of)
      and intramuscular_b12.patient_id not in (select abnormal_b12_markers.patient_id from abnormal_b12_markers)
),

all_flags as (
    select * from folate_before_b12
    union all
    select * from macrocytosis_not_tested
    union all
    select * from metformin_b12_not_tested
    union all
    select * from mma_renal_caveat
    union all
    select * from b12_injections_without_deficiency
),

final as (
    select
        all_flags.patient_id,
        all_flags.flag,
        all_flags.flag_date,
        all_flags.detail,
        int_patients_known.practice
    from all_flags
    left join {{ ref('int_patients_known') }} as int_patients_known
        on int_patients_known.patient_id = all_flags.patient_id
    where all_flags.patient_id not in (
        select patient_status.patient_id from {{ ref('patient_status') }} as patient_status where patient_status.deceased
    )
    order by all_flags.patient_id, all_flags.flag
)

select * from final
