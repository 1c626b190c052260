"""A site's own lab CSV through a mapping file: the shipped mappings on real files, a bad mapping refused by
key before any data is read, and missing columns named."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import yaml

from b12lab.ingest import discover_exports
from b12lab.ingest.mapping import MAPPINGS_DIR, MappingError, load_mapping
from tests.helpers.exports import lab_row, write_csv, write_labs
from tests.helpers.processes import session_api_url

MIMIC = Path(__file__).resolve().parents[1] / "data" / "mimic3-demo"
B12LAB = str(Path(sys.executable).parent / "b12lab")


def mapped(tmp_path, ingest, path: Path, mapping: str | Path):
    """Ingest one file through a mapping, as the flow does."""
    from datetime import date

    import duckdb as db

    from b12lab.ingest import ingest_file
    from b12lab.lake.lake import Lake

    from tests.helpers.fixtures import Ingested

    lake = Lake(tmp_path / "lake")
    exports, _ = discover_exports(path.parent, load_mapping(str(mapping)))
    export = next(e for e in exports if e.path == path)
    with db.connect() as con:
        account = ingest_file(con, export, lake, "test-run", date(2026, 1, 1), [])
    return Ingested(account, lake, export.kind.table, export.source_hash)


# -- the MIMIC-III demo, real ----------------------------------------------------------------------------------------

def test_mimic3_mapping_on_the_real_demo_file(tmp_path, ingest):
    folder = tmp_path / "in"
    shutil.copytree(MIMIC, folder)
    result = mapped(tmp_path, ingest, folder / "LABEVENTS_trimmed.csv", "mimic3")
    account = result.account
    assert account.reconciles and account.rows_read == 5945
    # eGFR (ITEMID 50920, LOINC 33914-3) is in scope: its 8 records with an admission say "See Comments",
    # which is no value (unparseable_value), not out of scope; so are "UNABLE TO REPORT" and "DONE".
    assert account.by_reason == {("accepted", ""): 3123, ("dropped", "out_of_scope"): 1831,
                                 ("quarantined", "missing_patient_id"): 981, ("quarantined", "unparseable_value"): 10}
    assert account.unreadable_fields == {}
    # Folate GREATER THAN 20 NG/ML: censored in words with the row's own unit after the number, read as >20.
    folate_censored = [row for row in result.rows() if row["analyte"] == "folate" and row["comparator"]]
    assert {(row["value_raw"], row["comparator"], row["value_reported"]) for row in folate_censored} >= {
        (">20 NG/ML", ">", 20.0)}
    rows = result.rows()
    b12 = [row for row in rows if row["analyte"] == "b12"]
    # 38 B12 records: 26 with an admission (HADM_ID), 12 outpatient ones without (missing_patient_id).
    assert len(b12) == 26
    assert {(row["loinc"], row["local_code"], row["unit_reported"], row["test_name"]) for row in b12} == {
        ("2170-9", "51010", "pg/mL", "Vitamin B12")}
    assert min(row["value_reported"] for row in b12) == 123 and max(row["value_reported"] for row in b12) == 1927
    # Dates shifted back 200 years: from 2107-2192 to 1907-1992, intervals kept.
    assert min(row["collected_at"] for row in b12) == datetime(1907, 1, 10, 6, 0)
    assert max(row["collected_at"] for row in b12) == datetime(1992, 11, 21, 2, 29)
    assert {row["analyte"] for row in rows} == {"b12", "folate", "hemoglobin", "mcv"}
    # The censored B12 in words is read as >2000 (quarantined: that record has no HADM_ID).
    quarantined = {row["raw"] for row in result.quarantine() if row["reason"] == "missing_patient_id"}
    assert ",2170-9,51010,Vitamin B12,>2000,pg/mL," in next(raw for raw in quarantined if "51010" in raw and ">" in raw)
    # Ferritin (GREATER THAN 2000 ng/mL) and the rest: out of scope, counted per code with MIMIC's LOINC and
    # label (or the ITEMID, system mimic3, when the dictionary has no LOINC), their text kept nowhere.
    unmapped = {(row["code_system"], row["code"]): row for row in result.rows("unmapped_codes")}
    assert unmapped[("http://loinc.org", "2276-4")]["display"] == "Ferritin"
    assert ("http://loinc.org", "1964-6") in unmapped and ("mimic3", "50800") in unmapped  # no LOINC in D_LABITEMS
    assert sum(row["rows"] for row in unmapped.values()) == 1831
    assert not any("50924" in (row["raw"] or "") for row in result.quarantine())


def test_mimic3_through_the_real_entry_point(tmp_path):
    output = tmp_path / "out"
    # 993 of the file's 4,114 records in scope (24 %) have no admission (outpatient results): quarantined as
    # missing_patient_id, beyond the default 20 % share of a feed's records in scope, so the demo needs 25 %.
    result = subprocess.run([B12LAB, "run", "--input", str(MIMIC), "--output", str(output), "--mapping", "mimic3",
                             "--as-of", "2002-12-31", "--max-quarantine-share", "0.25"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"),
                                 "PREFECT_API_URL": session_api_url()})
    assert result.returncode == 0, result.stderr
    assert "LABEVENTS_trimmed.csv: read 5945, accepted 3123, quarantined 991, dropped 1831" in result.stdout
    assert "D_LABITEMS" not in result.stdout + result.stderr  # the dictionary is read with the file, not reported as ignored
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from lab_results where analyte = 'b12'").fetchone()[0] == 26
        assert con.execute("select sum(rows) from unmapped_codes").fetchone()[0] == 1831
        assert con.execute("select count(*) from patient_status").fetchone()[0] > 0


# -- mappings of other layouts ---------------------------------------------------------------------------------------

def test_a_site_layout_with_every_translation(tmp_path, ingest):
    mapping = tmp_path / "site.yaml"
    mapping.write_text(yaml.safe_dump({
        "files": "export_*.txt",
        "delimiter": ";",
        "date_format": "%d/%m/%Y %H:%M",
        "date_shift": {"days": 1},
        "columns": {"patient_id": "MRN", "local_code": "Test", "result_value": "Result", "unit": "Units",
                    "collected_at": "Taken", "status": "State"},
        "constants": {"performing_lab": "Site lab"},
        "local_codes": {"CBL": "b12"},
        "units": {"pmol per litre": "pmol/L"},
        "censoring": {"above": ">", "below": "<"},
        "status_default": "F",
    }))
    path = tmp_path / "in" / "export_1.txt"
    path.parent.mkdir()
    path.write_text("MRN;Test;Result;Units;Taken;State\n"
                    "P1;CBL;245;pmol per litre;05/03/2024 09:30;\n"
                    "P2;CBL;below 100;pmol/L;06/03/2024 10:00;P\n"
                    "P3;CBL;300;pmol/L;2024-03-07;F\n"
                    "P4;BP;120;mm[Hg];07/03/2024 10:00;F\n"
                    "P5;CBL;300;pmol/L;31/02/2024 10:00;F\n")
    result = mapped(tmp_path, ingest, path, mapping)
    assert result.account.by_reason == {("accepted", ""): 3, ("quarantined", "unparseable_date"): 1,
                                        ("dropped", "out_of_scope"): 1}
    first, second, third = result.rows()
    assert third["collected_at"] == datetime(2024, 3, 8)  # ISO 8601 is read too, and shifted
    assert (first["patient_id"], first["analyte"], first["value_si"], first["status"], first["performing_lab"]) == (
        "P1", "b12", 245.0, "F", "Site lab")
    assert first["collected_at"] == datetime(2024, 3, 6, 9, 30)  # shifted by a day
    assert (second["comparator"], second["value_reported"], second["status"]) == ("<", 100.0, "P")
    [unmapped] = result.rows("unmapped_codes")
    assert (unmapped["code_system"], unmapped["code"]) == ("site", "BP")


def test_the_own_layout_mapping_reads_the_sample_as_without_mapping(tmp_path, ingest):
    sample = Path(__file__).resolve().parents[2] / "data" / "sample" / "labs_valley.csv"
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(sample, folder / "labs_valley.csv")
    plain = ingest(folder / "labs_valley.csv")
    through_mapping = mapped(tmp_path / "m", ingest, folder / "labs_valley.csv", "lab_csv")
    assert through_mapping.account.by_reason == plain.account.by_reason
    drop = ("source_hash", "ingest_run")
    assert [{k: v for k, v in r.items() if k not in drop} for r in through_mapping.rows()] == \
        [{k: v for k, v in r.items() if k not in drop} for r in plain.rows()]


def test_a_mapped_file_without_a_mapped_column_names_it(tmp_path, ingest, capsys):
    folder = tmp_path / "in"
    shutil.copytree(MIMIC, folder)
    path = folder / "LABEVENTS_trimmed.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines[:50]) + "\n")  # no FLAG column
    result = mapped(tmp_path, ingest, path, "mimic3")
    assert result.account.missing_columns == ["flag"]
    assert set(result.reasons().values()) == {"missing_columns"}
    assert "LABEVENTS_trimmed.csv: missing columns flag" in capsys.readouterr().out


def test_missing_columns_of_the_contract_layout_are_named(tmp_path, ingest, capsys):
    row = lab_row()
    columns = [c for c in row if c not in ("unit", "status")]
    path = write_csv(tmp_path / "in" / "labs.csv", columns, [row])
    result = ingest(path)
    assert result.account.missing_columns == ["unit", "status"]
    assert "labs.csv: missing columns unit, status: 1 records, all quarantined as missing_columns" in \
        capsys.readouterr().out


def test_missing_columns_are_named_in_the_run_summary(tmp_path):
    from datetime import date

    from b12lab.flows.nightly import run_pipeline

    row = lab_row()
    write_csv(tmp_path / "in" / "labs.csv", [c for c in row if c != "unit"], [row])
    from b12lab.flows.nightly import RunFailed

    # Every record quarantined: the run stops, and says which columns the file lacks.
    with pytest.raises(RunFailed, match=r"labs.csv: 1 of 1 records in scope quarantined .*\(missing columns: unit\)"):
        run_pipeline(tmp_path / "in", tmp_path / "out", date(2026, 1, 1))
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    [account] = summary["files"]
    assert account["missing_columns"] == ["unit"]


# -- bad mappings ---------------------------------------------------------------------------------------------------

GOOD = yaml.safe_load((MAPPINGS_DIR / "mimic3.yaml").read_text())


@pytest.mark.parametrize("change, key", [
    ({"colour": "blue"}, "colour"),
    ({"files": None}, "files"),
    ({"delimiter": ";;"}, "delimiter"),
    ({"date_format": "%H:%M"}, "date_format"),
    ({"date_format": "YYYY-MM-DD"}, "date_format"),
    ({"date_shift": {"centuries": -2}}, "date_shift.centuries"),
    ({"date_shift": {"years": "-200"}}, "date_shift.years"),
    ({"columns": {**GOOD["columns"], "patient": "HADM_ID"}}, "columns.patient"),
    ({"columns": {k: v for k, v in GOOD["columns"].items() if k != "patient_id"}}, "columns.patient_id"),
    ({"constants": {"unit": "pg/mL"}}, "constants.unit"),
    ({"local_codes": {"51010": "vitamin_b12"}}, "local_codes.51010"),
    ({"censoring": {"GREATER THAN": "more"}}, "censoring.GREATER THAN"),
    ({"dictionary": {**GOOD["dictionary"], "joins": "accession"}}, "dictionary.joins"),
    ({"dictionary": {**GOOD["dictionary"], "sheet": 1}}, "dictionary.sheet"),
    ({"status_default": 7}, "status_default"),
])
def test_a_bad_mapping_is_refused_naming_the_key(tmp_path, change, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(MappingError, match=f"key '{key}'"):
        load_mapping(str(path))


def test_a_bad_mapping_is_refused_by_the_entry_point_before_any_data_is_read(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "columns": {**GOOD["columns"], "result": "VALUE"}}))
    result = subprocess.run([B12LAB, "run", "--input", str(MIMIC), "--output", str(tmp_path / "out"),
                             "--mapping", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "b12lab: error: mapping bad.yaml: key 'columns.result': not a field of the lab contract (patient_id, "
        "accession, loinc, local_code, test_name, result_value, unit, reference_range, abnormal_flag, status, "
        "collected_at, resulted_at, performing_lab)"]
    assert not (tmp_path / "out").exists()


def test_an_unknown_mapping_name_lists_the_shipped_ones(tmp_path):
    with pytest.raises(MappingError, match="no mapping named 'mimic4'.*lab_csv, mimic3"):
        load_mapping("mimic4")


def test_a_missing_dictionary_is_refused_before_any_data_is_read(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(MIMIC / "LABEVENTS_trimmed.csv", folder)
    with pytest.raises(MappingError, match="key 'dictionary.file': D_LABITEMS.csv"):
        discover_exports(folder, load_mapping("mimic3"))


def test_a_folder_named_like_a_shipped_mapping_does_not_hide_it(tmp_path, monkeypatch):
    from b12lab.ingest.mapping import MAPPINGS_DIR, resolve_mapping_path

    (tmp_path / "mimic3").mkdir()  # a drop folder of that name where the command runs
    monkeypatch.chdir(tmp_path)
    assert resolve_mapping_path("mimic3") == MAPPINGS_DIR / "mimic3.yaml"
