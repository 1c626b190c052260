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


def _groups() -> list[list[str]]:
    """The cases as drops of distinct content: a drop's files are told apart by content hash, so two empty files
    in one drop are one export (the second is "already ingested"). The first drop holds a file of every distinct
    content and goes through nights of the flow; each further file repeats a content of the first drop under
    another kind's name, and is ingested on its own (test_a_repeated_empty_content_is_read_as_its_own_kind)."""
    groups, seen = [[]], set()
    for name, content in CASES.items():
        if content in seen:
            groups.append([name])
        else:
            seen.add(content)
            groups[0].append(name)
    return groups


def _ingested_rows(output) -> dict[str, int]:
    with duckdb.connect(str(output / "warehouse.duckdb"), read_only=True) as con:
        return dict(con.execute("select source_file, rows_read from ingested_files").fetchall())


@pytest.fixture(scope="module")
def nights(prefect_harness, tmp_path_factory) -> dict:
    """Quiet nights whose drops hold only files with no record; after the first of them, a busy night on the
    same output: the sample arrives and the empty files are gone from the drop."""
    quiet, quiet_rows, bookkeeping = [], {}, {}
    for number, names in enumerate(_groups()[:1]):
        root = tmp_path_factory.mktemp(f"zero-record-{number}")
        drop, output = root / "drop", root / "out"
        drop.mkdir()
        for name in names:
            (drop / name).write_bytes(CASES[name])
        quiet.append((names, nightly(input_dir=drop, output_dir=output, as_of=AS_OF)))
        quiet_rows.update(_ingested_rows(output))
        for table, schema in BOOKKEEPING_SCHEMAS.items():
            for path in Lake(output / "lake").files(table):
                bookkeeping[str(path)] = (pq.read_schema(path).names, schema.names)
        if number == 0:
            first_drop, first_output = drop, output
    for name in _groups()[0]:
        (first_drop / name).unlink()
    for export in SAMPLE.iterdir():
        shutil.copy(export, first_drop)
    busy = nightly(input_dir=first_drop, output_dir=first_output, as_of=AS_OF)
    with duckdb.connect(str(first_output / "warehouse.duckdb"), read_only=True) as con:
        patients = con.execute("select count(*) from patient_status").fetchone()[0]
    return {"quiet": quiet, "quiet_rows": quiet_rows, "bookkeeping": bookkeeping, "busy": busy,
            "busy_rows": _ingested_rows(first_output), "patients": patients}


def test_nights_of_files_with_no_record_publish_and_the_next_night_publishes(nights):
    for names, quiet in nights["quiet"]:
        assert quiet["status"] == "published" and quiet["rows_read"] == 0 and quiet["files_ingested"] == len(names)
    # every bookkeeping file keeps its columns, so a later night can read it
    assert all(found == declared for found, declared in nights["bookkeeping"].values()), nights["bookkeeping"]
    busy = nights["busy"]
    assert busy["status"] == "published" and busy["rows_read"] == 7274 and nights["patients"] == 500


@pytest.mark.parametrize("name", _groups()[0])
def test_a_file_with_no_record_is_accounted_for_with_0_rows_read(nights, name):
    assert nights["quiet_rows"].get(name) == 0
    assert nights["busy_rows"].get(name) == 0  # still on record after the busy night


@pytest.mark.parametrize("name", [name for group in _groups()[1:] for name in group])
def test_a_repeated_empty_content_is_read_as_its_own_kind(tmp_path, ingest, name):
    path = tmp_path / "drop" / name
    path.parent.mkdir()
    path.write_bytes(CASES[name])
    result = ingest(path)
    assert result.account.rows_read == 0 and result.account.reconciles and result.account.problem == ""
    assert result.table == {"patients_empty.csv": "patients", "medications_empty.csv": "medications",
                            "Observation.ndjson": "lab_results"}[name]
    assert result.rows() == [] and result.quarantine() == []


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
