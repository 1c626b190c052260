"""The `runs` record: one row per pipeline run (OUTPUT/lake/runs/<run_id>.parquet), declared once.

The lake's Parquet schema, the warehouse's table DDL and the run summary's headline fields all derive from
RunRecord's fields, in its order. A run killed before it finished is recorded by the next run with its id,
status, time and message only: every other field may be empty.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from typing import get_type_hints

import pyarrow as pa


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    kind: str | None = None  # nightly or reproduction
    flow_run_id: str | None = None
    as_of: date | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status: str | None = None  # published, failed, interrupted or crashed
    message: str | None = None
    rules_version: str | None = None
    rules_profile: str | None = None
    files_ingested: int | None = None
    files_skipped: int | None = None
    rows_read: int | None = None
    rows_accepted: int | None = None
    rows_quarantined: int | None = None
    rows_dropped: int | None = None
    expectations_evaluated: int | None = None
    expectations_failed: int | None = None
    expectation_warnings: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# Each Python type of a field as a Parquet (Arrow) type; the warehouse's DDL derives from the Arrow schema
# (b12lab.lake.lake.table_ddl).
_ARROW_TYPES = {str: pa.string(), date: pa.date32(), datetime: pa.timestamp("us"), int: pa.int64()}


def _column_types() -> list[tuple[str, type]]:
    hints = get_type_hints(RunRecord)
    columns = []
    for field in fields(RunRecord):
        hint = hints[field.name]
        # `T | None`: the column's type is T.
        base = next(t for t in getattr(hint, "__args__", (hint,)) if t is not type(None))
        columns.append((field.name, base))
    return columns


RUN_COLUMNS = tuple(name for name, _ in _column_types())
RUNS_SCHEMA = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in _column_types()])
