-- patient_rows: one row per data record of one patients export file, with its outcome.
--
-- Grain: one input record (source_row). Quarantined: malformed_row, oversized_row, missing_patient_id,
-- unparseable_date (a birth or death date that is given but is not an ISO date), implausible_date (before 1900),
-- future_date.
-- Dropped: duplicate (the same patient twice in the file with identical fields: counted once).
-- An empty birth date, sex or practice is accepted as unknown. death_date is an optional column: empty or
-- absent, the patient is alive as far as the export says. deceased is true when a death date is given, or
-- when a FHIR Patient says deceasedBoolean true without a date (the raw field deceased, which CSV exports lack).
-- Dates are read by iso_timestamp(text) (b12lab/ingest/macros.py): ISO 8601 only, else null.

with source as (
    select * from raw_file
),

fields as (
    select
        source_row,
        (patient_id is null or birth_date is null or sex is null or practice is null
            or _overflow is not null) as is_malformed,
        -- clean_identifier (b12lab/ingest/macros.py): surrounding whitespace trimmed, tabs, line breaks and no-break
        -- spaces included; spaces inside and leading zeros are part of the identifier.
        clean_identifier(patient_id) as patient_id,
        nullif(trim(birth_date), '') as birth_date_raw,
        nullif(upper(trim(sex)), '') as sex,
        nullif(trim(practice), '') as practice,
        nullif(trim(death_date), '') as death_date_raw,
        lower(trim(deceased)) = 'true' as deceased_without_date,
        concat_ws(',', patient_id, birth_date, sex, practice, death_date, _overflow) as raw
    from source
),

typed as (
    select
        fields.*,
        -- A partial date (1950, 1950-07) is the first day of the period it names; its precision is kept.
        cast(iso_timestamp(partial_date(birth_date_raw)) as date) as birth_date,
        date_precision(birth_date_raw) as birth_date_precision,
        cast(iso_timestamp(partial_date(death_date_raw)) as date) as death_date,
        death_date_raw is not null or coalesce(deceased_without_date, false) as deceased
    from fields
),

checked as (
    select
        typed.*,
        case
            when is_malformed then 'malformed_row'
            when is_oversized(raw) then 'oversized_row'
            when patient_id is null then 'missing_patient_id'
            when birth_date_raw is not null and birth_date is null then 'unparseable_date'
            when birth_date < date '1900-01-01' then 'implausible_date'
            when birth_date > $ingest_date then 'future_date'
            when death_date_raw is not null and death_date is null then 'unparseable_date'
            when death_date < date '1900-01-01' then 'implausible_date'
            when death_date > $ingest_date then 'future_date'
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
                partition by record_file(source_row), reason is null, patient_id, birth_date, sex, practice, death_date, deceased
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
            when final_reason = 'duplicate' then 'dropped'
            else 'quarantined'
        end as outcome,
        final_reason as reason,
        patient_id,
        birth_date,
        birth_date_precision,
        sex,
        practice,
        death_date,
        deceased,
        raw
    from deduplicated
)

select * from final
