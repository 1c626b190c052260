"""Privacy and hostile input: no identifier in logs, private files, bound SQL parameters, read-only analysts,
and the pseudonymised mart."""
from __future__ import annotations

import hmac
import hashlib
import logging
import stat
from datetime import date
from pathlib import Path

import duckdb
import pytest
from b12lab.flows.nightly import RunFailed, nightly
from b12lab.ingest import EXPORT_KINDS
from b12lab.rules.rules_file import RulesError, load_rules
from b12lab.quality.validation import CriticalExpectationFailed
from tests.helpers.exports import lab_row, write_csv, write_labs
from tests.helpers.processes import b12lab

pytestmark = pytest.mark.usefixtures("prefect_harness")
AS_OF = date(2025, 6, 1)
SECRET_IDS = ["SECRET-PT-0001", "SECRET-PT-0002", "SECRET-PT-0003"]


def run_night(**parameters) -> dict:
    """The flow, allowing these files' share of quarantined records (two of three, on purpose)."""
    return nightly(**parameters, max_quarantine_share=1.0)


def exports(folder: Path, name: str = "labs.csv") -> Path:
    write_labs(folder / name, [
        lab_row(patient_id=SECRET_IDS[0], result_value="120"),
        lab_row(patient_id=SECRET_IDS[1], accession="A2", result_value="hemolyzed"),  # quarantined
        lab_row(patient_id=SECRET_IDS[2], accession="A3", unit="mg/dL"),              # quarantined
    ])
    write_csv(folder / "patients.csv", EXPORT_KINDS["patients"].columns,
              [[pid, "1950-01-01", "F", "Riverside"] for pid in SECRET_IDS])
    return folder


