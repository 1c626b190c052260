"""The report's charts: matplotlib figures rendered as SVG text, to be inlined in the page (the practice pages'
small multiples, one per practice, are written as SVG directly: see practice_trends_chart).

Each function returns one `<svg>` element (no XML prolog), self-contained: no external font, image or
script. Text stays text (svg.fonttype 'none'), so the page is searchable and small. matplotlib is used through
its object API (`Figure`), never pyplot, so no global figure state is kept between runs.
"""
from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from html import escape

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display; set before anything imports a backend

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from b12lab.report.chart_cache import cached  # noqa: E402

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
    return text.replace("<svg ", f"<svg {_chart_attributes(name, label)} ", 1)


def _chart_attributes(name: str, label: str) -> str:
    """Every chart's <svg> attributes for the page: an image, its label, and its name for readers and tests."""
    return f'role="img" aria-label="{escape(label)}" data-chart="{escape(name)}"'


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


@cached
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


@cached
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


@cached
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


# --- quality indicators: funnel plots and rate trends -------------------------------------------------------


@dataclass(frozen=True)
class FunnelPoint:
    practice: str
    denominator: int
    rate: float
    outlier: str | None = None   # "concern" or "better" for a unit outside its 99.8 % limits
    labelled: bool = False       # outside its 95 % limits: named on the plot
    hover: str = ""              # the point's tooltip (SVG <title>); the practice's name when empty


@dataclass(frozen=True)
class FunnelCurve:
    denominator: int
    lower_95: float
    upper_95: float
    lower_998: float
    upper_998: float


@dataclass(frozen=True)
class RatePoint:
    as_of: date
    numerator: int
    denominator: int
    rate: float | None


_OUTLIER_COLOURS = {"concern": COLOURS["deficient"], "better": COLOURS["target"], None: COLOURS["bars"]}


def _percent_axis(axis) -> None:
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value * 100:.0f} %"))


# Where a funnel label may go, in points from its point: right, left, above, below, then the diagonals; the
# same directions further out (with a leader line) when the near ones are taken.
_LABEL_DIRECTIONS = ((6, 0), (-6, 0), (0, 6), (0, -6), (5, 5), (-5, 5), (5, -5), (-5, -5))
_LABEL_DISTANCES = (1.0, 2.2, 3.6, 5.2)
_LABEL_GAP_PX = 2.0        # the least space between two labels (and between a label and a point)
_POINT_RADIUS_PX = 4.0     # a point's marker, as an obstacle for labels


def _overlaps(box, others, gap: float) -> bool:
    return any(box.x0 < other.x1 + gap and other.x0 < box.x1 + gap and
               box.y0 < other.y1 + gap and other.y0 < box.y1 + gap for other in others)


def _text_box(label, renderer):
    """The pixels of a label's text, not of its leader line (an annotation's own extent includes both)."""
    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer)


