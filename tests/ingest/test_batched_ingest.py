"""A task's small files with the FHIR Bundles of one resource type read together: the same lake files, rows and
accounts as each file ingested on its own, in the same order."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from b12lab.ingest import LAB_COLUMNS, IngestError, batched_ingest, discover_exports, ingest_file, ingest_small_files
from b12lab.ingest.accounting import FileAccount
from b12lab.ingest.file_ingest import prepare_connection, store_records
from b12lab.lake.lake import DATA_TABLES, Lake
from tests.helpers.exports import lab_row, write_csv, write_labs
from tests.ingest.test_ingest_fhir import observation, write_ndjson

ATC = "http://www.whocc.no/atc"


def bundle(patient: str, resources: list[dict], practice: str = "Practice A") -> dict:
    """A transaction Bundle of one patient as Synthea writes it: every reference to an entry a urn:uuid."""
    entries = [{"fullUrl": f"urn:uuid:{patient}-uuid", "resource": {
        "resourceType": "Patient", "id": patient, "gender": "female", "birthDate": "1950-02-03",
        "managingOrganization": {"display": practice}}}]
    for number, resource in enumerate(resources):
        resource = {**resource}
        if "subject" in resource:
            resource["subject"] = {"reference": f"urn:uuid:{patient}-uuid"}
        entries.append({"fullUrl": f"urn:uuid:{patient}-{number}", "resource": resource})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def b12(id_: str, value: float, day: str = "2024-03-01", **fields) -> dict:
    quantity = {"value": value, "unit": "pmol/L", "system": "http://unitsofmeasure.org", "code": "pmol/L"}
    return observation(id_, **{"effectiveDateTime": f"{day}T09:00:00Z", "valueQuantity": quantity, **fields})


def medication(id_: str, atc: str, name: str) -> dict:
    return {"resourceType": "Medication", "id": id_, "code": {"coding": [{"system": ATC, "code": atc, "display": name}]}}


def statement(id_: str, medication_id: str, day: str = "2024-01-10") -> dict:
    return {"resourceType": "MedicationStatement", "id": id_, "status": "active", "subject": {},
            "medicationReference": {"reference": f"Medication/{medication_id}"}, "effectiveDateTime": day,
            "dosage": [{"route": {"text": "intramuscular"}}]}


def condition(id_: str, code: str = "D51.0", day: str = "2024-01-02") -> dict:
    return {"resourceType": "Condition", "id": id_, "subject": {},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]}, "recordedDate": day}


@pytest.fixture
def drop(tmp_path) -> Path:
    """Per-patient Bundles of every kind, with what makes reading them together delicate."""
    folder = tmp_path / "in"
    folder.mkdir()
    bundles = {
        "Ann_Lee_01.json": bundle("P01", [b12("o1", 120), b12("o2", 300, "2024-05-01"), condition("c1"),
                                          medication("m1", "B03BA03", "hydroxocobalamin"), statement("s1", "m1")]),
        # the same result again in a later Bundle: a duplicate, as if Ann_Lee_01 were already in the lake
        "Bob_Ray_02.json": bundle("P01", [b12("o1", 120), condition("c1"), condition("c1")]),
        # Medication/m1 told otherwise: read apart, so its statement is cyanocobalamin, not hydroxocobalamin
        "Cat_Moe_03.json": bundle("P03", [b12("o3", 180), medication("m1", "B03BA01", "cyanocobalamin"),
                                          statement("s3", "m1")]),
        # quarantined, out of scope (suggesting an analyte), an unreadable issued time
        "Dan_Ho_04.json": bundle("P04", [
            b12("o4", 200, valueQuantity={"value": 200, "unit": "furlongs"}),
            observation("o5", code={"coding": [{"system": "http://acme.org/lab", "code": "XB12",
                                                "display": "Vitamin B12 (send-away)"}]}),
            b12("o6", 250, issued="yesterday"), statement("s4", "m9")]),
        "Eve_Kim_06.json": bundle("P06", [b12("o7", 400), condition("c7", "E53.8")], practice="Practice B"),
    }
    for name, document in bundles.items():
        (folder / name).write_text(json.dumps(document))
    # damaged: ingested on its own, its readable entries quarantined as unreadable_file
    (folder / "Fay_Orr_05.json").write_text(json.dumps(bundle("P05", [b12("o8", 150)]))[:-40])
    # not a Bundle, between them in the task's order
    write_ndjson(folder / "Observation.labs.ndjson", [b12("o9", 220, subject={"reference": "Patient/P06"})])
    return folder


def lake_contents(lake: Lake) -> dict[tuple[str, str], list[tuple]]:
    contents = {}
    with duckdb.connect() as con:
        for table in DATA_TABLES:
            for path in lake.files(table):
                contents[(table, path.name)] = con.execute(
                    "select * from read_parquet($path)", {"path": str(path)}).fetchall()
    return contents


def one_by_one_and_together(tmp_path, exports, monkeypatch) -> tuple[list[FileAccount], list[list[str]]]:
    """Each file ingested on its own into one lake, then all through ingest_small_files into another: asserts
    the same accounts and lake files, row for row; returns the accounts and the files of each read."""
    alone, together = Lake(tmp_path / "alone"), Lake(tmp_path / "together")
    expected, lab_files = [], []
    with duckdb.connect() as con:
        for export in exports:
            expected.append(ingest_file(con, export, alone, "test-run", date(2026, 1, 1), list(lab_files)))
            if export.kind.table == "lab_results":
                lab_files.append(alone.data_file("lab_results", export.source_hash))

    reads = []
    store_records = batched_ingest.store_records
    monkeypatch.setattr(batched_ingest, "store_records",
                        lambda con, files, *args: reads.append([f.name for f in files]) or store_records(con, files, *args))
    with duckdb.connect() as con:
        accounts = ingest_small_files(con, exports, together, "test-run", date(2026, 1, 1), [])

    assert accounts == expected
    assert lake_contents(together) == lake_contents(alone)
    return accounts, reads


def test_bundles_read_together_give_each_file_what_it_gives_alone(tmp_path, drop, monkeypatch):
    exports, _ = discover_exports(drop)
    assert sum(export.bundle for export in exports) > 10
    accounts, reads = one_by_one_and_together(tmp_path, exports, monkeypatch)
    together = Lake(tmp_path / "together")
    # read together: one read per resource type, but for the Bundle that tells Medication/m1 otherwise (a read
    # of its own for MedicationStatement), the damaged Bundle and the NDJSON file between them (ingest_file)
    assert len(reads) < len(exports) / 2
    assert max(len(files) for files in reads) >= 3

    by_file = {account.source_file: account for account in accounts}
    assert by_file["Bob_Ray_02.json#Observation"].by_reason == {("dropped", "duplicate"): 1}
    assert by_file["Bob_Ray_02.json#Condition"].by_reason == {("accepted", ""): 1, ("dropped", "duplicate"): 1}
    assert by_file["Fay_Orr_05.json#Observation"].problem
    assert [code.code for code in by_file["Dan_Ho_04.json#Observation"].suspected_unmapped] == ["XB12"]
    with duckdb.connect() as con:
        drugs = dict(con.execute("select source_file, atc_code from read_parquet($files)",
                                 {"files": [str(path) for path in together.files("medications")]}).fetchall())
    assert drugs["Ann_Lee_01.json#MedicationStatement"] == "B03BA03"
    assert drugs["Cat_Moe_03.json#MedicationStatement"] == "B03BA01"


def test_a_file_numbered_past_what_record_file_tells_apart_stops_with_one_line(tmp_path):
    """A record number of 2^32 or more would read as another file's: no export comes near it, but none is lost."""
    write_labs(tmp_path / "in" / "labs_a.csv", [lab_row()])
    [export], _ = discover_exports(tmp_path / "in")
    with duckdb.connect() as con:
        prepare_connection(con)
        con.execute("create temp table raw_file as select 4294967297 as source_row")
        with pytest.raises(IngestError, match=r"^labs_a\.csv: more than 4,294,967,295 records: split the file"):
            store_records(con, [export], Lake(tmp_path / "lake"), "test-run", date(2026, 1, 1), [])
    assert not (tmp_path / "lake").exists()


