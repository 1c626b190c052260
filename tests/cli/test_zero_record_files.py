"""An export with no record (0 bytes, a header only, blank lines, a file that is not an export) is accounted
for with 0 rows read, and never leaves a lake file that a later night cannot read."""
from __future__ import annotations

import gzip
import shutil
from datetime import date

import duckdb
import pyarrow.parquet as pq
import pytest

from b12lab.flows.nightly import nightly
from b12lab.ingest import LAB_COLUMNS
from b12lab.lake.lake import BOOKKEEPING_SCHEMAS, Lake
from tests.helpers.processes import SAMPLE

pytestmark = pytest.mark.usefixtures("prefect_harness")
AS_OF = date(2026, 10, 31)

CASES = {
    "labs_holiday.csv": b"",
    "labs_header_only.csv": (",".join(LAB_COLUMNS) + "\n").encode(),
    "labs_header_only.csv.gz": gzip.compress((",".join(LAB_COLUMNS) + "\n").encode()),
    "labs_not_an_export.csv": b"This folder is the LIS drop. Do not delete.\n",
    "labs_scanned.csv": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    "patients_empty.csv": b"",
    "patients_header.csv": b"patient_id,birth_date,sex,practice\n",
    "diagnoses_header.csv": b"patient_id,code_system,code,recorded_at\r\n",
    "medications_empty.csv": b"",
    "Observation.ndjson": b"",
    "Patient.ndjson": b"\n\n",
    "Condition.ndjson.gz": gzip.compress(b""),
}


@pytest.mark.parametrize("name", CASES)
def test_a_file_with_no_record_is_accounted_for_and_the_next_night_publishes(tmp_path, name):
    drop, output = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    (drop / name).write_bytes(CASES[name])

    quiet = nightly(input_dir=drop, output_dir=output, as_of=AS_OF)
    assert quiet["status"] == "published" and quiet["rows_read"] == 0 and quiet["files_ingested"] == 1
    lake = Lake(output / "lake")
    for table, schema in BOOKKEEPING_SCHEMAS.items():  # every bookkeeping file keeps its columns
        for path in lake.files(table):
            assert pq.read_schema(path).names == schema.names, path

    (drop / name).unlink()
    for export in SAMPLE.iterdir():
        shutil.copy(export, drop)
    busy = nightly(input_dir=drop, output_dir=output, as_of=AS_OF)
    assert busy["status"] == "published" and busy["rows_read"] == 7274
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from patient_status").fetchone() == (500,)
        assert con.execute("select rows_read from ingested_files where source_file = $n", {"n": name}).fetchall() \
            == [(0,)]


def test_a_column_less_file_left_by_an_earlier_version_is_removed(tmp_path):
    """Earlier versions wrote ingest_outcomes with no column for such a night; every later run then failed."""
    import pyarrow as pa

    drop, output = tmp_path / "drop", tmp_path / "out"
    shutil.copytree(SAMPLE, drop)
    broken = output / "lake" / "ingest_outcomes" / "20260101T000000000000-old.parquet"
    broken.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([]), broken)
    assert nightly(input_dir=drop, output_dir=output, as_of=AS_OF)["status"] == "published"
    assert not broken.exists()
