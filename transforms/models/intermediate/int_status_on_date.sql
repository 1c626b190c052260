-- grain: one as-of date, patient and evaluation date (see int_status_evaluation_dates), with the
-- patient-level status on the evaluation date as known on the as-of date.
-- rule (docs/models.md, Patient status), for an evaluation date D:
--   * only results counted on the as-of date (stg_counted_results) and collected on or before D count;
--   * the index result is the most recent b12 or holotc result collected from D - lookback_days to D (both
--     ends included); on the same collection time the more severe category wins (then b12 before holotc,
--     then the lower value, then lineage order, so that the choice is always the same);
--   * the MMA window runs from the index date + mma_window_start_offset_days to the index date +
--     mma_window_end_offset_days, both included, and never past D;
--   * on B12 at D: a B12 medication record that started on or before D and has no end date or ends after D;
--   * the status rules, top to bottom, the first that matches wins:
--       B12_DEFICIENT / HOLOTC_DEFICIENT  the index result is deficient
--       FUNCTIONAL_MMA         borderline/indeterminate index and an elevated MMA in the MMA window
--       MMA_ON_SUPPLEMENT      on B12 at D and the latest MMA in the lookback taken on supplementation (a B12
--                              record active on its collection date: started on or before it, no end date or
--                              ending after it) is elevated; an MMA taken before supplementation does not count
--       BORDERLINE_MMA_NORMAL  borderline/indeterminate index and only normal MMA results in the window
--       BORDERLINE_NEEDS_MMA   borderline/indeterminate index and no MMA result in the window
--       NORMAL                 any other index result
--       NO_RECENT_RESULT       no b12 or holotc result in the lookback
-- index_*: the result the status rests on, as the lab reported it (value, unit, comparator) and in SI. That
-- is the b12/holotc index result, except for MMA_ON_SUPPLEMENT, where it is the elevated MMA result (the seed
-- makes MMA the primary test in supplemented patients, whose serum B12 says little). mma_*: the MMA result
-- that decided FUNCTIONAL_MMA, BORDERLINE_MMA_NORMAL or MMA_ON_SUPPLEMENT (the most severe in the window,
-- then the latest; for MMA_ON_SUPPLEMENT the latest in the lookback taken on supplementation).
-- Each pick ranks the patient's results once (precedence) and takes, per evaluation date, the minimum
-- precedence among the results that qualify, rather than ranking the results of every evaluation date.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

settings as (
    select rules_settings.*
    from {{ source('rules', 'rules_settings') }} as rules_settings
),

evaluation_dates as (
    select
        int_status_evaluation_dates.as_of,
        int_status_evaluation_dates.patient_id,
        int_status_evaluation_dates.evaluated_on
    from {{ rebuilt_patients_only(ref('int_status_evaluation_dates')) }} as int_status_evaluation_dates
),

