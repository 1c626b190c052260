"""What an analyst would write without b12lab: plain pandas, no tricks.

    python benchmarks/pandas_baseline.py --input DIR --output DIR

Reads every labs*.csv / labs*.csv.gz file, keeps the B12 results, converts pg/mL and ng/L to pmol/L
(x 0.7378), takes each patient's latest B12 and classifies it (deficient < 150 pmol/L, borderline <= 258,
else normal), and writes OUTPUT/lab_results.parquet (every lab row, with value_pmol_l on the B12 rows) and
OUTPUT/b12_status.parquet (one row per patient).

It does much less than the pipeline (no row accounting, quarantine, duplicates, other analytes, rules,
registries or validation): it is the yardstick for "why not just pandas".
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

B12_LOINC = ["14685-2", "2132-9"]
B12_LOCAL_CODES = ["B12", "VITB12"]
TO_PMOL_L = {"pmol/l": 1.0, "pg/ml": 0.7378, "ng/l": 0.7378}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    frames = []
    for path in sorted(args.input.glob("labs*.csv*")):
        frame = pd.read_csv(path)
        frame["source_file"] = path.name
        frames.append(frame)
    labs = pd.concat(frames, ignore_index=True)

    is_b12 = labs["loinc"].isin(B12_LOINC) | labs["local_code"].str.upper().isin(B12_LOCAL_CODES)
    is_final = labs["status"].isin(["F", "C"])
    number = pd.to_numeric(labs["result_value"].str.lstrip("<>="), errors="coerce")
    factor = labs["unit"].str.lower().map(TO_PMOL_L)
    labs["value_pmol_l"] = (number * factor).where(is_b12)

    b12 = labs[is_b12 & is_final & labs["value_pmol_l"].notna()].copy()
    b12["collected_at"] = pd.to_datetime(b12["collected_at"], format="mixed", utc=True)
    latest = b12.sort_values("collected_at").groupby("patient_id").tail(1)
    latest["status"] = np.select(
        [latest["value_pmol_l"] < 150, latest["value_pmol_l"] <= 258], ["deficient", "borderline"], "normal"
    )
    status = latest[["patient_id", "collected_at", "value_pmol_l", "status"]].sort_values("patient_id")

    labs.to_parquet(args.output / "lab_results.parquet", index=False)
    status.to_parquet(args.output / "b12_status.parquet", index=False)
    counts = status["status"].value_counts().to_dict()
    print(f"pandas: {len(labs)} lab rows, {len(status)} patients with a B12: {counts}")


if __name__ == "__main__":
    main()
