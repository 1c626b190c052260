"""`b12lab.synth.csv_exports.synthesize`: the synthetic export set keeps the input contract and its realistic mess."""

from __future__ import annotations

import csv
import gzip
import io
import statistics
from datetime import date
from pathlib import Path

import pytest

from b12lab.synth.csv_exports import synthesize

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"
# How data/sample was made; test_committed_sample_is_current keeps it that way.
SAMPLE_ARGS = {"patients": 500, "seed": 4, "start": date(2021, 11, 1), "end": date(2026, 10, 31)}

# The input contract (README.md, "Lab CSV contract"), spelled out here rather than imported, so the test pins it.
LAB_COLUMNS = ["patient_id", "accession", "loinc", "local_code", "test_name", "result_value", "unit",
               "reference_range", "abnormal_flag", "status", "collected_at", "resulted_at", "performing_lab"]
REGISTRY_COLUMNS = {
    "patients.csv": ["patient_id", "birth_date", "sex", "practice", "death_date"],
    "diagnoses.csv": ["patient_id", "code_system", "code", "recorded_at"],
    "medications.csv": ["patient_id", "drug", "atc_code", "route", "dose", "start_date", "end_date"],
}
B12_CODES = {"2132-9", "14685-2", "B12", "VITB12"}
PG_ML_TO_PMOL_L = 0.7378
CALIBRATED_B12_MEDIAN_PMOL_L = 350.0  # NHANES shape, tested-population median: see b12lab/synth/csv_exports.py