def test_no_patient_identifier_reaches_the_logs(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    run_night(input_dir=exports(tmp_path / "in"), output_dir=tmp_path / "out", as_of=AS_OF)
    captured = capsys.readouterr()
    run_logs = "".join(path.read_text() for path in (tmp_path / "out" / "logs").glob("*.log"))
    assert "labs.csv" in run_logs
    text = captured.out + captured.err + caplog.text + run_logs
    assert "labs.csv" in text  # the logs do speak, in file names and counts
    assert not [pid for pid in SECRET_IDS if pid in text]


def test_no_patient_identifier_in_a_failed_runs_message(tmp_path, monkeypatch, capsys, caplog):
    import json
    import shutil

    from b12lab.common.paths import EXPECTATIONS_DIR

    strict = tmp_path / "gx"
    shutil.copytree(EXPECTATIONS_DIR, strict)
    suite_path = strict / "expectations" / "lab_results.json"
    suite = json.loads(suite_path.read_text())
    suite["expectations"].append({"type": "expect_column_values_to_not_be_in_set",
                                  "kwargs": {"column": "patient_id", "value_set": [SECRET_IDS[0]]},
                                  "severity": "critical", "meta": {}})
    suite_path.write_text(json.dumps(suite))
    monkeypatch.setenv("B12LAB_EXPECTATIONS_DIR", str(strict))
    with pytest.raises(RunFailed) as failure:
        run_night(input_dir=exports(tmp_path / "in"), output_dir=tmp_path / "out", as_of=AS_OF)
    assert isinstance(failure.value.__cause__, CriticalExpectationFailed)
    captured = capsys.readouterr()
    text = str(failure.value) + captured.out + captured.err + caplog.text
    text += (tmp_path / "out" / "run_summary.json").read_text()
    text += "".join(path.read_text() for path in (tmp_path / "out" / "logs").glob("*.log"))
    assert "lab_results.patient_id" in str(failure.value)
    assert not [pid for pid in SECRET_IDS if pid in text]


def test_output_files_are_private_to_owner_and_group(sample_output):
    output = sample_output  # the sample night, published by the b12lab process
    paths = [output, *output.rglob("*")]
    readable_by_others = [p for p in paths if not p.is_symlink() and p.stat().st_mode & stat.S_IRWXO]
    assert readable_by_others == []


def test_a_hostile_file_name_is_data_not_sql(tmp_path):
    inputs = tmp_path / "in"
    name = "labs_x'); drop table lab_results; --.csv"
    exports(inputs, name=name)
    output = tmp_path / "out"
    run_night(input_dir=inputs, output_dir=output, as_of=AS_OF)
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select distinct source_file from lab_results").fetchall() == [(name,)]
        assert con.execute("select count(*) from quarantine where source_file = $n", {"n": name}).fetchone()[0] == 2


def test_a_hostile_rules_value_is_refused_naming_its_key(tmp_path):
    from b12lab.rules.rules_file import DEFAULT_RULES_PATH

    text = DEFAULT_RULES_PATH.read_text().replace("    value: 150.0\n", "    value: \"150; drop table lab_results\"\n", 1)
    hostile = tmp_path / "rules.yaml"
    hostile.write_text(text)
    with pytest.raises(RulesError, match="b12_deficient_below_pmol_l"):
        load_rules(hostile)


def test_a_hostile_code_in_a_code_list_is_only_ever_compared_as_data(tmp_path):
    from b12lab.rules.rules_file import DEFAULT_RULES_PATH

    text = DEFAULT_RULES_PATH.read_text().replace('ICD-10: ["D51.0"]', 'ICD-10: ["D51.0", "X\'); drop table patients; --"]', 1)
    assert text != DEFAULT_RULES_PATH.read_text()
    hostile = tmp_path / "rules.yaml"
    hostile.write_text(text)
    output = tmp_path / "out"
    run_night(input_dir=exports(tmp_path / "in"), output_dir=output, as_of=AS_OF, rules_file=hostile)
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from patients").fetchone()[0] == 3
        assert con.execute("select count(*) from rules_codes where code ilike '%drop table%'").fetchone()[0] == 1


def test_the_analyst_connection_is_read_only(sample_output):
    for statement in ["create table notes (a int)", "drop table patient_status", "delete from patient_status"]:
        result = b12lab("sql", statement, "--output", sample_output)
        assert result.returncode == 1 and "read-only" in result.stderr.lower()
        assert len(result.stderr.splitlines()) == 1
    result = b12lab("sql", "select count(*) as patients from patient_status", "--output", sample_output)
    assert result.returncode == 0 and "patients" in result.stdout


def test_the_pseudonymised_mart_holds_keys_not_identities(tmp_path, monkeypatch):
    key = "a-site-secret-never-stored-with-the-data"
    monkeypatch.setenv("B12LAB_PSEUDONYM_KEY", key)
    output = tmp_path / "out"
    run_night(input_dir=exports(tmp_path / "in"), output_dir=output, as_of=AS_OF)
    analytics = output / "analytics" / "analytics.duckdb"
    with duckdb.connect(str(analytics), read_only=True) as con:
        columns = {name for (name,) in con.execute("select distinct column_name from duckdb_columns()").fetchall()}
        assert "patient_id" not in columns and "patient_key" in columns
        assert {"neuro_involvement", "neuro_detail"} <= columns  # the release 2 columns reach analysts too
        worklist = [name for (name,) in con.execute(
            "select column_name from duckdb_columns() where table_name = 'worklist' order by column_index").fetchall()]
        assert worklist[0] == "patient_key" and "patient_id" not in worklist and "open_since" in worklist
        for mart in ("worklist_deficient", "worklist_borderline", "worklist_under_monitored", "worklist_flagged"):
            columns_of_mart = [name for (name,) in con.execute(
                "select column_name from duckdb_columns() where table_name = $t order by column_index",
                {"t": mart}).fetchall()]
            assert columns_of_mart[:2] == ["patient_key", "position"] and "patient_id" not in columns_of_mart, mart
        keys = {k for (k,) in con.execute("select patient_key from patient_status").fetchall()}
    expected = {hmac.new(key.encode(), pid.encode(), hashlib.sha256).hexdigest() for pid in SECRET_IDS}
    assert keys == expected
    for path in output.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert key.encode() not in content, f"the key is stored in {path.name}"
            if path.parent.name == "analytics":
                assert not [pid for pid in SECRET_IDS if pid.encode() in content]


def test_without_a_key_no_pseudonymised_mart_is_written(published_sample_night):
    # the sample night ran without B12LAB_PSEUDONYM_KEY, and said so
    assert not (published_sample_night.output / "analytics" / "analytics.duckdb").exists()
    assert "pseudonymised analytics mart not written" in published_sample_night.result.stdout + \
        published_sample_night.result.stderr
