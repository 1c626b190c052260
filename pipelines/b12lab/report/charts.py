"""The report's charts, each written here as one `<svg>` element (no XML prolog) to be inlined in the page.

Every chart is self-contained: no external font, image or script. Text stays text, so the page is searchable
and small, and every point or bar names its numbers on hover (an SVG <title>). Charts are lines, bars and text
on fixed axes: they need no plotting library. Drawing them with matplotlib, its layout engine and its text
measuring took about 2.5 s of the sample's report and half a second to import; these take milliseconds.
"""
from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from html import escape

import numpy as np

from b12lab.report.chart_cache import cached

# One colour per cohort, the same in every chart and in the page's CSS.
COLOURS = {
    "deficient": "#b2182b",
    "borderline": "#d97706",
    "under_monitored": "#2166ac",
    "flagged": "#6a3d9a",
    "target": "#1a7f37",
    "bars": "#5b7083",
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


def _chart_attributes(name: str, label: str) -> str:
    """Every chart's <svg> attributes for the page: an image, its label, and its name for readers and tests."""
    return f'role="img" aria-label="{escape(label)}" data-chart="{escape(name)}"'


# --- drawing helpers: every chart is SVG written here ---------------------------------------------------------

_WIDE = 720.0               # the width of the main page's full-width charts, in points
_AXIS, _GRID = "#8a8f98", "#e3e6ea"
_MARKERS = {"o": "circle", "s": "square", "^": "triangle", "*": "star"}


def _path_element(d: str, stroke: str, width: float = 1.0, extra: str = "") -> str:
    return f'<path d="{d}" stroke="{stroke}" stroke-width="{width}" fill="none"{extra}/>'


def _marker(shape: str, x: float, y: float, size: float, colour: str, title: str = "") -> str:
    """A point's marker centred on (x, y), `size` points across; `title` its text on hover."""
    r = size / 2
    hover = f"<title>{escape(title)}</title>" if title else ""
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}">{hover}</circle>'
    if shape == "square":
        d = f"M{x - r:.1f} {y - r:.1f} h{size:.1f} v{size:.1f} h{-size:.1f} Z"
    elif shape == "triangle":
        d = f"M{x:.1f} {y - r * 1.15:.1f} L{x + r * 1.1:.1f} {y + r * 0.85:.1f} L{x - r * 1.1:.1f} {y + r * 0.85:.1f} Z"
    else:  # a five-pointed star
        corners = [(x + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
                    y - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5)) for i in range(10)]
        d = "M" + " L".join(f"{cx:.1f} {cy:.1f}" for cx, cy in corners) + " Z"
    return f'<path d="{d}" fill="{colour}">{hover}</path>'


def _legend_row(entries: list[tuple[Callable[[float, float], str], str]], width: float, y: float) -> list[str]:
    """A legend in one row centred under a chart, where it never hides data: each entry a 24-point sample
    (drawn from its left end on the row's middle line) and its label."""
    sample, gap, spacing, size = 24.0, 6.0, 22.0, 9
    total = sum(sample + gap + text_width(label, size) for _, label in entries) + spacing * (len(entries) - 1)
    x, parts = max(4.0, (width - total) / 2), []
    for draw, label in entries:
        parts += [draw(x, y), _text(x + sample + gap, y + 3.5, label, size)]
        x += sample + gap + text_width(label, size) + spacing
    return parts


def _line_sample(stroke: str) -> Callable[[float, float], str]:
    return lambda x, y: f'<path d="M{x:.1f} {y:.1f} h24" {stroke}/>'


def _box_sample(colour: str, opacity: float = 1.0) -> Callable[[float, float], str]:
    return lambda x, y: (f'<rect x="{x + 4:.1f}" y="{y - 5:.1f}" width="16" height="10" fill="{colour}" '
                         f'fill-opacity="{opacity}"/>')


def _marker_line_sample(shape: str, colour: str) -> Callable[[float, float], str]:
    return lambda x, y: (f'<path d="M{x:.1f} {y:.1f} h24" stroke="{colour}" stroke-width="1.8"/>'
                         + _marker(shape, x + 12, y, 6, colour))


def _nice_top(top: float) -> tuple[float, int]:
    """An axis' end at a round step above `top` (at least 1), and the step."""
    step = _integer_step(max(1.0, top))
    return step * max(1, math.ceil(top / step)), step