def test_csv_files_of_one_kind_read_together_give_each_file_what_it_gives_alone(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    write_labs(folder / "labs_001.csv", [lab_row(accession="A1"), lab_row(accession="A2", result_value="90")])
    # A1 again (a duplicate, as against the lake), and a trailer line after the last record
    write_labs(folder / "labs_002.csv", [lab_row(accession="A1"), lab_row(accession="A3", unit="furlongs"),
                                         ["Total rows: 2"]])
    write_labs(folder / "labs_003.csv.gz", [lab_row(patient_id="P003", local_code="XB12", loinc="",
                                                    test_name="Vitamin B12 (send-away)")], gz=True)
    # lacks a column: every record quarantined, ingested on its own between the others
    write_csv(folder / "labs_004.csv", [c for c in LAB_COLUMNS if c != "status"], [lab_row(accession="A1")])
    write_labs(folder / "labs_005.csv", [lab_row(accession="A1"), lab_row(accession="A5", resulted_at="later")])
    patients = ("patient_id", "birth_date", "sex", "practice")
    for number in (1, 2):  # the same patient in two files: accepted in each (within one file only)
        write_csv(folder / f"patients_00{number}.csv", patients, [["P001", "1950-02-03", "F", "Practice A"]] * 2)
    # another column set (the optional death_date): read apart from the files before it
    write_csv(folder / "patients_003.csv", (*patients, "death_date"), [["P003", "1940-01-01", "M", "Practice B", ""]])
    exports, _ = discover_exports(folder)
    assert len(exports) == 8

    accounts, reads = one_by_one_and_together(tmp_path, exports, monkeypatch)

    # a read ends when a file of its kind does not fit it, or when the files end
    assert reads == [["labs_004.csv"], ["patients_001.csv", "patients_002.csv"],
                     ["labs_001.csv", "labs_002.csv", "labs_003.csv.gz", "labs_005.csv"], ["patients_003.csv"]]
    by_file = {account.source_file: account for account in accounts}
    assert by_file["labs_002.csv"].by_reason == {("dropped", "duplicate"): 1, ("quarantined", "unknown_unit"): 1,
                                                 ("dropped", "trailer"): 1}
    assert by_file["labs_005.csv"].by_reason == {("dropped", "duplicate"): 1, ("accepted", ""): 1}
    assert by_file["labs_005.csv"].unreadable_fields == {"resulted_at": 1}
    assert [code.code for code in by_file["labs_003.csv.gz"].suspected_unmapped] == ["XB12"]
    assert by_file["labs_004.csv"].missing_columns == ["status"]
    assert by_file["patients_002.csv"].by_reason == {("accepted", ""): 1, ("dropped", "duplicate"): 1}
