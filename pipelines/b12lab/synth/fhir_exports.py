"""The synthetic export set as FHIR Bulk Data (`b12lab synth --format fhir`): the same population, record for
record, as the CSV set of the same seed, written as a `$export` writes it (one NDJSON file per resource type
and site, and a manifest.json).

Each CSV record becomes one resource, so the two exports of one population give the same lake rows and marts
(tests/synth/test_synth_fhir.py):

- a lab result: an Observation (LOINC and local code as codings, the number as valueQuantity with its
  comparator and its unit as UCUM code and display text, a qualitative word or an unparseable text as
  valueString, the reference range as text, the HL7 status as its FHIR word);
- a patient: a Patient (gender, birthDate, the practice as generalPractitioner's display);
- a diagnosis: a Condition (the code system as its FHIR URL, recordedDate);
- a medication: a MedicationStatement (active without an end date, else completed with effectivePeriod.end).

Damage is carried over as a server would show it: a record with a field missing (malformed in the CSV) is a
line that is not JSON; an empty patient id is a resource without a subject; a decimal comma that can be read
(0,35) is a JSON number, as a server would have stored it, and one that cannot (1,234) stays text.
"""
from __future__ import annotations

import csv
import gzip
import json
import re
import tempfile
from pathlib import Path

LOINC = "http://loinc.org"
LOCAL_SYSTEM = "urn:b12lab:local-test-code"
UCUM = "http://unitsofmeasure.org"
ATC = "http://www.whocc.no/atc"
STATUS_WORDS = {"F": "final", "C": "corrected", "A": "amended", "P": "preliminary", "X": "cancelled",
                "W": "entered-in-error", "D": "entered-in-error"}
GENDER_WORDS = {"M": "male", "F": "female", "O": "other", "U": "unknown"}
CODE_SYSTEM_URLS = {"ICD-10": "http://hl7.org/fhir/sid/icd-10", "ICD-9": "http://hl7.org/fhir/sid/icd-9-cm",
                    "SNOMED-CT": "http://snomed.info/sct"}
_NUMBER = re.compile(r"^(<=|>=|<|>|=)?\s*([+-]?(?:[0-9]+(?:[.][0-9]*)?|[.][0-9]+)(?:[eE][+-]?[0-9]+)?)$")
_DECIMAL_COMMA = re.compile(r"^(<=|>=|<|>|=)?\s*([+-]?(?:0+,[0-9]+|[0-9]+,(?:[0-9]{1,2}|[0-9]{4,})))$")


