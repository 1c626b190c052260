"""The report's charts: matplotlib figures rendered as SVG text, to be inlined in the page.

Each function returns one `<svg>` element (no XML prolog), self-contained: no external font, image or
script. Text stays text (svg.fonttype 'none'), so the page is searchable and small. matplotlib is used through
its object API (`Figure`), never pyplot, so no global figure state is kept between runs.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from datetime import date
from html import escape

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display; set before anything imports a backend

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

# One colour per cohort, the same in every chart and in the page's CSS.
COLOURS = {
    "deficient": "#b2182b",
    "borderline": "#d97706",
    "under_monitored": "#2166ac",
    "flagged": "#6a3d9a",
    "target": "#1a7f37",
    "bars": "#5b7083",
}
_STYLE = {
    "svg.fonttype": "none",          # text as <text>, not paths
    "text.parse_math": False,        # a practice called "$5 Clinic" is text, not TeX
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#8a8f98",
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e3e6ea",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "legend.fontsize": 9,
}


@dataclass(frozen=True)
class PracticeBars:
    practice: str
    deficient: int
    borderline: int
    under_monitored: int
    flagged: int


@dataclass(frozen=True)
class TrendPoint:
    month_end: date
    deficient: int
    borderline: int
    under_monitored: int


@dataclass(frozen=True)
class B12Thresholds:
    deficient_below: float
    borderline_max: float
    target_above: float


def _svg(fig: Figure, name: str, label: str) -> str:
    """The figure as an inline <svg>, ids salted per chart (several SVGs share one page), with a label."""
    buffer = io.StringIO()
    with matplotlib.rc_context({**_STYLE, "svg.hashsalt": f"b12lab-{name}"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    # ids must be unique across the page: prefix each with the chart name
    text = re.sub(r'id="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r'url\(#([^)]+)\)', rf'url(#{name}-\1)', text)
    text = re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{name}-\1"', text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" data-chart="{escape(name)}" ', 1)


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def _no_data(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#5f6b7a")
    ax.set_xticks([])
    ax.set_yticks([])


def _title(fig: Figure, title: str) -> None:
    fig.axes[0].set_title(title, loc="left", pad=10)


def _legend(fig: Figure, ncol: int) -> None:
    """The legend in one row under the plot, where it never hides data."""
    fig.legend(loc="outside lower center", ncol=ncol, handlelength=1.8, columnspacing=1.8)


def _integer_axis(axis) -> None:
    axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{int(value):,}"))


def practice_chart(rows: list[PracticeBars], max_practices: int = 30) -> str:
    """Grouped horizontal bars: patients in each cohort per practice (largest gap first)."""
    shown = sorted(rows, key=lambda r: (-(r.deficient + r.borderline + r.under_monitored + r.flagged), r.practice))
    shown = shown[:max_practices]
    height = max(3.2, 0.9 + 0.55 * len(shown))
    with matplotlib.rc_context(_STYLE):
        fig = _figure(10, height)
        ax = fig.subplots()
        title = "Patients needing action, by practice"
        if len(rows) > len(shown):
            title += f" (the {len(shown)} practices with most patients of {len(rows)})"
        _title(fig, title)
        if not shown:
            _no_data(ax, "No practice has a patient in any cohort")
        else:
            series = (("deficient", "Deficient"), ("borderline", "Borderline"),
                      ("under_monitored", "Under-monitored"), ("flagged", "Safety / case-finding flag"))
            bar = 0.8 / len(series)
            positions = list(range(len(shown)))
            for index, (key, label) in enumerate(series):
                values = [getattr(row, key) for row in shown]
                ys = [p - 0.4 + bar * (index + 0.5) for p in positions]
                ax.barh(ys, values, height=bar * 0.92, color=COLOURS["flagged" if key == "flagged" else key],
                        label=label)
                for y, value in zip(ys, values):
                    if value:
                        ax.text(value, y, f" {value:,}", va="center", fontsize=8, color="#333")
            ax.set_yticks(positions, [row.practice for row in shown])
            ax.invert_yaxis()
            ax.grid(axis="y", visible=False)
            _integer_axis(ax.xaxis)
            ax.set_xlim(0, max(1, max(max(r.deficient, r.borderline, r.under_monitored, r.flagged)
                                      for r in shown)) * 1.12)
            ax.set_xlabel("Patients (count)")
            _legend(fig, 4)
        return _svg(fig, "practices", title)


def trend_chart(points: list[TrendPoint]) -> str:
    """Lines: deficient, borderline and under-monitored patients as of each month end."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure(10, 3.8)
        ax = fig.subplots()
        title = f"Patients by cohort at each month end, last {len(points)} months"
        _title(fig, title)
        if not points:
            _no_data(ax, "No trend computed")
        else:
            xs = list(range(len(points)))
            for key, label, marker in (("deficient", "Deficient", "o"), ("borderline", "Borderline", "s"),
                                       ("under_monitored", "Under-monitored", "^")):
                ax.plot(xs, [getattr(p, key) for p in points], marker=marker, markersize=3.5, linewidth=2,
                        color=COLOURS[key], label=label)
            step = max(1, math.ceil(len(points) / 12))
            ticks = xs[::-1][::step][::-1]
            ax.set_xticks(ticks, [points[i].month_end.strftime("%b %Y") for i in ticks], rotation=0, fontsize=8)
            ax.set_xlim(-0.5, len(points) - 0.5)
            _integer_axis(ax.yaxis)
            ax.set_ylim(bottom=0)
            ax.set_xlabel("Month end (the last point is the as-of date)")
            ax.set_ylabel("Patients (count)")
            _legend(fig, 3)
        return _svg(fig, "trend", title)


