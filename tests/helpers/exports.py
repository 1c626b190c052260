"""Write tiny export files in the input contract, for tests."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

from b12lab.ingest import LAB_COLUMNS

LAB_DEFAULTS = {
    "patient_id": "P001", "accession": "A1", "loinc": "14685-2", "local_code": "", "test_name": "Vitamin B12",
    "result_value": "300", "unit": "pmol/L", "reference_range": "", "abnormal_flag": "", "status": "F",
    "collected_at": "2024-03-01T09:00:00", "resulted_at": "2024-03-01T15:00:00", "performing_lab": "LabA",
}


def lab_row(**fields) -> dict:
    return {**LAB_DEFAULTS, **fields}


def write_csv(path: Path, columns, rows: list[dict | list], *, bom: bool = False, gz: bool = False,
              line_terminator: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8-sig" if bom else "utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator=line_terminator)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns] if isinstance(row, dict) else row)
    return path


def write_labs(path: Path, rows, **options) -> Path:
    return write_csv(path, LAB_COLUMNS, rows, **options)
