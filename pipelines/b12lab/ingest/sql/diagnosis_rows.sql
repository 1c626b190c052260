-- diagnosis_rows: one row per data record of one diagnoses export file, with its outcome.
--
-- Grain: one input record (source_row). The code system is normalised through ref_code_systems (ICD10,
-- ICD-10-CM and the FHIR system URL all become ICD-10). Quarantined: malformed_row, oversized_row,
-- missing_patient_id, unknown_code_system, missing_code, missing_date (no date at all), unparseable_date,
-- implausible_date, future_date.
-- Dropped: refuted and entered_in_error (a FHIR Condition's verificationStatus, in record_status, which is
-- null for CSV exports), duplicate (same patient, code system, code and date).
-- An empty recorded_at is an undated diagnosis, accepted with recorded_at null (a FHIR Condition without onset
-- or recorded date likewise); a recorded_at that is given but cannot be read is unparseable_date.
-- Dates are read by iso_timestamp(text) (b12lab/ingest/macros.py): ISO 8601 only, else null.

with source as (
    select * from raw_file
),

fields as (
    select
        source_row,
        (patient_id is null or code_system is null or code is null or recorded_at is null
            or _overflow is not null) as is_malformed,
        -- clean_identifier (b12lab/ingest/macros.py): surrounding whitespace trimmed, tabs, line breaks and no-break
        -- spaces included; spaces inside and leading zeros are part of the identifier.
        clean_identifier(patient_id) as patient_id,
        lower(trim(code_system)) as code_system_key,
        nullif(trim(code), '') as code,
        nullif(trim(recorded_at), '') as recorded_at_raw,
        record_status,
        concat_ws(',', patient_id, code_system, code, recorded_at, _overflow) as raw
    from source
),

typed as (
    select
        fields.*,
        systems.code_system,
        -- ICD codes arrive with and without the dot (D51.0, D510): compare on a dotless upper-case form.
        upper(replace(replace(fields.code, '.', ''), ' ', '')) as code_normalised,
        -- A partial date (2019, 2019-07) is the first day of the period it names; its precision is kept.
        cast(iso_timestamp(partial_date(recorded_at_raw)) as date) as recorded_at,
        date_precision(recorded_at_raw) as recorded_at_precision
    from fields
    left join ref_code_systems as systems
        on fields.code_system_key = systems.variant
),

checked as (
    select
        typed.*,
        case
            when is_malformed then 'malformed_row'
            when is_oversized(raw) then 'oversized_row'
            when record_status = 'entered-in-error' then 'entered_in_error'
            when record_status = 'refuted' then 'refuted'
            when patient_id is null then 'missing_patient_id'
            when code_system is null then 'unknown_code_system'
            when code is null then 'missing_code'
            when recorded_at_raw is not null and recorded_at is null then 'unparseable_date'
            when recorded_at < date '1900-01-01' then 'implausible_date'
            when recorded_at > $ingest_date then 'future_date'
        end as reason
    from typed
),

deduplicated as (
    select
        checked.*,
        case
            when reason is not null then reason
            -- Within one file: record_file tells the files of a task that reads several small Bundles at once.
            when row_number() over (
                partition by record_file(source_row), reason is null, patient_id, code_system, code_normalised, recorded_at
                order by source_row
            ) > 1 then 'duplicate'
        end as final_reason
    from checked
),

final as (
    select
        source_row,
        case
            when final_reason is null then 'accepted'
            when final_reason in ('duplicate', 'entered_in_error', 'refuted') then 'dropped'
            else 'quarantined'
        end as outcome,
        final_reason as reason,
        patient_id,
        code_system,
        code,
        code_normalised,
        recorded_at,
        recorded_at_precision,
        raw
    from deduplicated
)

select * from final
