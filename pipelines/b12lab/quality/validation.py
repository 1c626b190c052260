"""Great Expectations validation of the rows a run is about to add to the lake.

One suite per lake table (expectations/expectations/<table>.json). The committed GX project is copied into the run's
output folder and loaded with `gx.get_context(context_root_dir=...)`, so validation results and the HTML
Data Docs land next to the run's other outputs. Each failed expectation is judged by its own severity:
`critical` stops the run before publication, anything else is reported.

Bounded memory. A run's new rows are never loaded whole: DuckDB streams each table's rows as Arrow record
batches, only the columns the suite names, and GX (on pandas; GX over SQLAlchemy/duckdb-engine does not work
for us) validates one batch of at most `VALIDATION_BATCH_ROWS` rows at a time. Memory then depends on the batch
size, not on the size of the run. Each expectation falls in one of three groups (`SuitePlan`):

- Row-wise expectations (GX's column, column-pair and multicolumn *map* expectations: not null, in set,
  between, A > B, ...) judge every row on its own, so the table's outcome follows from the batches' outcomes:
  it fails if any batch fails and the unexpected rows add up. The one exception is `mostly`, a share of the
  whole table: that success is recomputed from the summed counts exactly as GX computes it for one batch.
- Uniqueness (`expect_column_values_to_be_unique`, `expect_compound_columns_to_be_unique`) is about the whole
  table: two copies of a row in different batches are each unique within their batch. These are counted by
  DuckDB over all the table's new rows (its hash aggregate spills to disk instead of growing memory), with
  GX's semantics (every row of a duplicated value is unexpected; `ignore_row_if`; `mostly`).
- Any other expectation about the whole table (row counts, means, quantiles, ordering, z-scores, or a
  uniqueness expectation with a row_condition) is validated by GX once, on all the new rows of the columns it
  names. The committed suites have none; a site suite that adds one trades bounded memory for it, and a
  note says so in the log.

The outcomes of the three groups are put back in suite order into one validation result per table, which
is stored and rendered as the run's Data Docs: the docs show the combined outcomes, never a single batch.

Time. GX on pandas spends its time copying and comparing rows in Python, not in the checks themselves
(`python -m benchmarks.validate_bench OUTPUT --per-expectation lab_results`). So: GX sees each group of
expectations with only the columns they read (it filters the whole frame per metric); timestamps are
nanosecond timestamps (other units are compared value by value in Python); results are BASIC; one context,
data source, batch definition and sub-suite per table serve all batches.
"""
from __future__ import annotations

import copy
import gc
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from b12lab.common.duck import connect
from b12lab.common.paths import EXPECTATIONS_DIR
from b12lab.common.settings import load_settings

SUITE_FILES = ("lab_results", "quarantine", "patients", "diagnoses", "medications", "unmapped_codes",
               "unreadable_fields")
CRITICAL = "critical"

# Rows of one table GX validates at a time: what bounds validation's memory. Measured on the 1M-row benchmark
# lake (benchmarks/validate_bench.py), validation's peak above the process's baseline: 400 MB at 250k rows,
# 520 MB at 500k, 660 MB at 1M, for about the same time (GX's fixed cost per batch is small).
# B12LAB_VALIDATION_BATCH_ROWS overrides it (the tests use a few rows).
VALIDATION_BATCH_ROWS = 500_000
BATCH_ROWS_VARIABLE = "B12LAB_VALIDATION_BATCH_ROWS"
# DuckDB only streams rows and counts duplicates here: a small limit, with spilling, leaves room for GX (the
# uniqueness count over 10M lab rows takes 0.4 s and about 300 MB within it).
VALIDATION_DUCKDB_MEMORY = "512MB"
# BASIC: counts and up to 20 unexpected values per expectation. SUMMARY adds the values' counts and the
# unexpected rows' index, for which GX filters each batch again per metric: 15 % of validation's time.
RESULT_FORMAT = "BASIC"
# DuckDB answers an Arrow reader with record batches of at most its row group size, whatever is asked for.
DUCKDB_ARROW_BATCH_ROWS = 122_880

