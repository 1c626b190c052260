"""Results that look in scope are never dropped quietly: an out-of-scope code whose test name is an analyte's is a
suspected unmapped analyte (unmapped_codes.suggested_analyte), false friends excepted; the quarantine share is
judged per feed over the records in scope; an analyte that stopped arriving is named."""
from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest
import yaml

from b12lab.common.unmapped import mapping_line
from b12lab.flows.alarms import (SuspectedUnmappedAnalyte, TooMuchQuarantined, check_quarantined_shares,
                                 feed_shares, missing_analytes, name_suspected_unmapped, suspected_unmapped)
from b12lab.ingest import discover_exports, load_mapping
from b12lab.ingest.accounting import FileAccount, feed_of
from b12lab.ingest.mapping import MappingError
from b12lab.lake.lake import Lake
from b12lab.publish.publication import commit_files
from tests.helpers.exports import lab_row, write_labs


def local(code: str, name: str, n: int = 1, **fields) -> list[dict]:
    return [lab_row(patient_id=f"{code}{i}", accession=f"{code}-{i}", loinc="", local_code=code, test_name=name,
                    **fields) for i in range(n)]


# -- which names suggest which analyte ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, analyte", [
    ("Serum vitamin B12", "b12"), ("VitB12", "b12"), ("Cobalamin (Vitamin B12) [Moles/volume] in Serum", "b12"),
    ("Active B12", "holotc"), ("Holotranscobalamin", "holotc"), ("Methylmalonic acid", "mma"),
    ("Homocysteine, total", "homocysteine"), ("Serum folate", "folate"), ("Folic acid", "folate"),
    ("Haemoglobin", "hemoglobin"), ("Hb", "hemoglobin"), ("Mean cell volume", "mcv"), ("MCV", "mcv"),
    ("Intrinsic factor antibody", "if_antibody"), ("Estimated GFR (MDRD equation)", "egfr"),
    # false friends: another test with a name like an analyte's
    ("Red cell folate", None), ("RBC folate", None), ("B12 binding capacity", None), ("UBBC", None),
    ("Transcobalamin", None), ("% Hemoglobin A1c", None), ("Fetal Hemoglobin", None), ("Methemoglobin", None),
    ("MCH", None), ("MCHC", None), ("Mean corpuscular haemoglobin", None), ("Urine methylmalonic acid", None),
    ("EGFR mutation", None), ("Parietal cell antibody", None), ("Homocystine", None),
    # a real Synthea LOINC 57905-2 (faecal immunochemical test): a stool test, not the blood count's haemoglobin
    ("Hemoglobin.gastrointestinal [Presence] in Stool by Immunologic method", None), ("Faecal occult blood", None),
    # and names of no analyte
    ("Cholesterol", None), ("Mean platelet volume", None), ("Ferritin", None),
])
def test_a_name_suggests_its_analyte_and_a_false_friend_none(tmp_path, ingest, name, analyte):
    result = ingest(write_labs(tmp_path / "in" / "labs.csv", local("ZZ1", name, 2)))
    [code] = result.rows("unmapped_codes")
    assert (code["code"], code["rows"], code["suggested_analyte"]) == ("ZZ1", 2, analyte)
    assert [(s.code, s.suggested_analyte, s.rows) for s in result.account.suspected_unmapped] == (
        [("ZZ1", analyte, 2)] if analyte else [])


def test_b12_under_an_unknown_local_code_is_dropped_but_suspected(tmp_path, ingest):
    rows = local("SB12", "Serum vitamin B12", 5) + local("CHOL", "Cholesterol", 3) + [lab_row()]
    result = ingest(write_labs(tmp_path / "in" / "labs_north_20261031.csv", rows))
    account = result.account
    assert account.by_reason == {("accepted", ""): 1, ("dropped", "out_of_scope"): 8}
    assert (account.rows_out_of_scope, account.rows_in_scope) == (8, 1)
    assert account.feed == "labs_north*"
    assert account.accepted_by_analyte == {"b12": 1}
    [suspect] = account.suspected_unmapped
    assert (suspect.code_system, suspect.code, suspect.display, suspect.suggested_analyte, suspect.rows) == (
        "local", "SB12", "Serum vitamin B12", "b12", 5)


def test_the_line_that_reads_a_suspect_is_valid_mapping_syntax(tmp_path):
    line = mapping_line("local", "SB12", "b12")
    assert line == 'local_codes: {"SB12": b12}'
    assert yaml.safe_load(line) == {"local_codes": {"SB12": "b12"}}
    assert yaml.safe_load(mapping_line("mimic3", "051010", "b12")) == {"local_codes": {"051010": "b12"}}
    # a mapping file with that line reads the code: the suggestion is what load_mapping accepts
    mapping = tmp_path / "site.yaml"
    template = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines" / "b12lab" / "ingest" / "mappings"
                               / "lab_csv.yaml").read_text())
    mapping.write_text(yaml.safe_dump(template) + line + "\n")
    assert load_mapping(str(mapping)).local_codes == (("SB12", "b12"),)
    seed_line = mapping_line("http://loinc.org", "16695-9", "b12", "Cobalamin, blood")
    path, row = seed_line.split(": ", 1)
    assert path == "transforms/seeds/reference/ref_analyte_codes.csv"
    assert next(csv.reader(io.StringIO(row))) == ["loinc", "16695-9", "b12", "Cobalamin, blood"]


