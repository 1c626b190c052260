-- grain: one lab result that counts on at least one as-of date D (stg_as_of_dates), with the as-of dates it
-- counts on: from counted_from to counted_through, both included (a result classification and patient
-- status may use on those dates).
-- rule (docs/models.md, "Which results count"), for an as-of date D:
--   * only final (F) and corrected (C) results count; preliminary (P) results stay in the lake, uncounted;
--   * only results collected on or before D count, so a report for a past date is reproducible: a result
--     counts from its collection date (counted_from);
--   * a corrected result replaces every other result with the same patient, accession and analyte; when an
--     accession was corrected more than once, the latest correction (by resulted_at) wins. Only corrections
--     collected on or before D take part on D, so a result counts up to the day before the first collection
--     date of a correction that replaces it (counted_through; 'infinity' when none does). Results without
--     an accession cannot be matched to a correction and all stay;
--   * exact duplicates (same patient, analyte, collection time, accession, comparator and value), e.g. the
--     same result in two export files, count once. The copies that can count at all count on the same
--     dates (same collection time and accession), so the copy kept is the same on every D.
-- A model counts a result on D when D is between counted_from and counted_through.
{{ config(materialized='incremental', schema='incremental', pre_hook=[before_begin("{{ delete_rebuilt_patients() }}"), "{{ forget_rebuilt_patients() }}"]) }}
with

as_of_range as (
    select max(stg_as_of_dates.as_of) as last_as_of
    from {{ ref('stg_as_of_dates') }} as stg_as_of_dates
),

final_or_corrected as (
    select
        lab_results.patient_id,
        lab_results.accession,
        lab_results.analyte,
        lab_results.collected_at,
        cast(lab_results.collected_at as date) as collected_on,
        lab_results.resulted_at,
        lab_results.comparator,
        lab_results.value_raw,
        lab_results.unit_raw,
        lab_results.value_reported,
        lab_results.unit_reported,
        lab_results.value_si,
        lab_results.unit_si,
        lab_results.value_text,
        lab_results.ref_low_si,
        lab_results.ref_high_si,
        lab_results.status,
        lab_results.performing_lab,
        lab_results.source_file,
        lab_results.source_row,
        lab_results.ingest_run
    from {{ rebuilt_patients_only(source('lake', 'lab_results')) }} as lab_results
    cross join as_of_range
    where lab_results.status in ('F', 'C')
      and cast(lab_results.collected_at as date) <= as_of_range.last_as_of
),

correction_dates as (
    select
        final_or_corrected.*,
        -- from this date on the accession has a counted correction, which replaces its final results
        min(case when final_or_corrected.status = 'C' then final_or_corrected.collected_on end)
            over accession_results as first_correction_on,
        -- from this date on a more recent result of the same status counts (for a correction: the one
        -- that replaces it; null for the latest)
        min(final_or_corrected.collected_on) over more_recent_within_status as more_recent_counted_on
    from final_or_corrected
    window
        accession_results as (
            partition by final_or_corrected.patient_id, final_or_corrected.accession, final_or_corrected.analyte
        ),
        more_recent_within_status as (
            partition by
                final_or_corrected.patient_id,
                final_or_corrected.accession,
                final_or_corrected.analyte,
                final_or_corrected.status
            order by
                final_or_corrected.resulted_at desc nulls last,
                final_or_corrected.ingest_run desc nulls last,
                final_or_corrected.source_file desc,
                final_or_corrected.source_row desc
            rows between unbounded preceding and 1 preceding
        )
),

replacement_dates as (
    select
        correction_dates.*,
        case
            when correction_dates.accession is null then null
            when correction_dates.status = 'C' then correction_dates.more_recent_counted_on
            else correction_dates.first_correction_on
        end as replaced_on
    from correction_dates
),

after_corrections as (
    -- a result replaced on or before its own collection date never counts
    select replacement_dates.*
    from replacement_dates
    where replacement_dates.replaced_on is null
       or replacement_dates.replaced_on > replacement_dates.collected_on
),

duplicate_ranked as (
    select
        after_corrections.*,
        row_number() over (
            partition by
                after_corrections.patient_id,
                after_corrections.analyte,
                after_corrections.collected_at,
                after_corrections.accession,
                after_corrections.comparator,
                after_corrections.value_si,
                after_corrections.value_text
            order by after_corrections.source_file, after_corrections.source_row
        ) as copy_number
    from after_corrections
),

final as (
    select
        duplicate_ranked.patient_id,
        duplicate_ranked.accession,
        duplicate_ranked.analyte,
        duplicate_ranked.collected_at,
        duplicate_ranked.collected_on,
        duplicate_ranked.resulted_at,
        duplicate_ranked.comparator,
        duplicate_ranked.value_raw,
        duplicate_ranked.unit_raw,
        duplicate_ranked.value_reported,
        duplicate_ranked.unit_reported,
        duplicate_ranked.value_si,
        duplicate_ranked.unit_si,
        duplicate_ranked.value_text,
        duplicate_ranked.ref_low_si,
        duplicate_ranked.ref_high_si,
        duplicate_ranked.status,
        duplicate_ranked.performing_lab,
        duplicate_ranked.source_file,
        duplicate_ranked.source_row,
        duplicate_ranked.collected_on as counted_from,
        coalesce(duplicate_ranked.replaced_on - 1, date 'infinity') as counted_through
    from duplicate_ranked
    where duplicate_ranked.copy_number = 1
)

select * from {{ built_in_buckets_or('final') }}
