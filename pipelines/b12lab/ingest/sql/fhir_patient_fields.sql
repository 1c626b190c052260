-- fhir_patient_fields: the lines of one FHIR Bulk Data Patient NDJSON file as the text fields of a patients
-- export (the raw_file that patient_rows.sql reads).
--
-- Grain: one record = one non-blank line; source_row is its 1-based line number in the file. A blank line
-- (empty or only whitespace) is not a record: it is skipped and not counted, so source_row may have gaps.
-- A line that is not valid JSON, or not a Patient, has every field null, which patient_rows treats as
-- malformed_row. Any other missing value is '' (never null), so it meets the ordinary reasons.
-- Mapping (first match wins):
--   patient_id   id
--   birth_date   birthDate (a partial date such as 1950 or 1950-02 is read by patient_rows as its first day)
--   sex          gender: male -> M, female -> F, other -> O, unknown -> U; any other value as given
--   practice     generalPractitioner[0].display, managingOrganization.display, else the name of the
--                Organization that generalPractitioner[0] or managingOrganization references, when the export
--                holds it (fhir_references: Organization NDJSON files of the drop folder, or Bundle entries)
--   death_date   deceasedDateTime (its date part)
--   deceased     'true' when deceasedBoolean is true (dead, date unknown) or deceasedDateTime is given
-- Input: fhir_records (source_row, line): the file's records, its non-blank lines, numbered; fhir_references
-- (reference, resource_type, line): the resources other resources may reference.
-- Macros: parse_resource, reference_key (b12lab/ingest/macros.py).

with parsed as (
    select
        source_row,
        parse_resource(line, '{
            "resourceType": "VARCHAR",
            "id": "VARCHAR",
            "birthDate": "VARCHAR",
            "gender": "VARCHAR",
            "generalPractitioner": [{"reference": "VARCHAR", "display": "VARCHAR"}],
            "managingOrganization": {"reference": "VARCHAR", "display": "VARCHAR"},
            "deceasedBoolean": "BOOLEAN",
            "deceasedDateTime": "VARCHAR"
        }') as resource
    from fhir_records
),

organizations as (
    select reference, json_extract_string(line, '$.name') as name
    from fhir_references
    where resource_type = 'Organization'
),

patients as (
    select
        parsed.source_row,
        parsed.resource,
        coalesce(by_practitioner.name, by_managing.name) as organization_name
    from parsed
    left join organizations as by_practitioner
        on by_practitioner.reference = reference_key(parsed.resource.generalPractitioner[1].reference, 'Organization')
    left join organizations as by_managing
        on by_managing.reference = reference_key(parsed.resource.managingOrganization.reference, 'Organization')
    where parsed.resource.resourceType = 'Patient'
),

fields as (
    select
        source_row,
        coalesce(resource.id, '') as patient_id,
        coalesce(resource.birthDate, '') as birth_date,
        case lower(resource.gender)
            when 'male' then 'M'
            when 'female' then 'F'
            when 'other' then 'O'
            when 'unknown' then 'U'
            else coalesce(resource.gender, '')
        end as sex,
        coalesce(
            nullif(resource.generalPractitioner[1].display, ''), nullif(resource.managingOrganization.display, ''),
            organization_name, ''
        ) as practice,
        -- a dateTime's date part: deceasedDateTime may carry a time and zone
        coalesce(left(resource.deceasedDateTime, 10), '') as death_date,
        case
            when resource.deceasedBoolean or nullif(resource.deceasedDateTime, '') is not null then 'true'
            else ''
        end as deceased
    from patients
),

final as (
    select
        fhir_records.source_row,
        fields.patient_id,
        fields.birth_date,
        fields.sex,
        fields.practice,
        fields.death_date,
        fields.deceased,
        null::varchar as _overflow
    from fhir_records
    left join fields on fields.source_row = fhir_records.source_row
)

select * from final