def _place_labels(fig: Figure, ax, labelled: list[tuple[int, FunnelPoint]], all_points: list[FunnelPoint]) -> None:
    """Name each labelled point where its label overlaps no other label (nor, when it can, another point),
    inside the axes. A label that finds no free place is left out: its point names its practice on hover and
    in the table beside the plot. Needs the final layout (drawn once, then frozen): each label is measured
    once and its candidate places are computed from that box."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    pixels_per_point = fig.dpi / 72
    to_display = ax.transData.transform
    markers = [Bbox.from_extents(x - _POINT_RADIUS_PX, y - _POINT_RADIUS_PX, x + _POINT_RADIUS_PX,
                                 y + _POINT_RADIUS_PX)
               for x, y in (to_display((point.denominator, point.rate)) for point in all_points)]

    def style(point: FunnelPoint) -> dict:
        return {"fontsize": 8, "color": "#111" if point.outlier else "#444",
                "fontweight": "bold" if point.outlier else "normal"}

    def candidates(point: FunnelPoint):
        probe = ax.annotate(point.practice, (0, 0), xycoords="figure pixels", **style(point))
        width, height = probe.get_window_extent(renderer).size
        probe.remove()
        x, y = to_display((point.denominator, point.rate))
        for distance in _LABEL_DISTANCES:
            for dx, dy in _LABEL_DIRECTIONS:
                left = x + dx * distance * pixels_per_point - (0 if dx > 0 else width if dx < 0 else width / 2)
                bottom = y + dy * distance * pixels_per_point - (0 if dy > 0 else height if dy < 0 else height / 2)
                yield distance, dx, dy, Bbox.from_bounds(left, bottom, width, height)

    placed: list = []
    for avoid_points in (True, False):
        for index, point in list(labelled):
            own = to_display((point.denominator, point.rate))
            obstacles = placed + ([m for m in markers if not (m.x0 < own[0] < m.x1 and m.y0 < own[1] < m.y1)]
                                  if avoid_points else [])
            for distance, dx, dy, box in candidates(point):
                if not (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1):
                    continue
                if _overlaps(box, obstacles, _LABEL_GAP_PX):
                    continue
                label = ax.annotate(
                    point.practice, (point.denominator, point.rate), textcoords="offset points",
                    xytext=(dx * distance, dy * distance), annotation_clip=False, **style(point),
                    # a light backing so that a label crossing a limit line stays legible
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
                    ha="left" if dx > 0 else "right" if dx < 0 else "center",
                    va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                    arrowprops=({"arrowstyle": "-", "color": "#8a8f98", "linewidth": 0.6, "shrinkA": 0,
                                 "shrinkB": 3} if distance > 1 else None))
                label.set_gid(f"label-{index}")
                label.set_in_layout(False)
                placed.append(_text_box(label, renderer))
                labelled.remove((index, point))
                break


def funnel_label_boxes(fig: Figure) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The drawn funnel labels of a figure from `funnel_figure`: (text, (x0, y0, x1, y1) in pixels)."""
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    return [(text.get_text(), tuple(float(v) for v in _text_box(text, renderer).extents))
            for text in ax.texts if (text.get_gid() or "").startswith("label-")]


