-- fhir_medication_fields: the lines of one FHIR MedicationRequest or MedicationStatement file ($resource_type
-- says which) as the text fields of a medications export (the raw_file that medication_rows.sql reads).
--
-- Grain: one record = one non-blank line; source_row is its 1-based line number in the file. A blank line
-- (empty or only whitespace) is not a record: it is skipped and not counted, so source_row may have gaps.
-- A line that is not valid JSON, or not a $resource_type, has every field null, which medication_rows
-- treats as malformed_row. Any other missing value is '' (never null), so it meets the ordinary reasons.
-- Mapping (first match wins; dosage = a MedicationRequest's dosageInstruction[0], a MedicationStatement's
-- dosage[0]):
--   patient_id   subject.reference Patient/<id> (relative or absolute, /_history/ ignored) -> <id>
--   medication   medicationCodeableConcept, else the code of the Medication that medicationReference names:
--                a contained one (#id), else one of the same export (fhir_references: Medication NDJSON
--                files of the drop folder, or the Bundle's Medication entries), else medicationReference.display
--   drug         medication.text, medication.coding[0].display (RxNorm, SNOMED CT or any other system)
--   atc_code     medication.coding[system = http://www.whocc.no/atc].code
--   route        dosage.route.text, else dosage.route.coding[0].display, else its code (the route as shown)
--   route_terms  every term of the coded route: its text, each coding's display and each coding's code, joined
--                by the unit separator (chr(31)); a value set matches the route when it matches any of them
--                (SNOMED CT 78421000 with the display "Intramuscular route" is intramuscular by its code)
--   dose         dosage.doseAndRate[0].doseQuantity: value and unit (or UCUM code), space separated
--   start_date   MedicationRequest: dosage.timing.repeat.boundsPeriod.start, dispenseRequest.validityPeriod.start,
--                authoredOn; MedicationStatement: effectivePeriod.start, effectiveDateTime, dateAsserted
--   end_date     status decides: active, on-hold (and any other) keep the record ongoing unless its stated end
--                (MedicationRequest: dosage.timing.repeat.boundsPeriod.end; MedicationStatement:
--                effectivePeriod.end) ends it; completed, stopped and cancelled end it at its stated end, else
--                (MedicationRequest) dispenseRequest.validityPeriod.end, else its own start date
--   record_status status (draft and entered-in-error requests, entered-in-error and not-taken statements are
--                dropped by medication_rows)
-- Input: fhir_records (source_row, line): the file's records, its non-blank lines, numbered; fhir_references
-- (reference, resource_type, line): the resources other resources may reference. $resource_type: the file's
-- resource type.
-- Macros: parse_resource, patient_of, reference_key, concept_name, coding_code (b12lab/ingest/macros.py).

with parsed as (
    select
        source_row,
        -- A medication is a CodeableConcept wherever it is given; dosage and dosageInstruction are both a
        -- Dosage.
        parse_resource(line, '{
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
            "dateAsserted": "VARCHAR",
            "effectiveDateTime": "VARCHAR",
            "effectivePeriod": {"start": "VARCHAR", "end": "VARCHAR"},
            "dosageInstruction": [{
                "route": {"text": "VARCHAR", "coding": [{"display": "VARCHAR", "code": "VARCHAR"}]},
                "doseAndRate": [{"doseQuantity": {"value": "VARCHAR", "unit": "VARCHAR", "code": "VARCHAR"}}],
                "timing": {"repeat": {"boundsPeriod": {"start": "VARCHAR", "end": "VARCHAR"}}}
            }],
            "dosage": [{
                "route": {"text": "VARCHAR", "coding": [{"display": "VARCHAR", "code": "VARCHAR"}]},
                "doseAndRate": [{"doseQuantity": {"value": "VARCHAR", "unit": "VARCHAR", "code": "VARCHAR"}}],
                "timing": {"repeat": {"boundsPeriod": {"start": "VARCHAR", "end": "VARCHAR"}}}
            }]
        }') as resource
    from fhir_records
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

records as (
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
        case $resource_type
            when 'MedicationRequest' then parsed.resource.dosageInstruction[1]
            else parsed.resource.dosage[1]
        end as dosage
    from parsed
    left join referenced_medications
        on referenced_medications.reference = reference_key(parsed.resource.medicationReference.reference, 'Medication')
    where parsed.resource.resourceType = $resource_type
),

-- When the record started, when it ended if it says so, and the end that ends it even while it is ongoing:
-- a request's from its dosage timing, dispense validity and authoring, a statement's from its effective time.
periods as (
    select
        records.*,
        case $resource_type
            when 'MedicationRequest' then coalesce(
                dosage.timing.repeat.boundsPeriod.start, resource.dispenseRequest.validityPeriod.start,
                resource.authoredOn
            )
            else coalesce(resource.effectivePeriod.start, resource.effectiveDateTime, resource.dateAsserted)
        end as started,
        case $resource_type
            when 'MedicationRequest' then coalesce(
                dosage.timing.repeat.boundsPeriod.end, resource.dispenseRequest.validityPeriod.end
            )
            else resource.effectivePeriod.end
        end as ended,
        case $resource_type
            when 'MedicationRequest' then dosage.timing.repeat.boundsPeriod.end
            else resource.effectivePeriod.end
        end as stated_end
    from records
),

fields as (
    select
        source_row,
        coalesce(patient_of(resource.subject.reference), '') as patient_id,
        concept_name(medication) as drug,
        coalesce(coding_code(medication, 'http://www.whocc.no/atc'), '') as atc_code,
        coalesce(nullif(dosage.route.text, ''), nullif(dosage.route.coding[1].display, ''), dosage.route.coding[1].code, '') as route,
        array_to_string(
            list_filter(
                list_concat(
                    [dosage.route.text],
                    list_transform(coalesce(dosage.route.coding, []), lambda coding: coding.display),
                    list_transform(coalesce(dosage.route.coding, []), lambda coding: coding.code)
                ),
                lambda term: nullif(trim(term), '') is not null
            ),
            chr(31)
        ) as route_terms,
        concat_ws(
            ' ',
            dosage.doseAndRate[1].doseQuantity.value,
            coalesce(nullif(dosage.doseAndRate[1].doseQuantity.unit, ''), dosage.doseAndRate[1].doseQuantity.code)
        ) as dose,
        coalesce(started, '') as start_date,
        case
            when lower(resource.status) in ('completed', 'stopped', 'cancelled')
                then coalesce(ended, started, '')
            else coalesce(stated_end, '')
        end as end_date,
        lower(resource.status) as record_status
    from periods
),

final as (
    select
        fhir_records.source_row,
        fields.patient_id,
        fields.drug,
        fields.atc_code,
        fields.route,
        fields.route_terms,
        fields.dose,
        fields.start_date,
        fields.end_date,
        fields.record_status,
        null::varchar as _overflow
    from fhir_records
    left join fields on fields.source_row = fhir_records.source_row
)

select * from final
