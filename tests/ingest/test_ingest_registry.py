"""Registry exports: patients, diagnoses, medications."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from b12lab.ingest import EXPORT_KINDS, export_kind_of
from tests.helpers.exports import write_csv

PATIENT_COLUMNS = EXPORT_KINDS["patients"].columns
DIAGNOSIS_COLUMNS = EXPORT_KINDS["diagnoses"].columns
MEDICATION_COLUMNS = EXPORT_KINDS["medications"].columns


@pytest.mark.parametrize(
    "name, kind",
    [("labs.csv", "labs"), ("labs_siteA_2024.csv.gz", "labs"), ("LABS.CSV", "labs"), ("patients.csv", "patients"),
     ("diagnoses_2024.csv", "diagnoses"), ("medications.csv.gz", "medications"), ("notes.txt", None),
     ("labs.xlsx", None), ("results.csv", None)],
)
def test_export_kind_by_file_name(name, kind):
    found = export_kind_of(Path(name))
    assert (found.name if found else None) == kind


def test_patients(tmp_path, ingest):
    rows = [
        ["P001", "1950-02-03", "f", "Riverside Surgery"],
        ["0042", "", "M", ""],                       # unknown birth date and practice are accepted
        ["", "1960-01-01", "F", "Riverside Surgery"],  # missing_patient_id
        ["P003", "03/02/1950", "F", "Hillview"],     # unparseable_date
        ["P004", "2090-01-01", "F", "Hillview"],     # future_date
        ["P005", "1850-01-01", "F", "Hillview"],     # implausible_date
        ["P001", "1950-02-03", "f", "Riverside Surgery"],  # duplicate
        ["P006", "1970-01-01"],                      # malformed_row
    ]
    result = ingest(write_csv(tmp_path / "in" / "patients.csv", PATIENT_COLUMNS, rows))
    accepted = result.rows()
    assert [(r["patient_id"], str(r["birth_date"]), r["sex"], r["practice"]) for r in accepted] == [
        ("P001", "1950-02-03", "F", "Riverside Surgery"), ("0042", "None", "M", None)]
    assert result.reasons() == {3: "missing_patient_id", 4: "unparseable_date", 5: "future_date",
                                6: "implausible_date", 8: "malformed_row"}
    assert result.account.by_reason[("dropped", "duplicate")] == 1
    assert result.account.reconciles and result.account.rows_read == 8
    assert all(r["death_date"] is None and r["deceased"] is False for r in accepted)  # no death_date column


def test_patients_death_date_is_an_optional_column(tmp_path, ingest):
    rows = [
        ["P001", "1950-02-03", "F", "Riverside Surgery", "2024-03-05"],
        ["P002", "1950-02-03", "F", "Riverside Surgery", ""],            # alive
        ["P003", "1950-02-03", "F", "Riverside Surgery", "05/03/2024"],  # unparseable_date
        ["P004", "1950-02-03", "F", "Riverside Surgery", "2090-01-01"],  # future_date
        ["P005", "1950-02-03", "F", "Riverside Surgery", "1850-01-01"],  # implausible_date
    ]
    result = ingest(write_csv(tmp_path / "in" / "patients.csv", [*PATIENT_COLUMNS, "death_date"], rows))
    assert [(r["patient_id"], str(r["death_date"]), r["deceased"]) for r in result.rows()] == [
        ("P001", "2024-03-05", True), ("P002", "None", False)]
    assert result.reasons() == {3: "unparseable_date", 4: "future_date", 5: "implausible_date"}


@pytest.mark.parametrize(
    "system, expected",
    [("ICD-10", "ICD-10"), ("ICD10", "ICD-10"), ("ICD-10-CM", "ICD-10"), ("icd-10-cm", "ICD-10"),
     ("http://hl7.org/fhir/sid/icd-10", "ICD-10"), ("ICD-9", "ICD-9"), ("ICD9CM", "ICD-9"),
     ("SNOMED-CT", "SNOMED-CT"), ("SNOMED", "SNOMED-CT"), ("SCT", "SNOMED-CT"),
     ("http://snomed.info/sct", "SNOMED-CT"), ("SNOMED CT", "SNOMED-CT")],
)
def test_diagnosis_code_system_variants(tmp_path, ingest, system, expected):
    path = write_csv(tmp_path / "in" / "diagnoses.csv", DIAGNOSIS_COLUMNS, [["P001", system, "D51.0", "2024-01-02"]])
    [row] = ingest(path).rows()
    assert (row["code_system"], row["code"], row["code_normalised"]) == (expected, "D51.0", "D510")


def test_diagnosis_quarantine_reasons(tmp_path, ingest):
    rows = [
        ["P001", "ICD-10", "D51.0", "2024-01-02"],
        ["P001", "READ", "C2620", "2024-01-02"],      # unknown_code_system
        ["P001", "ICD-10", "", "2024-01-02"],         # missing_code
        ["P001", "ICD-10", "D51.0", "yesterday"],     # unparseable_date
        ["P001", "ICD-10", "D51.0", "2099-01-01"],    # future_date
        ["", "ICD-10", "D51.0", "2024-01-02"],        # missing_patient_id
        ["P001", "ICD10", "D510", "2024-01-02"],      # duplicate of row 1 after normalisation
        ["P002", "ICD-10", "D51.0", ""],              # undated: accepted
        ["P002", "ICD-10", "D51.0", "  "],            # undated again: a duplicate
    ]
    result = ingest(write_csv(tmp_path / "in" / "diagnoses.csv", DIAGNOSIS_COLUMNS, rows))
    assert result.reasons() == {2: "unknown_code_system", 3: "missing_code", 4: "unparseable_date",
                                5: "future_date", 6: "missing_patient_id"}
    assert result.account.by_reason[("dropped", "duplicate")] == 2
    assert [(r["patient_id"], r["recorded_at"]) for r in result.rows()] == [("P001", date(2024, 1, 2)), ("P002", None)]


def test_medications(tmp_path, ingest):
    rows = [
        ["P001", "Hydroxocobalamin 1mg/1ml injection", "b03ba03", "IM", "1 mg", "2024-01-02", ""],
        ["P001", "Folic acid 5mg tablets", "", "oral", "5 mg", "2024-01-02", "2024-06-30"],
        ["P002", "Cyanocobalamin", "B03BA01", "oral", "1000 mcg", "2030-01-01", ""],  # planned: accepted
        ["P003", "", "", "oral", "", "2024-01-02", ""],                                # missing_drug
        ["P003", "Cyanocobalamin", "", "oral", "", "", ""],                            # missing_date: dropped
        ["P003", "Cyanocobalamin", "", "oral", "", "2024-05-01", "2024-04-01"],        # end_before_start
        ["P003", "Cyanocobalamin", "", "oral", "", "2024-05-01", "soon"],              # unparseable_date
    ]
    result = ingest(write_csv(tmp_path / "in" / "medications.csv", MEDICATION_COLUMNS, rows))
    accepted = result.rows()
    assert [(r["atc_code"], str(r["start_date"]), str(r["end_date"])) for r in accepted] == [
        ("B03BA03", "2024-01-02", "None"), (None, "2024-01-02", "2024-06-30"), ("B03BA01", "2030-01-01", "None")]
    assert result.reasons() == {4: "missing_drug", 6: "end_before_start", 7: "unparseable_date"}
    # No start date at all is no damage (valid FHIR): dropped by the rule missing_date, never quarantined.
    assert result.account.by_reason[("dropped", "missing_date")] == 1