def _value_axis_ticks(y: float, top: float, step: int, scale: Callable[[float], float],
                      vertical_grid: tuple[float, float] | None = None) -> list[str]:
    """Integer ticks from 0 to `top` every `step` along a horizontal axis at `y`, with grid lines from
    vertical_grid's top to bottom."""
    parts, value = [], 0
    while value <= top + 1e-9:
        x = scale(value)
        if vertical_grid:
            parts.append(_path_element(f"M{x:.1f} {vertical_grid[0]:.1f} V{vertical_grid[1]:.1f}", _GRID, 0.8))
        parts.append(_path_element(f"M{x:.1f} {y:.1f} v3.5", _AXIS))
        parts.append(_text(x, y + 14, f"{value:,}", 9, "middle", "#444"))
        value += step
    return parts


def _count_axis(x0: float, x1: float, y_top: float, y0: float, top: float, step: int) -> list[str]:
    """Horizontal grid lines and integer labels from 0 to `top` on a vertical axis at x0."""
    parts, value = [], 0
    while value <= top + 1e-9:
        y = y0 - value / top * (y0 - y_top)
        parts.append(_path_element(f"M{x0:.1f} {y:.1f} H{x1:.1f}", _GRID, 0.8))
        parts.append(_text(x0 - 4, y + 3, f"{value:,}", 9, "end", "#444"))
        value += step
    return parts


def _frame(x0: float, x1: float, y_top: float, y0: float) -> str:
    """The left and bottom axis lines (no box: the top and right spines are left out)."""
    return _path_element(f"M{x0:.1f} {y_top:.1f} V{y0:.1f} H{x1:.1f}", _AXIS)


# --- the main page's charts -----------------------------------------------------------------------------------

_COHORT_SERIES = (("deficient", "Deficient"), ("borderline", "Borderline"), ("under_monitored", "Under-monitored"),
                  ("flagged", "Safety / case-finding flag"))


@cached
def practice_chart(rows: list[PracticeBars], max_practices: int = 30) -> str:
    """Grouped horizontal bars: patients in each cohort per practice (largest gap first)."""
    shown = sorted(rows, key=lambda r: (-(r.deficient + r.borderline + r.under_monitored + r.flagged), r.practice))
    shown = shown[:max_practices]
    title = "Patients needing action, by practice"
    if len(rows) > len(shown):
        title += f" (the {len(shown)} practices with most patients of {len(rows)})"
    row_height = 39.6
    height = max(230.0, 100.0 + row_height * len(shown))
    parts = [_text(7, 18, title, 12, weight="bold")]
    y_top, y0 = 34.0, height - 62.0
    if not shown:
        parts.append(_text(_WIDE / 2, (y_top + y0) / 2, "No practice has a patient in any cohort", 10, "middle",
                           "#5f6b7a"))
        return _svg_element("practices", title, _WIDE, height, parts)
    x0 = min(300.0, 14 + max(text_width(row.practice, 10) for row in shown))
    x1 = _WIDE - 20
    largest = max(1, max(max(r.deficient, r.borderline, r.under_monitored, r.flagged) for r in shown))
    right = largest * 1.12
    step = _integer_step(right)

    def x_of(value: float) -> float:
        return x0 + value / right * (x1 - x0)

    parts += _value_axis_ticks(y0, right, step, x_of, vertical_grid=(y_top, y0))
    bar = row_height * 0.8 / len(_COHORT_SERIES)
    for position, row in enumerate(shown):
        middle = y_top + (position + 0.5) * (y0 - y_top) / len(shown)
        parts.append(_text(x0 - 6, middle + 3.5, row.practice, 10, "end", "#222"))
        for index, (key, label) in enumerate(_COHORT_SERIES):
            value = getattr(row, key)
            y = middle - row_height * 0.4 + bar * index
            colour = COLOURS[key]
            parts.append(f'<path d="M{x0:.1f} {y + bar * 0.04:.1f} H{x_of(value):.1f} v{bar * 0.92:.1f} H{x0:.1f} Z" '
                         f'fill="{colour}"><title>{escape(row.practice)}, {escape(label)}: {value:,}</title></path>')
            if value:
                parts.append(_text(x_of(value) + 3, y + bar / 2 + 3, f"{value:,}", 8, colour="#333"))
    parts.append(_frame(x0, x1, y_top, y0))
    parts.append(_text((x0 + x1) / 2, y0 + 30, "Patients (count)", 10, "middle"))
    parts += _legend_row([(_box_sample(COLOURS[key]), label) for key, label in _COHORT_SERIES], _WIDE, height - 12)
    return _svg_element("practices", title, _WIDE, height, parts)


