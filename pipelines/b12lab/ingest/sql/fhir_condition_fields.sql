-- fhir_condition_fields: the lines of one FHIR Bulk Data Condition NDJSON file as the text fields of a
-- diagnoses export (the raw_file that diagnosis_rows.sql reads).
--
-- Grain: one record = one non-blank line; source_row is its 1-based line number in the file. A blank line
-- (empty or only whitespace) is not a record: it is skipped and not counted, so source_row may have gaps.
-- A line that is not valid JSON, or not a Condition, has every field null, which diagnosis_rows treats as
-- malformed_row. Any other missing value is '' (never null), so it meets the ordinary reasons.
-- Mapping (first match wins):
--   patient_id    subject.reference Patient/<id> (relative or absolute, /_history/ ignored) -> <id>
--   code_system   system of the first code.coding whose system is in ref_code_systems (ICD-10, ICD-9,
--                 SNOMED CT, by FHIR URL or name), else of the first code.coding (then: unknown_code_system);
--                 diagnosis_rows normalises it (http://hl7.org/fhir/sid/icd-10 -> ICD-10)
--   code          code of that same coding
--   recorded_at   recordedDate, onsetDateTime, onsetPeriod.start (a partial date such as 2019 is read by
--                 diagnosis_rows as its first day)
--   record_status verificationStatus code (refuted and entered-in-error conditions are dropped by
--                 diagnosis_rows). clinicalStatus is not used: a resolved or inactive pernicious anaemia is
--                 still a history of pernicious anaemia.
-- Input: fhir_records (source_row, line): the file's records, its non-blank lines, numbered;
-- ref_code_systems.
-- Macros: parse_resource, patient_of (b12lab/ingest/macros.py).

with parsed as (
    select
        source_row,
        parse_resource(line, '{
            "resourceType": "VARCHAR",
            "subject": {"reference": "VARCHAR"},
            "code": {"coding": [{"system": "VARCHAR", "code": "VARCHAR"}]},
            "recordedDate": "VARCHAR",
            "onsetDateTime": "VARCHAR",
            "onsetPeriod": {"start": "VARCHAR"},
            "verificationStatus": {"coding": [{"code": "VARCHAR"}]}
        }') as resource
    from fhir_records
),

conditions as (
    select source_row, resource
    from parsed
    where resource.resourceType = 'Condition'
),

known_systems as (
    select list(variant) as variants
    from ref_code_systems
),

codings as (
    select
        source_row,
        resource,
        coalesce(
            list_filter(resource.code.coding, lambda c: list_contains(variants, lower(trim(c.system))))[1],
            resource.code.coding[1]
        ) as coding
    from conditions
    cross join known_systems
),

fields as (
    select
        source_row,
        coalesce(patient_of(resource.subject.reference), '') as patient_id,
        coalesce(coding.system, '') as code_system,
        coalesce(coding.code, '') as code,
        coalesce(resource.recordedDate, resource.onsetDateTime, resource.onsetPeriod.start, '') as recorded_at,
        lower(resource.verificationStatus.coding[1].code) as record_status
    from codings
),

final as (
    select
        fhir_records.source_row,
        fields.patient_id,
        fields.code_system,
        fields.code,
        fields.recorded_at,
        fields.record_status,
        null::varchar as _overflow
    from fhir_records
    left join fields on fields.source_row = fhir_records.source_row
)

select * from final