# Map expectations whose verdict on a row depends on the other rows: they cannot be split into batches.
TABLE_WIDE_MAP_EXPECTATIONS = frozenset({
    "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
    "expect_multicolumn_values_to_be_unique",
    "expect_column_values_to_be_increasing",
    "expect_column_values_to_be_decreasing",
    "expect_column_value_z_scores_to_be_less_than",
    "expect_column_values_to_not_be_outliers",
})
# Of those, the ones counted by DuckDB over the whole table (the others go to GX on the whole table).
UNIQUENESS_IN_DUCKDB = frozenset({"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"})
# How GX (and so Data Docs) spells "this value was replaced in the stored batch parameters".
DATAFRAME_PLACEHOLDER = "<DATAFRAME>"
PARTIAL_UNEXPECTED_COUNT = 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpectationOutcome:
    table: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int | None
    # The rows it is about, when not all (`analyte=="b12"`): two expectations on one column tell apart.
    condition: str | None = None

    @property
    def description(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        subset = f" where {self.condition}" if self.condition else ""
        count = "" if self.unexpected_count is None else f" ({self.unexpected_count} rows)"
        return f"{where}: {self.expectation}{subset}{count}"


@dataclass
class ValidationReport:
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    data_docs_index: Path | None = None

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == CRITICAL]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity != CRITICAL]

    @property
    def evaluated(self) -> int:
        return len(self.outcomes)


class CriticalExpectationFailed(RuntimeError):
    pass


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def expectations_dir() -> Path:
    """The committed GX project, or a site's own (B12LAB_EXPECTATIONS_DIR), for example with tighter suites."""
    return load_settings().expectations_dir or EXPECTATIONS_DIR


def validation_batch_rows() -> int:
    return load_settings().validation_batch_rows


def expectation_parameters(ingest_day: date) -> dict[str, str]:
    """Values of the suites' $PARAMETERs.

    `end_of_ingest_day` is the midnight after the ingest day, used with `strict_max: true`: exact for any
    timestamp precision (the old inclusive bound, 23:59:59, failed a result taken at 23:59:59.5).
    `today`, the bound of suites written before it, is the last microsecond of the ingest day: inclusive, and
    exact too, because lake timestamps are DuckDB TIMESTAMPs (microseconds): nothing lies between it and
    midnight.
    """
    next_midnight = datetime.combine(ingest_day + timedelta(days=1), time())
    return {
        "end_of_ingest_day": next_midnight.isoformat(),
        "today": (next_midnight - timedelta(microseconds=1)).isoformat(timespec="microseconds"),
    }


def prepare_context(gx_dir: Path, project_dir: Path | None = None):
    """A file-backed GX context in gx_dir holding a copy of the GX project and its suites."""
    _quiet_gx()
    project_dir = project_dir or expectations_dir()
    import great_expectations as gx

    if gx_dir.exists():
        shutil.rmtree(gx_dir)
    # Plain copies: the package's file modes must not override the run's private umask.
    (gx_dir / "expectations").mkdir(parents=True)
    for suite in (project_dir / "expectations").glob("*.json"):
        shutil.copyfile(suite, gx_dir / "expectations" / suite.name)
    shutil.copyfile(project_dir / "great_expectations.yml", gx_dir / "great_expectations.yml")
    return gx.get_context(context_root_dir=str(gx_dir))


# --- which expectation is validated how ------------------------------------------------------------------


def _kwarg(expectation, name: str, default=None):
    return expectation.configuration.kwargs.get(name, default)


def _named_columns(expectation) -> list[str]:
    kwargs = expectation.configuration.kwargs
    named = [kwargs[key] for key in ("column", "column_A", "column_B") if isinstance(kwargs.get(key), str)]
    return named + list(kwargs.get("column_list") or [])


def _condition_columns(expectation, table_columns: list[str]) -> list[str]:
    """Columns a row_condition mentions. Conditions are pandas query text (or GX's structured form), so
    rather than parse them, any table column whose name appears in the condition is read: reading one
    column too many costs a little memory, one too few would make GX fail the expectation."""
    condition = _kwarg(expectation, "row_condition")
    if not condition:
        return []
    text = str(condition.to_json_dict() if hasattr(condition, "to_json_dict") else condition)
    return [column for column in table_columns if column in text]