@cached
def trend_chart(points: list[TrendPoint]) -> str:
    """Lines: deficient, borderline and under-monitored patients as of each month end."""
    width, height = _WIDE, 274.0
    title = f"Patients by cohort at each month end, last {len(points)} months"
    parts = [_text(7, 18, title, 12, weight="bold")]
    x0, x1, y_top, y0 = 62.0, width - 20, 34.0, height - 66.0
    if not points:
        parts.append(_text((x0 + x1) / 2, (y_top + y0) / 2, "No trend computed", 10, "middle", "#5f6b7a"))
        return _svg_element("trend", title, width, height, parts)
    series = (("deficient", "Deficient", "circle"), ("borderline", "Borderline", "square"),
              ("under_monitored", "Under-monitored", "triangle"))
    top, step = _nice_top(max(getattr(p, key) for p in points for key, _, _ in series) * 1.05)

    def x_of(index: int) -> float:  # half a step of margin each side
        return x0 + (index + 0.5) / len(points) * (x1 - x0)

    def y_of(value: float) -> float:
        return y0 - value / top * (y0 - y_top)

    parts += _count_axis(x0, x1, y_top, y0, top, step)
    every = max(1, math.ceil(len(points) / 12))
    for index in list(range(len(points)))[::-1][::every][::-1]:
        parts.append(_path_element(f"M{x_of(index):.1f} {y0:.1f} v3.5", _AXIS))
        parts.append(_text(x_of(index), y0 + 14, f"{points[index].month_end:%b %Y}", 8, "middle", "#444"))
    parts.append(_frame(x0, x1, y_top, y0))
    for key, label, shape in series:
        line = [(x_of(i), y_of(getattr(p, key))) for i, p in enumerate(points)]
        parts.append(_path_element(_line_path(line), COLOURS[key], 2, ' stroke-linejoin="round"'))
        parts += [_marker(shape, x, y, 5, COLOURS[key], f"{label}, {p.month_end:%d %b %Y}: {getattr(p, key):,}")
                  for (x, y), p in zip(line, points)]
    parts.append(_text((x0 + x1) / 2, y0 + 30, "Month end (the last point is the as-of date)", 10, "middle"))
    parts.append(_text(16, (y0 + y_top) / 2, "Patients (count)", 10, "middle", rotate=True))
    parts += _legend_row([(_marker_line_sample(shape, COLOURS[key]), label) for key, label, shape in series],
                         width, height - 12)
    return _svg_element("trend", title, width, height, parts)


def _number(value: float) -> str:
    return f"{value:,.10g}"


def _log_ticks(low: float, high: float) -> list[tuple[float, bool]]:
    """The ticks of a log axis from `low` to `high`: (value, labelled); 1, 2 and 5 times a power of ten are
    labelled, the other multiples are marks only."""
    ticks = []
    for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for multiple in range(1, 10):
            value = multiple * 10.0 ** power
            if low <= value <= high:
                ticks.append((value, multiple in (1, 2, 5)))
    return ticks