index_results_ranked as (
    -- every counted b12/holotc result, with its precedence among the patient's results: the order in which
    -- the index result is picked (most recent first, then the tie-breakers of the rule above). Ranking once
    -- per patient, instead of once per evaluation date, leaves each date a minimum to find.
    select
        int_classified_results.patient_id,
        int_classified_results.collected_on,
        int_classified_results.counted_from,
        int_classified_results.counted_through,
        int_classified_results.category,
        struct_pack(
            analyte := int_classified_results.analyte,
            value_reported := int_classified_results.value_reported,
            unit_reported := int_classified_results.unit_reported,
            comparator := int_classified_results.comparator,
            value_si := int_classified_results.value_si,
            unit_si := int_classified_results.unit_si,
            collected_on := int_classified_results.collected_on,
            category := int_classified_results.category
        ) as result,
        row_number() over (
            partition by int_classified_results.patient_id
            order by
                int_classified_results.collected_at desc,
                int_classified_results.severity desc,
                int_classified_results.analyte,
                int_classified_results.value_si,
                int_classified_results.source_file,
                int_classified_results.source_row
        ) as precedence
    from {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
    where int_classified_results.analyte in ('b12', 'holotc')
      and int_classified_results.category is not null
),

index_picks as (
    -- every evaluation date, with the precedence of its index result (null: no result in the lookback)
    select
        evaluation_dates.as_of,
        evaluation_dates.patient_id,
        evaluation_dates.evaluated_on,
        min(index_results_ranked.precedence) as precedence
    from evaluation_dates
    cross join settings
    left join index_results_ranked
        on index_results_ranked.patient_id = evaluation_dates.patient_id
       and evaluation_dates.as_of
           between index_results_ranked.counted_from and index_results_ranked.counted_through
       and index_results_ranked.collected_on
           between evaluation_dates.evaluated_on - settings.lookback_days and evaluation_dates.evaluated_on
    group by evaluation_dates.as_of, evaluation_dates.patient_id, evaluation_dates.evaluated_on
),

index_results as not materialized (
    -- every evaluation date, with its index result (category and result null when there is none). Not
    -- materialized: its two readers (the MMA window's picks, the status rules) each join the picks again,
    -- where DuckDB would write every evaluation date's row once and spill it (the model: about 32 s to 25 s at
    -- 10M lab rows, its spill 6.1 GB to 3.9)
    select
        index_picks.as_of,
        index_picks.patient_id,
        index_picks.evaluated_on,
        index_results_ranked.category,
        index_results_ranked.result
    from index_picks
    left join index_results_ranked
        on index_results_ranked.patient_id = index_picks.patient_id
       and index_results_ranked.precedence = index_picks.precedence
),

mma_results as (
    -- every counted MMA result, with its precedence among the patient's MMA results in the two orders MMA
    -- results are picked in: most severe first in the window (decisiveness), most recent first in the
    -- lookback (recency)
    select
        int_classified_results.patient_id,
        int_classified_results.collected_on,
        int_classified_results.category,
        int_classified_results.counted_from,
        int_classified_results.counted_through,
        struct_pack(
            analyte := int_classified_results.analyte,
            value_reported := int_classified_results.value_reported,
            unit_reported := int_classified_results.unit_reported,
            comparator := int_classified_results.comparator,
            value_si := int_classified_results.value_si,
            unit_si := int_classified_results.unit_si,
            collected_on := int_classified_results.collected_on,
            category := int_classified_results.category
        ) as result,
        row_number() over (
            partition by int_classified_results.patient_id
            order by
                int_classified_results.severity desc,
                int_classified_results.collected_at desc,
                int_classified_results.value_si desc,
                int_classified_results.source_file,
                int_classified_results.source_row
        ) as decisiveness,
        row_number() over (
            partition by int_classified_results.patient_id
            order by
                int_classified_results.collected_at desc,
                int_classified_results.severity desc,
                int_classified_results.value_si desc,
                int_classified_results.source_file,
                int_classified_results.source_row
        ) as recency
    from {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
    where int_classified_results.analyte = 'mma'
      and int_classified_results.category is not null
),

window_mma_picks as (
    -- MMA results in the window around a borderline or indeterminate index result
    select
        index_results.as_of,
        index_results.patient_id,
        index_results.evaluated_on,
        min(mma_results.decisiveness) as decisiveness
    from index_results
    inner join mma_results
        on mma_results.patient_id = index_results.patient_id
    cross join settings
    where index_results.category in ('borderline', 'indeterminate')
      and index_results.as_of between mma_results.counted_from and mma_results.counted_through
      and mma_results.collected_on
          between index_results.result.collected_on + settings.mma_window_start_offset_days
              and index_results.result.collected_on + settings.mma_window_end_offset_days
      and mma_results.collected_on <= index_results.evaluated_on
    group by index_results.as_of, index_results.patient_id, index_results.evaluated_on
),

window_mma as (
    select
        window_mma_picks.as_of,
        window_mma_picks.patient_id,
        window_mma_picks.evaluated_on,
        mma_results.category,
        mma_results.result
    from window_mma_picks
    inner join mma_results
        on mma_results.patient_id = window_mma_picks.patient_id
       and mma_results.decisiveness = window_mma_picks.decisiveness
),

on_b12_supplementation as (
    select distinct
        evaluation_dates.as_of,
        evaluation_dates.patient_id,
        evaluation_dates.evaluated_on
    from evaluation_dates
    inner join {{ rebuilt_patients_only(ref('stg_medications')) }} as stg_medications
        on stg_medications.patient_id = evaluation_dates.patient_id
    where stg_medications.is_b12_drug
      and stg_medications.start_date <= evaluation_dates.evaluated_on
      and (stg_medications.end_date is null or stg_medications.end_date > evaluation_dates.evaluated_on)
),

mma_on_supplementation as (
    -- the MMA results collected while a B12 record was active: the only ones MMA_ON_SUPPLEMENT judges
    select mma_results.*
    from mma_results
    where exists (
        select 1
        from {{ rebuilt_patients_only(ref('stg_medications')) }} as stg_medications
        where stg_medications.patient_id = mma_results.patient_id
          and stg_medications.is_b12_drug
          and stg_medications.start_date <= mma_results.collected_on
          and (stg_medications.end_date is null or stg_medications.end_date > mma_results.collected_on)
    )
),

lookback_mma_picks as (
    -- the latest MMA taken on supplementation in the lookback only matters on a date the patient is on B12
    -- (MMA_ON_SUPPLEMENT)
    select
        on_b12_supplementation.as_of,
        on_b12_supplementation.patient_id,
        on_b12_supplementation.evaluated_on,
        min(mma_on_supplementation.recency) as recency
    from on_b12_supplementation
    inner join mma_on_supplementation
        on mma_on_supplementation.patient_id = on_b12_supplementation.patient_id
    cross join settings
    where on_b12_supplementation.as_of
          between mma_on_supplementation.counted_from and mma_on_supplementation.counted_through
      and mma_on_supplementation.collected_on
          between on_b12_supplementation.evaluated_on - settings.lookback_days and on_b12_supplementation.evaluated_on
    group by on_b12_supplementation.as_of, on_b12_supplementation.patient_id, on_b12_supplementation.evaluated_on
),

latest_mma as (
    select
        lookback_mma_picks.as_of,
        lookback_mma_picks.patient_id,
        lookback_mma_picks.evaluated_on,
        mma_results.category,
        mma_results.result
    from lookback_mma_picks
    inner join mma_results
        on mma_results.patient_id = lookback_mma_picks.patient_id
       and mma_results.recency = lookback_mma_picks.recency
),

supplementation_with_latest_mma as (
    select
        on_b12_supplementation.as_of,
        on_b12_supplementation.patient_id,
        on_b12_supplementation.evaluated_on,
        latest_mma.category as latest_mma_category,
        latest_mma.result as latest_mma_result
    from on_b12_supplementation
    left join latest_mma
        on latest_mma.patient_id = on_b12_supplementation.patient_id
       and latest_mma.evaluated_on = on_b12_supplementation.evaluated_on
       and latest_mma.as_of = on_b12_supplementation.as_of
),

status_rules as (
    select
        index_results.as_of,
        index_results.patient_id,
        index_results.evaluated_on,
        supplementation_with_latest_mma.patient_id is not null as on_b12,
        case
            when index_results.category = 'deficient' and index_results.result.analyte = 'b12'
                then 'B12_DEFICIENT'
            when index_results.category = 'deficient' and index_results.result.analyte = 'holotc'
                then 'HOLOTC_DEFICIENT'
            when index_results.category in ('borderline', 'indeterminate')
             and window_mma.category = 'elevated'
                then 'FUNCTIONAL_MMA'
            when supplementation_with_latest_mma.latest_mma_category = 'elevated'
                then 'MMA_ON_SUPPLEMENT'
            when index_results.category in ('borderline', 'indeterminate')
             and window_mma.category = 'normal'
                then 'BORDERLINE_MMA_NORMAL'
            when index_results.category in ('borderline', 'indeterminate')
                then 'BORDERLINE_NEEDS_MMA'
            when index_results.category is not null
                then 'NORMAL'
            else 'NO_RECENT_RESULT'
        end as rule_id,
        index_results.result as index_result,
        window_mma.result as window_mma_result,
        supplementation_with_latest_mma.latest_mma_result
    from index_results
    left join window_mma
        on window_mma.patient_id = index_results.patient_id
       and window_mma.evaluated_on = index_results.evaluated_on
       and window_mma.as_of = index_results.as_of
    left join supplementation_with_latest_mma
        on supplementation_with_latest_mma.patient_id = index_results.patient_id
       and supplementation_with_latest_mma.evaluated_on = index_results.evaluated_on
       and supplementation_with_latest_mma.as_of = index_results.as_of
),

evidence as (
    select
        status_rules.as_of,
        status_rules.patient_id,
        status_rules.evaluated_on,
        status_rules.rule_id,
        status_rules.on_b12,
        case
            when status_rules.rule_id = 'MMA_ON_SUPPLEMENT' then status_rules.latest_mma_result
            else status_rules.index_result
        end as index_evidence,
        case
            when status_rules.rule_id in ('FUNCTIONAL_MMA', 'BORDERLINE_MMA_NORMAL') then status_rules.window_mma_result
            when status_rules.rule_id = 'MMA_ON_SUPPLEMENT' then status_rules.latest_mma_result
        end as mma_evidence
    from status_rules
),

final as (
    select
        evidence.as_of,
        evidence.patient_id,
        evidence.evaluated_on,
        case evidence.rule_id
            when 'B12_DEFICIENT' then 'deficient'
            when 'HOLOTC_DEFICIENT' then 'deficient'
            when 'FUNCTIONAL_MMA' then 'deficient'
            when 'MMA_ON_SUPPLEMENT' then 'deficient'
            when 'BORDERLINE_MMA_NORMAL' then 'borderline_mma_normal'
            when 'BORDERLINE_NEEDS_MMA' then 'borderline_needs_mma'
            when 'NORMAL' then 'normal'
            when 'NO_RECENT_RESULT' then 'not_tested'
        end as status,
        evidence.rule_id,
        evidence.on_b12,
        evidence.index_evidence.analyte as index_analyte,
        evidence.index_evidence.value_reported as index_value,
        evidence.index_evidence.unit_reported as index_unit,
        evidence.index_evidence.collected_on as index_date,
        evidence.index_evidence.category as index_category,
        evidence.index_evidence.comparator as index_comparator,
        evidence.index_evidence.value_si as index_value_si,
        evidence.index_evidence.unit_si as index_unit_si,
        evidence.mma_evidence.value_reported as mma_value,
        evidence.mma_evidence.unit_reported as mma_unit,
        evidence.mma_evidence.collected_on as mma_date,
        evidence.mma_evidence.category as mma_category,
        evidence.mma_evidence.comparator as mma_comparator,
        evidence.mma_evidence.value_si as mma_value_si
    from evidence
)

select * from {{ built_in_buckets_or('final') }}
