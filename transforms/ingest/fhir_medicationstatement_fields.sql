-- fhir_medicationstatement_fields: the lines of one FHIR Bulk Data MedicationStatement NDJSON file as the
-- text fields of a medications export (the raw_file that medication_rows.sql reads).
--
-- Grain: one record = one non-blank line; source_row is its 1-based line number in the file. A blank line
-- (empty or only whitespace) is not a record: it is skipped and not counted, so source_row may have gaps.
-- A line that is not valid JSON, or not a MedicationStatement, has every field null, which medication_rows
-- treats as malformed_row. Any other missing value is '' (never null), so it meets the ordinary reasons.
-- Mapping (first match wins; dosage = dosage[0]):
--   patient_id   subject.reference Patient/<id> (relative or absolute, /_history/ ignored) -> <id>
--   drug         medicationCodeableConcept.text, medicationCodeableConcept.coding[0].display
--   atc_code     medicationCodeableConcept.coding[system = http://www.whocc.no/atc].code
--   route        dosage.route.text, dosage.route.coding[0].display
--   dose         dosage.doseAndRate[0].doseQuantity: value and unit (or UCUM code), space separated
--   start_date   effectivePeriod.start, effectiveDateTime
--   end_date     effectivePeriod.end
-- Not mapped: medicationReference (no drug: missing_drug).
--   record_status status (entered-in-error and not-taken statements are dropped by medication_rows)
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
            "effectiveDateTime": "VARCHAR",
            "effectivePeriod": {"start": "VARCHAR", "end": "VARCHAR"},
            "dosage": [{
                "route": {"text": "VARCHAR", "coding": [{"display": "VARCHAR"}]},
                "doseAndRate": [{"doseQuantity": {"value": "VARCHAR", "unit": "VARCHAR", "code": "VARCHAR"}}]
            }]
        }') end as resource
    from lines
),

statements as (
    select
        source_row,
        resource,
        resource.medicationCodeableConcept as medication,
        resource.dosage[1] as dosage
    from parsed
    where resource.resourceType = 'MedicationStatement'
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
        coalesce(nullif(dosage.route.text, ''), dosage.route.coding[1].display, '') as route,
        concat_ws(
            ' ',
            dosage.doseAndRate[1].doseQuantity.value,
            coalesce(nullif(dosage.doseAndRate[1].doseQuantity.unit, ''), dosage.doseAndRate[1].doseQuantity.code)
        ) as dose,
        coalesce(resource.effectivePeriod.start, resource.effectiveDateTime, '') as start_date,
        coalesce(resource.effectivePeriod.end, '') as end_date,
        lower(resource.status) as record_status
    from statements
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