@cached
def b12_histogram(values_pmol_l, thresholds: B12Thresholds) -> str:
    """Histogram of counted B12 results in pmol/L (a sequence or float array) on a log axis, with the rules'
    thresholds drawn."""
    values = np.asarray(values_pmol_l, dtype=float)
    width, height = _WIDE, 274.0
    title = f"Serum B12 results (n = {len(values):,})"
    parts = [_text(7, 18, title, 12, weight="bold")]
    x0, x1, y_top, y0 = 62.0, width - 20, 34.0, height - 66.0
    positive = values[values > 0]
    if not positive.size:
        parts.append(_text((x0 + x1) / 2, (y_top + y0) / 2, "No counted B12 result", 10, "middle", "#5f6b7a"))
        return _svg_element("b12-distribution", title, width, height, parts)
    low = min(float(positive.min()), thresholds.deficient_below) * 0.9
    high = max(float(positive.max()), thresholds.target_above) * 1.1
    edges = low * (high / low) ** (np.arange(49) / 48)
    counts, _ = np.histogram(positive, bins=edges)
    top, step = _nice_top(float(counts.max()) * 1.05)

    def x_of(value: float) -> float:
        return x0 + math.log(value / low) / math.log(high / low) * (x1 - x0)

    def y_of(count: float) -> float:
        return y0 - count / top * (y0 - y_top)

    for start, end, colour, opacity in ((low, thresholds.deficient_below, COLOURS["deficient"], 0.07),
                                        (thresholds.deficient_below, thresholds.borderline_max, COLOURS["borderline"],
                                         0.09)):
        parts.append(f'<rect x="{x_of(start):.1f}" y="{y_top:.1f}" width="{x_of(end) - x_of(start):.1f}" '
                     f'height="{y0 - y_top:.1f}" fill="{colour}" fill-opacity="{opacity}"/>')
    parts += _count_axis(x0, x1, y_top, y0, top, step)
    for value, labelled in _log_ticks(low, high):
        x = x_of(value)
        parts.append(_path_element(f"M{x:.1f} {y0:.1f} v{3.5 if labelled else 2:.1f}", _AXIS))
        if labelled:
            parts.append(_text(x, y0 + 14, f"{value:,.0f}", 9, "middle", "#444"))
    for start, end, count in zip(edges, edges[1:], counts):
        if count:
            parts.append(f'<path d="M{x_of(start) + 0.25:.1f} {y0:.1f} V{y_of(count):.1f} H{x_of(end) - 0.25:.1f} '
                         f'V{y0:.1f} Z" fill="{COLOURS["bars"]}"><title>{start:,.0f}-{end:,.0f} pmol/L: {count:,} '
                         f'results</title></path>')
    lines = ((thresholds.deficient_below, COLOURS["deficient"], ' stroke-dasharray="6 3"', 1.6,
              f"Deficient below {_number(thresholds.deficient_below)} pmol/L"),
             (thresholds.borderline_max, COLOURS["borderline"], ' stroke-dasharray="6 3"', 1.6,
              f"Borderline up to {_number(thresholds.borderline_max)} pmol/L"),
             (thresholds.target_above, COLOURS["target"], ' stroke-dasharray="1.5 3"', 1.8,
              f"Treatment target above {_number(thresholds.target_above)} pmol/L"))
    for value, colour, dashes, line_width, _ in lines:
        parts.append(_path_element(f"M{x_of(value):.1f} {y_top:.1f} V{y0:.1f}", colour, line_width, dashes))
    parts.append(_frame(x0, x1, y_top, y0))
    parts.append(_text((x0 + x1) / 2, y0 + 30, "Serum B12 (pmol/L, log scale)", 10, "middle"))
    parts.append(_text(16, (y0 + y_top) / 2, "Results (count)", 10, "middle", rotate=True))
    parts += _legend_row([(_box_sample(COLOURS["bars"]), "Results")]
                         + [(_line_sample(f'stroke="{colour}" stroke-width="{w}"{dashes}'), label)
                            for _, colour, dashes, w, label in lines], width, height - 12)
    return _svg_element("b12-distribution", title, width, height, parts)


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


# Where a funnel label may go, in points from its point: right, left, above, below, then the diagonals; the
# same directions further out (with a leader line) when the near ones are taken.
_LABEL_DIRECTIONS = ((6, 0), (-6, 0), (0, 6), (0, -6), (5, 5), (-5, 5), (5, -5), (-5, -5))
_LABEL_DISTANCES = (1.0, 2.2, 3.6, 5.2)
_LABEL_GAP = 2.0           # the least space between two labels (and between a label and a point)
_POINT_RADIUS = 4.0        # a point's marker, as an obstacle for labels
_LABEL_SIZE = 8.0          # a label's font size; its box is 1.17 em high (DejaVu Sans' ascent and descent)
_LABEL_DESCENT = 0.236     # below the baseline, in em
# The advance widths of DejaVu Sans (the charts' first font) for the printable ASCII characters, space to tilde,
# in thousandths of an em: a funnel label's box is measured with them, so that no two labels overlap on the
# page. The fonts a browser may fall back on (Liberation Sans, Arial, Helvetica) are narrower; any other
# character counts as a full em.
_ADVANCES = {
    "normal": (318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636,
               636, 636, 636, 636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775,
               752, 295, 295, 656, 557, 863, 748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390,
               337, 390, 838, 500, 500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612,
               635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636, 337, 636, 838),
    "bold": (348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696, 696,
             696, 696, 696, 696, 696, 696, 400, 400, 838, 838, 838, 580, 1000, 774, 762, 734, 830, 683, 683, 821,
             837, 372, 372, 775, 637, 995, 837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771, 724, 725, 457,
             365, 457, 838, 500, 500, 675, 716, 593, 716, 678, 435, 716, 712, 343, 343, 665, 343, 1042, 712, 687,
             716, 716, 493, 595, 478, 712, 652, 924, 645, 652, 582, 712, 365, 712, 838),
}


