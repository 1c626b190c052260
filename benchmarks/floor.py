"""The floor: DuckDB alone copying the lab export files to Parquet, with nothing else done.

    python benchmarks/floor.py --input DIR --output DIR

Every labs*.csv / labs*.csv.gz file of the input folder is read as text (all_varchar: no value parsing, no
type detection, no validation, no row accounting, no classification) and written to OUTPUT/<file>.parquet with the lake's
compression (zstd). DuckDB runs with its defaults (all cores, its own memory limit). No pipeline run can
take less time than this: it has to read the same bytes and write at least as many.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb


def lab_files(input_dir: Path) -> list[Path]:
    return sorted(p for p in input_dir.iterdir()
                  if p.is_file() and p.name.lower().startswith("labs")
                  and (p.name.lower().endswith(".csv") or p.name.lower().endswith(".csv.gz")))


def copy_to_parquet(con: duckdb.DuckDBPyConnection, source: Path, target: Path) -> int:
    con.execute(
        # The exports' dialect, given rather than sniffed (as the pipeline does): damaged records with too few
        # or too many fields would make the sniffer give up.
        "copy (select * from read_csv($path, header = true, all_varchar = true, delim = ',', quote = '\"', "
        "escape = '\"', null_padding = true, strict_mode = false)) "
        "to $target (format parquet, compression zstd)",
        {"path": str(source), "target": str(target)},
    )
    return con.execute("select count(*) from read_parquet($target)", {"target": str(target)}).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    files = lab_files(args.input)
    if not files:
        raise SystemExit(f"floor: no labs*.csv[.gz] files in {args.input}")
    started = time.perf_counter()
    total = 0
    with duckdb.connect() as con:
        for path in files:
            total += copy_to_parquet(con, path, args.output / (path.name.split(".")[0] + ".parquet"))
    print(f"floor: {total} lab rows from {len(files)} files to Parquet in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