def funnel_figure(title: str, points: list[FunnelPoint], curve: list[FunnelCurve],
                  overall_rate: float | None) -> tuple[Figure, list[FunnelPoint]]:
    """The figure of `funnel_chart`, its labels placed, and the points drawn (point-<i> is the i-th)."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure(6.4, 4.0)
        FigureCanvasAgg(fig)  # a canvas that draws and measures text: labels are placed by their extents
        ax = fig.subplots()
        _title(fig, title)
        shown = [point for point in points if point.denominator > 0]
        if not shown or overall_rate is None:
            _no_data(ax, "No practice has a patient in the denominator")
            return fig, []
        # the axis ends a little past the largest practice (the all-practices total is not a point)
        largest = max(point.denominator for point in shown)
        right = max(largest * 1.08, largest + 1)
        beyond = [c for c in curve if c.denominator >= right][:1]
        drawn = [c for c in curve if c.denominator < right] + beyond
        if drawn:
            # each denominator has its own limit (a count quantile over n): steps centred on the denominator
            xs = [c.denominator for c in drawn]
            colour = COLOURS["under_monitored"]
            ax.fill_between(xs, [c.lower_998 for c in drawn], [c.upper_998 for c in drawn], step="mid",
                            color=colour, alpha=0.06, linewidth=0)
            ax.plot(xs, [c.lower_998 for c in drawn], drawstyle="steps-mid", color=colour, linewidth=1.3,
                    label="99.8 % limits")
            ax.plot(xs, [c.upper_998 for c in drawn], drawstyle="steps-mid", color=colour, linewidth=1.3)
            ax.plot(xs, [c.lower_95 for c in drawn], drawstyle="steps-mid", color=colour, linewidth=1.1,
                    linestyle="--", label="95 % limits")
            ax.plot(xs, [c.upper_95 for c in drawn], drawstyle="steps-mid", color=colour, linewidth=1.1,
                    linestyle="--")
        ax.axhline(overall_rate, color="#333", linewidth=1.2, linestyle=":",
                   label=f"All practices {overall_rate * 100:.1f} %")
        for index, point in enumerate(shown):
            dot = ax.scatter([point.denominator], [point.rate], s=34, zorder=3,
                             color=_OUTLIER_COLOURS[point.outlier], edgecolor="white", linewidth=0.6)
            dot.set_gid(f"point-{index}")
        ax.set_xlim(0, right)
        ax.set_ylim(-0.02, 1.02)
        _percent_axis(ax.yaxis)
        _integer_axis(ax.xaxis)
        ax.set_xlabel("Denominator (patients)")
        ax.set_ylabel("Rate")
        _legend(fig, 3)
        # lay out once, then freeze the layout: labels are placed in the final pixels and must stay there
        fig.canvas.draw()
        fig.set_layout_engine("none")
        labelled = [(index, point) for index, point in enumerate(shown) if point.labelled]
        # outliers first, then the furthest from all practices' rate
        labelled.sort(key=lambda item: (item[1].outlier is None, -abs(item[1].rate - overall_rate)))
        _place_labels(fig, ax, labelled, shown)
        return fig, shown


@cached
def funnel_chart(name: str, title: str, points: list[FunnelPoint], curve: list[FunnelCurve],
                 overall_rate: float | None) -> str:
    """A funnel plot (Spiegelhalter 2005): each practice's rate against its denominator, the overall rate, and
    the 95 % and 99.8 % control limits (from the model funnel_limits, drawn as the steps they are) narrowing as
    the denominator grows. Points outside the 99.8 % limits are coloured (red a concern, green better than
    expected); the points outside the 95 % limits are labelled where no two labels overlap, and every point
    names its practice on hover (an SVG <title>)."""
    fig, drawn = funnel_figure(title, points, curve, overall_rate)
    svg = _svg(fig, name, title)
    for index, point in enumerate(drawn):
        hover = escape(point.hover or point.practice)
        svg = svg.replace(f'<g id="{name}-point-{index}">', f'<g id="{name}-point-{index}"><title>{hover}</title>', 1)
    return svg


# The rate trends and the practice pages' small multiples are drawn as SVG here, not with matplotlib: they are
# lines, bars and text on fixed axes, which need no layout engine. A report has a page per practice, and
# matplotlib's layout and rendering of a figure of seven panels took about 0.6 s a practice (half of the
# sample's report, a minute a night for a hundred practices), and 0.2 s for each measure's trend; these take
# milliseconds.
_SMALL_FONT = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"
_PANEL_WIDTH, _PANEL_HEIGHT, _TITLE_BAND, _LEGEND_BAND = 240.0, 176.0, 30.0, 30.0
_PLOT_LEFT, _PLOT_RIGHT, _PLOT_TOP, _PLOT_BOTTOM = 50.0, 24.0, 26.0, 40.0  # margins inside a panel


def _text(x: float, y: float, text: str, size: float, anchor: str = "start", colour: str = "#222",
          weight: str = "normal", rotate: bool = False) -> str:
    turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{colour}" '
            f'font-weight="{weight}"{turn}>{escape(text)}</text>')


def _rate_label(point: RatePoint) -> str:
    if point.rate is None:
        return f"{point.as_of:%b %Y}: no patient in the denominator"
    return f"{point.as_of:%b %Y}: {point.rate * 100:.0f} % ({point.numerator:,} of {point.denominator:,})"


def _rate_line(points: list[RatePoint], x_of: Callable[[int], float], y_of: Callable[[float], float],
               css_class: str, who: str, stroke_width: float, radius: float) -> list[str]:
    """A rate's monthly line, broken where a month has no rate, with a point per month naming `who` and its
    numbers on hover (an SVG <title>)."""
    line = [(x_of(i), y_of(p.rate)) if p.rate is not None else None for i, p in enumerate(points)]
    parts = [f'<path class="{css_class}" d="{_line_path(line)}" stroke="{COLOURS["under_monitored"]}" '
             f'stroke-width="{stroke_width}" fill="none" stroke-linejoin="round"/>']
    for point, xy in zip(points, line):
        if xy is not None:
            parts.append(f'<circle cx="{xy[0]:.1f}" cy="{xy[1]:.1f}" r="{radius}" fill="{COLOURS["under_monitored"]}">'
                         f'<title>{escape(who)}, {escape(_rate_label(point))}</title></circle>')
    return parts


def _line_path(coordinates: list[tuple[float, float] | None]) -> str:
    """An SVG path through the points, broken where a point is missing (a month without a rate)."""
    parts, pen_down = [], False
    for point in coordinates:
        if point is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{point[0]:.1f} {point[1]:.1f}")
        pen_down = True
    return " ".join(parts)


@cached
def rate_trend_chart(name: str, title: str, points: list[RatePoint]) -> str:
    """The monthly trend of a measure for all practices: its rate as a line (left axis, each month's numbers on
    hover) and its denominator as bars (right axis). Drawn as SVG directly, as the practice pages' panels are
    (below): a line and bars need no layout engine, and matplotlib took about 0.2 s for each of the seven."""
    width, height = 461.0, 245.0
    x0, x1, y_top, y0 = 58.0, width - 62.0, 34.0, height - 62.0
    parts = [_text(7, 18, title, 12, weight="bold")]
    if not points:
        parts.append(_text((x0 + x1) / 2, (y0 + y_top) / 2, "No trend computed", 10, "middle", "#5f6b7a"))
        return _svg_element(name, title, width, height, parts)
    top_denominator = max(1, max(point.denominator for point in points)) * 1.15
    denominator_step = _integer_step(top_denominator)

    def x_of(index: int) -> float:  # as matplotlib's xlim(-0.6, n - 0.4)
        return x0 + (index + 0.6) / (len(points) + 0.2) * (x1 - x0)

    def y_of(rate: float) -> float:
        return y0 - (rate + 0.02) / 1.04 * (y0 - y_top)

    for rate in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        y = y_of(rate)
        parts.append(f'<path d="M{x0:.1f} {y:.1f} H{x1:.1f}" stroke="#e3e6ea" stroke-width="0.8"/>')
        parts.append(_text(x0 - 4, y + 3, f"{rate * 100:.0f} %", 9, "end", "#444"))
    bar_width = 0.8 * (x1 - x0) / (len(points) + 0.2)
    for index, point in enumerate(points):
        bar_height = point.denominator / top_denominator * (y0 - y_top)
        parts.append(f'<rect x="{x_of(index) - bar_width / 2:.1f}" y="{y0 - bar_height:.1f}" width="{bar_width:.1f}" '
                     f'height="{bar_height:.1f}" fill="{COLOURS["bars"]}" fill-opacity="0.18"/>')
    value = 0
    while value <= top_denominator:
        y = y0 - value / top_denominator * (y0 - y_top)
        parts.append(_text(x1 + 4, y + 3, f"{value:,}", 9, "start", "#444"))
        value += denominator_step
    parts.append(f'<path d="M{x0:.1f} {y_top:.1f} V{y0:.1f} H{x1:.1f} V{y_top:.1f}" stroke="#8a8f98" fill="none"/>')
    step = max(1, math.ceil(len(points) / 8))
    for index in list(range(len(points)))[::-1][::step][::-1]:
        x = x_of(index)
        parts.append(f'<path d="M{x:.1f} {y0:.1f} v3.5" stroke="#8a8f98"/>')
        parts.append(_text(x, y0 + 14, f"{points[index].as_of:%b %Y}", 8, "middle", "#444"))
    parts.append(_text((x0 + x1) / 2, y0 + 30, "Month end (the last point is the as-of date)", 10, "middle"))
    parts.append(_text(16, (y0 + y_top) / 2, "Rate", 10, "middle", rotate=True))
    parts.append(_text(width - 8, (y0 + y_top) / 2, "Denominator (patients)", 10, "middle", rotate=True))
    parts += _rate_line(points, x_of, y_of, "rate", "All practices", stroke_width=2, radius=2.2)
    if all(point.rate is None for point in points):
        parts.append(_text((x0 + x1) / 2, (y0 + y_top) / 2, "No patient in the denominator", 10, "middle", "#5f6b7a"))
    legend_y = height - 10
    parts += [
        f'<path d="M{width / 2 - 150:.1f} {legend_y:.1f} h24" stroke="{COLOURS["under_monitored"]}" stroke-width="2"/>',
        _text(width / 2 - 120, legend_y + 3.5, "All practices: rate", 9),
        f'<rect x="{width / 2 + 10:.1f}" y="{legend_y - 5:.1f}" width="24" height="10" fill="{COLOURS["bars"]}" '
        f'fill-opacity="0.18"/>',
        _text(width / 2 + 40, legend_y + 3.5, "Denominator (right axis)", 9),
    ]
    return _svg_element(name, title, width, height, parts)


def _integer_step(top: float) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving about five ticks from 0 to `top`."""
    raw = max(1.0, top / 5)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(multiple * power for multiple in (1, 2, 5, 10) if multiple * power >= raw))