def text_width(text: str, size: float, weight: str = "normal") -> float:
    """The width of `text` set in DejaVu Sans at `size` points, in points."""
    advances = _ADVANCES[weight]
    return size * sum(advances[ord(c) - 32] if 32 <= ord(c) < 127 else 1000 for c in text) / 1000


@dataclass(frozen=True)
class Box:
    """A rectangle in a chart's units (points), y growing downwards as in SVG."""
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, others: list[Box], gap: float) -> bool:
        return any(self.x0 < other.x1 + gap and other.x0 < self.x1 + gap and
                   self.y0 < other.y1 + gap and other.y0 < self.y1 + gap for other in others)

    def within(self, other: Box) -> bool:
        return other.x0 <= self.x0 and self.x1 <= other.x1 and other.y0 <= self.y0 and self.y1 <= other.y1


@dataclass(frozen=True)
class FunnelLabel:
    """A practice named on the funnel plot: its text's box and, for a label set further out, the leader line
    from the point to where the text starts."""
    index: int                  # the point's index among the points drawn (point-<index>)
    point: FunnelPoint
    box: Box
    anchor: str                 # the text's alignment: start, end or middle of the box
    leader: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class FunnelLayout:
    """Where everything of a funnel plot goes: the axes (x from 0 to `right`), the points drawn and the labels
    placed."""
    plot: Box
    right: float
    points: list[FunnelPoint]
    labels: list[FunnelLabel]

    def x(self, denominator: float) -> float:
        return self.plot.x0 + denominator / self.right * (self.plot.x1 - self.plot.x0)

    def y(self, rate: float) -> float:
        return self.plot.y1 - (rate + 0.02) / 1.04 * (self.plot.y1 - self.plot.y0)


_FUNNEL_WIDTH, _FUNNEL_HEIGHT = 461.0, 288.0
_FUNNEL_PLOT = Box(58.0, 34.0, 446.0, 218.0)


def _label_places(layout: FunnelLayout, point: FunnelPoint):
    """The boxes a point's label may take, nearest first: (box, alignment, leader line or None)."""
    weight = "bold" if point.outlier else "normal"
    width = text_width(point.practice, _LABEL_SIZE, weight)
    height = 1.17 * _LABEL_SIZE
    x, y = layout.x(point.denominator), layout.y(point.rate)
    for distance in _LABEL_DISTANCES:
        for dx, dy in _LABEL_DIRECTIONS:
            tip_x, tip_y = x + dx * distance, y - dy * distance   # where the text touches, y downwards
            left = tip_x - (0 if dx > 0 else width if dx < 0 else width / 2)
            top = tip_y - (height if dy > 0 else 0 if dy < 0 else height / 2)
            anchor = "start" if dx > 0 else "end" if dx < 0 else "middle"
            leader = (x, y, tip_x, tip_y) if distance > 1 else None
            yield Box(left, top, left + width, top + height), anchor, leader


def _place_labels(layout: FunnelLayout, labelled: list[tuple[int, FunnelPoint]]) -> list[FunnelLabel]:
    """Name each labelled point where its label overlaps no other label (nor, when it can, another point),
    inside the axes. A label that finds no free place is left out: its point names its practice on hover and
    in the table beside the plot."""
    markers = [Box(layout.x(p.denominator) - _POINT_RADIUS, layout.y(p.rate) - _POINT_RADIUS,
                   layout.x(p.denominator) + _POINT_RADIUS, layout.y(p.rate) + _POINT_RADIUS) for p in layout.points]
    placed: list[FunnelLabel] = []
    waiting = list(labelled)
    for avoid_points in (True, False):
        for index, point in list(waiting):
            obstacles = [label.box for label in placed]
            if avoid_points:
                obstacles += [marker for i, marker in enumerate(markers) if i != index]
            for box, anchor, leader in _label_places(layout, point):
                if box.within(layout.plot) and not box.overlaps(obstacles, _LABEL_GAP):
                    placed.append(FunnelLabel(index, point, box, anchor, leader))
                    waiting.remove((index, point))
                    break
    return placed


def funnel_layout(points: list[FunnelPoint], curve: list[FunnelCurve], overall_rate: float | None) -> FunnelLayout:
    """The funnel plot's axes, points and labels (no points when no practice has a denominator)."""
    shown = [point for point in points if point.denominator > 0]
    if not shown or overall_rate is None:
        return FunnelLayout(_FUNNEL_PLOT, 1.0, [], [])
    # the axis ends a little past the largest practice (the all-practices total is not a point)
    largest = max(point.denominator for point in shown)
    layout = FunnelLayout(_FUNNEL_PLOT, max(largest * 1.08, largest + 1), shown, [])
    labelled = [(index, point) for index, point in enumerate(shown) if point.labelled]
    # outliers first, then the furthest from all practices' rate
    labelled.sort(key=lambda item: (item[1].outlier is None, -abs(item[1].rate - overall_rate)))
    return FunnelLayout(layout.plot, layout.right, shown, _place_labels(layout, labelled))


