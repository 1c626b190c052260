"""Values and files as sites write them: unreadable optional fields counted, mapping formats and fallbacks,
values with their unit or a footnote mark, trailer lines, FHIR's unknown status, missing dates, a truncated
Bundle, NDJSON of Bundles, minimum necessary in quarantine, per-patient file names by pattern."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import yaml

from b12lab.ingest import discover_exports, ingest_file, load_mapping
from b12lab.common.file_names import reported_name
from b12lab.flows.nightly import summed_by_reported_name
from b12lab.ingest.accounting import FileAccount
from b12lab.lake.lake import Lake
from tests.helpers.exports import lab_row, write_labs
from tests.helpers.fixtures import Ingested
from tests.helpers.processes import session_api_url
from tests.ingest.test_ingest_fhir import observation, write_ndjson

B12LAB = str(Path(sys.executable).parent / "b12lab")


def unreadable(result: Ingested) -> dict[str, int]:
    path = result.lake.data_file("unreadable_fields", result.source_hash)
    return {row["field"]: row["rows"] for row in pq.read_table(path).to_pylist()}


def test_an_optional_field_given_but_unreadable_is_counted_per_file_and_field(tmp_path, ingest):
    rows = [lab_row(accession="A1", resulted_at="05/03/2024 14:00"),       # dd/mm/yyyy hh:mm: not read
            lab_row(accession="A2", resulted_at="2024-03-05T14:00:00", reference_range="see report"),
            lab_row(accession="A3", resulted_at="", reference_range=">150"),  # empty: nothing to count
            lab_row(accession="A4", resulted_at="06/03/2024 09:00", reference_range="150-600")]
    result = ingest(write_labs(tmp_path / "in" / "labs_site.csv", rows))
    assert result.account.rows_accepted == 4
    assert result.account.unreadable_fields == {"resulted_at": 2, "reference_range": 1}
    assert unreadable(result) == {"resulted_at": 2, "reference_range": 1}
    by_accession = {row["accession"]: row for row in result.rows()}
    assert by_accession["A1"]["resulted_at"] is None and by_accession["A4"]["ref_low_si"] == 150.0
    assert by_accession["A3"]["ref_low_si"] == 150.0 and by_accession["A3"]["ref_high_si"] is None  # >low


def test_a_fhir_issued_time_that_does_not_read_is_counted(tmp_path, ingest):
    lines = [observation("o1", issued="2024-03-01T15:00:00Z"), observation("o2", issued="yesterday")]
    result = ingest(write_ndjson(tmp_path / "in" / "Observation.ndjson", lines))
    assert result.account.rows_accepted == 2
    assert result.account.unreadable_fields == {"resulted_at": 1}


def test_values_with_their_unit_or_a_footnote_mark_and_a_trailer_line(tmp_path, ingest):
    rows = [lab_row(accession="A1", result_value="245 pmol/L"),
            lab_row(accession="A2", result_value=">2000*.", unit="pmol/L"),
            lab_row(accession="A3", result_value="245 ng/L")]            # another unit: not stripped
    path = write_labs(tmp_path / "in" / "labs_site.csv", rows)
    with path.open("a") as stream:
        stream.write("Total rows: 3\n(3 rows)\nEND OF REPORT\n")
    result = ingest(path)
    accepted = {row["accession"]: row for row in result.rows()}
    assert (accepted["A1"]["value_raw"], accepted["A1"]["value_reported"]) == ("245 pmol/L", 245.0)
    assert (accepted["A2"]["comparator"], accepted["A2"]["value_reported"]) == (">", 2000.0)
    assert result.reasons() == {3: "unparseable_value"}
    assert result.account.by_reason[("dropped", "trailer")] == 3
    assert result.account.reconciles and result.account.rows_read == 6


def test_trailer_text_between_records_is_a_damaged_record(tmp_path, ingest):
    path = tmp_path / "in" / "labs_site.csv"
    write_labs(path, [lab_row(accession="A1")])
    with path.open("a") as stream:
        stream.write("END OF REPORT\n")
    write_labs(tmp_path / "other" / "labs.csv", [lab_row(accession="A2")])
    with path.open("a") as stream:
        stream.write((tmp_path / "other" / "labs.csv").read_text().splitlines()[1] + "\n")
    result = ingest(path)
    assert result.reasons() == {2: "malformed_row"}


def test_mapping_formats_fallback_columns_and_range_bounds(tmp_path):
    mapping = tmp_path / "site.yaml"
    mapping.write_text(yaml.safe_dump({
        "files": "events*.csv",
        "date_format": {"collected_at": "%Y-%m-%d %H:%M:%S", "resulted_at": ["%d/%m/%Y %H:%M", "%d/%m/%Y"]},
        "columns": {"patient_id": "subject_id", "local_code": "itemid", "result_value": ["value", "comments"],
                    "unit": "valueuom", "collected_at": "charttime", "resulted_at": "storetime",
                    "reference_range": {"low": "ref_range_lower", "high": "ref_range_upper"}},
        "local_codes": {"51010": "b12"},
        "status_default": "F",
    }))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "events.csv").write_text(
        "subject_id,itemid,value,comments,valueuom,charttime,storetime,ref_range_lower,ref_range_upper\n"
        "10001,51010,245,,pg/mL,2150-01-01 08:00:00,01/01/2150 12:30,200,900\n"
        "10002,51010,,350,pg/mL,2150-01-02 08:00:00,02/01/2150,,900\n"
        "10003,51010,,400,pg/mL,2150-01-03 08:00:00,2150-01-03T09:00:00,200,\n"
        "10004,51010,500,,pg/mL,2150-01-04 08:00:00,4 Jan 2150,,\n"
        "10005,51010,,___,pg/mL,2150-01-05 08:00:00,,,\n")
    loaded = load_mapping(str(mapping))
    [export], _ = discover_exports(folder, loaded)
    with duckdb.connect() as con:
        account = ingest_file(con, export, Lake(tmp_path / "lake"), "run", date(2200, 1, 1), [])
    table = pq.read_table(Lake(tmp_path / "lake").data_file("lab_results", export.source_hash)).to_pylist()
    rows = {row["patient_id"]: row for row in table}
    assert rows["10001"]["resulted_at"] == datetime(2150, 1, 1, 12, 30)
    assert rows["10002"]["resulted_at"] == datetime(2150, 1, 2)         # the second format
    assert rows["10003"]["resulted_at"] == datetime(2150, 1, 3, 9)      # ISO 8601 always
    assert rows["10003"]["value_raw"] == "400"                           # comments when value is empty
    assert (rows["10001"]["reference_range"], rows["10002"]["reference_range"],
            rows["10003"]["reference_range"]) == ("200-900", "<900", ">200")
    assert account.unreadable_fields == {"resulted_at": 1}                # 4 Jan 2150
    assert account.by_reason[("quarantined", "unparseable_value")] == 1  # ___: de-identified text


def test_fhir_unknown_status_is_kept_and_mcv_by_30428_7_in_scope(tmp_path, ingest):
    lines = [observation("o1", status="unknown"),
             observation("o2", code={"coding": [{"system": "http://loinc.org", "code": "30428-7"}]},
                         valueQuantity={"value": 101, "unit": "fL", "code": "fL"})]
    result = ingest(write_ndjson(tmp_path / "in" / "Observation.ndjson", lines))
    assert [(row["status"], row["analyte"]) for row in result.rows()] == [("U", "b12"), ("F", "mcv")]


def test_missing_dates(tmp_path, ingest):
    request = {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
               "subject": {"reference": "Patient/P001"},
               "medicationCodeableConcept": {"text": "Hydroxocobalamin 1mg/ml"}}
    result = ingest(write_ndjson(tmp_path / "in" / "MedicationRequest.ndjson", [request, request | {"id": "m2"}]))
    # Valid FHIR with no date: dropped by a rule, never quarantined (a night is never failed by it).
    assert result.account.by_reason == {("dropped", "missing_date"): 1, ("dropped", "duplicate"): 1} or \
        result.account.by_reason == {("dropped", "missing_date"): 2}
    assert result.account.rows_quarantined == 0
    labs = ingest(write_labs(tmp_path / "labs" / "labs.csv", [lab_row(collected_at="")]))
    assert labs.reasons() == {1: "missing_date"}


def _patient_bundle(truncate: bool = False) -> str:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01", "gender": "female",
               "name": [{"given": ["Mary"], "family": "Smith"}], "telecom": [{"value": "555-0100"}],
               "address": [{"line": ["1 High Street"]}]}
    text = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": patient},
        {"fullUrl": "urn:uuid:o1", "resource": observation("o1", subject={"reference": "urn:uuid:p1"})},
        {"fullUrl": "urn:uuid:o2", "resource": observation("o2", subject={"reference": "urn:uuid:p1"},
                                                             effectiveDateTime="2024-03-02")}]})
    return text[:text.rindex('"o2"')] if truncate else text


def test_a_truncated_bundle_is_an_unreadable_file_with_its_entries_quarantined(tmp_path, ingest):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "Mary_Smith_9f3a.json").write_text(_patient_bundle(truncate=True))
    exports, ignored = discover_exports(folder)
    assert not ignored and {export.fhir_resource for export in exports} == {"Patient", "Observation"}
    observation_export = next(export for export in exports if export.fhir_resource == "Observation")
    assert observation_export.display_name == "<Given>_<Family>_<id>.json#Observation"
    with duckdb.connect() as con:
        account = ingest_file(con, observation_export, Lake(tmp_path / "lake"), "run", date(2026, 1, 1), [])
    assert account.problem == "the JSON document is truncated or damaged"
    assert account.by_reason == {("quarantined", "unreadable_file"): 1}


def test_ndjson_of_bundles_is_read_and_quarantine_keeps_only_the_fields_read(tmp_path, ingest):
    folder = tmp_path / "in"
    folder.mkdir()
    damaged = json.loads(_patient_bundle())
    damaged["entry"][0]["resource"]["birthDate"] = "01/01/1950"
    (folder / "Bundle.ndjson").write_text(_patient_bundle() + "\n" + json.dumps(damaged) + "\n")
    exports, _ = discover_exports(folder)
    assert [export.fhir_resource for export in exports] == ["Observation", "Patient"]
    lake = Lake(tmp_path / "lake")
    with duckdb.connect() as con:
        accounts = [ingest_file(con, export, lake, "run", date(2026, 1, 1), []) for export in exports]
    assert (accounts[0].rows_read, accounts[0].rows_accepted) == (4, 2)  # the second Bundle's are duplicates
    assert accounts[1].by_reason == {("accepted", ""): 1, ("quarantined", "unparseable_date"): 1}
    [quarantined] = pq.read_table(lake.data_file("quarantine", exports[1].source_hash)).to_pylist()
    assert quarantined["raw"] == "p1,01/01/1950,F,,"  # patient_id, birth date, sex, practice, death date
    assert "High Street" not in quarantined["raw"] and "555" not in quarantined["raw"]


def test_file_names_that_may_carry_a_persons_name_are_shown_by_pattern():
    assert reported_name("Aaron697_Brekke496_2fa15bc7-8866-461a-9000-f739e425860a.json#Observation") == \
        "<Given>_<Family>_<id>.json#Observation"
    assert reported_name("labs_2024-03.csv") == "labs_2024-03.csv"
    assert reported_name("Observation.000.ndjson") == "Observation.000.ndjson"


def test_per_patient_files_are_summed_by_pattern_where_the_first_came_and_other_files_stay_apart():
    accounts = [FileAccount(source_file=name, source_hash=str(i), kind="labs", rows_read=read, rows_accepted=read - 1,
                            rows_quarantined=1)
                for i, (name, read) in enumerate([("Ann1_Lee2_0a1.json#Observation", 3), ("labs.csv", 10),
                                                  ("Bo3_Ek4_9f2.json#Observation", 5), ("labs.csv", 7)])]
    assert summed_by_reported_name(accounts) == [
        ("<Given>_<Family>_<id>.json#Observation", 2, 8, 6, 2, 0),
        ("labs.csv", 1, 10, 9, 1, 0),
        ("labs.csv", 1, 7, 6, 1, 0)]


def test_site_feeds_through_the_b12lab_process(tmp_path):
    """The real entry point: unreadable fields and the unknown status in the run summary, the warning
    expectation, the data-quality mart and report; per-patient Bundle names in neither log nor report."""
    folder = tmp_path / "in"
    write_labs(folder / "labs_site.csv", [lab_row(accession="A1", resulted_at="05/03/2024 14:00"),
                                          lab_row(accession="A2", patient_id="P002")])
    with (folder / "labs_site.csv").open("a") as stream:
        stream.write("(2 rows)\n")
    # Per-patient Bundles, as Synthea writes them: on the terminal one line for the three files' Observations.
    (folder / "Mary_Smith_9f3a.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": observation("o9", status="unknown", subject={"reference": "Patient/P003"})}]}))
    (folder / "John_Doe_1b2c.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "P004", "birthDate": "1950-01-01", "gender": "male"}},
        {"resource": observation("o10", subject={"reference": "Patient/P004"})},
        {"resource": observation("o11", subject={"reference": "Patient/P004"}, effectiveDateTime="2024-03-02")}]}))
    (folder / "Ann_Lee_3d4e.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": observation("o12", subject={"reference": "Patient/P005"})}]}))
    output = tmp_path / "out"
    result = subprocess.run([B12LAB, "run", "--input", str(folder), "--output", str(output), "--as-of", "2024-06-01"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"),
                                 "PREFECT_API_URL": session_api_url()})
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr + "".join(path.read_text() for path in (output / "logs").glob("*.log"))
    assert not [person for person in ("Mary_Smith", "John_Doe", "Ann_Lee") if person in log]
    messages = [line.split(" - ", 1)[-1] for line in result.stdout.splitlines()]
    assert [message for message in messages if ": read " in message and not message.startswith("published")] == [
        "<Given>_<Family>_<id>.json#Observation (3 files): read 4, accepted 4, quarantined 0, dropped 0",
        "<Given>_<Family>_<id>.json#Patient: read 1, accepted 1, quarantined 0, dropped 0",
        "labs_site.csv: read 3, accepted 2, quarantined 0, dropped 1"]
    assert "resulted_at given but unreadable in 1 accepted rows" in log
    summary = json.loads((output / "run_summary.json").read_text())
    files = {entry["source_file"]: entry for entry in summary["files"]}
    assert files["labs_site.csv"]["unreadable_fields"] == {"resulted_at": 1}
    assert {"outcome": "dropped", "reason": "trailer", "rows": 1} in files["labs_site.csv"]["by_reason"]
    assert any(text.startswith("unreadable_fields.rows: expect_column_values_to_be_between")
               for text in summary["expectation_warnings_list"])
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select field, this_run from data_quality where section = 'unreadable_field'"
                           ).fetchall() == [("resulted_at", 1)]
        assert con.execute("select reason, this_run from data_quality where section = 'not_counted'"
                           ).fetchall() == [("status_unknown", 1)]
    page = (output / "report" / "index.html").read_text()
    assert "Mary" not in page and "&lt;Given&gt;_&lt;Family&gt;_&lt;id&gt;.json#Observation (3 files)" in page
    assert 'id="table-unreadable-fields"' in page and "status_unknown" in page
