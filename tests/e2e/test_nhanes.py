"""End to end on real survey data: NHANES 2003-2004 B12 and MMA, written as export files in the input
contract, run through the whole pipeline (ingest, validation, models, publication); the published
patient_status must hold exactly the status counts computed from the raw values with pandas."""
from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from b12lab.flows.nightly import nightly
from tests.helpers import nhanes

CYCLE = "2003-2004"
COLLECTED_ON = dt.date(2004, 6, 15)
AS_OF = dt.date(2004, 7, 15)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.skipif(not nhanes.NHANES_DIR.is_dir(), reason="NHANES reference data not available"),
]


def test_nhanes_shares_match_the_direct_computation(tmp_path):
    input_dir, output_dir = tmp_path / "input", tmp_path / "output"
    nhanes.write_input_files(input_dir, CYCLE, COLLECTED_ON)

    nightly(input_dir=input_dir, output_dir=output_dir, as_of=AS_OF)

    with duckdb.connect(str(output_dir / "warehouse.duckdb"), read_only=True) as con:
        published = nhanes.status_counts(con)
    expected = nhanes.expected_status_counts(CYCLE)
    assert published == expected
    assert published["deficient"] / published["total"] == expected["deficient"] / expected["total"]
    assert published["borderline"] / published["total"] == expected["borderline"] / expected["total"]
