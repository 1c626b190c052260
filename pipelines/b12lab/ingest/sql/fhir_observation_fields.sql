-- fhir_observation_fields: the lines of one FHIR Bulk Data Observation NDJSON file as the text fields of a
-- lab export (the raw_file that lab_rows.sql reads).
--
-- Grain: one record = one non-blank line; source_row is its 1-based line number in the file. A blank line
-- (empty or only whitespace) is not a record: it is skipped and not counted, so source_row may have gaps.
-- A line that is not valid JSON, or not an Observation, has every field null, which lab_rows treats as
-- malformed_row. Any other missing value is '' (never null), so it meets the ordinary reasons
-- (missing_patient_id, unknown_analyte, unparseable_value, ...). Values are taken, not judged: lab_rows
-- does the typing, mapping and checks exactly as for a CSV export.
-- Mapping (first match wins):
--   patient_id       subject.reference Patient/<id> (relative or absolute, /_history/ ignored) -> <id>
--   accession        identifier[0].value, id
--                    (inside a Bundle, a urn:uuid: reference is first resolved through the entries' fullUrl)
--   loinc            code.coding[system = http://loinc.org].code, in any position
--   local_code       the first other code.coding's code (local_code_system: its system URL, for
--                    unmapped_codes)
--   test_name        code.text, code.coding[0].display
--   result_value     valueQuantity.comparator || valueQuantity.value, valueString, valueInteger,
--                    valueCodeableConcept.text, valueCodeableConcept.coding[0].display (SNOMED CT qualifier
--                    displays such as "Detected (qualifier value)" are in ref_qualitative_values)
--   unit             valueQuantity.code (the UCUM code, when given), valueQuantity.unit (display text)
--   reference_range  referenceRange[0]: low-high, <high, >low, text
--   abnormal_flag    interpretation[0].coding[0].code
--   status           status (final, amended, corrected, preliminary, cancelled, ... are in ref_result_statuses)
--   collected_at     effectiveDateTime, effectiveInstant, effectivePeriod.start, issued
-- A component observation (a blood pressure panel) has no value of its own: its code decides (out of scope, or
-- unparseable_value for an analyte's code).
--   resulted_at      issued
--   performing_lab   performer[0].display
-- Input: fhir_records (source_row, line): the file's records, its non-blank lines, numbered.
-- Macros: parse_resource, patient_of, concept_name, coding_code (b12lab/ingest/macros.py).

with parsed as (
    select
        source_row,
        parse_resource(line, '{
            "resourceType": "VARCHAR",
            "id": "VARCHAR",
            "identifier": [{"value": "VARCHAR"}],
            "status": "VARCHAR",
            "code": {"text": "VARCHAR", "coding": [{"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}]},
            "subject": {"reference": "VARCHAR"},
            "effectiveDateTime": "VARCHAR",
            "effectiveInstant": "VARCHAR",
            "effectivePeriod": {"start": "VARCHAR"},
            "issued": "VARCHAR",
            "performer": [{"display": "VARCHAR"}],
            "valueQuantity": {
                "value": "VARCHAR", "comparator": "VARCHAR", "unit": "VARCHAR", "system": "VARCHAR", "code": "VARCHAR"
            },
            "valueString": "VARCHAR",
            "valueInteger": "VARCHAR",
            "valueCodeableConcept": {"text": "VARCHAR", "coding": [{"display": "VARCHAR"}]},
            "interpretation": [{"coding": [{"code": "VARCHAR"}]}],
            "referenceRange": [{"low": {"value": "VARCHAR"}, "high": {"value": "VARCHAR"}, "text": "VARCHAR"}]
        }') as resource
    from fhir_records
),

observations as (
    select source_row, resource
    from parsed
    where resource.resourceType = 'Observation'
),

fields as (
    select
        source_row,
        coalesce(patient_of(resource.subject.reference), '') as patient_id,
        coalesce(nullif(resource.identifier[1].value, ''), resource.id, '') as accession,
        coalesce(coding_code(resource.code, 'http://loinc.org'), '') as loinc,
        coalesce(list_filter(
            resource.code.coding, lambda c: c.system is distinct from 'http://loinc.org'
        )[1].code, '') as local_code,
        list_filter(resource.code.coding, lambda c: c.system is distinct from 'http://loinc.org')[1].system
            as local_code_system,
        concept_name(resource.code) as test_name,
        coalesce(
            coalesce(resource.valueQuantity.comparator, '') || resource.valueQuantity.value,
            resource.valueString,
            resource.valueInteger,
            nullif(resource.valueCodeableConcept.text, ''),
            resource.valueCodeableConcept.coding[1].display,
            ''
        ) as result_value,
        -- The UCUM code is the unit; the unit element is display text ("picogram per milliliter").
        coalesce(nullif(resource.valueQuantity.code, ''), resource.valueQuantity.unit, '') as unit,
        coalesce(
            resource.referenceRange[1].low.value || '-' || resource.referenceRange[1].high.value,
            '<' || resource.referenceRange[1].high.value,
            '>' || resource.referenceRange[1].low.value,
            resource.referenceRange[1].text,
            ''
        ) as reference_range,
        coalesce(resource.interpretation[1].coding[1].code, '') as abnormal_flag,
        coalesce(resource.status, '') as status,
        coalesce(
            resource.effectiveDateTime, resource.effectiveInstant, resource.effectivePeriod.start, resource.issued,
            ''
        ) as collected_at,
        coalesce(resource.issued, '') as resulted_at,
        coalesce(resource.performer[1].display, '') as performing_lab
    from observations
),

final as (
    select
        fhir_records.source_row,
        fields.patient_id,
        fields.accession,
        fields.loinc,
        fields.local_code,
        fields.test_name,
        fields.result_value,
        fields.unit,
        fields.reference_range,
        fields.abnormal_flag,
        fields.status,
        fields.collected_at,
        fields.resulted_at,
        fields.performing_lab,
        null::varchar as _overflow,
        fields.local_code_system
    from fhir_records
    left join fields on fields.source_row = fhir_records.source_row
)

select * from final