def read_bytes_as_text(path: Path) -> tuple[str, bool]:
    """File text and whether it started with a UTF-8 BOM (gzip undone first)."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    bom = raw.startswith(b"\xef\xbb\xbf")
    return raw.decode("utf-8-sig"), bom


def read_rows(path: Path) -> list[list[str]]:
    text, _ = read_bytes_as_text(path)
    return list(csv.reader(io.StringIO(text)))


def lab_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("labs*.csv*"))


def lab_records(directory: Path) -> list[dict[str, str]]:
    """Every well-formed lab row as a dict, with the file name under 'file'."""
    records = []
    for path in lab_files(directory):
        header, *rows = read_rows(path)
        records.extend({**dict(zip(header, row)), "file": path.name} for row in rows if len(row) == len(header))
    return records


def all_file_bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "export"
    summary = synthesize(400, out, seed=11)
    return out, summary


@pytest.fixture(scope="module")
def records(export) -> list[dict[str, str]]:
    return lab_records(export[0])


def test_same_seed_gives_byte_identical_files(tmp_path):
    first = synthesize(60, tmp_path / "a", seed=3)
    second = synthesize(60, tmp_path / "b", seed=3)
    assert first["rows"] == second["rows"]
    assert all_file_bytes(tmp_path / "a") == all_file_bytes(tmp_path / "b")


def test_different_seed_gives_different_files(tmp_path):
    synthesize(60, tmp_path / "a", seed=3)
    synthesize(60, tmp_path / "b", seed=4)
    assert all_file_bytes(tmp_path / "a") != all_file_bytes(tmp_path / "b")


def test_summary_counts_the_rows_of_every_file(export):
    out, summary = export
    assert set(summary["files"]) == set(summary["rows"]) == {path.name for path in out.iterdir()}
    for name, count in summary["rows"].items():
        assert len(read_rows(out / name)) - 1 == count, name


def test_every_file_has_exactly_the_contract_columns_in_order(export):
    out, _ = export
    labs = lab_files(out)
    assert len(labs) >= 2
    for path in labs:
        assert read_rows(path)[0] == LAB_COLUMNS, path.name
    for name, columns in REGISTRY_COLUMNS.items():
        assert read_rows(out / name)[0] == columns, name


def test_one_lab_file_has_a_bom_and_one_is_gzip(export):
    out, _ = export
    names = [path.name for path in lab_files(out)]
    assert any(name.endswith(".csv.gz") for name in names)
    assert any(read_bytes_as_text(path)[1] for path in lab_files(out))


def test_every_status_appears(records):
    assert {record["status"] for record in records} == {"F", "C", "P", "X"}


def test_corrected_and_preliminary_results_pair_with_a_final_one(records):
    final = {(r["accession"], r["loinc"], r["local_code"]): r for r in records if r["status"] == "F"}
    corrected = [r for r in records if r["status"] == "C"]
    preliminary = [r for r in records if r["status"] == "P"]
    assert corrected and preliminary
    for record in corrected + preliminary:
        assert (record["accession"], record["loinc"], record["local_code"]) in final
    # ISO text in one site's style sorts like time: corrections come later, preliminaries earlier.
    assert all(r["resulted_at"] > final[(r["accession"], r["loinc"], r["local_code"])]["resulted_at"]
               for r in corrected)
    assert all(r["resulted_at"] < final[(r["accession"], r["loinc"], r["local_code"])]["resulted_at"]
               for r in preliminary)
    assert any(r["result_value"] != final[(r["accession"], r["loinc"], r["local_code"])]["result_value"]
               for r in corrected)


def test_cancelled_results_often_have_no_value(records):
    cancelled = [r for r in records if r["status"] == "X"]
    assert sum(r["result_value"] == "" for r in cancelled) > len(cancelled) / 2


def test_every_kind_of_damaged_row_appears(export, records):
    out, _ = export
    assert any(r["patient_id"] == "" for r in records)
    assert any(r["unit"] == "mg/dL" and r["local_code"] in B12_CODES | {""} for r in records)
    assert any(r["loinc"] == "99999-9" and r["local_code"] == "" for r in records)
    assert {"hemolyzed", "see comment"} & {r["result_value"] for r in records}
    assert any(r["collected_at"].startswith("2099-") for r in records)
    assert any(r["result_value"].startswith("-") for r in records)
    short_rows = [row for path in lab_files(out) for row in read_rows(path)[1:] if len(row) < len(LAB_COLUMNS)]
    assert short_rows


def test_damaged_rows_are_a_small_share(records):
    damaged = [r for r in records if r["patient_id"] == "" or r["unit"] == "mg/dL" or r["loinc"] == "99999-9"
               or r["result_value"] in ("hemolyzed", "see comment") or r["collected_at"].startswith("2099-")
               or r["result_value"].startswith("-")]
    assert 0.002 < len(damaged) / len(records) < 0.02


def test_exact_duplicate_rows_appear(records):
    rows = [tuple(r.values()) for r in records]
    assert len(rows) - len(set(rows)) >= 1


def test_unit_variants_appear(records):
    units = {r["unit"] for r in records}
    assert {"pmol/L", "pmol/l", "pg/mL", "ng/L"} <= units                     # B12
    assert {"umol/L", "\u00b5mol/L", "nmol/L"} <= units                      # MMA
    assert {"nmol/L", "ng/mL"} <= units                                      # folate
    assert {"g/L", "g/dL"} <= units                                          # haemoglobin


def test_some_rows_carry_only_a_local_code(records):
    local_only = {r["local_code"] for r in records if r["loinc"] == "" and r["local_code"]}
    assert {"B12", "MMA", "MCV"} <= local_only


def test_collection_times_come_in_three_styles(records):
    collected = [r["collected_at"] for r in records]
    assert any(len(t) == 25 and t[10] == "T" and t[19] in "+-" for t in collected)   # 2024-03-05T08:15:00+01:00
    assert any(len(t) == 19 and t[10] == " " for t in collected)                     # 2024-03-05 08:15:00
    assert any(len(t) == 10 for t in collected)                                      # 2024-03-05


def test_censored_b12_values_appear(export):
    out, _ = export
    values = {r["result_value"] for r in lab_records(out) if r["loinc"] in B12_CODES or r["local_code"] in B12_CODES}
    assert any(v.startswith(">") for v in values)
    assert any(v.startswith("<") for v in values)


def test_intrinsic_factor_antibody_is_qualitative(records):
    values = {r["result_value"].lower() for r in records if r["local_code"] == "IFAB" and r["status"] != "X"}
    assert values and values <= {"positive", "negative", "equivocal", "hemolyzed", "see comment"}


def test_b12_median_is_near_the_nhanes_calibration(tmp_path):
    synthesize(1500, tmp_path, seed=5)
    pmol_l = []
    for r in lab_records(tmp_path):
        is_b12 = r["loinc"] in B12_CODES or r["local_code"] in B12_CODES
        if not is_b12 or r["status"] not in ("F", "C"):
            continue
        try:
            value = float(r["result_value"].lstrip("<>"))
        except ValueError:
            continue
        unit = r["unit"].lower()
        if unit in ("pg/ml", "ng/l"):
            pmol_l.append(value * PG_ML_TO_PMOL_L)
        elif unit == "pmol/l":
            pmol_l.append(value)
    assert len(pmol_l) > 1000
    assert 0.85 * CALIBRATED_B12_MEDIAN_PMOL_L < statistics.median(pmol_l) < 1.15 * CALIBRATED_B12_MEDIAN_PMOL_L


def test_registry_files_look_like_the_contract(export):
    out, _ = export
    _, *patients = read_rows(out / "patients.csv")
    assert all(len(p[0]) == 8 and p[0].startswith("P0") and p[0][1:].isdigit() for p in patients)
    assert {p[2] for p in patients} == {"M", "F"}
    assert 5 <= len({p[3] for p in patients}) <= 8
    _, *diagnoses = read_rows(out / "diagnoses.csv")
    pa_codes = {(system, code) for _, system, code, _ in diagnoses if code in ("D51.0", "D510", "281.0", "84027009")}
    assert len({system for system, _ in pa_codes}) >= 3
    assert {"E11.9", "I10"} & {code for _, _, code, _ in diagnoses}
    _, *medications = read_rows(out / "medications.csv")
    atc = {m[2] for m in medications}
    assert {"B03BA03", "B03BA01", "B03BB01"} <= atc
    assert any(m[2] == "" and "cobalamin" in m[1].lower() for m in medications)
    assert any(m[6] == "" for m in medications) and any(m[6] != "" for m in medications)


def test_committed_sample_is_current(tmp_path):
    """data/sample is exactly what synthesize(500, ..., seed=4) writes (a seed whose 500 patients show every reason and flag), so it never goes stale."""
    summary = synthesize(out=tmp_path, **SAMPLE_ARGS)
    for name in summary["files"]:
        committed = SAMPLE_DIR / name
        assert committed.exists(), f"data/sample/{name} missing: regenerate with synthesize(**SAMPLE_ARGS)"
        assert committed.read_bytes() == (tmp_path / name).read_bytes(), (
            f"data/sample/{name} is stale: regenerate with synthesize(out=Path('data/sample'), **SAMPLE_ARGS)")


def test_committed_sample_stays_small():
    assert sum(path.stat().st_size for path in SAMPLE_DIR.iterdir()) < 1_000_000


def test_release_2_situations_are_in_the_export(export):
    """eGFR in three spellings (older patients tested more), IM and oral B12 routes, metformin users and
    neurological diagnoses: what the release 2 rules need."""
    out, _ = export
    records = lab_records(out)
    egfr = [r for r in records if r["loinc"] in ("62238-1", "33914-3", "98979-8") or r["local_code"] in ("EGFR", "GFR")]
    assert {r["unit"] for r in egfr} == {"mL/min/1.73m2", "mL/min/{1.73_m2}", "mL/min/1.73 m2", "ml/min/1.73m\u00b2"}
    assert any(r["result_value"].startswith(">") for r in egfr)
    low = [r for r in egfr if r["result_value"].replace(".", "").isdigit() and float(r["result_value"]) < 60]
    assert len(low) > 0.05 * len(egfr)
    birth = {p[0]: p[1] for p in read_rows(out / "patients.csv")[1:]}
    egfr_patients = {r["patient_id"] for r in egfr}
    older = {pid for pid, born in birth.items() if born < "1961-01-01"}
    younger = set(birth) - older
    assert len(egfr_patients & older) / len(older) > len(egfr_patients & younger) / len(younger)
    _, *medications = read_rows(out / "medications.csv")
    routes = {m[3] for m in medications if "cobalamin" in m[1].lower()}
    assert {"IM", "intramuscular", "oral"} <= routes
    assert sum("metformin" in m[1].lower() for m in medications) > 0.03 * len(birth)
    _, *diagnoses = read_rows(out / "diagnoses.csv")
    neuro = {code for _, _, code, _ in diagnoses if code.replace(".", "")[:3] in ("G32", "G62", "G63", "R20", "R26",
                                                                                  "R27", "R41", "F06")}
    assert len(neuro) >= 3


def test_some_patients_died_after_their_last_record(export):
    """A few registry patients have a death_date (release 3: the dead are on no list), each inside the window
    and after every record of theirs, so the export never shows a test or prescription after a death."""
    out, _ = export
    _, *patients = read_rows(out / "patients.csv")
    deaths = {p[0]: p[4] for p in patients if p[4]}
    assert 0.01 * len(patients) < len(deaths) < 0.06 * len(patients)
    assert all("2021-01-01" <= day <= "2025-12-31" for day in deaths.values())
    last: dict[str, str] = {}
    for r in lab_records(out):
        day = r["collected_at"][:10]
        if r["patient_id"] in deaths and day <= "2025-12-31":
            last[r["patient_id"]] = max(last.get(r["patient_id"], ""), day)
    _, *medications = read_rows(out / "medications.csv")
    for m in medications:
        if m[0] in deaths and m[5] <= "2025-12-31":
            last[m[0]] = max(last.get(m[0], ""), m[5])
    assert all(last.get(patient, "") < day for patient, day in deaths.items())


@pytest.mark.parametrize("patients", [1, 6, 7])
def test_a_few_patients_over_one_month_give_files_without_failing(tmp_path, patients):
    # A window too short for any routine encounter: the benchmark's smallest 1 % night (6 patients, one month)
    # once stopped here on an empty array.
    summary = synthesize(patients, tmp_path, seed=20260602, start=date(2026, 1, 1), end=date(2026, 1, 31))
    assert (tmp_path / "patients.csv").is_file()
    assert summary["rows"]["patients.csv"] == patients
