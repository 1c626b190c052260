"""Same patients, same answer: the CSV and the FHIR Bulk Data exports of one synthetic population give
identical marts."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb

from b12lab.flows.nightly import run_pipeline
from b12lab.synth.csv_exports import synthesize
from b12lab.synth.fhir_exports import synthesize_fhir

MARTS = ("result_classification", "patient_status", "cohort_deficient", "cohort_borderline",
         "cohort_under_monitored", "patient_flags", "worklist")
# Where a row came from differs by format (file names, row numbers); what it says must not.
LINEAGE = {"source_file", "source_row", "source_hash", "ingest_run", "accession"}


def marts(output: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        tables = {}
        for table in MARTS:
            columns = [name for (name,) in con.execute(
                "select column_name from duckdb_columns() where table_name = $t order by column_index",
                {"t": table}).fetchall() if name not in LINEAGE]
            tables[table] = con.execute(f"select {', '.join(columns)} from {table} order by all").fetchall()
        return tables


def test_csv_and_fhir_exports_of_one_population_give_identical_marts(tmp_path):
    synthesize(120, tmp_path / "csv", seed=11)
    summary = synthesize_fhir(120, tmp_path / "fhir", seed=11)
    assert all(name.endswith(".ndjson") for name in summary["files"])
    manifest = json.loads((tmp_path / "fhir" / "manifest.json").read_text())
    assert sorted(item["url"] for item in manifest["output"]) == sorted(summary["files"])
    as_of = date(2025, 12, 31)
    csv_run = run_pipeline(tmp_path / "csv", tmp_path / "out-csv", as_of)
    fhir_run = run_pipeline(tmp_path / "fhir", tmp_path / "out-fhir", as_of)
    assert fhir_run.total("rows_read") == csv_run.total("rows_read")
    from_csv, from_fhir = marts(tmp_path / "out-csv"), marts(tmp_path / "out-fhir")
    assert from_csv["patient_status"], "the population has patients"
    for table in MARTS:
        assert from_fhir[table] == from_csv[table], table


def test_synth_format_fhir_on_the_command_line(tmp_path):
    from click.testing import CliRunner

    from b12lab.cli.main import main

    result = CliRunner().invoke(main, ["synth", "--patients", "5", "--out", str(tmp_path / "fhir"), "--format", "fhir"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "fhir").iterdir())
    assert "manifest.json" in names and "Patient.patients.ndjson" in names
    assert not any(name.endswith((".csv", ".csv.gz")) or name.startswith(".") for name in names)
    first = json.loads((tmp_path / "fhir" / "Patient.patients.ndjson").read_text().splitlines()[0])
    assert first["resourceType"] == "Patient" and first["gender"] in ("male", "female", "other", "unknown")
