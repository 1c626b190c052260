"""Time and memory of the validation step alone, on the lake of a finished run.

    python -m benchmarks.validate_bench OUTPUT_DIR [--today YYYY-MM-DD] [--repeat N] [--per-expectation TABLE]

OUTPUT_DIR is the output folder of a `b12lab run` (for example of the cached 1M export:
`b12lab run --input benchmarks/.cache/labs-.../exports --output /tmp/gx-bench --as-of 2026-01-31`). Every file
the run committed is validated again, by the functions the flow's `validate_new_rows` task calls for a run's
new files (publication.new_rows_files, then validation.validate_lake_files), into a scratch GX folder. Printed: wall seconds, the process's
resident memory after imports and its peak (sampled every 20 ms, and ru_maxrss), and the outcome counts.

--repeat N validates every file N times over, to see how time and memory grow with a run's rows.

--per-expectation TABLE instead times each expectation of TABLE's suite on its own (one GX run per expectation
on the whole table in pandas), to show which expectations are worth making cheaper.
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import pandas as pd
import psutil


class PeakMemory:
    """The highest resident set size seen while the block runs (ru_maxrss only ever grows, so it cannot tell
    the validation's peak from an earlier one: this samples instead)."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._process = psutil.Process()
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
        return False


def _mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB"


def validate_run(output_dir: Path, today: date, repeat: int = 1) -> dict:
    from b12lab.common.layout import OutputLayout
    from b12lab.lake.lake import Lake
    from b12lab.publish.publication import new_rows_files
    from b12lab.quality.validation import validate_lake_files

    lake = Lake(OutputLayout.of(output_dir).lake)
    hashes = sorted(lake.committed_hashes())
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as scratch:
        rss_before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        with PeakMemory() as memory:
            files = {table: paths * repeat for table, paths in new_rows_files(lake, hashes).items()}
            report = validate_lake_files(files, Path(scratch) / "gx", today, temp_dir=Path(scratch) / "tmp")
        seconds = time.perf_counter() - started
        docs = report.data_docs_index is not None
    return {
        "files": len(hashes) * repeat,
        "seconds": round(seconds, 2),
        "rss_before_bytes": rss_before,
        "peak_rss_bytes": memory.peak_bytes,
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "evaluated": report.evaluated,
        "critical_failures": len(report.critical_failures),
        "warnings": sorted(o.description for o in report.warnings),
        "data_docs": docs,
    }


def time_each_expectation(output_dir: Path, table: str, today: date) -> list[tuple[float, float, str]]:
    """Seconds of each expectation of a suite, alone, on all of TABLE's committed rows in one batch, two ways:
    as validation read them before batching (every column, pyarrow's pandas types: microsecond timestamps,
    dates as objects turned into timestamps), and as it reads them now (only the expectation's columns,
    nanosecond timestamps; uniqueness counted by DuckDB). The fixed cost of one GX run is shown first."""
    import copy

    import great_expectations as gx
    import pyarrow.parquet as pq
    from great_expectations.validator.v1_validator import Validator

    from b12lab.quality import validation as validate
    from b12lab.common.duck import connect
    from b12lab.common.layout import OutputLayout
    from b12lab.lake.lake import Lake

    files = Lake(OutputLayout.of(output_dir).lake).committed_files(table)
    parameters = validate.expectation_parameters(today)
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as scratch, connect() as con:
        context = validate.prepare_context(Path(scratch) / "gx")
        suite = context.suites.get(table)
        batch_definition = (context.data_sources.add_pandas(name="bench").add_dataframe_asset(name=table)
                            .add_batch_definition_whole_dataframe(table))
        before = pq.read_table([str(f) for f in files]).to_pandas()
        for column in before.columns:
            values = before[column].dropna()
            if before[column].dtype == object and len(values) and isinstance(values.iloc[0], date):
                before[column] = pd.to_datetime(before[column])

        def seconds(expectations: list, frame) -> float:
            started = time.perf_counter()
            validate._validate_batch(Validator, batch_definition, gx.ExpectationSuite(
                name="one", expectations=[copy.copy(e) for e in expectations]), frame, parameters)
            return time.perf_counter() - started

        listed = ", ".join(validate._quote_literal(str(f)) for f in files)
        con.execute(f"create temp view bench as select * from read_parquet([{listed}], union_by_name = true)")
        types = validate._column_types(con, "bench")
        rows = con.execute("select count(*) from bench").fetchall()[0][0]
        plan = validate.plan_suite(table, suite.expectations, list(types))
        [whole] = validate._batches(con, "bench", list(types), types, rows)
        columns_of = {p: columns for columns, positions in plan.per_batch.items() for p in positions}
        first_columns = next(iter(columns_of.values()), list(types)[:1])
        timings = [(seconds([], before), seconds([], validate._to_pandas_batch(whole, first_columns)),
                    "(empty suite: the fixed cost of one GX run)")]
        for position, expectation in enumerate(suite.expectations):
            if position in plan.uniqueness:
                started = time.perf_counter()
                validate._uniqueness_result(con, "bench", expectation, parameters)
                after = time.perf_counter() - started
            else:
                after = seconds([expectation], validate._to_pandas_batch(whole, columns_of.get(position, list(types))))
            kwargs = {k: v for k, v in expectation.configuration.kwargs.items()
                      if k in ("column", "column_list", "column_A", "column_B", "row_condition", "mostly")}
            timings.append((seconds([expectation], before), after,
                            f"{expectation.expectation_type} {json.dumps(kwargs, default=str)}"))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--today", type=date.fromisoformat, default=date.today())
    parser.add_argument("--per-expectation", metavar="TABLE")
    parser.add_argument("--repeat", type=int, default=1,
                        help="validate every file this many times over: a run this many times larger, without "
                             "generating one (the copies break the uniqueness expectation; the work is the same)")
    parser.add_argument("--json", type=Path, help="also write the measurement to this file")
    args = parser.parse_args()
    import b12lab.publish.publication  # noqa: F401 (imports are not part of the measurement)
    import b12lab.quality.validation  # noqa: F401
    import great_expectations  # noqa: F401

    if args.per_expectation:
        print(" before    after  expectation")
        for before, after, what in time_each_expectation(args.output_dir, args.per_expectation, args.today):
            print(f"{before:6.2f} s {after:6.2f} s  {what}")
        return
    result = validate_run(args.output_dir, args.today, args.repeat)
    print(f"validated {result['files']} files in {result['seconds']:.2f} s; resident memory "
          f"{_mib(result['rss_before_bytes'])} before, peak {_mib(result['peak_rss_bytes'])} "
          f"(ru_maxrss {_mib(result['ru_maxrss_bytes'])}); {result['evaluated']} expectations, "
          f"{result['critical_failures']} critical failures, {len(result['warnings'])} warnings; "
          f"Data Docs: {'yes' if result['data_docs'] else 'no'}")
    for warning in result["warnings"]:
        print(f"  warning: {warning}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