def _steps(layout: FunnelLayout, curve: list[FunnelCurve], limit: str) -> list[tuple[float, float]]:
    """A limit as the steps it is (each denominator has its own limit), each step centred on its denominator,
    as (x, y) corners."""
    values = [(layout.x(c.denominator), layout.y(getattr(c, limit))) for c in curve]
    corners = [values[0]]
    for (x_before, y_before), (x, y) in zip(values, values[1:]):
        middle = (x_before + x) / 2
        corners += [(middle, y_before), (middle, y)]
    return corners + [values[-1]]


def _path(corners: list[tuple[float, float]]) -> str:
    return "M" + " L".join(f"{x:.1f} {y:.1f}" for x, y in corners)


@cached
def funnel_chart(name: str, title: str, points: list[FunnelPoint], curve: list[FunnelCurve],
                 overall_rate: float | None) -> str:
    """A funnel plot (Spiegelhalter 2005): each practice's rate against its denominator, the overall rate, and
    the 95 % and 99.8 % control limits (from the model funnel_limits, drawn as the steps they are) narrowing as
    the denominator grows. Points outside the 99.8 % limits are coloured (red a concern, green better than
    expected); the points outside the 95 % limits are labelled where no two labels overlap, and every point
    names its practice on hover (an SVG <title>)."""
    layout = funnel_layout(points, curve, overall_rate)
    plot = layout.plot
    parts = [_text(7, 18, title, 12, weight="bold")]
    if not layout.points:
        parts.append(_text((plot.x0 + plot.x1) / 2, (plot.y0 + plot.y1) / 2,
                           "No practice has a patient in the denominator", 10, "middle", "#5f6b7a"))
        return _svg_element(name, title, _FUNNEL_WIDTH, _FUNNEL_HEIGHT, parts)
    clip = f"{name}-plot-area"
    parts.append(f'<defs><clipPath id="{clip}"><rect x="{plot.x0}" y="{plot.y0}" width="{plot.x1 - plot.x0}" '
                 f'height="{plot.y1 - plot.y0}"/></clipPath></defs>')
    for rate in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        y = layout.y(rate)
        parts.append(f'<path d="M{plot.x0:.1f} {y:.1f} H{plot.x1:.1f}" stroke="#e3e6ea" stroke-width="0.8"/>')
        parts.append(_text(plot.x0 - 4, y + 3, f"{rate * 100:.0f} %", 9, "end", "#444"))
    step = _integer_step(layout.right)
    for value in range(0, int(layout.right) + 1, step):
        x = layout.x(value)
        parts.append(f'<path d="M{x:.1f} {plot.y0:.1f} V{plot.y1:.1f}" stroke="#e3e6ea" stroke-width="0.8"/>')
        parts.append(f'<path d="M{x:.1f} {plot.y1:.1f} v3.5" stroke="#8a8f98"/>')
        parts.append(_text(x, plot.y1 + 14, f"{value:,}", 9, "middle", "#444"))
    # the limits up to the first denominator past the axis' end (the all-practices total is not a point)
    beyond = [c for c in curve if c.denominator >= layout.right][:1]
    drawn = [c for c in curve if c.denominator < layout.right] + beyond
    colour = COLOURS["under_monitored"]
    limits = []
    if drawn:
        upper, lower = _steps(layout, drawn, "upper_998"), _steps(layout, drawn, "lower_998")
        limits.append(f'<path d="{_path(upper + lower[::-1])} Z" fill="{colour}" fill-opacity="0.06"/>')
        for limit, dashes, width in (("lower_998", "", 1.3), ("upper_998", "", 1.3),
                                     ("lower_95", ' stroke-dasharray="4 2"', 1.1),
                                     ("upper_95", ' stroke-dasharray="4 2"', 1.1)):
            limits.append(f'<path class="limit-{limit}" d="{_path(_steps(layout, drawn, limit))}" stroke="{colour}" '
                          f'stroke-width="{width}" fill="none"{dashes}/>')
    overall_y = layout.y(overall_rate)
    limits.append(f'<path class="overall-rate" d="M{plot.x0:.1f} {overall_y:.1f} H{plot.x1:.1f}" stroke="#333" '
                  f'stroke-width="1.2" stroke-dasharray="1.5 2.5"/>')
    parts.append(f'<g clip-path="url(#{clip})">' + "".join(limits) + "</g>")
    parts.append(f'<path d="M{plot.x0:.1f} {plot.y0:.1f} V{plot.y1:.1f} H{plot.x1:.1f}" stroke="#8a8f98" fill="none"/>')
    for index, point in enumerate(layout.points):
        parts.append(f'<g id="{name}-point-{index}"><title>{escape(point.hover or point.practice)}</title>'
                     f'<circle cx="{layout.x(point.denominator):.1f}" cy="{layout.y(point.rate):.1f}" r="2.9" '
                     f'fill="{_OUTLIER_COLOURS[point.outlier]}" stroke="white" stroke-width="0.6"/></g>')
    for label in layout.labels:
        box, outlier = label.box, label.point.outlier
        x = {"start": box.x0, "end": box.x1, "middle": (box.x0 + box.x1) / 2}[label.anchor]
        leader = ""
        if label.leader:
            x_from, y_from, x_to, y_to = label.leader
            leader = (f'<path d="M{x_from:.1f} {y_from:.1f} L{x_to:.1f} {y_to:.1f}" stroke="#8a8f98" '
                      f'stroke-width="0.6"/>')
        # a light backing, so that a label crossing a limit line stays legible
        parts.append(f'<g id="{name}-label-{label.index}">{leader}'
                     f'<rect x="{box.x0 - 0.8:.1f}" y="{box.y0 - 0.8:.1f}" width="{box.x1 - box.x0 + 1.6:.1f}" '
                     f'height="{box.y1 - box.y0 + 1.6:.1f}" fill="white" fill-opacity="0.75"/>'
                     + _text(x, box.y1 - _LABEL_DESCENT * _LABEL_SIZE, label.point.practice, _LABEL_SIZE,
                             label.anchor, "#111" if outlier else "#444", "bold" if outlier else "normal")
                     + "</g>")
    parts.append(_text((plot.x0 + plot.x1) / 2, plot.y1 + 30, "Denominator (patients)", 10, "middle"))
    parts.append(_text(16, (plot.y0 + plot.y1) / 2, "Rate", 10, "middle", rotate=True))
    parts += _legend_row([(_line_sample(f'stroke="{colour}" stroke-width="1.3"'), "99.8 % limits"),
                          (_line_sample(f'stroke="{colour}" stroke-width="1.1" stroke-dasharray="4 2"'), "95 % limits"),
                          (_line_sample('stroke="#333" stroke-width="1.2" stroke-dasharray="1.5 2.5"'),
                           f"All practices {overall_rate * 100:.1f} %")], _FUNNEL_WIDTH, _FUNNEL_HEIGHT - 14)
    return _svg_element(name, title, _FUNNEL_WIDTH, _FUNNEL_HEIGHT, parts)