def _svg_element(name: str, title: str, width: float, height: float, parts: list[str]) -> str:
    """A chart drawn here as one <svg> element, labelled as the matplotlib ones are (_svg)."""
    return (f'<svg {_chart_attributes(name, title)} xmlns="http://www.w3.org/2000/svg" '
            f'width="{width:.0f}pt" height="{height:.0f}pt" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'font-family="{_SMALL_FONT}">'
            f'<rect width="100%" height="100%" fill="white"/>' + "".join(parts) + "</svg>")


def _rate_panel(left: float, top: float, label: str, points: list[RatePoint], comparison: list[RatePoint],
                practice: str) -> list[str]:
    """One measure's panel: the practice's monthly rate (line, points with their numbers on hover) against all
    practices' (dotted), on a 0-100 % axis, the first and last month named."""
    x0, x1 = left + _PLOT_LEFT, left + _PANEL_WIDTH - _PLOT_RIGHT
    y0, y1 = top + _PANEL_HEIGHT - _PLOT_BOTTOM, top + _PLOT_TOP
    parts = [_text(left + 8, top + 14, label, 10)]
    if not points:
        parts.append(_text((x0 + x1) / 2, (y0 + y1) / 2, "No trend computed", 9, "middle", "#5f6b7a"))
        return parts

    def y_of(rate: float) -> float:
        return y0 - (rate + 0.02) / 1.04 * (y0 - y1)

    def x_of(index: int) -> float:  # as matplotlib's xlim(-0.6, n - 0.4)
        return x0 + (index + 0.6) / (len(points) + 0.2) * (x1 - x0)

    for rate in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(rate)
        parts.append(f'<path d="M{x0:.1f} {y:.1f} H{x1:.1f}" stroke="#e3e6ea" stroke-width="0.8"/>')
        parts.append(_text(x0 - 4, y + 3, f"{rate * 100:.0f} %", 8, "end", "#444"))
    parts.append(f'<path d="M{x0:.1f} {y1 - 4:.1f} V{y0:.1f} H{x1:.1f}" stroke="#8a8f98" fill="none"/>')
    for index in sorted({0, len(points) - 1}):
        x = x_of(index)
        parts.append(f'<path d="M{x:.1f} {y0:.1f} v3.5" stroke="#8a8f98"/>')
        parts.append(_text(x, y0 + 13, f"{points[index].as_of:%b %Y}", 8, "middle", "#444"))
    parts.append(_text((x0 + x1) / 2, y0 + 27, "Month end", 8, "middle", "#444"))
    parts.append(_text(left + 12, (y0 + y1) / 2, "Rate", 8, "middle", "#444", rotate=True))
    by_date = {point.as_of: point.rate for point in comparison}
    overall = [(x_of(i), y_of(by_date[p.as_of])) if by_date.get(p.as_of) is not None else None
               for i, p in enumerate(points)]
    parts.append(f'<path class="all-practices-rate" d="{_line_path(overall)}" stroke="#333" stroke-width="1.2" '
                 f'stroke-dasharray="1.5 2.5" fill="none"/>')
    if all(point.rate is None for point in points):  # an empty panel says why rather than looking broken
        parts.append(_text((x0 + x1) / 2, (y0 + y1) / 2, "No patient in the denominator", 8, "middle", "#5f6b7a"))
    return parts + _rate_line(points, x_of, y_of, "practice-rate", practice, stroke_width=1.8, radius=2)