def _records(path: Path, columns: tuple[str, ...]):
    """(record number, fields or None when the record has not exactly the header's fields)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as stream:
        reader = csv.reader(stream)
        header = [name.strip().lower() for name in next(reader)]
        for number, fields in enumerate(reader, start=1):
            if len(fields) != len(header):
                yield number, None
            else:
                record = dict(zip(header, fields))
                yield number, {name: record.get(name, "") for name in columns}


def _number(text: str) -> tuple[str | None, float | str] | None:
    """(comparator, JSON number) of a numeric result text, or None when it is not one."""
    text = text.strip()
    match = _NUMBER.match(text) or _DECIMAL_COMMA.match(text)
    if match is None:
        return None
    comparator = match.group(1) if match.group(1) not in (None, "=") else None
    number = float(match.group(2).replace(",", "."))
    return comparator, int(number) if number.is_integer() and "." not in match.group(2) \
        and "," not in match.group(2) and "e" not in match.group(2).lower() else number


def _subject(patient_id: str) -> dict:
    return {"subject": {"reference": f"Patient/{patient_id}"}} if patient_id.strip() else {}


def observation(resource_id: str, row: dict) -> dict:
    codings = []
    if row["loinc"].strip():
        codings.append({"system": LOINC, "code": row["loinc"].strip(), "display": row["test_name"]})
    if row["local_code"].strip():
        codings.append({"system": LOCAL_SYSTEM, "code": row["local_code"].strip()})
    resource = {"resourceType": "Observation", "id": resource_id,
                "status": STATUS_WORDS.get(row["status"].strip().upper(), row["status"])}
    if row["accession"].strip():
        resource["identifier"] = [{"value": row["accession"]}]
    resource["code"] = {"coding": codings, **({"text": row["test_name"]} if row["test_name"] else {})}
    resource.update(_subject(row["patient_id"]))
    # Written even when empty, so that an empty collection time is not replaced by `issued`.
    resource["effectiveDateTime"] = row["collected_at"]
    if row["resulted_at"].strip():
        resource["issued"] = row["resulted_at"]
    value = row["result_value"]
    number = _number(value) if value.strip() else None
    if number is not None:
        comparator, amount = number
        quantity = {"value": amount}
        if comparator:
            quantity["comparator"] = comparator
        if row["unit"].strip():
            quantity.update(unit=row["unit"], system=UCUM, code=row["unit"])
        resource["valueQuantity"] = quantity
    elif value.strip():
        resource["valueString"] = value
    if row["reference_range"].strip():
        resource["referenceRange"] = [{"text": row["reference_range"]}]
    if row["abnormal_flag"].strip():
        resource["interpretation"] = [{"coding": [{"code": row["abnormal_flag"]}]}]
    if row["performing_lab"].strip():
        resource["performer"] = [{"display": row["performing_lab"]}]
    return resource


def patient(row: dict) -> dict:
    resource = {"resourceType": "Patient", "id": row["patient_id"],
                "gender": GENDER_WORDS.get(row["sex"].strip().upper(), row["sex"])}
    if row["birth_date"].strip():
        resource["birthDate"] = row["birth_date"]
    if row["practice"].strip():
        resource["generalPractitioner"] = [{"display": row["practice"]}]
    if row.get("death_date", "").strip():
        resource["deceasedDateTime"] = row["death_date"]
    return resource


def condition(resource_id: str, row: dict) -> dict:
    system = CODE_SYSTEM_URLS.get(row["code_system"].strip().upper(), row["code_system"])
    resource = {"resourceType": "Condition", "id": resource_id, **_subject(row["patient_id"]),
                "code": {"coding": [{"system": system, "code": row["code"]}]}}
    if row["recorded_at"].strip():
        resource["recordedDate"] = row["recorded_at"]
    return resource


def medication_statement(resource_id: str, row: dict) -> dict:
    concept = {"text": row["drug"]} if row["drug"].strip() else {}
    if row["atc_code"].strip():
        concept["coding"] = [{"system": ATC, "code": row["atc_code"]}]
    period = {"start": row["start_date"]}
    if row["end_date"].strip():
        period["end"] = row["end_date"]
    dosage = {}
    if row["route"].strip():
        dosage["route"] = {"text": row["route"]}
    dose = row["dose"].strip().split(" ", 1)
    if dose[0] and _number(dose[0]) is not None and len(dose) == 2:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": _number(dose[0])[1], "unit": dose[1]}}]
    resource = {"resourceType": "MedicationStatement", "id": resource_id,
                "status": "completed" if row["end_date"].strip() else "active", **_subject(row["patient_id"]),
                "medicationCodeableConcept": concept, "effectivePeriod": period}
    if dosage:
        resource["dosage"] = [dosage]
    return resource


_KINDS = {
    # CSV prefix: (columns, resource type, builder)
    "labs": (("patient_id", "accession", "loinc", "local_code", "test_name", "result_value", "unit",
              "reference_range", "abnormal_flag", "status", "collected_at", "resulted_at", "performing_lab"),
             "Observation", lambda rid, row: observation(rid, row)),
    "patients": (("patient_id", "birth_date", "sex", "practice", "death_date"), "Patient",
                 lambda rid, row: patient(row)),
    "diagnoses": (("patient_id", "code_system", "code", "recorded_at"), "Condition", condition),
    "medications": (("patient_id", "drug", "atc_code", "route", "dose", "start_date", "end_date"),
                    "MedicationStatement", medication_statement),
}


def csv_exports_to_fhir(csv_dir: Path, out: Path, transaction_time: str = "2026-01-01T00:00:00Z") -> dict[str, int]:
    """Every contract CSV of csv_dir as FHIR NDJSON in out (plus manifest.json); returns {file: lines}."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for path in sorted(p for p in csv_dir.iterdir() if p.name.endswith((".csv", ".csv.gz"))):
        prefix = next((p for p in _KINDS if path.name.startswith(p)), None)
        if prefix is None:
            continue
        columns, resource_type, build = _KINDS[prefix]
        stem = path.name.split(".csv")[0]
        name = f"{resource_type}.{stem}.ndjson"
        lines = 0
        with (out / name).open("w", encoding="utf-8", newline="\n") as stream:
            for number, row in _records(path, columns):
                if row is None:
                    # A record with a field too few or too many: what a server writes when a line is cut.
                    stream.write('{"resourceType": "' + resource_type + '", "id": "' + f"{stem}-{number}" + '"\n')
                else:
                    stream.write(json.dumps(build(f"{stem}-{number}", row), ensure_ascii=False) + "\n")
                lines += 1
        written[name] = lines
    manifest = {"transactionTime": transaction_time, "request": "b12lab synth --format fhir",
                "requiresAccessToken": False, "error": [],
                "output": [{"type": name.split(".", 1)[0], "url": name, "count": lines}
                           for name, lines in written.items()]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return written


def synthesize_fhir(patients: int, out: Path, **options) -> dict:
    """synthesize() of the same arguments, written as FHIR Bulk Data NDJSON."""
    from b12lab.synth.csv_exports import synthesize

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".csv-") as scratch:
        summary = synthesize(patients, Path(scratch), **options)
        rows = csv_exports_to_fhir(Path(scratch), out)
    return {**summary, "out": str(out), "files": list(rows), "rows": rows}
