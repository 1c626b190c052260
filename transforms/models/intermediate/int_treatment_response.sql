-- grain: one as-of date D (stg_as_of_dates), patient and follow-up window that has begun on D.
-- rule (docs/models.md, Treatment response): a patient with a treatment start S on or before D
-- (int_patient_b12_treatment) whose treatment answered a documented deficiency - a b12 or holotc result
-- categorised deficient, borderline or indeterminate, or an elevated mma, collected from
-- S - response_baseline_before_days to S and counted on D - has one row per window whose first day is on or
-- before D. The baseline is the latest such result (ties on the collection time: the more severe category).
-- route_class: the B12 records that start on S decide it; intramuscular when any of them has a route of the
-- value set intramuscular_route, else oral when any has one of oral_route, else unknown.
-- Windows (days after S, both ends included, rules settings): 1m, 3-6m, 12m. window_end is cut at D while D is
-- inside the window; window_closed when the whole window is on or before D. The window's result is its first
-- counted b12 result collected from window_start to window_end (ties on the collection time: the more severe
-- category); holotc and mma results are not a window's result. not_deficient: that result's category is not
-- deficient; at_target: int_classified_results' at_target (compared in the reported unit). No b12 result in the
-- window: the result columns are null. A patient deceased on D (int_patient_status.deceased) has no row.
-- treatment_response is this model on the run's as_of; cohort_counts counts the 3-6m rows on every date, for
-- the measure treated_at_target_3_6m and its trend.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

settings as (
    select rules_settings.*
    from {{ source('rules', 'rules_settings') }} as rules_settings
),

windows as (
    select '1m' as window, 1 as window_order,
           settings.response_1m_start_days as start_days, settings.response_1m_end_days as end_days
    from settings
    union all
    select '3-6m', 2, settings.response_3_6m_start_days, settings.response_3_6m_end_days
    from settings
    union all
    select '12m', 3, settings.response_12m_start_days, settings.response_12m_end_days
    from settings
),

living_treated as (
    -- the treatment start known on D, for patients alive on D
    select
        int_patient_b12_treatment.as_of,
        int_patient_b12_treatment.patient_id,
        int_patient_b12_treatment.treatment_start,
        int_patient_status.practice,
        int_patient_status.has_pa
    from {{ rebuilt_patients_only(ref('int_patient_status')) }} as int_patient_status
    inner join {{ rebuilt_patients_only(ref('int_patient_b12_treatment')) }} as int_patient_b12_treatment
        on int_patient_b12_treatment.as_of = int_patient_status.as_of
       and int_patient_b12_treatment.patient_id = int_patient_status.patient_id
    where int_patient_status.deceased is not true
),

baseline_ranked as (
    select
        living_treated.as_of,
        living_treated.patient_id,
        int_classified_results.analyte,
        int_classified_results.value_si,
        int_classified_results.collected_on,
        row_number() over (
            partition by living_treated.as_of, living_treated.patient_id
            order by
                int_classified_results.collected_at desc,
                int_classified_results.severity desc,
                int_classified_results.analyte,
                int_classified_results.value_si,
                int_classified_results.source_file,
                int_classified_results.source_row
        ) as recency
    from living_treated
    inner join {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
        on int_classified_results.patient_id = living_treated.patient_id
       and living_treated.as_of between int_classified_results.counted_from and int_classified_results.counted_through
    cross join settings
    where int_classified_results.collected_on
              between living_treated.treatment_start - settings.response_baseline_before_days
              and living_treated.treatment_start
      and (
          (int_classified_results.analyte in ('b12', 'holotc')
           and int_classified_results.category in ('deficient', 'borderline', 'indeterminate'))
          or (int_classified_results.analyte = 'mma' and int_classified_results.category = 'elevated')
      )
),

baseline as (
    select baseline_ranked.*
    from baseline_ranked
    where baseline_ranked.recency = 1
),

first_records as (
    -- the B12 records that start S: their routes decide the route class (intramuscular wins)
    select
        living_treated.as_of,
        living_treated.patient_id,
        case
            when bool_or(stg_medications.is_intramuscular) then 'intramuscular'
            when bool_or(stg_medications.is_oral) then 'oral'
            else 'unknown'
        end as route_class
    from living_treated
    inner join {{ rebuilt_patients_only(ref('stg_medications')) }} as stg_medications
        on stg_medications.patient_id = living_treated.patient_id
       and stg_medications.start_date = living_treated.treatment_start
    where stg_medications.is_b12_drug
    group by living_treated.as_of, living_treated.patient_id
),

begun_windows as (
    select
        living_treated.as_of,
        living_treated.patient_id,
        living_treated.practice,
        living_treated.treatment_start,
        first_records.route_class,
        living_treated.has_pa,
        baseline.analyte as baseline_analyte,
        baseline.value_si as baseline_value_si,
        baseline.collected_on as baseline_date,
        windows.window,
        windows.window_order,
        living_treated.treatment_start + windows.start_days as window_start,
        least(living_treated.treatment_start + windows.end_days, living_treated.as_of) as window_end,
        living_treated.treatment_start + windows.end_days <= living_treated.as_of as window_closed
    from living_treated
    inner join baseline
        on baseline.as_of = living_treated.as_of
       and baseline.patient_id = living_treated.patient_id
    inner join first_records
        on first_records.as_of = living_treated.as_of
       and first_records.patient_id = living_treated.patient_id
    cross join windows
    where living_treated.treatment_start + windows.start_days <= living_treated.as_of
),

window_results as (
    select
        begun_windows.as_of,
        begun_windows.patient_id,
        begun_windows.window,
        int_classified_results.collected_on,
        int_classified_results.value_si,
        int_classified_results.value_raw,
        int_classified_results.unit_raw,
        int_classified_results.category,
        int_classified_results.at_target,
        row_number() over (
            partition by begun_windows.as_of, begun_windows.patient_id, begun_windows.window
            order by
                int_classified_results.collected_at,
                int_classified_results.severity desc,
                int_classified_results.value_si,
                int_classified_results.source_file,
                int_classified_results.source_row
        ) as arrival
    from {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
    inner join begun_windows
        on begun_windows.patient_id = int_classified_results.patient_id
       and begun_windows.as_of between int_classified_results.counted_from and int_classified_results.counted_through
       and int_classified_results.collected_on between begun_windows.window_start and begun_windows.window_end
    where int_classified_results.analyte = 'b12'
),

first_window_results as (
    select window_results.*
    from window_results
    where window_results.arrival = 1
),

final as (
    select
        begun_windows.as_of,
        begun_windows.patient_id,
        begun_windows.practice,
        begun_windows.treatment_start,
        begun_windows.route_class,
        begun_windows.has_pa,
        begun_windows.baseline_analyte,
        begun_windows.baseline_value_si,
        begun_windows.baseline_date,
        begun_windows.window,
        begun_windows.window_order,
        begun_windows.window_start,
        begun_windows.window_end,
        begun_windows.window_closed,
        first_window_results.collected_on as result_date,
        first_window_results.value_si as result_value_si,
        first_window_results.value_raw as result_value_raw,
        first_window_results.unit_raw as result_unit_raw,
        first_window_results.category <> 'deficient' as not_deficient,
        first_window_results.at_target
    from begun_windows
    left join first_window_results
        on first_window_results.as_of = begun_windows.as_of
       and first_window_results.patient_id = begun_windows.patient_id
       and first_window_results.window = begun_windows.window
)

select * from {{ built_in_buckets_or('final') }}
