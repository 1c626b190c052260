"""Crashes, concurrent runs and concurrent readers, with real processes.

Each run is the `b12lab` console script in its own process, talking to the session's Prefect API. A crash is
a real SIGKILL at a named step (b12lab/common/faults.py): nothing of the run's own clean-up gets to run. The
night after a kill, checked by the output folder it leaves, is the nightly flow in the test's process
(tests/helpers/nights.py).
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from b12lab.common.faults import CRASH_POINTS
from b12lab.lake.lake import Lake
from b12lab.common.layout import OutputLayout
from b12lab.lake.locking import run_lock
from tests.helpers.exports import lab_row, write_labs
from tests.helpers.fixtures import PublishedNight, copy_night
from tests.helpers.nights import flow_night

pytestmark = pytest.mark.usefixtures("prefect_harness")
B12LAB = str(Path(sys.executable).parent / "b12lab")
AS_OF = "2025-06-01"


def run_cli(input_dir: Path, output_dir: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("B12LAB_CRASH_AT", None)
    if crash_at:
        env["B12LAB_CRASH_AT"] = crash_at
    return subprocess.run([B12LAB, "run", "--input", str(input_dir), "--output", str(output_dir),
                           "--as-of", AS_OF], env=env, capture_output=True, text=True, timeout=300)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count(warehouse: Path, query: str) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(query).fetchone()[0]


@pytest.fixture(scope="module")
def published_first_night(prefect_harness, tmp_path_factory) -> PublishedNight:
    """A first night of 50 results, published once for the module; each test runs its next night on a copy.
    The flow in this process: what the tests do to the night after it is what needs a process of its own."""
    root = tmp_path_factory.mktemp("first-night")
    inputs, output = root / "in", root / "out"
    write_labs(inputs / "labs_1.csv", [lab_row(patient_id=f"P{i:03}", accession=f"A{i}", result_value=str(100 + i),
                                               collected_at="2025-03-01") for i in range(50)])
    assert flow_night(inputs, output, AS_OF)["status"] == "published"
    return PublishedNight(inputs, output, result=None)


@pytest.fixture
def first_night(published_first_night, tmp_path) -> tuple[Path, Path]:
    """(inputs, output): a private copy of the published first night."""
    return copy_night(published_first_night, tmp_path)


@pytest.mark.parametrize("step", CRASH_POINTS)
def test_a_run_killed_at_any_step_leaves_the_publication_and_recovers_by_itself(first_night, step):
    inputs, output = first_night
    warehouse = output / "warehouse.duckdb"
    published_before, current_before = digest(warehouse), os.readlink(output / "current")
    committed_before = Lake(output / "lake").committed_hashes()
    write_labs(inputs / "labs_2.csv", [lab_row(patient_id=f"Q{i:03}", accession=f"B{i}", collected_at="2025-04-01")
                                       for i in range(30)])

    crashed = run_cli(inputs, output, crash_at=step)
    assert crashed.returncode == -signal.SIGKILL
    assert digest(warehouse) == published_before and os.readlink(output / "current") == current_before
    if step == "ingest":
        assert Lake(output / "lake").committed_hashes() == committed_before

    # What a kill during a gzip or Latin-1 file leaves: a decoded copy of the export in the run's scratch.
    scratch_copy = output / ".tmp" / "ingest-killed" / "decompressed.csv"
    scratch_copy.parent.mkdir(parents=True, exist_ok=True)
    scratch_copy.write_text("patient_id,analyte\n")

    # The next night (the flow in this process: the kill is what needed a process of its own) recovers.
    recovered = flow_night(inputs, output, AS_OF)
    assert recovered["status"] == "published"
    assert not scratch_copy.parent.exists()
    assert count(warehouse, "select count(*) from lab_results") == 80
    assert count(warehouse, "select count(*) from ingested_files where source_file = 'labs_2.csv'") == 1
    assert count(warehouse, "select count(distinct patient_id) from patient_status") == 80
    leftovers = [p for p in output.rglob("*.tmp") if p.is_file()]
    assert leftovers == []
    assert len(list((output / "lake" / "lab_results").glob("*.parquet"))) == 2


def test_a_second_run_is_refused_while_one_holds_the_output(first_night):
    inputs, output = first_night
    before = digest(output / "warehouse.duckdb")
    with run_lock(OutputLayout.of(output).lock):
        refused = run_cli(inputs, output)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"b12lab: error: another b12lab run is using {output}; try again when it has finished")
    assert digest(output / "warehouse.duckdb") == before


READER = textwrap.dedent("""
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    print(con.execute("select count(*) from lab_results").fetchone()[0], flush=True)
    sys.stdin.readline()  # hold the catalog open while the nightly run publishes
    print(con.execute("select count(*) from lab_results").fetchone()[0], flush=True)
    print(con.execute("select count(*) from patient_status").fetchone()[0], flush=True)
""")


def test_an_analyst_holding_the_warehouse_open_neither_blocks_nor_sees_a_mix(first_night):
    inputs, output = first_night
    warehouse = output / "warehouse.duckdb"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(warehouse)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "50"
        write_labs(inputs / "labs_2.csv", [lab_row(patient_id=f"Q{i:03}", accession=f"B{i}",
                                                   collected_at="2025-04-01") for i in range(30)])
        night = flow_night(inputs, output, AS_OF)
        assert night["status"] == "published"
        reader.stdin.write("go\n")
        reader.stdin.flush()
        # The open connection still reads the old publication, whole: old results and old statuses.
        assert reader.stdout.readline().strip() == "50"
        assert reader.stdout.readline().strip() == "50"
    finally:
        reader.kill()
        reader.wait()
    assert count(warehouse, "select count(*) from lab_results") == 80
    assert count(warehouse, "select count(*) from patient_status") == 80