@cached
def practice_trends_chart(name: str, title: str, panels: list[tuple[str, list[RatePoint], list[RatePoint]]],
                          practice: str) -> str:
    """Small multiples, one panel per measure: the practice's monthly rate (line) against all practices'
    (dotted), three panels to a row, the legend under them. One SVG for every measure of a practice page,
    drawn directly (no matplotlib), so that a page per practice stays cheap for hundreds of practices; the
    denominators are in the tables beside it, and each month's numbers on hover."""
    columns = 3
    rows = max(1, math.ceil(len(panels) / columns))
    width = _PANEL_WIDTH * columns
    height = _TITLE_BAND + _PANEL_HEIGHT * rows + _LEGEND_BAND
    parts = [_text(7, 18, title, 12, weight="bold")]
    for index, (label, points, comparison) in enumerate(panels):
        row, column = divmod(index, columns)
        parts += _rate_panel(column * _PANEL_WIDTH, _TITLE_BAND + row * _PANEL_HEIGHT, label, points, comparison,
                             practice)
    # the legend centred under the panels; a text's width estimated at 0.6 em a character (no font metrics here)
    legend_y, sample, gap = height - _LEGEND_BAND / 2, 24.0, 6.0
    practice_width = 0.6 * 9 * len(practice)
    start = max(4.0, (width - (sample + gap + practice_width + 30 + sample + gap + 0.6 * 9 * 13)) / 2)
    after = start + sample + gap + practice_width + 30
    parts += [
        f'<path d="M{start:.1f} {legend_y:.1f} h{sample:.0f}" stroke="{COLOURS["under_monitored"]}" '
        f'stroke-width="1.8"/>',
        _text(start + sample + gap, legend_y + 3.5, practice, 9),
        f'<path d="M{after:.1f} {legend_y:.1f} h{sample:.0f}" stroke="#333" stroke-width="1.2" '
        f'stroke-dasharray="1.5 2.5"/>',
        _text(after + sample + gap, legend_y + 3.5, "All practices", 9),
    ]
    return _svg_element(name, title, width, height, parts)