# The practice pages' small multiples: one SVG of seven panels a practice, so a page per practice stays cheap
# for hundreds of practices.
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
    hover) and its denominator as bars (right axis)."""
    width, height = 461.0, 245.0
    x0, x1, y_top, y0 = 58.0, width - 62.0, 34.0, height - 62.0
    parts = [_text(7, 18, title, 12, weight="bold")]
    if not points:
        parts.append(_text((x0 + x1) / 2, (y0 + y_top) / 2, "No trend computed", 10, "middle", "#5f6b7a"))
        return _svg_element(name, title, width, height, parts)
    top_denominator = max(1, max(point.denominator for point in points)) * 1.15
    denominator_step = _integer_step(top_denominator)

    def x_of(index: int) -> float:  # 0.6 of a step of margin each side
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
    parts += _legend_row([(_line_sample(f'stroke="{COLOURS["under_monitored"]}" stroke-width="2"'),
                           "All practices: rate"),
                          (_box_sample(COLOURS["bars"], 0.18), "Denominator (right axis)")], width, height - 10)
    return _svg_element(name, title, width, height, parts)


def _integer_step(top: float) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving about five ticks from 0 to `top`."""
    raw = max(1.0, top / 5)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(multiple * power for multiple in (1, 2, 5, 10) if multiple * power >= raw))


