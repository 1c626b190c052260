"""Fit the distributions that `b12lab/synth/csv_exports.py` hard-codes, from the real NHANES files.

Run from the project root:

    .venv/bin/python benchmarks/calibrate_synth.py

It reads tests/data/nhanes/ (the NHANES files kept with the tests, see their README.md; override with
B12LAB_REFERENCE_DATA=/path/to/dir, a folder holding nhanes/) and prints, per analyte, the sample size, the
log-normal fit (mean and sd of the natural log), a robust log sd (IQR / 1.349), the shares that matter for the
clinical rules, and a quantile table; and, for MMA and homocysteine, a hinge regression on log B12 with its
residual quantiles. The printed QUANTILE / REGRESSION blocks are pasted into synth.py by hand: the NHANES files
are test data, not part of the installed package, so the generator must not read them at run time.

NHANES codes "no result" as a blank row; those rows and non-positive values are dropped before fitting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from b12lab.common.settings import load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DATA = load_settings().reference_data
NHANES = REFERENCE_DATA / "nhanes" if REFERENCE_DATA else PROJECT_ROOT / "tests" / "data" / "nhanes"

# Probability grid of the quantile tables synth.py samples from (inverse-CDF sampling, interpolated in log
# space). 0 and 1 are the observed min and max, so the real extreme tail (B12 > 14,000 pmol/L) is kept.
QUANTILE_PROBS = (0.0, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5,
                  0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 1.0)

# Below this B12 (pmol/L) MMA and homocysteine rise faster than above it (the "hinge" of the regression).
HINGE_B12_PMOL_L = 250.0

# (file, column, factor to the canonical unit)
B12_SOURCES = [("B12_D.csv", "LBDB12SI", 1.0), ("L06NB_C.csv", "LBDB12SI", 1.0), ("VITB12_H.csv", "LBDB12SI", 1.0)]
MMA_SOURCES = [("L06MH_C.csv", "LBXMMA", 1.0), ("MMA_G.csv", "LBXMMASI", 0.001), ("MMA_H.csv", "LBXMMASI", 0.001)]
HCY_SOURCES = [("L06MH_C.csv", "LBXHCY", 1.0), ("HCY_D.csv", "LBXHCY", 1.0)]
FOLATE_SOURCES = [("L06NB_C.csv", "LBDFOLSI", 1.0), ("FOLATE_D.csv", "LBDFOLSI", 1.0)]

# Same participants (SEQN) measured for B12 and for the dependent analyte in the same cycle.
MMA_PAIRS = [(("L06NB_C.csv", "LBDB12SI", 1.0), ("L06MH_C.csv", "LBXMMA", 1.0)),
             (("VITB12_H.csv", "LBDB12SI", 1.0), ("MMA_H.csv", "LBXMMASI", 0.001))]
HCY_PAIRS = [(("L06NB_C.csv", "LBDB12SI", 1.0), ("L06MH_C.csv", "LBXHCY", 1.0)),
             (("B12_D.csv", "LBDB12SI", 1.0), ("HCY_D.csv", "LBXHCY", 1.0))]


def read_positive(file: str, column: str, factor: float) -> pd.Series:
    """One NHANES column, indexed by SEQN, blanks and non-positive values dropped, in the canonical unit."""
    frame = pd.read_csv(NHANES / file, usecols=["SEQN", column]).set_index("SEQN")[column]
    return frame[frame > 0].dropna() * factor


def pooled(sources) -> tuple[np.ndarray, list[str]]:
    parts, notes = [], []
    for file, column, factor in sources:
        values = read_positive(file, column, factor)
        parts.append(values.to_numpy())
        notes.append(f"{file}:{column} n={len(values)}")
    return np.concatenate(parts), notes


def describe(name: str, unit: str, values: np.ndarray, notes: list[str],
             cut_offs: dict[str, Callable[[np.ndarray], np.ndarray]]) -> None:
    logs = np.log(values)
    q25, q50, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    print(f"== {name} ({unit}) from {', '.join(notes)}; pooled n={len(values)}")
    print(f"   log-normal fit: mean(log)={logs.mean():.4f} sd(log)={logs.std(ddof=1):.4f}"
          f"  -> geometric mean {np.exp(logs.mean()):.2f}")
    print(f"   median={q50:.3f} IQR={q25:.3f}-{q75:.3f} robust sd(log)=ln(Q3/Q1)/1.349="
          f"{np.log(q75 / q25) / 1.349:.4f}")
    for label, cut in cut_offs.items():
        print(f"   share {label}: {np.mean(cut(values)):.4f}")
    quantiles = np.quantile(logs, QUANTILE_PROBS)
    print(f"   {name.upper()}_LOG_QUANTILES = ({', '.join(f'{q:.4f}' for q in quantiles)})")


def paired(pairs) -> tuple[np.ndarray, np.ndarray, list[str]]:
    xs, ys, notes = [], [], []
    for (x_file, x_col, x_factor), (y_file, y_col, y_factor) in pairs:
        both = pd.concat([read_positive(x_file, x_col, x_factor).rename("x"),
                          read_positive(y_file, y_col, y_factor).rename("y")], axis=1, join="inner")
        xs.append(both["x"].to_numpy())
        ys.append(both["y"].to_numpy())
        notes.append(f"{x_file}:{x_col} x {y_file}:{y_col} n={len(both)}")
    return np.concatenate(xs), np.concatenate(ys), notes


def hinge_regression(name: str, pairs, elevated_above: float) -> None:
    """log(y) = a + b*log(B12) + c*max(0, log(HINGE/B12)) + residual; residuals summarised as quantiles."""
    b12, y, notes = paired(pairs)
    log_b12 = np.log(b12)
    design = np.column_stack([np.ones_like(log_b12), log_b12, np.maximum(0.0, np.log(HINGE_B12_PMOL_L) - log_b12)])
    coefficients, *_ = np.linalg.lstsq(design, np.log(y), rcond=None)
    residuals = np.log(y) - design @ coefficients
    print(f"== {name} on B12 from {', '.join(notes)}; pooled n={len(y)}")
    print(f"   corr(log B12, log {name})={np.corrcoef(log_b12, np.log(y))[0, 1]:.4f}")
    print(f"   {name.upper()}_ON_B12 = (intercept={coefficients[0]:.4f}, slope={coefficients[1]:.4f}, "
          f"below_hinge_slope={coefficients[2]:.4f}, hinge_pmol_l={HINGE_B12_PMOL_L})"
          f"  residual sd={residuals.std():.4f}")
    quantiles = np.quantile(residuals, QUANTILE_PROBS)
    print(f"   {name.upper()}_RESIDUAL_QUANTILES = ({', '.join(f'{q:.4f}' for q in quantiles)})")
    for low, high in [(0, 150), (150, 258), (258, 1e9)]:
        in_band = (b12 >= low) & (b12 < high)
        print(f"   B12 {low}-{high:g}: n={in_band.sum()} median {name}={np.median(y[in_band]):.3f}"
              f" share>{elevated_above:g}={np.mean(y[in_band] > elevated_above):.3f}")


def main() -> None:
    print(f"QUANTILE_PROBS = {QUANTILE_PROBS}")
    b12, notes = pooled(B12_SOURCES)
    describe("b12", "pmol/L", b12, notes,
             {"<150 (deficient)": lambda v: v < 150, "150-258 (borderline)": lambda v: (v >= 150) & (v <= 258),
              ">1476 (above assay range)": lambda v: v > 1476})
    mma, notes = pooled(MMA_SOURCES)
    describe("mma", "umol/L", mma, notes, {">0.40": lambda v: v > 0.40, ">0.37": lambda v: v > 0.37})
    hcy, notes = pooled(HCY_SOURCES)
    describe("hcy", "umol/L", hcy, notes, {">=10": lambda v: v >= 10, ">15": lambda v: v > 15})
    folate, notes = pooled(FOLATE_SOURCES)
    describe("folate", "nmol/L", folate, notes, {"<7 (low)": lambda v: v < 7})
    hinge_regression("mma", MMA_PAIRS, elevated_above=0.40)
    hinge_regression("hcy", HCY_PAIRS, elevated_above=15.0)


if __name__ == "__main__":
    main()