def test_a_mapped_file_through_its_suggested_line_is_read(tmp_path):
    """The whole loop: suspected under the lab_csv layout, then accepted once the line is added."""
    from datetime import date as day

    import duckdb

    from b12lab.ingest import ingest_file

    folder = tmp_path / "in"
    write_labs(folder / "labs.csv", local("SB12", "Serum vitamin B12", 3))
    template = (Path(__file__).resolve().parents[2] / "pipelines" / "b12lab" / "ingest" / "mappings"
                / "lab_csv.yaml").read_text()
    for mapping_text, expected in ((template, (0, "b12")), (template + 'local_codes: {"SB12": b12}\n', (3, None))):
        (tmp_path / "site.yaml").write_text(mapping_text)
        [export], _ = discover_exports(folder, load_mapping(str(tmp_path / "site.yaml")))
        with duckdb.connect() as con:
            account = ingest_file(con, export, Lake(tmp_path / f"lake{expected[0]}"), "r", day(2026, 1, 1), [])
        suggested = account.suspected_unmapped[0].suggested_analyte if account.suspected_unmapped else None
        assert (account.rows_accepted, suggested) == expected
        assert account.feed == "labs through mapping lab_csv"


# -- feeds and the quarantine share ---------------------------------------------------------------------------------

def account(name: str, feed: str, read: int, quarantined: int = 0, out_of_scope: int = 0, kind="labs") -> FileAccount:
    by_reason = {("quarantined", "unparseable_value"): quarantined} if quarantined else {}
    if out_of_scope:
        by_reason[("dropped", "out_of_scope")] = out_of_scope
    return FileAccount(source_file=name, source_hash=name, kind=kind, rows_read=read,
                       rows_accepted=read - quarantined - out_of_scope, rows_quarantined=quarantined,
                       rows_dropped=out_of_scope, by_reason=by_reason, feed=feed)


def test_the_share_is_over_the_records_in_scope():
    # A mapping that reads result_value from the wrong column: nearly every in-scope row quarantined, hidden
    # among out-of-scope rows (6,501 of 100,000 read, but 6,501 of 6,510 in scope).
    accounts = [account("LABEVENTS.csv", "labs through mapping site", 100_000, 6_501, 93_490)]
    with pytest.raises(TooMuchQuarantined, match=r"^LABEVENTS.csv: 6501 of 6510 records in scope quarantined "
                                                 r"\(100%, mostly unparseable_value; 93490 more out of scope\), "
                                                 r"more than the 20% allowed \(B12LAB_MAX_QUARANTINE_SHARE\)"):
        check_quarantined_shares(accounts, 0.2)


def test_a_tiny_file_cannot_fail_its_feed_but_is_named(capsys):
    bundles = [account(f"patient{i}.json#Observation", "Observation in FHIR Bundles", 20) for i in range(9)]
    bundles.append(account("patient9.json#Observation", "Observation in FHIR Bundles", 1, 1))
    [feed] = check_quarantined_shares(bundles, 0.2)
    assert (feed.rows_in_scope, feed.rows_quarantined, feed.files_over_share) == (181, 1, ["patient9.json#Observation"])
    assert "patient9.json#Observation: 1 of 1 records in scope quarantined (100%)" in capsys.readouterr().out
    # a broken feed fails however its files are cut, naming the feed
    broken = [account(f"labs_north_{i}.csv", "labs_north*", 10, 5) for i in range(3)]
    with pytest.raises(TooMuchQuarantined, match=r"^feed labs_north\* \(3 files\): 15 of 30 records in scope"):
        check_quarantined_shares(bundles + broken, 0.2)


