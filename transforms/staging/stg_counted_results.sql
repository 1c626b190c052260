-- grain: one counted lab result (a result that classification and patient status may use).
-- rule (CLINICAL_RULES section 2, "Which results count"):
--   * only final (F) and corrected (C) results count; preliminary (P) results stay in the lake, uncounted;
--   * a corrected result replaces every other result with the same patient, accession and analyte; when an
--     accession was corrected more than once, the latest correction (by resulted_at) wins. Results without
--     an accession cannot be matched to a correction and all stay;
--   * exact duplicates (same patient, analyte, collection time, accession, comparator and value), e.g. the
--     same result in two export files, count once;
--   * only results collected on or before the as-of date count, so a report for a past date is reproducible.
with

settings as (
    select rules_settings.as_of
    from rules_settings
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
    from lab_results
    cross join settings
    where lab_results.status in ('F', 'C')
      and cast(lab_results.collected_at as date) <= settings.as_of
),

correction_ranked as (
    select
        final_or_corrected.*,
        bool_or(final_or_corrected.status = 'C') over accession_results as accession_was_corrected,
        row_number() over (
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
        ) as recency_within_status
    from final_or_corrected
    window accession_results as (
        partition by final_or_corrected.patient_id, final_or_corrected.accession, final_or_corrected.analyte
    )
),

after_corrections as (
    select correction_ranked.*
    from correction_ranked
    where correction_ranked.accession is null
       or not correction_ranked.accession_was_corrected
       or (correction_ranked.status = 'C' and correction_ranked.recency_within_status = 1)
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
        duplicate_ranked.source_row
    from duplicate_ranked
    where duplicate_ranked.copy_number = 1
)

select * from final
