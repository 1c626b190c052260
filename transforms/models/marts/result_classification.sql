-- grain: one counted lab result (final or corrected, corrections applied, duplicates once, collected on or
-- before as-of), with its category and the rule_id that set it.
-- rule: docs/models.md, Result categories, computed in int_classified_results (see there for every boundary). B12 is
-- compared in the unit the lab reported (compared_value / compared_unit say which); a censored result
-- (comparator set) gets the most severe category any consistent value could have; at_target is the
-- treatment-target flag (b12, homocysteine), not a category; folate and haemoglobin are counted but not
-- classified (category and rule_id null). The results are those counted on the run's as_of
-- (stg_counted_results: counted_from to counted_through).
-- The rows are in no order (sorting 11M rows by patient was 12 s of a full build at 10M lab rows, and an
-- incremental night appends its rebuilt patients' rows anyway): readers order by the columns they need.
{{ config(materialized='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

settings as (
    select stg_run_as_of.as_of
    from {{ ref('stg_run_as_of') }} as stg_run_as_of
),

classified as (
    select int_classified_results.*
    from {{ rebuilt_patients_only(ref('int_classified_results')) }} as int_classified_results
    inner join settings
        on settings.as_of between int_classified_results.counted_from and int_classified_results.counted_through
),

final as (
    select
        classified.patient_id,
        classified.analyte,
        classified.collected_at,
        classified.value_si,
        classified.unit_si,
        classified.comparator,
        classified.value_reported,
        classified.unit_reported,
        classified.censored,
        classified.category,
        classified.at_target,
        classified.rule_id,
        classified.value_text,
        classified.collected_on,
        classified.compared_value,
        classified.compared_unit,
        classified.upper_limit_applied,
        classified.accession,
        classified.status,
        classified.resulted_at,
        classified.performing_lab,
        classified.source_file,
        classified.source_row
    from classified
)

select * from {{ built_in_buckets_or('final') }}
