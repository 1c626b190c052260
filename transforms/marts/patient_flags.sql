-- grain: one patient and safety or case-finding flag, as of the as-of date.
-- rule (CLINICAL_RULES section 5), each flag only when its switch is on in the profile:
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
with

settings as (
    select rules_settings.*
    from rules_settings
),

b12_treatment as (
    select
        int_patient_b12_treatment.patient_id,
        int_patient_b12_treatment.treatment_start
    from int_patient_b12_treatment
    inner join settings
        on int_patient_b12_treatment.as_of = settings.as_of
),

status_as_known_on_as_of as (
    -- the status on each evaluation date, with the results counted on the run's as_of
    select int_status_on_date.*
    from int_status_on_date
    inner join settings
        on int_status_on_date.as_of = settings.as_of
),

folic_acid_starts as (
    select distinct
        stg_medications.patient_id,
        stg_medications.start_date
    from stg_medications
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
        'folic acid started ' || strftime(folic_acid_before_b12.start_date, '%Y-%m-%d')
            || ' while status was ' || folic_acid_before_b12.status
            || ' (' || folic_acid_before_b12.rule_id || ': ' || folic_acid_before_b12.index_analyte || ' '
            || coalesce(folic_acid_before_b12.index_comparator, '')
            || printf('%.10g', folic_acid_before_b12.index_value)
            || coalesce(' ' || folic_acid_before_b12.index_unit, '')
            || ' on ' || strftime(folic_acid_before_b12.index_date, '%Y-%m-%d') || ')'
            || coalesce(
                '; B12 treatment started later, on ' || strftime(folic_acid_before_b12.treatment_start, '%Y-%m-%d'),
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
    from int_classified_results
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
    from int_classified_results as mcv
    cross join settings
    where mcv.analyte = 'mcv'
      and mcv.category = 'macrocytic'
      and settings.as_of between mcv.counted_from and mcv.counted_through
      and mcv.collected_on <= settings.as_of - settings.macrocytosis_window_after_days
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
        'MCV ' || coalesce(untested_macrocytosis.comparator, '')
            || printf('%.10g', untested_macrocytosis.value_reported)
            || coalesce(' ' || untested_macrocytosis.unit_reported, '')
            || ' on ' || strftime(untested_macrocytosis.collected_on, '%Y-%m-%d')
            || '; no b12 or holotc result from '
            || strftime(untested_macrocytosis.collected_on - settings.macrocytosis_window_before_days, '%Y-%m-%d')
            || ' to '
            || strftime(untested_macrocytosis.collected_on + settings.macrocytosis_window_after_days, '%Y-%m-%d')
            || case
                when untested_macrocytosis.untested_count > 1
                    then '; ' || untested_macrocytosis.untested_count || ' untested macrocytic MCV results since '
                        || strftime(untested_macrocytosis.first_untested_on, '%Y-%m-%d')
                else ''
            end as detail
    from untested_macrocytosis
    cross join settings
    where settings.flag_macrocytosis_not_tested_enabled
      and untested_macrocytosis.recency = 1
),

all_flags as (
    select * from folate_before_b12
    union all
    select * from macrocytosis_not_tested
),

final as (
    select
        all_flags.patient_id,
        all_flags.flag,
        all_flags.flag_date,
        all_flags.detail,
        int_patients_known.practice
    from all_flags
    left join int_patients_known
        on int_patients_known.patient_id = all_flags.patient_id
    order by all_flags.patient_id, all_flags.flag
)

select * from final
