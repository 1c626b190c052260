-- fhir_medicationrequest_fields: the lines of one FHIR Bulk Data MedicationRequest NDJSON file as the text
-- fields of a medications export (the raw_file that medication_rows.sql reads).
--
-- Grain: one record = one non-blank line; source_row is its 1-based line number in the file. A blank line
-- (empty or only whitespace) is not a record: it is skipped and not counted, so source_row may have gaps.
-- A line that is not valid JSON, or not a MedicationRequest, has every field null, which medication_rows
-- treats as malformed_row. Any other missing value is '' (never null), so it meets the ordinary reasons.
-- Mapping (first match wins; dosage = dosageInstruction[0]):
--   patient_id   subject.reference Patient/<id> (relative or absolute, /_history/ ignored) -> <id>
--   medication   medicationCodeableConcept, else the code of the Medication that medicationReference names:
--                a contained one (#id), else one of the same export (fhir_references: Medication NDJSON
--                files of the drop folder, or the Bundle's Medication entries)
--   drug         medication.text, medication.coding[0].display (RxNorm, SNOMED CT or any other system)
--   atc_code     medication.coding[system = http://www.whocc.no/atc].code
--   route        dosage.route.text, else dosage.route.coding[0].display, else its code (SNOMED CT 78421000 is intramuscular)
--   dose         dosage.doseAndRate[0].doseQuantity: value and unit (or UCUM code), space separated
--   start_date   dosage.timing.repeat.boundsPeriod.start, dispenseRequest.validityPeriod.start, authoredOn
--   end_date     status decides: active, on-hold (and any other) keep the record ongoing unless
--                dosage.timing.repeat.boundsPeriod.end ends it; completed, stopped and cancelled end it at
--                boundsPeriod.end, else dispenseRequest.validityPeriod.end, else its own start date
--   record_status status (draft and entered-in-error requests are dropped by medication_rows)
-- Input: fhir_references (reference, resource_type, line): the resources other resources may reference.
-- Input: fhir_lines (source_row, line): every line of the file, numbered.

with lines as (
    select source_row, line
    from fhir_lines
    where not regexp_full_match(line, '\s*')
),

parsed as (
    select
        source_row,
        -- Parsed once into the subset of the resource that is used; a value of another JSON type than
        -- declared reads as null, a number declared VARCHAR reads as its text.
        case when json_valid(line) then from_json(line, '{
            "resourceType": "VARCHAR",
            "status": "VARCHAR",
            "subject": {"reference": "VARCHAR"},
            "medicationCodeableConcept": {
                "text": "VARCHAR", "coding": [{"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}]
            },
            "medicationReference": {"reference": "VARCHAR", "display": "VARCHAR"},
            "contained": [{"resourceType": "VARCHAR", "id": "VARCHAR", "code": {
                "text": "VARCHAR", "coding": [{"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}]
            }}],
            "dispenseRequest": {"validityPeriod": {"start": "VARCHAR", "end": "VARCHAR"}},
            "authoredOn": "VARCHAR",
            "dosageInstruction": [{
                "route": {"text": "VARCHAR", "coding": [{"display": "VARCHAR", "code": "VARCHAR"}]},
                "doseAndRate": [{"doseQuantity": {"value": "VARCHAR", "unit": "VARCHAR", "code": "VARCHAR"}}],
                "timing": {"repeat": {"boundsPeriod": {"start": "VARCHAR", "end": "VARCHAR"}}}
            }]
        }') end as resource
    from lines
),

referenced_medications as (
    select
        reference,
        from_json(line, '{"code": {
            "text": "VARCHAR", "coding": [{"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}]
        }}').code as code
    from fhir_references
    where resource_type = 'Medication'
),

requests as (
    select
        parsed.source_row,
        parsed.resource,
        coalesce(
            parsed.resource.medicationCodeableConcept,
            list_filter(
                parsed.resource.contained,
                lambda c: c.resourceType = 'Medication' and '#' || c.id = parsed.resource.medicationReference.reference
            )[1].code,
            referenced_medications.code,
            {'text': parsed.resource.medicationReference.display, 'coding': []}
        ) as medication,
        parsed.resource.dosageInstruction[1] as dosage
    from parsed
    left join referenced_medications
        on referenced_medications.reference = regexp_extract(
            parsed.resource.medicationReference.reference, '(Medication/[^/]+)(?:/_history/[^/]*)?$', 1)
    where parsed.resource.resourceType = 'MedicationRequest'
),

fields as (
    select
        source_row,
        coalesce(regexp_extract(
            resource.subject.reference, '^(?:.*/)?Patient/([^/]+)(?:/_history/[^/]*)?$', 1
        ), '') as patient_id,
        coalesce(nullif(medication.text, ''), medication.coding[1].display, '') as drug,
        coalesce(list_filter(medication.coding, lambda c: c.system = 'http://www.whocc.no/atc')[1].code, '')
            as atc_code,
        coalesce(nullif(dosage.route.text, ''), nullif(dosage.route.coding[1].display, ''), dosage.route.coding[1].code, '') as route,
        concat_ws(
            ' ',
            dosage.doseAndRate[1].doseQuantity.value,
            coalesce(nullif(dosage.doseAndRate[1].doseQuantity.unit, ''), dosage.doseAndRate[1].doseQuantity.code)
        ) as dose,
        coalesce(
            dosage.timing.repeat.boundsPeriod.start, resource.dispenseRequest.validityPeriod.start,
            resource.authoredOn, ''
        ) as start_date,
        case
            when lower(resource.status) in ('completed', 'stopped', 'cancelled') then coalesce(
                dosage.timing.repeat.boundsPeriod.end, resource.dispenseRequest.validityPeriod.end,
                dosage.timing.repeat.boundsPeriod.start, resource.dispenseRequest.validityPeriod.start,
                resource.authoredOn, ''
            )
            else coalesce(dosage.timing.repeat.boundsPeriod.end, '')
        end as end_date,
        lower(resource.status) as record_status
    from requests
),

final as (
    select
        lines.source_row,
        fields.patient_id,
        fields.drug,
        fields.atc_code,
        fields.route,
        fields.dose,
        fields.start_date,
        fields.end_date,
        fields.record_status,
        null::varchar as _overflow
    from lines
    left join fields on fields.source_row = lines.source_row
)

select * from final
