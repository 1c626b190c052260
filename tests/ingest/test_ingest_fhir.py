"""FHIR Bulk Data NDJSON ingest: each resource type onto its lake table, malformed lines, line numbers, accounting."""
from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import pytest

from b12lab.ingest import discover_exports, export_kind_of, fhir_resource_of

LOINC = "http://loinc.org"
ATC = "http://www.whocc.no/atc"


def write_ndjson(path: Path, lines: list[dict | str], *, gz: bool = False, newline: str = "\n",
                 bom: bool = False) -> Path:
    """One resource per line (a dict is written with json.dumps, a str as it is), as $export writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((json.dumps(line) if isinstance(line, dict) else line) + newline for line in lines)
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def line_of(resource: dict | str) -> str:
    return json.dumps(resource) if isinstance(resource, dict) else resource


def observation(id_: str, **fields) -> dict:
    """A final B12 result in pmol/L for Patient/P001, overridden by fields (None removes a field)."""
    resource = {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "14685-2", "display": "Cobalamin [Moles/volume]"}]},
        "subject": {"reference": "Patient/P001"},
        "effectiveDateTime": "2024-03-01T09:00:00Z",
        "valueQuantity": {"value": 300, "unit": "pmol/L", "system": "http://unitsofmeasure.org", "code": "pmol/L"},
    }
    resource.update(fields)
    return {key: value for key, value in resource.items() if value is not None}


# -- file names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, resource, kind",
    [("Observation.ndjson", "Observation", "labs"), ("Observation-2.ndjson.gz", "Observation", "labs"),
     ("observation_1.NDJSON", "Observation", "labs"), ("Patient.ndjson", "Patient", "patients"),
     ("Condition.ndjson", "Condition", "diagnoses"), ("MedicationRequest.ndjson", "MedicationRequest", "medications"),
     ("MedicationStatement-1.ndjson.gz", "MedicationStatement", "medications"),
     ("ObservationDefinition.ndjson", None, None), ("Encounter.ndjson", None, None), ("Observation.json", None, None),
     ("Observation.csv", None, None), ("labs.ndjson", None, None), ("labs.csv", None, "labs")],
)
def test_fhir_file_names(name, resource, kind):
    assert fhir_resource_of(Path(name)) == resource
    found = export_kind_of(Path(name))
    assert (found.name if found else None) == kind


def test_discovered_files_know_their_format(tmp_path):
    write_ndjson(tmp_path / "Observation-1.ndjson.gz", [observation("o1")], gz=True)
    write_ndjson(tmp_path / "Encounter.ndjson", [{"resourceType": "Encounter", "id": "e1"}])
    (tmp_path / "labs.csv").write_text("patient_id\n")
    exports, ignored = discover_exports(tmp_path)
    assert [(e.name, e.format, e.fhir_resource, e.kind.table) for e in exports] == [
        ("Observation-1.ndjson.gz", "ndjson", "Observation", "lab_results"),
        ("labs.csv", "csv", None, "lab_results"),
    ]
    assert [p.name for p in ignored] == ["Encounter.ndjson"]


# -- Observation -> lab_results -----------------------------------------------------------------------------------

LAB_COLUMNS = ("source_row", "patient_id", "accession", "analyte", "loinc", "local_code", "test_name", "collected_at",
               "resulted_at", "value_raw", "unit_raw", "comparator", "value_reported", "unit_reported", "value_si",
               "unit_si", "value_text", "reference_range", "ref_low_si", "ref_high_si", "abnormal_flag", "status",
               "performing_lab")


def lab_tuple(row: dict) -> tuple:
    return tuple(round(row[c], 6) if isinstance(row[c], float) else row[c] for c in LAB_COLUMNS)


def test_observations_onto_lab_results(tmp_path, ingest):
    b12_mass = observation(
        "obs-1",
        identifier=[{"system": "urn:lab:accession", "value": "ACC-1001"}],
        code={"text": "Vitamin B12, serum",
              "coding": [{"system": "urn:lis:codes", "code": "VITB12", "display": "B12"},
                         {"system": LOINC, "code": "2132-9", "display": "Cobalamin [Mass/volume]"}]},
        subject={"reference": "Patient/000123", "display": "A. Patient"},
        effectiveDateTime="2024-03-01T09:15:00+01:00",
        issued="2024-03-01T15:00:00Z",
        performer=[{"reference": "Organization/lab-a", "display": "Riverside Lab"}],
        valueQuantity={"value": 400, "unit": "pg/mL", "system": "http://unitsofmeasure.org", "code": "pg/mL"},
        referenceRange=[{"low": {"value": 200, "unit": "pg/mL"}, "high": {"value": 900, "unit": "pg/mL"}}],
        interpretation=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                     "code": "N"}]}],
    )
    censored = observation(
        "obs-2", status="amended",
        subject={"reference": "https://fhir.example.org/r4/Patient/P 002/_history/3"},
        effectiveDateTime=None, effectivePeriod={"start": "2024-03-02T08:00:00", "end": "2024-03-02T08:05:00"},
        valueQuantity={"value": 50, "comparator": "<", "unit": "pmol/L", "code": "pmol/L"},
    )
    if_antibody = observation(
        "obs-3", status="corrected",
        code={"coding": [{"system": LOINC, "code": "31444-3", "display": "Intrinsic factor Ab"}]},
        valueQuantity=None,
        valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct", "code": "10828004",
                                          "display": "Positive"}]},
    )
    mma_by_local_code = observation(
        "obs-4", status="preliminary",
        code={"coding": [{"system": "urn:lis:codes", "code": "MMA"}]},
        valueQuantity={"value": 350, "system": "http://unitsofmeasure.org", "code": "nmol/L"},
        referenceRange=[{"high": {"value": 370}}],
    )
    hemoglobin = observation(
        "obs-5", code={"coding": [{"system": LOINC, "code": "718-7"}], "text": "Hb"},
        valueQuantity={"value": 13.5, "unit": "g/dL"}, effectiveDateTime="2024-03-01",
    )
    cancelled = observation("obs-6", status="cancelled", valueQuantity=None,
                            dataAbsentReason={"text": "specimen not received"})
    entered_in_error = observation("obs-7", status="entered-in-error")
    duplicate = dict(hemoglobin)
    no_patient = observation("obs-9", subject=None)
    group_subject = observation("obs-10", subject={"reference": "Group/ward-3"})
    hemolyzed = observation("obs-11", valueQuantity=None, valueString="hemolyzed")
    unknown_unit = observation("obs-12", valueQuantity={"value": 300, "unit": "mg/dL"})
    not_json = '{"resourceType": "Observation", "id": "obs-13", '
    wrong_type = {"resourceType": "Patient", "id": "P001"}
    lines = [b12_mass, censored, if_antibody, mma_by_local_code, hemoglobin, cancelled, entered_in_error, duplicate,
             no_patient, group_subject, hemolyzed, unknown_unit, not_json, wrong_type]

    result = ingest(write_ndjson(tmp_path / "in" / "Observation-1.ndjson.gz", lines, gz=True))

    assert [lab_tuple(row) for row in result.rows()] == [
        (1, "000123", "ACC-1001", "b12", "2132-9", "VITB12", "Vitamin B12, serum",
         datetime(2024, 3, 1, 9, 15),
         datetime(2024, 3, 1, 15, 0), "400", "pg/mL", None, 400.0, "pg/mL",
         round(400 * 0.7378, 6), "pmol/L", None, "200-900", round(200 * 0.7378, 6), round(900 * 0.7378, 6), "N",
         "F", "Riverside Lab"),
        (2, "P 002", "obs-2", "b12", "14685-2", None, "Cobalamin [Moles/volume]",
         datetime(2024, 3, 2, 8, 0), None, "<50", "pmol/L", "<", 50.0, "pmol/L",
         50.0, "pmol/L", None, None, None, None, None, "C", None),
        (3, "P001", "obs-3", "if_antibody", "31444-3", None, "Intrinsic factor Ab",
         datetime(2024, 3, 1, 9, 0), None, "Positive", None, None, None, None,
         None, None, "positive", None, None, None, None, "C", None),
        (4, "P001", "obs-4", "mma", None, "MMA", None,
         datetime(2024, 3, 1, 9, 0), None, "350", "nmol/L", None, 350.0, "nmol/L",
         0.35, "umol/L", None, "<370", None, 0.37, None, "P", None),
        (5, "P001", "obs-5", "hemoglobin", "718-7", None, "Hb",
         datetime(2024, 3, 1, 0, 0), None, "13.5", "g/dL", None, 13.5, "g/dL",
         135.0, "g/L", None, None, None, None, None, "F", None),
    ]
    assert result.reasons() == {9: "missing_patient_id", 10: "missing_patient_id", 11: "unparseable_value",
                                12: "unknown_unit", 13: "malformed_row", 14: "malformed_row"}
    by_reason = result.account.by_reason
    assert by_reason[("dropped", "cancelled")] == 1 and by_reason[("dropped", "entered_in_error")] == 1
    assert by_reason[("dropped", "duplicate")] == 1
    # Quarantine keeps only the fields the row model read, as for a CSV record, never the whole resource (its
    # subject's display, performer reference and anything else of it); a line that is not an Observation
    # has no field read, so nothing of it is kept.
    raw = {row["source_row"]: row["raw"] for row in result.quarantine()}
    assert raw[9] == ",obs-9,14685-2,,Cobalamin [Moles/volume],300,pmol/L,,,final,2024-03-01T09:00:00Z,,"
    assert raw[10].startswith(",obs-10,14685-2,")  # a Group subject is no patient: its reference is not kept
    assert (raw[13], raw[14]) == ("not valid JSON (48 characters)",
                                  "Patient resource where Observation was expected")
    assert not any("resourceType" in text or "Group/" in text for text in raw.values())
    account = result.account
    assert (account.rows_read, account.rows_accepted, account.rows_quarantined, account.rows_dropped) == (14, 5, 6, 3)
    assert account.reconciles


# -- Patient -> patients ------------------------------------------------------------------------------------------


def test_patients(tmp_path, ingest):
    lines = [
        {"resourceType": "Patient", "id": "000123", "gender": "female", "birthDate": "1950-02-03",
         "generalPractitioner": [{"reference": "Practitioner/gp1", "display": "Riverside Surgery"}],
         "managingOrganization": {"display": "Northern Health Trust"}},
        {"resourceType": "Patient", "id": "P002", "gender": "male", "birthDate": "1961-11-30",
         "managingOrganization": {"reference": "Organization/o2", "display": "Hillview Practice"}},
        {"resourceType": "Patient", "id": "P003", "gender": "other"},
        {"resourceType": "Patient", "id": "P004", "gender": "unknown", "birthDate": "2090-01-01"},  # future_date
        {"resourceType": "Patient", "gender": "female", "birthDate": "1970-01-01"},  # missing_patient_id
        {"resourceType": "Observation", "id": "obs-1", "status": "final"},           # malformed_row
        "not json at all",                                                           # malformed_row
    ]
    result = ingest(write_ndjson(tmp_path / "in" / "Patient.ndjson", lines))
    rows = [(r["source_row"], r["patient_id"], str(r["birth_date"]), r["sex"], r["practice"]) for r in result.rows()]
    assert rows == [
        (1, "000123", "1950-02-03", "F", "Riverside Surgery"),
        (2, "P002", "1961-11-30", "M", "Hillview Practice"),
        (3, "P003", "None", "O", None),
    ]
    assert result.reasons() == {4: "future_date", 5: "missing_patient_id", 6: "malformed_row", 7: "malformed_row"}
    # Of a line no field could be read from, quarantine keeps what it is, not its text.
    assert [row["raw"] for row in result.quarantine()][2:] == ["Observation resource where Patient was expected",
                                                                "not valid JSON (15 characters)"]
    assert result.account.rows_read == 7 and result.account.reconciles


def test_a_patients_death_comes_from_deceased_datetime_or_deceased_boolean(tmp_path, ingest):
    lines = [
        {"resourceType": "Patient", "id": "P001", "deceasedDateTime": "2024-03-05T10:00:00+01:00"},
        {"resourceType": "Patient", "id": "P002", "deceasedBoolean": True},      # dead, date unknown
        {"resourceType": "Patient", "id": "P003", "deceasedBoolean": False},
        {"resourceType": "Patient", "id": "P004"},
        {"resourceType": "Patient", "id": "P005", "deceasedDateTime": "2090-01-01"},  # future_date
        {"resourceType": "Patient", "id": "P006", "deceasedDateTime": "last spring"},  # unparseable_date
    ]
    result = ingest(write_ndjson(tmp_path / "in" / "Patient.ndjson", lines))
    assert [(r["patient_id"], str(r["death_date"]), r["deceased"]) for r in result.rows()] == [
        ("P001", "2024-03-05", True), ("P002", "None", True), ("P003", "None", False), ("P004", "None", False)]
    assert result.reasons() == {5: "future_date", 6: "unparseable_date"}


# -- Condition -> diagnoses ---------------------------------------------------------------------------------------


def condition(id_: str, coding: list[dict], **fields) -> dict:
    resource = {"resourceType": "Condition", "id": id_, "subject": {"reference": "Patient/P001"},
                "code": {"coding": coding}, "recordedDate": "2024-01-02T10:00:00Z"}
    resource.update(fields)
    return {key: value for key, value in resource.items() if value is not None}


def test_conditions(tmp_path, ingest):
    icd10 = {"system": "http://hl7.org/fhir/sid/icd-10", "code": "D51.0", "display": "Pernicious anaemia"}
    lines = [
        condition("c1", [icd10]),
        # The first coding of a known code system is used, not simply the first coding.
        condition("c2", [{"system": "http://read.info/ctv3", "code": "XaBxN"},
                         {"system": "http://snomed.info/sct", "code": "84027009", "display": "Pernicious anemia"}],
                  subject={"reference": "Patient/P002"}),
        condition("c3", [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E53.8"}],
                  recordedDate=None, onsetDateTime="2023-06-15"),
        condition("c4", [{"system": "http://read.info/ctv3", "code": "XaBxN"}]),       # unknown_code_system
        condition("c5", [icd10], subject=None),                                     # missing_patient_id
        condition("c6", [icd10], recordedDate=None),                                # accepted, undated
        condition("c7", [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "D510"}]),  # duplicate of c1
        "",                                                                          # blank: not a record
        {"resourceType": "MedicationRequest", "id": "m1"},                           # malformed_row
    ]
    result = ingest(write_ndjson(tmp_path / "in" / "Condition.ndjson", lines))
    rows = [(r["source_row"], r["patient_id"], r["code_system"], r["code"], r["code_normalised"], str(r["recorded_at"]))
            for r in result.rows()]
    assert rows == [
        (1, "P001", "ICD-10", "D51.0", "D510", "2024-01-02"),
        (2, "P002", "SNOMED-CT", "84027009", "84027009", "2024-01-02"),
        (3, "P001", "ICD-10", "E53.8", "E538", "2023-06-15"),
        (6, "P001", "ICD-10", "D51.0", "D510", "None"),
    ]
    assert result.reasons() == {4: "unknown_code_system", 5: "missing_patient_id", 9: "malformed_row"}
    assert result.account.by_reason[("dropped", "duplicate")] == 1
    assert (result.account.rows_read, result.account.reconciles) == (8, True)


# -- MedicationRequest and MedicationStatement -> medications -----------------------------------------------------


def hydroxocobalamin() -> dict:
    return {"text": "Hydroxocobalamin 1mg/1ml solution for injection",
            "coding": [{"system": "http://snomed.info/sct", "code": "3516511000001108"},
                       {"system": ATC, "code": "B03BA03", "display": "hydroxocobalamin"}]}


def test_medication_requests(tmp_path, ingest):
    lines = [
        {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/P001"}, "authoredOn": "2024-01-01T11:00:00Z",
         "medicationCodeableConcept": hydroxocobalamin(),
         "dosageInstruction": [{
             "route": {"coding": [{"system": "http://snomed.info/sct", "code": "78421000",
                                   "display": "Intramuscular"}]},
             "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "mg", "code": "mg"}}],
             "timing": {"repeat": {"boundsPeriod": {"start": "2024-01-02", "end": "2024-01-16"},
                                   "frequency": 1, "period": 2, "periodUnit": "d"}}}]},
        {"resourceType": "MedicationRequest", "id": "mr2", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/P002"}, "authoredOn": "2024-02-10",
         "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "B03BA01", "display": "cyanocobalamin"}]},
         "dosageInstruction": [{"route": {"text": "oral"},
                                "doseAndRate": [{"doseQuantity": {"value": 1000, "code": "ug"}}]}]},
        {"resourceType": "MedicationRequest", "id": "mr3", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/P003"}, "authoredOn": "2024-02-10",
         "medicationReference": {"reference": "Medication/med-1"}},                   # missing_drug
        {"resourceType": "MedicationStatement", "id": "ms1", "status": "active"},       # malformed_row
    ]
    result = ingest(write_ndjson(tmp_path / "in" / "MedicationRequest.ndjson", lines))
    rows = [(r["source_row"], r["patient_id"], r["drug"], r["atc_code"], r["route"], r["dose"], str(r["start_date"]),
             str(r["end_date"])) for r in result.rows()]
    assert rows == [
        (1, "P001", "Hydroxocobalamin 1mg/1ml solution for injection", "B03BA03", "Intramuscular", "1 mg",
         "2024-01-02", "2024-01-16"),
        (2, "P002", "cyanocobalamin", "B03BA01", "oral", "1000 ug", "2024-02-10", "None"),
    ]
    assert result.reasons() == {3: "missing_drug", 4: "malformed_row"}
    assert result.account.rows_read == 4 and result.account.reconciles
    # every term of a coded route is kept, so a value set can match its code as well as its display
    assert [r["route_terms"] for r in result.rows()] == [["Intramuscular", "78421000"], ["oral"]]


def test_a_coded_route_keeps_its_text_every_display_and_every_code(tmp_path, ingest):
    route = {"text": "Injection", "coding": [
        {"system": "http://snomed.info/sct", "code": "78421000", "display": "Intramuscular route"},
        {"system": "http://example.org/routes", "code": "IM"}]}
    line = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/P001"}, "authoredOn": "2024-01-01",
            "medicationCodeableConcept": hydroxocobalamin(), "dosageInstruction": [{"route": route}]}
    [row] = ingest(write_ndjson(tmp_path / "in" / "MedicationRequest.ndjson", [line])).rows()
    assert (row["route"], row["route_terms"]) == ("Injection", ["Injection", "Intramuscular route", "78421000", "IM"])


def test_medication_statements(tmp_path, ingest):
    lines = [
        {"resourceType": "MedicationStatement", "id": "ms1", "status": "active",
         "subject": {"reference": "Patient/P001"}, "medicationCodeableConcept": hydroxocobalamin(),
         "effectivePeriod": {"start": "2023-05-01", "end": "2023-11-01"},
         "dosage": [{"route": {"text": "intramuscular"},
                     "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "mg"}}]}]},
        {"resourceType": "MedicationStatement", "id": "ms2", "status": "active",
         "subject": {"reference": "Patient/P002"},
         "medicationCodeableConcept": {"text": "Folic acid 5mg tablets"},
         "effectiveDateTime": "2024-04-01T08:00:00+02:00"},
        {"resourceType": "MedicationStatement", "id": "ms3", "status": "active",
         "subject": {"reference": "Patient/P003"}, "medicationCodeableConcept": hydroxocobalamin(),
         "effectivePeriod": {"start": "2024-05-01", "end": "2024-04-01"}},             # end_before_start
    ]
    result = ingest(write_ndjson(tmp_path / "in" / "MedicationStatement.ndjson", lines))
    rows = [(r["patient_id"], r["drug"], r["atc_code"], r["route"], r["dose"], str(r["start_date"]), str(r["end_date"]))
            for r in result.rows()]
    assert rows == [
        ("P001", "Hydroxocobalamin 1mg/1ml solution for injection", "B03BA03", "intramuscular", "1 mg",
         "2023-05-01", "2023-11-01"),
        ("P002", "Folic acid 5mg tablets", None, None, None, "2024-04-01", "None"),
    ]
    assert result.reasons() == {3: "end_before_start"}
    assert result.account.reconciles


# -- lines: numbering, blank lines, encodings ---------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"gz": True}, {"newline": "\r\n"}, {"bom": True}, {"bom": True, "gz": True}])
def test_source_row_is_the_line_number_and_blank_lines_are_not_records(tmp_path, ingest, options):
    name = "Observation.ndjson.gz" if options.get("gz") else "Observation.ndjson"
    lines = [observation("o1"), "", "   ", observation("o2", effectiveDateTime="2024-03-02"), "\t",
             "[1, 2, 3]", observation("o3", effectiveDateTime="2024-03-03")]
    result = ingest(write_ndjson(tmp_path / "in" / name, lines, **options))
    assert [row["source_row"] for row in result.rows()] == [1, 4, 7]
    assert result.reasons() == {6: "malformed_row"}
    assert result.quarantine()[0]["raw"] == "JSON without a resource type where Observation was expected"
    account = result.account
    assert (account.rows_read, account.rows_accepted, account.rows_quarantined, account.rows_dropped) == (4, 3, 1, 0)


def test_a_line_that_is_not_utf8_is_quarantined_without_its_text(tmp_path, ingest):
    path = tmp_path / "in" / "Patient.ndjson"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"resourceType": "Patient", "id": "P001"}\n'
                     b'{"resourceType": "Patient", "id": "P\xff02"}\n')
    result = ingest(path)
    assert [row["patient_id"] for row in result.rows()] == ["P001"]
    assert result.reasons() == {2: "malformed_row"}
    # No field of it could be read: quarantine says what it is, and keeps none of its text (the id).
    assert result.quarantine()[0]["raw"] == "not valid JSON (44 characters)"


def test_an_empty_file(tmp_path, ingest):
    result = ingest(write_ndjson(tmp_path / "in" / "Condition.ndjson", []))
    assert result.account.rows_read == 0 and result.account.reconciles


@pytest.mark.parametrize(
    "resource, status_field, status, outcome",
    [
        ("Condition", "verificationStatus", "confirmed", "accepted"),
        ("Condition", "verificationStatus", "refuted", ("dropped", "refuted")),
        ("Condition", "verificationStatus", "entered-in-error", ("dropped", "entered_in_error")),
        ("MedicationRequest", "status", "active", "accepted"),
        ("MedicationRequest", "status", "completed", "accepted"),
        ("MedicationRequest", "status", "cancelled", "accepted"),  # kept, ended at its start (see below)
        ("MedicationRequest", "status", "draft", ("dropped", "draft")),
        ("MedicationRequest", "status", "entered-in-error", ("dropped", "entered_in_error")),
        ("MedicationStatement", "status", "active", "accepted"),
        ("MedicationStatement", "status", "not-taken", ("dropped", "not_taken")),
        ("MedicationStatement", "status", "entered-in-error", ("dropped", "entered_in_error")),
    ],
)
def test_refuted_cancelled_and_erroneous_registry_resources_do_not_count(tmp_path, ingest, resource, status_field,
                                                                          status, outcome):
    body = {"resourceType": resource, "subject": {"reference": "Patient/P1"}}
    if resource == "Condition":
        body.update(code={"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "D51.0"}]},
                    recordedDate="2024-01-02",
                    verificationStatus={"coding": [{"code": status}]})
    else:
        concept = {"text": "Hydroxocobalamin 1mg", "coding": [{"system": "http://www.whocc.no/atc", "code": "B03BA03"}]}
        body.update(medicationCodeableConcept=concept, status=status)
        if resource == "MedicationRequest":
            body["authoredOn"] = "2024-01-02"
        else:
            body["effectivePeriod"] = {"start": "2024-01-02"}
    path = tmp_path / "in" / f"{resource}.ndjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body) + "\n")
    result = ingest(path)
    if outcome == "accepted":
        assert result.account.rows_accepted == 1
    else:
        assert result.account.by_reason == {outcome: 1}