def _svg_element(name: str, title: str, width: float, height: float, parts: list[str]) -> str:
    """A chart as one <svg> element, labelled for readers and tests (_chart_attributes)."""
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

    def x_of(index: int) -> float:  # 0.6 of a step of margin each side
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
    (dotted), three panels to a row, the legend under them: one SVG for every measure of a practice page. The
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
    parts += _legend_row([(_line_sample(f'stroke="{COLOURS["under_monitored"]}" stroke-width="1.8"'), practice),
                          (_line_sample('stroke="#333" stroke-width="1.2" stroke-dasharray="1.5 2.5"'),
                           "All practices")], width, height - _LEGEND_BAND / 2)
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
    width, height = _WIDE, 281.0
    parts = [_text(7, 18, title, 12, weight="bold")]
    panel_width = width / max(1, len(panels))
    y_top, y0 = 56.0, height - 66.0
    xs = {window: index for index, window in enumerate(windows)}
    legend: dict[str, Callable[[float, float], str]] = {}
    for number, (panel_title, shares) in enumerate(panels):
        x0, x1 = number * panel_width + 62, (number + 1) * panel_width - 16

        def x_of(position: float) -> float:  # 0.4 of a step of margin each side
            return x0 + (position + 0.4) / max(0.8, len(windows) - 0.2) * (x1 - x0)

        def y_of(share: float) -> float:  # from -2 % to 105 %: a share of 100 % and its cap stay inside
            return y0 - (share + 0.02) / 1.07 * (y0 - y_top)

        parts.append(_text(x0, y_top - 8, panel_title, 10))
        for share in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
            parts.append(_path_element(f"M{x0:.1f} {y_of(share):.1f} H{x1:.1f}", _GRID, 0.8))
            parts.append(_text(x0 - 4, y_of(share) + 3, f"{share * 100:.0f} %", 9, "end", "#444"))
        for window, index in xs.items():
            parts.append(_path_element(f"M{x_of(index):.1f} {y0:.1f} v3.5", _AXIS))
            parts.append(_text(x_of(index), y0 + 14, window, 9, "middle", "#444"))
        parts.append(_frame(x0, x1, y_top, y0))
        drawn = [s for s in shares if s.share is not None]
        for route_class, (colour, marker, label_dx, label_align) in ROUTE_STYLES.items():
            line = [s for s in drawn if s.route_class == route_class]
            if not line:
                continue
            shape = _MARKERS[marker]
            legend.setdefault(route_class, _marker_line_sample(shape, colour))
            offset = (list(ROUTE_STYLES).index(route_class) - 1) * 0.08  # intervals side by side
            at = [(x_of(xs[s.window] + offset), s) for s in line]
            parts.append(_path_element(_line_path([(x, y_of(s.share)) for x, s in at]), colour, 1.8,
                                       ' stroke-linejoin="round"'))
            for x, s in at:
                low, high = y_of(min(s.share, s.lower_95)), y_of(max(s.share, s.upper_95))
                parts.append(_path_element(f"M{x:.1f} {low:.1f} V{high:.1f} M{x - 3:.1f} {low:.1f} h6 "
                                           f"M{x - 3:.1f} {high:.1f} h6", colour, 1))
                parts.append(_marker(shape, x, y_of(s.share), 5, colour,
                                     f"{route_class}, {s.window}: {s.count:,} of {s.of:,} ({s.share * 100:.0f} %, "
                                     f"95 % interval {s.lower_95 * 100:.0f}-{s.upper_95 * 100:.0f} %)"))
                parts.append(_text(x + label_dx, y_of(s.share) + 11, f"n={s.of}", 7,
                                   "end" if label_align == "right" else "start", colour))
        if reference and reference[0] == panel_title and reference[1] in xs:
            _, window, share, label = reference
            x, y = x_of(xs[window]), y_of(share)
            legend["reference"] = (lambda star_x, star_y: _marker("star", star_x + 12, star_y, 11, "#111"))
            parts.append(_marker("star", x, y, 13, "#111", label))
            parts.append(_text(x + 12, y + 16, label, 8, colour="#111"))
        if not drawn:
            parts.append(_text((x0 + x1) / 2, (y_top + y0) / 2, "No follow-up result yet", 10, "middle", "#5f6b7a"))
        parts.append(_text((x0 + x1) / 2, y0 + 30, "Follow-up window after the treatment start", 10, "middle"))
        parts.append(_text(x0 - 46, (y0 + y_top) / 2, "Share of those with a B12 result", 10, "middle",
                           rotate=True))
    labels = {**{route: route for route in ROUTE_STYLES}, "reference": reference[3] if reference else ""}
    parts += _legend_row([(draw, labels[key]) for key, draw in legend.items()], width, height - 12)
    return _svg_element(name, title, width, height, parts)