# --- does treatment work? -----------------------------------------------------------------------------------

# One colour and marker per route class of treatment_response, and where its "n=" labels go (points right of it,
# and the horizontal alignment), so that the lines' labels at one window do not overlap.
ROUTE_STYLES = {
    "intramuscular": ("#2166ac", "o", -7, "right"),
    "oral": ("#d97706", "s", 7, "left"),
    "unknown": ("#6b7280", "^", 7, "left"),
}


@dataclass(frozen=True)
class ResponseShare:
    """One route class's share in one follow-up window (treatment_response_summary), with its Wilson 95 %
    interval; share None: nobody with a result."""
    window: str
    route_class: str
    share: float | None
    lower_95: float | None
    upper_95: float | None
    count: int
    of: int


@cached
def treatment_response_chart(name: str, windows: list[str], panels: list[tuple[str, list[ResponseShare]]],
                             reference: tuple[str, str, float, str] | None) -> str:
    """Small multiples, one panel per share (no longer deficient, at target): the share of each follow-up
    window, one line per route class, with its Wilson 95 % interval as error bars. `reference`
    (panel title, window, share, label) is a published figure drawn as a labelled point, not data."""
    title = "Does treatment work? Shares by window after the treatment start"
    with matplotlib.rc_context(_STYLE):
        fig = _figure(10, 3.9)
        axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
        fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold")
        xs = {window: index for index, window in enumerate(windows)}
        for ax, (panel_title, shares) in zip(axes, panels):
            ax.set_title(panel_title, fontsize=10, loc="left")
            drawn = [s for s in shares if s.share is not None]
            for route_class, (colour, marker, label_dx, label_align) in ROUTE_STYLES.items():
                line = [s for s in drawn if s.route_class == route_class]
                if not line:
                    continue
                offset = (list(ROUTE_STYLES).index(route_class) - 1) * 0.08  # intervals side by side
                x = [xs[s.window] + offset for s in line]
                y = [s.share for s in line]
                errors = [[max(0.0, s.share - s.lower_95) for s in line],
                          [max(0.0, s.upper_95 - s.share) for s in line]]
                ax.errorbar(x, y, yerr=errors, color=colour, marker=marker, markersize=5, linewidth=1.8,
                            capsize=3, elinewidth=1, label=f"{route_class}")
                for xi, s in zip(x, line):
                    ax.annotate(f"n={s.of}", (xi, s.share), textcoords="offset points", xytext=(label_dx, -11),
                                ha=label_align, fontsize=7, color=colour)
            if reference and reference[0] == panel_title and reference[1] in xs:
                _, window, share, label = reference
                ax.plot([xs[window]], [share], marker="*", markersize=13, color="#111", linestyle="none",
                        label=label)
                ax.annotate(label, (xs[window], share), textcoords="offset points", xytext=(12, -16), fontsize=8,
                            color="#111")
            if not drawn:
                ax.text(0.5, 0.5, "No follow-up result yet", ha="center", va="center", transform=ax.transAxes,
                        color="#5f6b7a")
            ax.set_xticks(list(xs.values()), list(xs))
            ax.set_xlim(-0.4, len(windows) - 0.6)
            ax.set_ylim(-0.02, 1.05)
            _percent_axis(ax.yaxis)
            ax.set_xlabel("Follow-up window after the treatment start")
            ax.set_ylabel("Share of those with a B12 result")
        handles, labels = [], []
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), handlelength=1.8,
                       columnspacing=1.8)
        return _svg(fig, name, title)
