"""Time and memory of the validation step alone, on the lake of a finished run.

    python -m benchmarks.validate_bench OUTPUT_DIR [--today YYYY-MM-DD] [--repeat N] [--per-expectation TABLE]

OUTPUT_DIR is the output folder of a `b12lab run` (for example of the cached 1M export:
`b12lab run --input benchmarks/.cache/labs-.../exports --output /tmp/gx-bench --as-of 2026-01-31`). Every file
the run committed is validated again, by the functions the flow's `validate_new_rows` task calls for a run's
new files (publication.new_rows_files, then validation.validate_lake_files), into a scratch GX folder. Printed: wall seconds, the process's
resident memory after imports and its peak (sampled every 20 ms, and ru_maxrss), and the outcome counts.

--repeat N validates every file N times over, to see how time and memory grow with a run's rows.

--per-expectation TABLE instead times each expectation of TABLE's suite on its own (one GX validation per
expectation on the whole table in DuckDB, as validation runs it), to show which expectations are worth making
cheaper.
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


def time_each_expectation(output_dir: Path, table: str, today: date) -> list[tuple[float, str]]:
    """Seconds of each expectation of a suite, alone, on all of TABLE's committed rows, as validation runs it:
    a one-expectation suite validated by GX in SQL over the scratch DuckDB view of the rows. Making the view
    and the fixed cost of one GX validation (an empty suite) are shown first."""
    import copy

    import great_expectations as gx

    from b12lab.common.layout import OutputLayout
    from b12lab.lake.lake import Lake
    from b12lab.quality import validation as validate

    files = Lake(OutputLayout.of(output_dir).lake).committed_files(table)
    parameters = validate.expectation_parameters(today)
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as scratch:
        context = validate.prepare_context(Path(scratch) / "gx")
        suite = context.suites.get(table)
        database_path = Path(scratch) / "rows.duckdb"
        started = time.perf_counter()
        validate.create_new_rows_database(database_path, {table: files}, Path(scratch) / "spill")
        timings = [(time.perf_counter() - started, f"(view of {len(files)} files in DuckDB)")]
        source = validate.add_new_rows_source(context, "bench", database_path, Path(scratch) / "spill")
        batch_definition = source.add_table_asset(name=table, table_name=table).add_batch_definition_whole_table(table)

        def seconds(name: str, expectations: list) -> float:
            one = context.suites.add(gx.ExpectationSuite(name=name, expectations=[copy.copy(e) for e in expectations]))
            definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_definition,
                                                                                     suite=one))
            started = time.perf_counter()
            definition.run(expectation_parameters=parameters, result_format=validate.RESULT_FORMAT)
            return time.perf_counter() - started

        try:
            timings.append((seconds("empty", []), "(empty suite: the fixed cost of one GX validation)"))
            for position, expectation in enumerate(suite.expectations):
                expectation.id = None  # a copy in a suite of its own
                kwargs = {k: v for k, v in expectation.configuration.kwargs.items()
                          if k in ("column", "column_list", "column_A", "column_B", "row_condition", "mostly")}
                timings.append((seconds(f"one-{position}", [expectation]),
                                f"{expectation.expectation_type} {json.dumps(kwargs, default=str)}"))
        finally:
            validate.close_source(source)
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
        for seconds, what in time_each_expectation(args.output_dir, args.per_expectation, args.today):
            print(f"{seconds:6.2f} s  {what}")
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