def _is_row_wise(expectation) -> bool:
    from great_expectations.expectations.expectation import (ColumnMapExpectation, ColumnPairMapExpectation,
                                                             MulticolumnMapExpectation)

    return (isinstance(expectation, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation))
            and expectation.expectation_type not in TABLE_WIDE_MAP_EXPECTATIONS)


@dataclass
class SuitePlan:
    """One table's suite split by how each expectation is validated (positions in suite order), and the
    columns each part reads.

    The row-wise expectations are grouped by the columns they read, and GX validates each group on a frame
    of those columns only. GX filters the whole frame for every metric of an expectation that skips NULLs or
    has a row_condition; on a frame of every column the suite names (13 for lab_results) that copying was
    most of validation's time, on one or two columns it is a fraction, for a few hundredths of a second of
    fixed cost per group.
    """
    table: str
    expectations: list
    per_batch: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    uniqueness: list[int] = field(default_factory=list)
    whole_table: list[int] = field(default_factory=list)
    whole_table_columns: list[str] = field(default_factory=list)

    @property
    def batch_columns(self) -> list[str]:
        return list(dict.fromkeys(column for columns in self.per_batch for column in columns))


def plan_suite(table: str, expectations: list, table_columns: list[str]) -> SuitePlan:
    plan = SuitePlan(table, list(expectations))
    whole_table_columns, whole_table_needs_all = set(), False
    for position, expectation in enumerate(plan.expectations):
        named = set(_named_columns(expectation) + _condition_columns(expectation, table_columns))
        # In table order. A column the suite names but the table lacks is left out, and GX fails the
        # expectation that names it, as it did when the whole table was read (a frame needs some column).
        columns = tuple(c for c in table_columns if c in named) or tuple(table_columns[:1])
        if _is_row_wise(expectation):
            plan.per_batch.setdefault(columns, []).append(position)
        elif expectation.expectation_type in UNIQUENESS_IN_DUCKDB and not _kwarg(expectation, "row_condition"):
            plan.uniqueness.append(position)
        else:
            plan.whole_table.append(position)
            whole_table_columns.update(columns)
            # Table-level expectations (row count, column set, ...) name no column but need the table's shape.
            whole_table_needs_all |= not _named_columns(expectation)
    plan.whole_table_columns = table_columns if whole_table_needs_all else [
        c for c in table_columns if c in whole_table_columns]
    return plan


