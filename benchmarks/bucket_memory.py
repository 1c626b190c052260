"""One patient bucket built under a memory limit smaller than the bucket: DuckDB must spill, not fail.

    python -m benchmarks.bucket_memory --patients 20000 --limit 64MB [--buckets 1] [--work DIR]

`b12lab synth` writes the population, and one night (`b12lab run`, the default memory limit) publishes it.
From a copy of that warehouse, the patients are assigned to `--buckets` buckets as a night's driver assigns
them (b12lab.publish.buckets), and bucket 0 is built as a night's bucket task builds it (its records, a
DuckDB file of its own, `dbt build` of the patient-level models: two threads, then, for a model out of memory,
one), with `--limit` as that build's memory limit (in place of B12LAB_MEMORY_LIMIT) alone. It prints the bucket's patients, the size
of its records and of its built file, the limit, and whether it built. Exit status 0 when it built: this is
a measurement run by hand (README "Running on a cluster"), not a test of the suite, where a population large
enough to outgrow a limit DuckDB can run with at all takes a minute to make.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from benchmarks.harness import PrefectServer, b12lab_command

AS_OF = "2025-12-31"


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20000)
    parser.add_argument("--limit", default="64MB", help="the bucket build's memory limit (B12LAB_MEMORY_LIMIT)")
    parser.add_argument("--buckets", type=int, default=1, help="buckets the patients are split into; bucket 0 "
                                                                "is built")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="b12lab-bucket-memory-"))
    drop, output = work / "drop", work / "out"
    subprocess.run([*b12lab_command(), "synth", "--patients", str(args.patients), "--out", str(drop)],
                   check=True, capture_output=True)
    server = PrefectServer(work / "prefect-home", work / "prefect-server.log")
    server.start()
    try:
        night = subprocess.run([*b12lab_command(), "run", "--input", str(drop), "--output", str(output),
                                "--as-of", AS_OF], env=server.env(), capture_output=True, text=True)
    finally:
        server.stop()
    if night.returncode != 0:
        sys.exit(f"the night failed ({night.returncode}): {night.stderr.strip()[-500:]}")

    from b12lab.publish import buckets

    night_folder = work / "bucket-night"
    shutil.rmtree(night_folder, ignore_errors=True)
    night_folder.mkdir()
    warehouse = night_folder / "warehouse.duckdb"
    shutil.copyfile(output / "current" / "warehouse.duckdb", warehouse)
    scratch = night_folder / "scratch"
    patients = buckets.assign_buckets(warehouse, args.buckets, scratch, "bench", incremental=False)
    records = buckets.records_folder(scratch, "bench")
    started = time.perf_counter()
    try:  # the bucket's build alone at --limit: the night above had the default
        built = buckets.build_bucket(warehouse, 0, buckets.bucket_folder(scratch, "bench", 0),
                                     night_folder / "dbt", date.fromisoformat(AS_OF), scratch, records,
                                     memory_limit=args.limit)
    except Exception as error:  # the measurement's outcome, printed: which model, and why
        print(f"bucket 0 of {args.buckets} ({patients} patients assigned in all): NOT BUILT within {args.limit} "
              f"after {time.perf_counter() - started:.1f} s: {str(error).splitlines()[0]}")
        return 1
    records_mib = sum(folder_size(folder) for folder in records.glob(f"*/{buckets.PARTITION_COLUMN}=0")) / 2**20
    print(f"bucket 0 of {args.buckets}: {built.patients} patients, records {records_mib:.1f} MiB (Parquet), built "
          f"file {built.warehouse.stat().st_size / 2**20:.1f} MiB, within a memory limit of {args.limit} in "
          f"{built.seconds:.1f} s ({work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
