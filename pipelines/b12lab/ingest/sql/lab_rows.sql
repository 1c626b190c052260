-- lab_rows: one row per data record of one lab export file, with its outcome.
--
-- Grain: one input record (source_row). Every record gets exactly one outcome:
--   accepted     typed, mapped to an analyte, converted to the analyte's canonical unit;
--   quarantined  with the first failing reason, checked in this order:
--                malformed_row, oversized_row, unknown_analyte (no code at all), unknown_status,
--                missing_patient_id,
--                missing_date (no collection time), unparseable_date, implausible_date, future_date,
--                unparseable_value, unknown_unit, implausible_value;
--   dropped      by a named rule: out_of_scope (a code that maps to no analyte: a lipid panel, a vital sign, a
--                survey answer; counted per code in unmapped_codes, its text kept nowhere), cancelled,
--                entered_in_error (status), duplicate (an exact duplicate of a result already in the lake here;
--                of an earlier record of this file, or of an earlier file read with it, in lab_duplicates.sql,
--                which updates this model's rows straight after it).
-- Nothing is guessed: a unit, analyte or patient that is not known sends the row to quarantine. Dates are ISO
-- 8601 (2024-03-05, 2024-03-05T09:00:00): 05/03/2024, an Excel serial (45356) or 5-Mar-24 is unparseable_date.
-- A decimal comma is read only where it cannot be a thousands separator (0,35 and 12,5 are read; 1,234 could
-- be 1234 or 1.234 and is unparseable_value, as is any thousands separator). A value followed by the row's own
-- unit (245 pmol/L with unit pmol/L) or by a footnote mark (>2000*.) is read without it; value_raw keeps it.
-- An optional field that is given but cannot be read does not reject the row: the field is stored null and
-- named in unreadable_fields (resulted_at not ISO 8601; reference_range, of a numeric analyte, in no form
-- below), which the ingest counts per file and field (lake table unreadable_fields).
-- A reference range reads as low-high, <high, <=high, >low or >=low.
-- Inputs: raw_file (all fields as text, null = field missing from the record), the reference tables
-- ref_analyte_codes, ref_analytes, ref_units, ref_result_statuses, ref_qualitative_values, mapped_local_codes
-- (the local codes of the file's mapping, --mapping; empty for a file in the contract layout; a mapping's code
-- takes the place of a shipped local code of the same spelling), and
-- existing_lab_keys (the duplicate keys of results already in the lake). $ingest_date is the run's date.
-- iso_timestamp(text) (b12lab/ingest/macros.py) reads an ISO 8601 date or date-time, else null.

with source as (
    select * from raw_file
),

local_codes as (
    select upper(code) as code, analyte
    from mapped_local_codes
    union all
    select upper(code) as code, analyte
    from ref_analyte_codes
    where code_type = 'local' and upper(code) not in (select upper(code) from mapped_local_codes)
),

fields as (
    select
        source_row,
        -- A field that the record did not have at all is null (the reader pads short records with null);
        -- an empty field is ''. That difference is what tells a malformed record from an empty value.
        (patient_id is null or accession is null or loinc is null or local_code is null
            or test_name is null or result_value is null or unit is null or reference_range is null
            or abnormal_flag is null or status is null or collected_at is null or resulted_at is null
            or performing_lab is null or _overflow is not null) as is_malformed,
        -- clean_identifier (b12lab/ingest/macros.py): surrounding whitespace trimmed, tabs, line breaks and no-break
        -- spaces included; spaces inside and leading zeros are part of the identifier.
        clean_identifier(patient_id) as patient_id,
        nullif(trim(accession), '') as accession,
        nullif(trim(loinc), '') as loinc,
        nullif(trim(local_code), '') as local_code,
        nullif(trim(test_name), '') as test_name,
        nullif(trim(result_value), '') as value_raw,
        -- The value less what sites write after the number: the row's own unit (245 pmol/L), a footnote mark
        -- (>2000*.). Read from here on; value_raw keeps it as written.
        regexp_replace(
            case
                when nullif(trim(unit), '') is not null
                    and suffix(lower(trim(result_value)), lower(trim(unit)))
                    and regexp_matches(
                        left(trim(result_value), length(trim(result_value)) - length(trim(unit))), '[0-9.]\s*$')
                    then rtrim(left(trim(result_value), length(trim(result_value)) - length(trim(unit))))
                else trim(result_value)
            end,
            '\s*[*]+[.]?$', ''
        ) as value_read,
        nullif(trim(unit), '') as unit_raw,
        nullif(trim(reference_range), '') as reference_range,
        nullif(trim(abnormal_flag), '') as abnormal_flag,
        lower(trim(status)) as status_key,
        nullif(trim(collected_at), '') as collected_at_raw,
        nullif(trim(resulted_at), '') as resulted_at_raw,
        nullif(trim(performing_lab), '') as performing_lab,
        -- Unit spellings vary in case, spaces and the micro sign (U+00B5 or Greek mu U+03BC).
        replace(replace(replace(replace(lower(trim(unit)), ' ', ''), chr(181), 'u'), chr(956), 'u'), 'mcg', 'ug')
            as unit_key,
        concat_ws(',', patient_id, accession, loinc, local_code, test_name, result_value, unit,
            reference_range, abnormal_flag, status, collected_at, resulted_at, performing_lab, _overflow) as raw
    from source
),

values_read as (
    select
        fields.*,
        regexp_extract(
            -- A decimal comma is read as a point when the digits after it are not exactly three, or the digits
            -- before it are all zeros: then it cannot be a thousands separator.
            case
                when regexp_full_match(value_read,
                                       '(<=|>=|<|>|=)?\s*[+-]?(0+,[0-9]+|[0-9]+,([0-9]{1,2}|[0-9]{4,}))')
                    then replace(value_read, ',', '.')
                else value_read
            end,
            '^(<=|>=|<|>|=)?\s*([+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?)$',
            ['comparator', 'number']
        ) as value_parts
    from fields
),

mapped as (
    select
        fields.*,
        statuses.status,
        statuses.action as status_action,
        coalesce(by_loinc.analyte, by_local.analyte) as analyte,
        analytes.canonical_unit as unit_si,
        analytes.value_kind,
        units.unit_canonical_spelling as unit_reported,
        units.factor_to_canonical,
        qualitative.value_text as qualitative_text,
        iso_timestamp(collected_at_raw) as collected_at,
        iso_timestamp(resulted_at_raw) as resulted_at,
        nullif(value_parts['comparator'], '') as comparator_raw,
        try_cast(nullif(value_parts['number'], '') as double) as number_reported
    from values_read as fields
    left join ref_result_statuses as statuses
        on fields.status_key = statuses.status_raw
    left join ref_analyte_codes as by_loinc
        on by_loinc.code_type = 'loinc' and fields.loinc = by_loinc.code
    left join local_codes as by_local
        on upper(fields.local_code) = by_local.code
    left join ref_analytes as analytes
        on analytes.analyte = coalesce(by_loinc.analyte, by_local.analyte)
    left join ref_units as units
        on units.analyte = coalesce(by_loinc.analyte, by_local.analyte) and units.unit = fields.unit_key
    left join ref_qualitative_values as qualitative
        on qualitative.text = lower(fields.value_raw)
),

checked as (
    select
        mapped.*,
        case
            when is_malformed then 'malformed_row'
            when is_oversized(raw) then 'oversized_row'
            -- A record with a code that maps to no analyte is not damaged, it is about something else: dropped,
            -- whatever else is wrong with it. A record with no code at all cannot be told apart from a B12
            -- result with its code lost, so it is quarantined.
            when loinc is null and local_code is null then 'unknown_analyte'
            when analyte is null then 'out_of_scope'
            when status_action = 'drop_cancelled' then 'cancelled'
            when status_action = 'drop_entered_in_error' then 'entered_in_error'
            when status_action is null then 'unknown_status'
            when patient_id is null then 'missing_patient_id'
            when collected_at_raw is null then 'missing_date'
            when collected_at is null then 'unparseable_date'
            when collected_at < timestamp '1900-01-01' then 'implausible_date'
            when cast(collected_at as date) > $ingest_date then 'future_date'
            when value_kind = 'qualitative' and qualitative_text is null then 'unparseable_value'
            when value_kind = 'numeric' and number_reported is null then 'unparseable_value'
            when value_kind = 'numeric' and unit_reported is null then 'unknown_unit'
            -- Only the impossible is implausible: a concentration, count or volume cannot be zero or
            -- negative (nor so small that it is zero in the canonical unit), nor infinite, nor 1e10 or more in
            -- the canonical unit (above the solubility of every analyte here: 1e10 pmol/L of cobalamin is
            -- 13.5 g/L). Extreme but possible values are accepted (docs/models.md, Analytes and units).
            when value_kind = 'numeric'
                and not (round(number_reported * factor_to_canonical, 9) > 0
                         and round(number_reported * factor_to_canonical, 9) < 1e10) then 'implausible_value'
        end as reason
    from mapped
),

typed as (
    select
        checked.*,
        case when comparator_raw = '=' then null else comparator_raw end as comparator,
        case when value_kind = 'numeric' then number_reported end as value_reported,
        -- Rounded so that a conversion never adds floating-point noise that could cross a boundary
        -- (410 nmol/L * 0.001 is 0.41000000000000003 in binary floating point).
        case when value_kind = 'numeric' then round(number_reported * factor_to_canonical, 9) end as value_si,
        case when value_kind = 'qualitative' then qualitative_text end as value_text,
        regexp_extract(reference_range, '^\s*([0-9]*[.]?[0-9]+)\s*-\s*([0-9]*[.]?[0-9]+)\s*$', ['low', 'high'])
            as range_parts,
        regexp_extract(reference_range, '^\s*(<=|<)\s*([0-9]*[.]?[0-9]+)\s*$', 2) as range_upper_only,
        regexp_extract(reference_range, '^\s*(>=|>)\s*([0-9]*[.]?[0-9]+)\s*$', 2) as range_lower_only
    from checked
),

with_ranges as (
    select
        typed.*,
        round(
            coalesce(
                try_cast(nullif(range_parts['low'], '') as double),
                try_cast(nullif(range_lower_only, '') as double)
            ) * factor_to_canonical,
            9
        ) as ref_low_si,
        round(
            coalesce(
                try_cast(nullif(range_parts['high'], '') as double),
                try_cast(nullif(range_upper_only, '') as double)
            ) * factor_to_canonical,
            9
        ) as ref_high_si
    from typed
),

deduplicated as (
    select
        with_ranges.*,
        case
            when reason is not null then reason
            -- Exact duplicates (same patient, analyte, collection time, accession, status and value) of a
            -- result already in the lake. Those of an earlier record of this read: lab_duplicates.sql, next.
            when exists (
                select 1
                from existing_lab_keys as existing
                where existing.patient_id = with_ranges.patient_id
                    and existing.analyte = with_ranges.analyte
                    and existing.collected_at = with_ranges.collected_at
                    and existing.accession is not distinct from with_ranges.accession
                    and existing.status = with_ranges.status
                    and existing.comparator is not distinct from with_ranges.comparator
                    and existing.value_si is not distinct from with_ranges.value_si
                    and existing.value_text is not distinct from with_ranges.value_text
            ) then 'duplicate'
        end as final_reason
    from with_ranges
),

final as (
    select
        source_row,
        case
            when final_reason is null then 'accepted'
            when final_reason in ('out_of_scope', 'cancelled', 'entered_in_error', 'duplicate') then 'dropped'
            else 'quarantined'
        end as outcome,
        final_reason as reason,
        patient_id,
        accession,
        analyte,
        loinc,
        local_code,
        test_name,
        collected_at,
        resulted_at,
        value_raw,
        unit_raw,
        comparator,
        value_reported,
        unit_reported,
        value_si,
        unit_si,
        value_text,
        reference_range,
        ref_low_si,
        ref_high_si,
        abnormal_flag,
        status,
        performing_lab,
        -- The optional fields given but not read (stored null): counted per file and field for accepted rows.
        list_filter([
            case when resulted_at_raw is not null and resulted_at is null then 'resulted_at' end,
            case when value_kind = 'numeric' and reference_range is not null
                and ref_low_si is null and ref_high_si is null then 'reference_range' end
        ], lambda field: field is not null) as unreadable_fields,
        raw
    from deduplicated
)

select * from final