# --- reading rows in batches -----------------------------------------------------------------------------


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _column_types(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    return {name: kind for name, kind, *_ in con.execute(f"describe select * from {view}").fetchall()}


def _select_list(columns: list[str], types: dict[str, str]) -> str:
    """Dates as timestamps, so that GX compares them with the suites' ISO date-time bounds."""
    return ", ".join(
        f"cast({_quote_identifier(c)} as timestamp) as {_quote_identifier(c)}" if types[c] == "DATE"
        else _quote_identifier(c)
        for c in columns
    )


def _with_nanosecond_timestamps(batch: pa.Table) -> pa.Table:
    """Timestamps as nanosecond timestamps: GX compares only datetime64[ns] columns with its vectorised code
    and any other unit value by value in Python (4.6 s instead of 0.05 s for one bound check on 1M rows). A
    batch holding a timestamp outside the nanosecond range (years 1678-2261) keeps microseconds: correct,
    and slower."""
    for index, column in enumerate(batch.schema):
        if pa.types.is_timestamp(column.type) and column.type.unit != "ns":
            try:
                converted = batch.column(index).cast(pa.timestamp("ns", column.type.tz))
            except pa.ArrowInvalid:
                continue
            batch = batch.set_column(index, pa.field(column.name, converted.type), converted)
    return batch


def _to_pandas_batch(batch: pa.Table, columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """Some columns of a batch as pandas, for GX. Strings stay Arrow-backed (pandas' default `str`), without
    a copy."""
    return batch.select(list(columns)).to_pandas(split_blocks=True)


def _batches(con: duckdb.DuckDBPyConnection, view: str, columns: list[str], types: dict[str, str],
             batch_rows: int) -> Iterator[pa.Table]:
    """The view's rows (only `columns`), batch_rows at a time. DuckDB hands over Arrow record batches of its
    own size (about 120k rows); they are gathered into batches of exactly batch_rows (the last one smaller)."""
    query = f"select {_select_list(columns, types)} from {view}"
    reader = con.sql(query).to_arrow_reader(min(batch_rows, DUCKDB_ARROW_BATCH_ROWS))
    pending: list[pa.RecordBatch] = []
    pending_rows, yielded = 0, False
    for record_batch in reader:
        pending.append(record_batch)
        pending_rows += record_batch.num_rows
        while pending_rows >= batch_rows:
            gathered = pa.Table.from_batches(pending, schema=reader.schema)
            yield _with_nanosecond_timestamps(gathered.slice(0, batch_rows))
            yielded = True
            rest = gathered.slice(batch_rows)
            pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows or not yielded:
        yield _with_nanosecond_timestamps(pa.Table.from_batches(pending, schema=reader.schema))


# --- combining the batches' outcomes ---------------------------------------------------------------------


def _resolved(value, parameters: dict):
    if isinstance(value, dict) and "$PARAMETER" in value:
        return parameters.get(value["$PARAMETER"])
    return value


def _mostly_success(considered_rows: int, unexpected_rows: int, mostly: float) -> bool:
    """GX's rule for map expectations (great_expectations.expectations.expectation._mostly_success), on the
    whole table's counts; no rows to judge is a success."""
    if considered_rows == 0:
        return True
    return (float(considered_rows) - float(unexpected_rows)) / float(considered_rows) >= mostly


def _map_result(element_count: int, considered_rows: int | None, unexpected_count: int) -> dict:
    """The counts and shares GX reports for a map expectation (considered_rows None: GX reports no missing
    values for it, as for expect_column_values_to_(not_)be_null)."""
    result = {
        "element_count": element_count,
        "unexpected_count": unexpected_count,
        "unexpected_percent": None,
        "partial_unexpected_list": [],
    }
    if element_count:
        share_of_all = unexpected_count / element_count * 100
        result["unexpected_percent"] = share_of_all
        if considered_rows is not None:
            result.update(
                missing_count=element_count - considered_rows,
                missing_percent=(element_count - considered_rows) / element_count * 100,
                unexpected_percent_total=share_of_all,
                unexpected_percent_nonmissing=(unexpected_count / considered_rows * 100) if considered_rows else None,
            )
            result["unexpected_percent"] = result["unexpected_percent_nonmissing"]
    return result


@dataclass
class _CombinedExpectation:
    """One row-wise expectation's results over the batches seen so far."""
    all_succeeded: bool = True
    element_count: int = 0
    considered_rows: int = 0
    reports_missing: bool = False
    unexpected_count: int | None = 0
    unexpected_sample: list = field(default_factory=list)
    last_result: object = None

    def add(self, item) -> None:
        self.last_result = item
        self.all_succeeded &= bool(item.success)
        result = item.result or {}
        if item.exception_info.get("raised_exception") or result.get("unexpected_count") is None:
            self.unexpected_count = None
            return
        if self.unexpected_count is not None:
            self.unexpected_count += int(result["unexpected_count"])
        element_count = int(result.get("element_count") or 0)
        self.element_count += element_count
        self.reports_missing |= "missing_count" in result
        self.considered_rows += element_count - int(result.get("missing_count") or 0)
        room = PARTIAL_UNEXPECTED_COUNT - len(self.unexpected_sample)
        self.unexpected_sample += list(result.get("partial_unexpected_list") or [])[:max(room, 0)]

    def outcome(self):
        """The GX result of the whole table: success, counts and samples of all batches."""
        from great_expectations.core import ExpectationValidationResult

        item = self.last_result
        mostly = item.expectation_config.kwargs.get("mostly")
        if self.unexpected_count is None:
            success, result = False, dict(item.result or {})
        else:
            # `mostly` is a share of the whole table, so it is judged on the summed counts; without it any
            # failed batch fails the table.
            if isinstance(mostly, (int, float)) and mostly < 1:
                success = _mostly_success(self.considered_rows, self.unexpected_count, float(mostly))
            else:
                success = self.all_succeeded
            result = _map_result(self.element_count, self.considered_rows if self.reports_missing else None,
                                 self.unexpected_count)
            result["partial_unexpected_list"] = self.unexpected_sample
        return ExpectationValidationResult(success=success, expectation_config=item.expectation_config,
                                           result=result, meta=item.meta, exception_info=item.exception_info)


# --- whole-table expectations ----------------------------------------------------------------------------


def _uniqueness_result(con: duckdb.DuckDBPyConnection, view: str, expectation, parameters: dict):
    """expect_column_values_to_be_unique / expect_compound_columns_to_be_unique over every row of the view,
    with GX's pandas semantics: every row of a duplicated value (or combination) is unexpected (pandas
    `duplicated(keep=False)`; NULLs equal each other there as in a DuckDB GROUP BY); rows are left out as GX
    leaves them out (NULLs of a single column; `ignore_row_if` for column lists)."""
    from great_expectations.core import ExpectationValidationResult

    single_column = expectation.expectation_type == "expect_column_values_to_be_unique"
    columns = [_kwarg(expectation, "column")] if single_column else list(_kwarg(expectation, "column_list"))
    quoted = [_quote_identifier(c) for c in columns]
    if single_column:
        considered = f"{quoted[0]} is not null"
    else:
        considered = {
            "all_values_are_missing": "not (" + " and ".join(f"{q} is null" for q in quoted) + ")",
            "any_value_is_missing": " and ".join(f"{q} is not null" for q in quoted),
            "never": "true",
        }[_kwarg(expectation, "ignore_row_if", "all_values_are_missing")]
    key = ", ".join(quoted)
    # The duplicated keys' rows in all (a window over every duplicated key) and a few of the keys for Data
    # Docs: however many duplicates there are, only PARTIAL_UNEXPECTED_COUNT rows leave DuckDB.
    sample = con.sql(
        f"select {key}, count(*) as _copies, sum(count(*)) over () as _duplicated_rows from {view} "
        f"where {considered} group by all having count(*) > 1 order by {key} limit {PARTIAL_UNEXPECTED_COUNT}"
    ).to_arrow_table().to_pylist()
    unexpected_count = int(sample[0]["_duplicated_rows"]) if sample else 0
    element_count, considered_rows = con.execute(
        f"select count(*), count(*) filter (where {considered}) from {view}").fetchall()[0]
    mostly = _resolved(_kwarg(expectation, "mostly", 1), parameters)
    success = _mostly_success(considered_rows, unexpected_count, float(1 if mostly is None else mostly))
    result = _map_result(element_count, considered_rows, unexpected_count)
    unexpected_values = []
    for row in sample:
        copies = row.pop("_copies")
        row.pop("_duplicated_rows")
        value = row[columns[0]] if single_column else row
        unexpected_values += [value] * min(copies, PARTIAL_UNEXPECTED_COUNT - len(unexpected_values))
    result["partial_unexpected_list"] = unexpected_values
    return ExpectationValidationResult(
        success=success, expectation_config=expectation.configuration, result=result,
        meta={"validated_by": "DuckDB, over all the table's new rows (uniqueness is not a per-batch property)"},
        exception_info={"raised_exception": False, "exception_message": None, "exception_traceback": None},
    )


# --- validating one table --------------------------------------------------------------------------------


@dataclass
class TableValidation:
    table: str
    rows: int
    batches: int
    result: object  # ExpectationSuiteValidationResult, in suite order


def _sub_suite(name: str, positions: list[int], expectations: list):
    """A suite of some of a table's expectations, and the suite position of each: GX returns results in an
    order of its own, so they are matched to expectations by id. An expectation belongs to one suite: the
    sub-suite holds copies, which GX gives no id, so each copy gets a new one."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name, expectations=[copy.copy(expectations[p]) for p in positions])
    position_by_id = {}
    for position, expectation in zip(positions, suite.expectations):
        expectation.id = str(uuid.uuid4())
        position_by_id[expectation.id] = position
    return suite, position_by_id


def _by_position(result, position_by_id: dict[str, int], table: str) -> dict[int, object]:
    matched = {position_by_id.get(item.expectation_config.id): item for item in result.results}
    if None in matched or len(matched) != len(position_by_id):
        raise RuntimeError(f"GX's results of {table} do not match its expectations one to one")
    return matched


def _validate_batch(validator_class, batch_definition, suite, frame: pd.DataFrame, parameters: dict):
    """GX on one batch. One GX Validator per batch (a Validator is bound to its data), sharing the table's
    batch definition and sub-suite. Not Batch.validate: that loads the batch, fingerprinting every value,
    twice."""
    validator = validator_class(batch_definition=batch_definition, batch_parameters={"dataframe": frame},
                                result_format=RESULT_FORMAT)
    return validator.validate_expectation_suite(suite, parameters)


def _validate_table(context, source, con: duckdb.DuckDBPyConnection, table: str, view: str, rows: int,
                    parameters: dict, batch_rows: int) -> TableValidation:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.validator.v1_validator import Validator

    types = _column_types(con, view)
    suite = context.suites.get(table)
    plan = plan_suite(table, suite.expectations, list(types))
    asset = source.add_dataframe_asset(name=table)
    batch_definition = asset.add_batch_definition_whole_dataframe(table)
    by_position: dict[int, object] = {}
    batches, last_meta, batch_id = 0, {}, None

    if plan.per_batch:
        groups = [(columns, *_sub_suite(table, positions, plan.expectations))
                  for columns, positions in plan.per_batch.items()]
        combined = {position: _CombinedExpectation() for positions in plan.per_batch.values()
                    for position in positions}
        for batch in _batches(con, view, plan.batch_columns, types, batch_rows):
            batches += 1
            for columns, group_suite, position_by_id in groups:
                frame = _to_pandas_batch(batch, columns)
                result = _validate_batch(Validator, batch_definition, group_suite, frame, parameters)
                last_meta, batch_id = result.meta, result.batch_id
                for position, item in _by_position(result, position_by_id, table).items():
                    combined[position].add(item)
            del batch, frame
            # GX's validator, execution engine and batch refer to each other, so a batch's frames are freed
            # only by the cyclic garbage collector, whose full passes are rare: without this, memory grew by
            # a batch per batch (1.7 GB after ten on lab_results) before Python got round to it.
            gc.collect()
        by_position.update((position, tally.outcome()) for position, tally in combined.items())

    for position in plan.uniqueness:
        by_position[position] = _uniqueness_result(con, view, plan.expectations[position], parameters)

    if plan.whole_table:
        names = sorted({plan.expectations[p].expectation_type for p in plan.whole_table})
        log.warning("%s: %d expectations about the whole table (%s) are validated on all its new rows at once; "
                    "memory grows with the rows", table, len(plan.whole_table), ", ".join(names))
        whole_suite, position_by_id = _sub_suite(f"{table}-whole-table", plan.whole_table, plan.expectations)
        [whole_table] = _batches(con, view, plan.whole_table_columns, types, rows)  # one batch: all the rows
        frame = _to_pandas_batch(whole_table, plan.whole_table_columns)
        del whole_table
        result = _validate_batch(Validator, batch_definition, whole_suite, frame, parameters)
        del frame
        last_meta, batch_id = last_meta or result.meta, batch_id or result.batch_id
        by_position.update(_by_position(result, position_by_id, table))

    results = [by_position[position] for position in range(len(plan.expectations))]
    successful = sum(1 for item in results if item.success)
    combined_result = ExpectationSuiteValidationResult(
        success=successful == len(results),
        results=results,
        suite_name=table,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": successful,
            "unsuccessful_expectations": len(results) - successful,
            "success_percent": successful / len(results) * 100 if results else None,
        },
        meta={**last_meta, "batch_parameters": {"dataframe": DATAFRAME_PLACEHOLDER},
              "rows_validated": rows, "validation_batches": batches, "batch_rows": batch_rows},
        batch_id=batch_id,
    )
    return TableValidation(table, rows, batches, combined_result)


def _outcomes(validation: TableValidation, suite_expectations: list) -> list[ExpectationOutcome]:
    outcomes = []
    for expectation, item in zip(suite_expectations, validation.result.results):
        outcomes.append(ExpectationOutcome(
            table=validation.table,
            expectation=expectation.expectation_type,
            column=expectation.configuration.kwargs.get("column"),
            severity=str(getattr(expectation.severity, "value", expectation.severity)),
            success=bool(item.success),
            unexpected_count=(item.result or {}).get("unexpected_count"),
            condition=_row_condition_text(expectation.configuration.kwargs.get("row_condition")),
        ))
    return outcomes


def _row_condition_text(condition) -> str | None:
    """A suite's row condition as plain text: `analyte=="b12"` from GX's pass-through filter (or a string)."""
    if not condition:
        return None
    if isinstance(condition, dict):
        condition = condition.get("pass_through_filter") or condition.get("condition") or str(condition)
    return str(condition).replace('"', "")


def _store(context, validation: TableValidation, run_id) -> None:
    """The combined result as GX's validation result of the table, which Data Docs render."""
    from great_expectations.data_context.types.resource_identifiers import (ExpectationSuiteIdentifier,
                                                                            ValidationResultIdentifier)

    validation.result.meta["run_id"] = run_id
    validation.result.meta["validation_time"] = run_id.run_time
    suite_id = ExpectationSuiteIdentifier(name=validation.table)
    context.validation_results_store.store_validation_results(
        suite_validation_result=validation.result,
        suite_validation_result_identifier=ValidationResultIdentifier(
            expectation_suite_identifier=suite_id, run_id=run_id, batch_identifier=validation.result.batch_id),
        expectation_suite_identifier=suite_id,
    )


def _validate_views(con: duckdb.DuckDBPyConnection, views: dict[str, str], gx_dir: Path, today: date,
                    project_dir: Path | None, batch_rows: int | None) -> ValidationReport:
    from great_expectations.core.run_identifier import RunIdentifier

    batch_rows = batch_rows or validation_batch_rows()
    context = prepare_context(gx_dir, project_dir)
    source = context.data_sources.add_pandas(name="lake")
    parameters = expectation_parameters(today)
    run_id = RunIdentifier(run_time=datetime.now(timezone.utc))
    report = ValidationReport()
    # The garbage collection after each batch (see _validate_table) need not walk the objects that exist
    # before the first one (Prefect's, GX's modules and context): frozen, they are left out of its passes,
    # which halves its cost. They are handed back to the collector when validation ends.
    gc.freeze()
    try:
        for table, view in views.items():
            rows = con.execute(f"select count(*) from {view}").fetchall()[0][0]
            if not rows:
                continue  # nothing new in this table: nothing to validate, as before
            validation = _validate_table(context, source, con, table, view, rows, parameters, batch_rows)
            report.outcomes += _outcomes(validation, context.suites.get(table).expectations)
            _store(context, validation, run_id)
    finally:
        gc.unfreeze()
    context.build_data_docs()
    index = gx_dir / "data_docs" / "index.html"
    report.data_docs_index = index if index.exists() else None
    return report


def validate_lake_files(files: dict[str, list[Path]], gx_dir: Path, today: date, *,
                        project_dir: Path | None = None, batch_rows: int | None = None,
                        temp_dir: Path | None = None) -> ValidationReport:
    """Validate each table's Parquet files (a run's new lake files) against its suite, in batches of
    batch_rows (default VALIDATION_BATCH_ROWS or B12LAB_VALIDATION_BATCH_ROWS); build Data Docs; return every
    outcome, combined over the batches."""
    with connect(temp_dir=temp_dir, memory_limit=VALIDATION_DUCKDB_MEMORY) as con:
        views = {}
        for table, paths in files.items():
            if not paths:
                continue
            # A view's text cannot hold bound parameters: the paths (hash-named files this program wrote) are
            # written in as quoted literals.
            listed = ", ".join(_quote_literal(str(path)) for path in paths)
            views[table] = f"new_{table}"
            con.execute(f"create temp view {views[table]} as "
                        f"select * from read_parquet([{listed}], union_by_name = true)")
        return _validate_views(con, views, gx_dir, today, project_dir, batch_rows)


def validate_tables(tables: dict[str, pd.DataFrame], gx_dir: Path, today: date,
                    project_dir: Path | None = None, *, batch_rows: int | None = None) -> ValidationReport:
    """validate_lake_files for rows already in memory (one DataFrame per table), in the same batches."""
    with connect(memory_limit=VALIDATION_DUCKDB_MEMORY) as con:
        views = {}
        for table, frame in tables.items():
            views[table] = f"new_{table}"
            con.register(views[table], frame)
        return _validate_views(con, views, gx_dir, today, project_dir, batch_rows)
