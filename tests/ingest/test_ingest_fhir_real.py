"""FHIR as servers really export it: each form pinned with a small hand-written resource.

Observation codings in any position, UCUM codes, SNOMED CT qualitative answers, every effective form,
components; MedicationRequest and MedicationStatement statuses and medicationReference; partial dates; practice
from referenced Organizations; Bundles with urn:uuid references; the $export manifest."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from b12lab.ingest import discover_exports, read_manifest
from tests.helpers.processes import session_api_url
from tests.ingest.test_ingest_fhir import LOINC, observation, write_ndjson

SNOMED = "http://snomed.info/sct"


def one(ingest, path: Path) -> dict:
    result = ingest(path)
    assert result.account.reconciles
    [row] = result.rows()
    return row


def test_loinc_in_any_coding_position_and_ucum_code_over_display_unit(tmp_path, ingest):
    obs = observation("o1", code={"coding": [{"system": "http://acme.org/lab", "code": "B12X"},
                                             {"system": LOINC, "code": "2132-9"}]},
                      valueQuantity={"value": 400, "unit": "picogram per milliliter",
                                     "system": "http://unitsofmeasure.org", "code": "pg/mL"})
    row = one(ingest, write_ndjson(tmp_path / "in" / "Observation.ndjson", [obs]))
    assert (row["analyte"], row["loinc"], row["local_code"], row["unit_reported"]) == ("b12", "2132-9", "B12X", "pg/mL")
    assert row["value_si"] == pytest.approx(400 * 0.7378)


@pytest.mark.parametrize("concept, expected", [
    ({"coding": [{"system": SNOMED, "code": "10828004", "display": "Positive (qualifier value)"}]}, "positive"),
    ({"coding": [{"system": SNOMED, "code": "260385009", "display": "Negative (qualifier value)"}]}, "negative"),
    ({"coding": [{"system": SNOMED, "code": "260373001", "display": "Detected (qualifier value)"}]}, "positive"),
    ({"coding": [{"system": SNOMED, "code": "260415000", "display": "Not detected (qualifier value)"}]}, "negative"),
    ({"text": "Positive"}, "positive"),
])
def test_qualitative_results_in_snomed_ct(tmp_path, ingest, concept, expected):
    obs = observation("o1", code={"coding": [{"system": LOINC, "code": "31444-3"}]}, valueQuantity=None,
                      valueCodeableConcept=concept)
    row = one(ingest, write_ndjson(tmp_path / "in" / "Observation.ndjson", [obs]))
    assert (row["analyte"], row["value_text"]) == ("if_antibody", expected)


def test_value_string_is_read(tmp_path, ingest):
    obs = observation("o1", code={"coding": [{"system": LOINC, "code": "31444-3"}]}, valueQuantity=None,
                      valueString="Negative")
    assert one(ingest, write_ndjson(tmp_path / "in" / "Observation.ndjson", [obs]))["value_text"] == "negative"


@pytest.mark.parametrize("fields, collected", [
    ({"effectiveDateTime": "2024-03-01T09:00:00+01:00"}, "2024-03-01 09:00:00"),
    ({"effectiveDateTime": None, "effectiveInstant": "2024-03-02T10:00:00Z"}, "2024-03-02 10:00:00"),
    ({"effectiveDateTime": None, "effectivePeriod": {"start": "2024-03-03T08:00:00Z"}}, "2024-03-03 08:00:00"),
    ({"effectiveDateTime": None, "issued": "2024-03-04T11:00:00.123Z"}, "2024-03-04 11:00:00.123000"),
])
def test_every_effective_form(tmp_path, ingest, fields, collected):
    row = one(ingest, write_ndjson(tmp_path / "in" / "Observation.ndjson", [observation("o1", **fields)]))
    assert str(row["collected_at"]) == collected


@pytest.mark.parametrize("status, outcome", [
    ("final", "accepted"), ("amended", "accepted"), ("corrected", "accepted"), ("preliminary", "accepted"),
    ("registered", "accepted"), ("cancelled", "cancelled"), ("entered-in-error", "entered_in_error"),
])
def test_observation_statuses(tmp_path, ingest, status, outcome):
    result = ingest(write_ndjson(tmp_path / "in" / "Observation.ndjson", [observation("o1", status=status)]))
    expected = {("accepted", ""): 1} if outcome == "accepted" else {("dropped", outcome): 1}
    assert result.account.by_reason == expected


def test_reference_range_and_full_url_subject(tmp_path, ingest):
    obs = observation("o1", subject={"reference": "https://fhir.example.org/r4/Patient/P9/_history/2"},
                      code={"coding": [{"system": LOINC, "code": "13964-2"}]},
                      valueQuantity={"value": 0.3, "unit": "umol/L"},
                      referenceRange=[{"low": {"value": 0}, "high": {"value": 0.4}}])
    row = one(ingest, write_ndjson(tmp_path / "in" / "Observation.ndjson", [obs]))
    assert (row["patient_id"], row["ref_high_si"]) == ("P9", 0.4)


def test_components_and_vital_signs_are_out_of_scope_without_crashing(tmp_path, ingest):
    panel = observation("bp", code={"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure"}]},
                        valueQuantity=None,
                        component=[{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                                    "valueQuantity": {"value": 120, "unit": "mm[Hg]"}}])
    survey = observation("s", code={"coding": [{"system": LOINC, "code": "63586-2", "display": "Income"}]},
                         valueQuantity=None, valueString="12 Main Street")
    result = ingest(write_ndjson(tmp_path / "in" / "Observation.ndjson", [panel, survey, observation("b12")]))
    assert result.account.by_reason == {("accepted", ""): 1, ("dropped", "out_of_scope"): 2}
    codes = {row["code"]: row for row in result.rows("unmapped_codes")}
    assert set(codes) == {"85354-9", "63586-2"} and codes["63586-2"]["display"] == "Income"
    assert result.quarantine() == []


# -- medications -------------------------------------------------------------------------------------------------

B12_CONCEPT = {"text": "Hydroxocobalamin 1 mg/mL injection",
               "coding": [{"system": "http://www.whocc.no/atc", "code": "B03BA03"}]}


def request(status="active", **fields) -> dict:
    resource = {"resourceType": "MedicationRequest", "id": "m1", "status": status,
                "subject": {"reference": "Patient/P1"}, "authoredOn": "2005-03-01",
                "medicationCodeableConcept": B12_CONCEPT,
                "dosageInstruction": [{"route": {"coding": [{"display": "Intramuscular"}]}}]}
    resource.update(fields)
    return {key: value for key, value in resource.items() if value is not None}


@pytest.mark.parametrize("status, fields, end", [
    ("active", {}, None),
    ("on-hold", {}, None),
    ("stopped", {}, date(2005, 3, 1)),
    ("completed", {"dispenseRequest": {"validityPeriod": {"start": "2005-03-01", "end": "2005-09-01"}}},
     date(2005, 9, 1)),
    ("cancelled", {}, date(2005, 3, 1)),
    ("stopped", {"dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": "2005-03-01",
                                                                               "end": "2005-06-30"}}}}]},
     date(2005, 6, 30)),
])
def test_request_status_decides_activity(tmp_path, ingest, status, fields, end):
    row = one(ingest, write_ndjson(tmp_path / "in" / "MedicationRequest.ndjson", [request(status, **fields)]))
    assert (row["start_date"], row["end_date"]) == (date(2005, 3, 1), end)


def test_route_is_kept(tmp_path, ingest):
    assert one(ingest, write_ndjson(tmp_path / "in" / "MedicationRequest.ndjson", [request()]))["route"] == \
        "Intramuscular"


@pytest.mark.parametrize("route, kept", [
    ({"coding": [{"system": "http://snomed.info/sct", "code": "78421000"}]}, "78421000"),  # the code alone
    ({"coding": [{"system": "http://snomed.info/sct", "code": "78421000", "display": "Intramuscular"}]},
     "Intramuscular"),
    ({"text": "IM", "coding": [{"system": "http://snomed.info/sct", "code": "78421000"}]}, "IM"),
])
def test_the_route_is_its_text_else_its_display_else_its_code(tmp_path, ingest, route, kept):
    """Any of the three is matched by the intramuscular value set (IM, intramuscular, 78421000)."""
    for name, resource in (("MedicationRequest", request(dosageInstruction=[{"route": route}])),
                           ("MedicationStatement", {"resourceType": "MedicationStatement", "status": "active",
                                                    "subject": {"reference": "Patient/P1"},
                                                    "medicationCodeableConcept": B12_CONCEPT,
                                                    "effectiveDateTime": "2010-05-01", "dosage": [{"route": route}]})):
        assert one(ingest, write_ndjson(tmp_path / name / f"{name}.ndjson", [resource]))["route"] == kept


def test_statement_completed_without_end_ends_at_its_start(tmp_path, ingest):
    statement = {"resourceType": "MedicationStatement", "status": "completed", "subject": {"reference": "Patient/P1"},
                 "medicationCodeableConcept": B12_CONCEPT, "effectiveDateTime": "2010-05-01",
                 "dosage": [{"route": {"text": "oral"}}]}
    row = one(ingest, write_ndjson(tmp_path / "in" / "MedicationStatement.ndjson", [statement]))
    assert (row["end_date"], row["route"]) == (date(2010, 5, 1), "oral")


def test_medication_reference_to_contained_medication(tmp_path, ingest):
    contained = request(medicationCodeableConcept=None, medicationReference={"reference": "#med1"},
                        contained=[{"resourceType": "Medication", "id": "med1", "code": B12_CONCEPT}])
    row = one(ingest, write_ndjson(tmp_path / "in" / "MedicationRequest.ndjson", [contained]))
    assert (row["drug"], row["atc_code"]) == ("Hydroxocobalamin 1 mg/mL injection", "B03BA03")


def test_medication_reference_to_medication_file_of_the_same_export(tmp_path, ingest):
    write_ndjson(tmp_path / "in" / "Medication.000.ndjson",
                 [{"resourceType": "Medication", "id": "cyano",
                   "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1000",
                                        "display": "cyanocobalamin 1000 MCG/ML Injectable Solution"}]}}])
    referenced = request(medicationCodeableConcept=None, medicationReference={"reference": "Medication/cyano"})
    path = write_ndjson(tmp_path / "in" / "MedicationRequest.000.ndjson", [referenced])
    assert one(ingest, path)["drug"] == "cyanocobalamin 1000 MCG/ML Injectable Solution"
    exports, ignored = discover_exports(tmp_path / "in")
    assert [e.name for e in exports] == ["MedicationRequest.000.ndjson"] and ignored == []


# -- partial dates, practice ---------------------------------------------------------------------------------------

def test_partial_dates_are_the_first_day_with_their_precision(tmp_path, ingest):
    patient = {"resourceType": "Patient", "id": "P1", "birthDate": "1950", "gender": "female"}
    row = one(ingest, write_ndjson(tmp_path / "in" / "Patient.ndjson", [patient]))
    assert (row["birth_date"], row["birth_date_precision"]) == (date(1950, 1, 1), "year")
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/P1"}, "onsetDateTime": "2019-07",
                 "code": {"coding": [{"system": SNOMED, "code": "84027009"}]}}
    row = one(ingest, write_ndjson(tmp_path / "in" / "Condition.ndjson", [condition]))
    assert (row["recorded_at"], row["recorded_at_precision"]) == (date(2019, 7, 1), "month")


def test_practice_from_referenced_organization(tmp_path, ingest):
    write_ndjson(tmp_path / "in" / "Organization.000.ndjson",
                 [{"resourceType": "Organization", "id": "org1", "name": "Riverside Family Practice"}])
    patients = [{"resourceType": "Patient", "id": "P1", "birthDate": "1950-02-03",
                 "generalPractitioner": [{"reference": "Organization/org1"}]},
                {"resourceType": "Patient", "id": "P2", "birthDate": "1960-02-03",
                 "managingOrganization": {"display": "Valley Clinic"}}]
    result = ingest(write_ndjson(tmp_path / "in" / "Patient.000.ndjson", patients))
    assert [row["practice"] for row in result.rows()] == ["Riverside Family Practice", "Valley Clinic"]


# -- bundles and the manifest --------------------------------------------------------------------------------------

def test_transaction_bundle_with_urn_uuid_references(tmp_path, ingest):
    patient_url, med_url, org_url = (f"urn:uuid:{n}" for n in ("1111", "2222", "3333"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": org_url, "resource": {"resourceType": "Organization", "id": "3333", "name": "Northgate GP"}},
        {"fullUrl": patient_url, "resource": {"resourceType": "Patient", "id": "1111", "birthDate": "1970",
                                              "managingOrganization": {"reference": org_url}}},
        {"fullUrl": "urn:uuid:4444", "resource": observation("o1", subject={"reference": patient_url})},
        {"fullUrl": "urn:uuid:5555", "resource": observation(
            "o2", subject={"reference": patient_url},
            code={"coding": [{"system": LOINC, "code": "8302-2", "display": "Body height"}]})},
        {"fullUrl": med_url, "resource": {"resourceType": "Medication", "id": "2222", "code": B12_CONCEPT}},
        {"fullUrl": "urn:uuid:6666", "resource": request(subject={"reference": patient_url},
                                                         medicationCodeableConcept=None,
                                                         medicationReference={"reference": med_url})},
        {"fullUrl": "urn:uuid:7777", "resource": {"resourceType": "Encounter", "id": "7777"}},
    ]}
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "Someone_1111.json"
    path.write_text(json.dumps(bundle))
    exports, _ = discover_exports(folder)
    assert [e.name for e in exports] == ["Someone_1111.json#Observation", "Someone_1111.json#Patient",
                                         "Someone_1111.json#MedicationRequest"]
    assert len({e.source_hash for e in exports}) == 3
    labs = ingest(path)  # the first export of the file: its Observations
    assert labs.account.by_reason == {("accepted", ""): 1, ("dropped", "out_of_scope"): 1}
    assert [(row["patient_id"], row["source_row"]) for row in labs.rows()] == [("1111", 3)]


def test_bundle_parts_are_ingested_each(tmp_path):
    import duckdb

    from b12lab.ingest import ingest_file
    from b12lab.lake.lake import Lake

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "p", "birthDate": "1970-01-01",
                                               "managingOrganization": {"reference": "urn:uuid:o"}}},
        {"fullUrl": "urn:uuid:o", "resource": {"resourceType": "Organization", "id": "o", "name": "Northgate GP"}},
        {"fullUrl": "urn:uuid:m", "resource": {"resourceType": "Medication", "id": "m", "code": B12_CONCEPT}},
        {"resource": request(subject={"reference": "urn:uuid:p"}, medicationCodeableConcept=None,
                             medicationReference={"reference": "urn:uuid:m"})},
    ]}
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bundle.json").write_text(json.dumps(bundle))
    lake = Lake(tmp_path / "lake")
    exports, _ = discover_exports(folder)
    with duckdb.connect() as con:
        accounts = {e.fhir_resource: ingest_file(con, e, lake, "r", date(2026, 1, 1), []) for e in exports}
    assert {name: a.rows_accepted for name, a in accounts.items()} == {"Patient": 1, "MedicationRequest": 1}
    with duckdb.connect() as con:
        practice = con.execute("select practice from read_parquet($p)",
                               {"p": str(lake.data_file("patients", exports[0].source_hash))}).fetchall()
        drug = con.execute("select patient_id, atc_code from read_parquet($p)",
                           {"p": str(lake.data_file("medications", exports[1].source_hash))}).fetchall()
    assert practice == [("Northgate GP",)] and drug == [("p", "B03BA03")]


def test_manifest_lists_the_export_files(tmp_path):
    folder = tmp_path / "in"
    write_ndjson(folder / "Observation.000.ndjson", [observation("o1")])
    write_ndjson(folder / "Observation.old.ndjson", [observation("o2")])
    (folder / "manifest.json").write_text(json.dumps({
        "transactionTime": "2024-05-01T00:00:00Z", "request": "https://fhir.example.org/$export",
        "output": [{"type": "Observation", "url": "https://fhir.example.org/files/Observation.000.ndjson"}]}))
    assert read_manifest(folder) == {"files": ["Observation.000.ndjson"], "transaction_time": "2024-05-01T00:00:00Z"}
    exports, ignored = discover_exports(folder)
    assert [e.name for e in exports] == ["Observation.000.ndjson"]
    assert [p.name for p in ignored] == ["Observation.old.ndjson"]


# -- a real export (Synthea, from smart-on-fhir/sample-bulk-fhir-datasets), trimmed ----------------------------------

REAL = Path(__file__).resolve().parents[1] / "data" / "fhir-sample-bulk"


def test_real_bulk_export_stopped_requests_end_and_active_ones_stay_open(tmp_path, ingest):
    import shutil

    shutil.copytree(REAL, tmp_path / "in")
    result = ingest(tmp_path / "in" / "MedicationRequest.000.ndjson")
    assert result.account.reconciles and result.account.rows_accepted == 8
    rows = result.rows()
    open_ended = [row for row in rows if row["end_date"] is None]
    assert len(open_ended) == 3  # the three active requests
    # A stopped request without a stated end ends on its own authored date.
    assert all(row["end_date"] == row["start_date"] for row in rows if row["end_date"] is not None)
    assert {row["start_date"] for row in rows if row["end_date"] is not None} == {
        date(1990, 8, 5), date(1989, 8, 5), date(2008, 11, 16), date(2011, 12, 10), date(1999, 10, 2)}


def test_real_bulk_export_patient_and_conditions(tmp_path, ingest):
    import shutil

    shutil.copytree(REAL, tmp_path / "in")
    [patient] = ingest(tmp_path / "in" / "Patient.000.ndjson").rows()
    assert (patient["patient_id"], patient["birth_date_precision"]) == ("a5cb8ce9-cec6-6b23-0990-cbaf753578a4", "day")
    conditions = ingest(tmp_path / "in" / "Condition.000.ndjson")
    assert conditions.account.rows_accepted == 6
    assert {row["code_system"] for row in conditions.rows()} == {"SNOMED-CT"}


def test_real_bulk_export_through_the_entry_point(tmp_path):
    import os
    import subprocess
    import sys

    import duckdb

    output = tmp_path / "out"
    result = subprocess.run([str(Path(sys.executable).parent / "b12lab"), "run", "--input", str(REAL),
                             "--output", str(output), "--as-of", "2026-01-01"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"),
                                 "PREFECT_API_URL": session_api_url()})
    assert result.returncode == 0, result.stderr
    assert "read 15, accepted 15, quarantined 0, dropped 0" in result.stdout
    # Progress is on stdout; stderr holds only a failure's one line.
    assert "MedicationRequest.000.ndjson: read 8, accepted 8, quarantined 0, dropped 0" in result.stdout
    assert result.stderr == "" and "Traceback" not in result.stdout
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) filter (where end_date is null), count(*) from medications").fetchone() \
            == (3, 8)