def _number(value: float) -> str:
    return f"{value:,.10g}"


def b12_histogram(values_pmol_l, thresholds: B12Thresholds) -> str:
    """Histogram of counted B12 results in pmol/L (a sequence or float array) on a log axis, with the rules'
    thresholds drawn."""
    values = np.asarray(values_pmol_l, dtype=float)
    with matplotlib.rc_context(_STYLE):
        fig = _figure(10, 3.8)
        ax = fig.subplots()
        title = f"Serum B12 results (n = {len(values):,})"
        _title(fig, title)
        positive = values[values > 0]
        if not positive.size:
            _no_data(ax, "No counted B12 result")
        else:
            low = min(float(positive.min()), thresholds.deficient_below) * 0.9
            high = max(float(positive.max()), thresholds.target_above) * 1.1
            edges_count = 48
            ratio = (high / low) ** (1 / edges_count)
            edges = [low * ratio ** i for i in range(edges_count + 1)]
            ax.set_xscale("log")
            ax.axvspan(low, thresholds.deficient_below, color=COLOURS["deficient"], alpha=0.07, linewidth=0)
            ax.axvspan(thresholds.deficient_below, thresholds.borderline_max, color=COLOURS["borderline"],
                       alpha=0.09, linewidth=0)
            ax.hist(positive, bins=edges, color=COLOURS["bars"], edgecolor="white", linewidth=0.5,
                    label="Results")
            ax.axvline(thresholds.deficient_below, color=COLOURS["deficient"], linestyle="--", linewidth=1.6,
                       label=f"Deficient below {_number(thresholds.deficient_below)} pmol/L")
            ax.axvline(thresholds.borderline_max, color=COLOURS["borderline"], linestyle="--", linewidth=1.6,
                       label=f"Borderline up to {_number(thresholds.borderline_max)} pmol/L")
            ax.axvline(thresholds.target_above, color=COLOURS["target"], linestyle=":", linewidth=1.8,
                       label=f"Treatment target above {_number(thresholds.target_above)} pmol/L")
            ax.set_xlim(low, high)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(
                lambda value, _: f"{value:,.0f}" if f"{value:.0e}"[0] in "25" else ""))
            ax.tick_params(axis="x", which="both", labelsize=9)
            _integer_axis(ax.yaxis)
            ax.set_xlabel("Serum B12 (pmol/L, log scale)")
            ax.set_ylabel("Results (count)")
            _legend(fig, 4)
        return _svg(fig, "b12-distribution", title)
