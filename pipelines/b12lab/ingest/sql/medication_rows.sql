-- medication_rows: one row per data record of one medications export file, with its outcome.
--
-- Grain: one input record (source_row). Quarantined: malformed_row, oversized_row, missing_patient_id,
-- missing_drug (no drug name and no ATC code), unparseable_date (start date not ISO, or an end date given but
-- not ISO), implausible_date (before 1900), end_before_start. A start date in the future is accepted:
-- planned prescriptions are real and the rules only count records started on or before the as-of date.
-- Dropped: draft (a FHIR request never issued), entered_in_error, not_taken (a FHIR statement), read from
-- record_status, which is null for CSV exports; missing_date (no start date at all: valid FHIR, a request
-- that cannot be placed in time, so no evidence for the rules; dropped, never damage); duplicate (identical
-- record). A cancelled, completed or stopped
-- FHIR record is kept, ended (its fields model gives it an end date).
-- route_terms: every term of a FHIR coded route (its text, codings' displays and codes), which a route value set
-- is matched against; null for a CSV export, whose route is its only term.
-- Dates may be partial (2019, 2019-07): read as the first day of the period they name.
-- Dates are read by iso_timestamp(text) (b12lab/ingest/macros.py): ISO 8601 only, else null.

with source as (
    select * from raw_file
),

fields as (
    select
        source_row,
        (patient_id is null or drug is null or atc_code is null or route is null or dose is null
            or start_date is null or end_date is null or _overflow is not null) as is_malformed,
        -- clean_identifier (b12lab/ingest/macros.py): surrounding whitespace trimmed, tabs, line breaks and no-break
        -- spaces included; spaces inside and leading zeros are part of the identifier.
        clean_identifier(patient_id) as patient_id,
        nullif(trim(drug), '') as drug,
        nullif(upper(trim(atc_code)), '') as atc_code,
        nullif(trim(route), '') as route,
        nullif(string_split(route_terms, chr(31)), []) as route_terms,
        nullif(trim(dose), '') as dose,
        nullif(trim(start_date), '') as start_date_raw,
        nullif(trim(end_date), '') as end_date_raw,
        record_status,
        concat_ws(',', patient_id, drug, atc_code, route, dose, start_date, end_date, _overflow) as raw
    from source
),

typed as (
    select
        fields.*,
        cast(iso_timestamp(partial_date(start_date_raw)) as date) as start_date,
        cast(iso_timestamp(partial_date(end_date_raw)) as date) as end_date
    from fields
),

checked as (
    select
        typed.*,
        case
            when is_malformed then 'malformed_row'
            when is_oversized(raw) then 'oversized_row'
            when record_status = 'entered-in-error' then 'entered_in_error'
            when record_status = 'draft' then 'draft'
            when record_status = 'not-taken' then 'not_taken'
            when patient_id is null then 'missing_patient_id'
            when drug is null and atc_code is null then 'missing_drug'
            when start_date_raw is null then 'missing_date'
            when start_date is null then 'unparseable_date'
            when end_date_raw is not null and end_date is null then 'unparseable_date'
            when start_date < date '1900-01-01' then 'implausible_date'
            when end_date < start_date then 'end_before_start'
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
                partition by record_file(source_row), reason is null, patient_id, drug, atc_code, route, route_terms, dose, start_date, end_date
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
            when final_reason in ('duplicate', 'draft', 'entered_in_error', 'not_taken', 'missing_date')
                then 'dropped'
            else 'quarantined'
        end as outcome,
        final_reason as reason,
        patient_id,
        drug,
        atc_code,
        route,
        route_terms,
        dose,
        start_date,
        end_date,
        raw
    from deduplicated
)

select * from final
