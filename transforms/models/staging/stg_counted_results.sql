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
{#- a result without accession among the copied ones: the same patient, analyte, time and value (nulls equal) -#}
{% set a_copy_of_the_result %}
copied_without_accession.patient_id = final_or_corrected.patient_id
       and copied_without_accession.analyte = final_or_corrected.analyte
       and copied_without_accession.collected_at = final_or_corrected.collected_at
       and copied_without_accession.accession is not distinct from final_or_corrected.accession
       and copied_without_accession.comparator is not distinct from final_or_corrected.comparator
       and copied_without_accession.value_si is not distinct from final_or_corrected.value_si
       and copied_without_accession.value_text is not distinct from final_or_corrected.value_text
{%- endset %}
with

as_of_range as (
    select max(stg_as_of_dates.as_of) as last_as_of
    from {{ ref('stg_as_of_dates') }} as stg_as_of_dates
),

-- Read once per use below, never held whole (not materialized): every result that can count on some date.
final_or_corrected as not materialized (
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

-- Only a result that shares its patient, accession and analyte with another can be replaced, or be a copy with
-- an accession: those few (2 % of the results of a five-year export) go through the window functions below,
-- and every other result counts from its collection date on. Ranking every result instead sorted them all,
-- two sorts of every column: a minute of the full build at 10M lab rows.
accession_groups as (
    select final_or_corrected.patient_id, final_or_corrected.accession, final_or_corrected.analyte
    from final_or_corrected
    where final_or_corrected.accession is not null
    group by final_or_corrected.patient_id, final_or_corrected.accession, final_or_corrected.analyte
    having count(*) > 1
),

grouped_results as (
    select final_or_corrected.*
    from final_or_corrected
    semi join accession_groups
        on accession_groups.patient_id = final_or_corrected.patient_id
       and accession_groups.accession = final_or_corrected.accession
       and accession_groups.analyte = final_or_corrected.analyte
),

correction_dates as (
    select
        grouped_results.*,
        -- from this date on the accession has a counted correction, which replaces its final results
        min(case when grouped_results.status = 'C' then grouped_results.collected_on end)
            over accession_results as first_correction_on,
        -- from this date on a more recent result of the same status counts (for a correction: the one
        -- that replaces it; null for the latest)
        min(grouped_results.collected_on) over more_recent_within_status as more_recent_counted_on
    from grouped_results
    window
        accession_results as (
            partition by grouped_results.patient_id, grouped_results.accession, grouped_results.analyte
        ),
        more_recent_within_status as (
            partition by
                grouped_results.patient_id,
                grouped_results.accession,
                grouped_results.analyte,
                grouped_results.status
            order by
                grouped_results.resulted_at desc nulls last,
                grouped_results.ingest_run desc nulls last,
                grouped_results.source_file desc,
                grouped_results.source_row desc
            rows between unbounded preceding and 1 preceding
        )
),

replacement_dates as (
    select
        correction_dates.* exclude (first_correction_on, more_recent_counted_on),
        case
            when correction_dates.status = 'C' then correction_dates.more_recent_counted_on
            else correction_dates.first_correction_on
        end as replaced_on
    from correction_dates
),

grouped_after_corrections as (
    -- a result replaced on or before its own collection date never counts
    select replacement_dates.*
    from replacement_dates
    where replacement_dates.replaced_on is null
       or replacement_dates.replaced_on > replacement_dates.collected_on
),

-- Exact duplicates (the same result in two export files) share their accession, so with an accession they
-- are in grouped_results; without one they are among the results whose copies are looked for here.
copied_without_accession as (
    select
        final_or_corrected.patient_id,
        final_or_corrected.analyte,
        final_or_corrected.collected_at,
        final_or_corrected.accession,
        final_or_corrected.comparator,
        final_or_corrected.value_si,
        final_or_corrected.value_text
    from final_or_corrected
    where final_or_corrected.accession is null
    group by all
    having count(*) > 1
),

copies_without_accession as (
    select final_or_corrected.*, cast(null as date) as replaced_on
    from final_or_corrected
    semi join copied_without_accession
        on {{ a_copy_of_the_result }}
),

duplicate_ranked as (
    select
        candidates.*,
        row_number() over (
            partition by
                candidates.patient_id,
                candidates.analyte,
                candidates.collected_at,
                candidates.accession,
                candidates.comparator,
                candidates.value_si,
                candidates.value_text
            order by candidates.source_file, candidates.source_row
        ) as copy_number
    from (
        select * from grouped_after_corrections
        union all by name
        select * from copies_without_accession
    ) as candidates
),

single_results as (
    -- no other result with its accession (or none at all), and no copy: counted from its collection date on
    select final_or_corrected.*, cast(null as date) as replaced_on
    from final_or_corrected
    anti join accession_groups
        on accession_groups.patient_id = final_or_corrected.patient_id
       and accession_groups.accession = final_or_corrected.accession
       and accession_groups.analyte = final_or_corrected.analyte
    anti join copied_without_accession
        on {{ a_copy_of_the_result }}
),

counted_results as (
    select duplicate_ranked.* exclude (copy_number)
    from duplicate_ranked
    where duplicate_ranked.copy_number = 1
    union all by name
    select * from single_results
),

final as (
    select
        counted_results.patient_id,
        counted_results.accession,
        counted_results.analyte,
        counted_results.collected_at,
        counted_results.collected_on,
        counted_results.resulted_at,
        counted_results.comparator,
        counted_results.value_raw,
        counted_results.unit_raw,
        counted_results.value_reported,
        counted_results.unit_reported,
        counted_results.value_si,
        counted_results.unit_si,
        counted_results.value_text,
        counted_results.ref_low_si,
        counted_results.ref_high_si,
        counted_results.status,
        counted_results.performing_lab,
        counted_results.source_file,
        counted_results.source_row,
        counted_results.collected_on as counted_from,
        coalesce(counted_results.replaced_on - 1, date 'infinity') as counted_through
    from counted_results
)

select * from {{ built_in_buckets_or('final') }}