def test_feeds_are_of_one_kind_and_site(tmp_path):
    folder = tmp_path / "in"
    for name in ("labs_north_20261030.csv", "labs_north-2.csv.gz", "labs_south.csv", "patients_north.csv"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_labs(folder / name, [lab_row()], gz=name.endswith(".gz"))
    exports, _ = discover_exports(folder)
    assert {e.name: feed_of(e) for e in exports} == {
        "labs_north-2.csv.gz": "labs_north*", "labs_north_20261030.csv": "labs_north*",
        "labs_south.csv": "labs_south*", "patients_north.csv": "patients_north*"}
    shares = feed_shares([account("a.csv", "x*", 10, 3), account("b.csv", "x*", 10, 0, kind="patients")], 0.2)
    assert [(s.feed, s.kind, s.rows_quarantined) for s in shares] == [("x*", "labs", 3), ("x*", "patients", 0)]


# -- naming suspects and missing analytes ---------------------------------------------------------------------------

def test_suspects_are_named_over_the_nights_files_and_can_fail_the_run(tmp_path, ingest, capsys):
    first = ingest(write_labs(tmp_path / "in" / "labs_a.csv", local("SB12", "Serum vitamin B12", 4)))
    second = ingest(write_labs(tmp_path / "in2" / "labs_b.csv", local("SB12", "Serum vitamin B12", 2)))
    suspects = suspected_unmapped([first.account, second.account])
    assert suspects == [{"code_system": "local", "code": "SB12", "display": "Serum vitamin B12",
                         "suggested_analyte": "b12", "rows": 6, "files": ["labs_a.csv", "labs_b.csv"],
                         "mapping_line": 'local_codes: {"SB12": b12}'}]
    name_suspected_unmapped(suspects, fail=False)
    assert capsys.readouterr().out.splitlines() == [
        'suspected unmapped analyte b12: code (local) SB12 "Serum vitamin B12", 6 rows in 2 files dropped as '
        'out_of_scope; to read them: local_codes: {"SB12": b12}']
    with pytest.raises(SuspectedUnmappedAnalyte, match="B12LAB_FAIL_ON_SUSPECTED_UNMAPPED is set: nothing was committed"):
        name_suspected_unmapped(suspects, fail=True)


def test_an_analyte_that_stopped_arriving_is_named(tmp_path, ingest):
    earlier = ingest(write_labs(tmp_path / "in" / "labs.csv", [
        lab_row(), lab_row(accession="A2", loinc="2284-8", test_name="Folate", result_value="20", unit="nmol/L")]))
    lake = earlier.lake
    commit_files(lake, "night-1", [earlier.account])
    tonight = ingest(write_labs(tmp_path / "in2" / "labs.csv", [lab_row(patient_id="P2", accession="A3")]))
    missing = missing_analytes(lake, [tonight.account])
    assert [(m["analyte"], m["rows_before"]) for m in missing] == [("folate", 1)]
    assert missing[0]["last_arrived"] == date.today().isoformat()
    # a night with no lab row names nothing (the empty-night banner speaks for it)
    assert missing_analytes(lake, [account("patients.csv", "patients*", 3, kind="patients")]) == []


# -- a mapping checked whole before any data is read ----------------------------------------------------------------

MIMIC = Path(__file__).resolve().parents[1] / "data" / "mimic3-demo"


def test_a_unit_target_that_is_no_unit_is_refused_naming_file_and_key(tmp_path):
    good = yaml.safe_load((MIMIC.parents[2] / "pipelines" / "b12lab" / "ingest" / "mappings" / "mimic3.yaml").read_text())
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({**good, "units": {"pmol per litre": "pmol/L", "mg per dl": "mg/dl!"}}))
    with pytest.raises(MappingError, match=r"^mapping site.yaml: key 'units.mg per dl': 'mg/dl!' is not a unit"):
        load_mapping(str(path))
    path.write_text(yaml.safe_dump({**good, "units": {"pmol per litre": "PMOL/L", "micrograms": "µg/L"}}))
    assert set(load_mapping(str(path)).units) == {("pmol per litre", "PMOL/L"), ("micrograms", "µg/L")}
    path.write_text(yaml.safe_dump({**good, "status_default": "final-ish"}))
    with pytest.raises(MappingError, match=r"^mapping site.yaml: key 'status_default': 'final-ish' is not a status"):
        load_mapping(str(path))


def test_the_dictionary_is_checked_with_the_drop_folder_before_any_data_is_read(tmp_path):
    from b12lab.flows.configuration import load_configuration

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "LABEVENTS.csv").write_text("HADM_ID,ITEMID,CHARTTIME,VALUE,VALUEUOM,FLAG\n")
    with pytest.raises(MappingError, match=r"^mapping mimic3.yaml: key 'dictionary.file': D_LABITEMS.csv is neither"):
        load_configuration(None, None, "mimic3", input_dir=folder)
    (folder / "D_LABITEMS.csv").write_text("ROW_ID,ITEMID,LABEL\n")
    with pytest.raises(MappingError, match=r"^mapping mimic3.yaml: key 'dictionary.columns.loinc': D_LABITEMS.csv "
                                           r"has no column LOINC_CODE"):
        load_configuration(None, None, "mimic3", input_dir=folder)
    (folder / "D_LABITEMS.csv").write_text("ROW_ID,ITEMID,LABEL,LOINC_CODE\n")
    assert load_configuration(None, None, "mimic3", input_dir=folder).mapping.name == "mimic3"


def test_the_entry_point_refuses_a_bad_unit_target_in_one_line_before_any_data_is_read(tmp_path):
    from tests.helpers.processes import b12lab

    good = yaml.safe_load((MIMIC.parents[2] / "pipelines" / "b12lab" / "ingest" / "mappings" / "mimic3.yaml").read_text())
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({**good, "units": {"pg per ml": "pg/mL", "PMOL PER L": "picomoles"}}))
    result = b12lab("run", "--input", MIMIC, "--output", tmp_path / "out", "--mapping", path, timeout=120)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("b12lab: error: mapping site.yaml: key 'units.PMOL PER L': 'picomoles' is not a unit of "
                           "ref_units.csv (")
    assert not (tmp_path / "out").exists()
