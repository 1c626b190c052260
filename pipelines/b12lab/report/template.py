"""The report's pages: Jinja2 templates (templates/*.html.j2, autoescaped: every text is escaped) and the view
they are rendered from.

A page has no script and loads nothing: the CSS (templates/report.css) is inline and the charts are inline SVG made by
`b12lab.report.charts`. Numbers a test or a reader may want to pick out carry stable attributes:
`data-metric` (headline count, with `data-value`), `data-delta`, `data-practice` / `data-practice-metric`
(table cells), `data-chart` (each SVG), `data-threshold` (the rules' B12 thresholds).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from b12lab.report import charts

# The labels, definitions and urgency of the cohorts, reasons and flags are the warehouse's vocabulary tables
# (seeds cohort_codes, reason_codes, flag_codes), read into ReportData.vocabulary.
OUTCOME_TEXT = {"quarantined": "Quarantined", "dropped": "Dropped"}


def number(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.10g}"
    return f"{value:,}"


def long_date(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.strftime("%-d %b %Y %H:%M %Z").strip()
    if isinstance(value, date):
        return value.strftime("%-d %b %Y")
    return str(value)


def break_at_underscores(code: str) -> Markup:
    """A code such as DEFICIENT_NO_IF_ANTIBODY that may wrap only after its underscores (<wbr>), never mid-word."""
    return Markup("_<wbr>").join(escape(part) for part in str(code).split("_"))


def practice_anchor(name: str) -> str:
    """A practice as an id fragment (chart ids must be unique and plain)."""
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-") or "practice"


def rate_of(rate) -> str:
    """A rate with its denominator in words: "42.0 % of 100", or plainly that the denominator is empty."""
    if not rate.denominator:
        return "no patients in the denominator"
    return f"{rate.rate * 100:.1f} % of {rate.denominator:,}"


@dataclass(frozen=True)
class Delta:
    raw: str       # "+2", "-1", "0", or "" on a first run
    text: str
    tone: str      # up, down, same, first


def _settings_text(template: str, settings: dict) -> str:
    return template.format(**{key: number(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                              else value for key, value in settings.items()})


class View:
    """What the template reads: the report data with the formatting decisions made in Python."""

    def __init__(self, data):
        self.data = data
        self.run = data.run
        self.settings = data.settings
        self.metrics = data.metrics
        self.previous = data.previous
        self.vocabulary = data.vocabulary

    def delta(self, key: str) -> Delta:
        if self.previous is None:
            return Delta("", "first run", "first")
        before = self.previous["metrics"].get(key)
        if before is None:
            return Delta("", "new metric", "first")
        change = self.metrics[key] - int(before)
        if change == 0:
            return Delta("0", "no change", "same")
        arrow = "▲" if change > 0 else "▼"
        return Delta(f"{change:+d}", f"{arrow} {abs(change):,}", "up" if change > 0 else "down")

    def metric(self, key: str, label: str, rule: str = "", code: str = "", enabled: bool = True,
               tone: str = "neutral") -> dict:
        return {"key": key, "id": "metric-" + key.lower().replace(".", "-").replace("_", "-"), "label": label,
                "value": self.metrics[key], "delta": self.delta(key), "rule": rule, "code": code,
                "enabled": enabled, "tone": tone, "parts": []}

    @property
    def cohorts(self) -> list[dict]:
        cards = []
        for key, tone, parts in (
            ("deficient", "deficient", (("deficient_untreated", "untreated"), ("deficient_neuro", "neurological"))),
            ("borderline", "borderline", (("borderline_needs_mma", "MMA needed"), ("borderline_mma_normal", "MMA normal"))),
            ("under_monitored", "under", ()),
        ):
            label, rule = self.vocabulary["cohorts"][key]
            card = self.metric(key, label, _settings_text(rule, self.settings), tone=tone)
            card["parts"] = [self.metric(part, part_label) for part, part_label in parts]
            cards.append(card)
        return cards

    def _rule_cards(self, codes: list[dict], prefix: str, tone: str) -> list[dict]:
        return [self.metric(f"{prefix}.{row['code']}", row["label"], _settings_text(row["definition"], self.settings),
                            row["code"], bool(self.settings.get(row["enabled_setting"], True)), tone)
                for row in codes]

    @property
    def reasons(self) -> list[dict]:
        return self._rule_cards(self.vocabulary["reasons"], "under_monitored", "under")

    @property
    def flags(self) -> list[dict]:
        return self._rule_cards(self.vocabulary["flags"], "flag", "flag")

    @property
    def practice_columns(self) -> list[tuple[str, str, str]]:
        """(metric key, short header, tone) of the practice table of cohorts."""
        return [("patients", "Patients known", ""), ("deficient", "Deficient", "deficient"),
                ("deficient_untreated", "of which untreated", "deficient"),
                ("deficient_neuro", "of which neurological", "deficient"), ("borderline", "Borderline", "borderline"),
                ("borderline_needs_mma", "of which MMA needed", "borderline"),
                ("under_monitored", "Under-monitored", "under"),
                *((f"flag.{row['code']}", row["label"], "flag") for row in self.vocabulary["flags"])]

    @property
    def reason_columns(self) -> list[tuple[str, str, str]]:
        return [(f"under_monitored.{row['code']}", row["label"], row["code"]) for row in self.vocabulary["reasons"]]

    @property
    def practice_chart(self) -> Markup:
        bars = [charts.PracticeBars(row["practice"], row["deficient"], row["borderline"], row["under_monitored"],
                                    row["flagged"]) for row in self.data.by_practice]
        return Markup(charts.practice_chart(bars))

    @property
    def trend_chart(self) -> Markup:
        return Markup(charts.trend_chart(self.data.trend))

    @property
    def thresholds(self) -> charts.B12Thresholds:
        return charts.B12Thresholds(float(self.settings["b12_deficient_below_pmol_l"]),
                                    float(self.settings["b12_borderline_max_pmol_l"]),
                                    float(self.settings["b12_target_above_pmol_l"]))

    @property
    def b12_chart(self) -> Markup:
        return Markup(charts.b12_histogram(self.data.b12_values, self.thresholds))

    # --- quality measures (b12lab.report.measures.MeasureData) ---

    def measure_definition(self, m) -> str:
        return _settings_text(m.measure.definition, self.settings)

    def measure_enabled(self, m) -> bool:
        return not m.measure.enabled_setting or bool(self.settings.get(m.measure.enabled_setting, True))

    def _outlier_kind(self, m, rate) -> str | None:
        if not rate.is_outlier:
            return None
        return "concern" if m.concern(rate) else "better"

    @staticmethod
    def outside_95(rate) -> bool:
        """Outside its 95 % limits: the practices a funnel plot names."""
        return rate.rate is not None and rate.upper_95 is not None and (
            rate.rate > rate.upper_95 or rate.rate < rate.lower_95)

    def funnel(self, m) -> Markup:
        points = [charts.FunnelPoint(r.practice, r.denominator, r.rate, self._outlier_kind(m, r),
                                     labelled=self.outside_95(r),
                                     hover=f"{r.practice}: {r.numerator:,} of {r.denominator:,} "
                                           f"({r.rate * 100:.1f} %), {self.position_text(m, r)}")
                  for r in m.practices if r.rate is not None]
        curve = [charts.FunnelCurve(c.denominator, c.lower_95, c.upper_95, c.lower_998, c.upper_998)
                 for c in m.curve]
        overall = m.population.rate if m.population else None
        return Markup(charts.funnel_chart(f"funnel-{m.measure.code}", f"{m.measure.label}: funnel plot", points,
                                          curve, overall))

    def position_text(self, m, rate) -> str:
        if rate.position is None:
            return "no rate"
        if not rate.is_outlier:
            return "within the 99.8 % limits" + (", outside the 95 %" if self.outside_95(rate) else "")
        return f"{rate.position} the 99.8 % limits: " + ("a concern" if m.concern(rate) else "better than expected")

    def funnel_text(self, m) -> str:
        pop = m.population
        if pop is None or pop.rate is None:
            return f"Funnel plot of {m.measure.label}: no patient is in the denominator."
        text = (f"Funnel plot: {m.measure.label} of each practice (points) against its denominator; "
                f"all practices {pop.rate * 100:.1f} % (dotted line) with 95 % and 99.8 % control limits. "
                f"The practices outside the 95 % limits are named on the plot; hover a point, or see the numbers "
                f"below, for any other. ")
        if m.outliers:
            text += "Outside the 99.8 % limits: " + "; ".join(
                f"{r.practice} {r.rate * 100:.1f} % of {r.denominator:,}" for r in m.outliers) + "."
        else:
            text += "No practice is outside the 99.8 % limits."
        return text

    def _trend_points(self, m, practice: str | None) -> list[charts.RatePoint]:
        return [charts.RatePoint(r.as_of, r.numerator, r.denominator, r.rate) for r in m.trend.get(practice, [])]

    def rate_trend(self, m) -> Markup:
        return Markup(charts.rate_trend_chart(f"rate-trend-{m.measure.code}", f"{m.measure.label}: monthly trend",
                                              self._trend_points(m, None)))

    def rate_trend_text(self, m) -> str:
        points = m.trend.get(None, [])
        who = "all practices"
        if not points:
            return f"Monthly trend of {m.measure.label} for {who}: none computed."
        first, last = points[0], points[-1]
        return (f"Monthly trend of {m.measure.label} for {who} (line, left axis) with its denominator "
                f"(bars, right axis): {rate_of(first)} on {long_date(first.as_of)}, "
                f"{rate_of(last)} on {long_date(last.as_of)}.")

    def practice_trends(self, practice: str) -> Markup:
        panels = [(m.measure.label, self._trend_points(m, practice), self._trend_points(m, None))
                  for m in self.data.measures]
        return Markup(charts.practice_trends_chart(f"practice-trends-{practice_anchor(practice)}",
                                                   f"{practice}: measures by month", panels, practice))

    def practice_trends_text(self, practice: str) -> str:
        parts = []
        for m in self.data.measures:
            points = m.trend.get(practice, [])
            if points:
                parts.append(f"{m.measure.label}: {rate_of(points[-1])}")
        return (f"Monthly rates of {practice} (line) against all practices (dotted), one panel per measure; "
                f"as of the last month: " + "; ".join(parts) + "." if parts else
                f"Monthly rates of {practice}: none computed.")

    def trend_rows(self, m, practice: str | None = None) -> list[tuple]:
        population = {r.as_of: r for r in m.trend.get(None, [])}
        return [(r, population.get(r.as_of)) for r in m.trend.get(practice, [])]

    # --- does treatment work? (treatment_response_summary) ---

    RESPONSE_WINDOWS = {"1m": "1 month", "3-6m": "3-6 months", "12m": "12 months"}
    ROUTE_LABELS = {"all": "All routes", "intramuscular": "Intramuscular", "oral": "Oral", "unknown": "Route unknown"}

    def treatment_rows(self, practice: str | None = None) -> list[dict]:
        """The summary's rows of one practice (None: the whole population), windows in time, all routes first."""
        return [row for row in self.data.treatment if row["practice"] == practice]

    def response_window_label(self, window: str) -> str:
        start, end = (self.settings[f"response_{window.replace('-', '_')}_{edge}_days"] for edge in ("start", "end"))
        return f"{self.RESPONSE_WINDOWS.get(window, window)} (days {start}-{end})"

    @property
    def oral_reference(self) -> float | None:
        return next((row["reference_not_deficient_share"] for row in self.treatment_rows()
                     if row["reference_not_deficient_share"] is not None), None)

    @property
    def treatment_chart(self) -> Markup:
        rows = [row for row in self.treatment_rows() if row["route_class"] != "all"]
        windows = list(dict.fromkeys(row["window"] for row in self.treatment_rows()))

        def shares(prefix: str, count: str) -> list[charts.ResponseShare]:
            return [charts.ResponseShare(row["window"], row["route_class"], row[f"{prefix}_share"],
                                         row[f"{prefix}_lower_95"], row[f"{prefix}_upper_95"], row[count],
                                         row["with_result"]) for row in rows]
        not_deficient = "No longer deficient"
        target = f"At target (> {number(self.settings['b12_target_above_pmol_l'])} pmol/L)"
        reference = self.oral_reference
        marker = None if reference is None else (
            not_deficient, "1m", reference, f"seed: {reference * 100:.1f} % (oral, 1 month)")
        return Markup(charts.treatment_response_chart(
            "treatment-response", windows,
            [(not_deficient, shares("not_deficient", "not_deficient")), (target, shares("at_target", "at_target"))],
            marker))

    def treatment_text(self) -> str:
        parts = []
        for row in self.treatment_rows():
            if row["route_class"] == "all" and row["with_result"]:
                parts.append(f"{self.RESPONSE_WINDOWS.get(row['window'], row['window'])}: "
                             f"{row['not_deficient']:,} of {row['with_result']:,} no longer deficient, "
                             f"{row['at_target']:,} at target")
        summary = "; ".join(parts) + "." if parts else "No treated patient has a B12 result in a follow-up window yet."
        reference = self.oral_reference
        seed = (f" The star is the seed's figure: {reference * 100:.1f} % no longer deficient after 1 month of oral "
                "B12 (a published study, drawn for comparison).") if reference is not None else ""
        return (f"Share no longer deficient and share at target among the patients with a B12 result in each window, "
                f"one line per route class, with Wilson 95 % intervals (n: patients with a result). All routes: "
                f"{summary}{seed}")

    @property
    def threshold_rows(self) -> list[dict]:
        s = self.settings
        return [
            {"name": "deficient", "label": "Deficient below", "pmol": s["b12_deficient_below_pmol_l"],
             "pgml": s["b12_deficient_below_pg_ml"], "setting": "b12_deficient_below_pmol_l"},
            {"name": "borderline", "label": "Borderline up to", "pmol": s["b12_borderline_max_pmol_l"],
             "pgml": s["b12_borderline_max_pg_ml"], "setting": "b12_borderline_max_pmol_l"},
            {"name": "target", "label": "Treatment target above", "pmol": s["b12_target_above_pmol_l"],
             "pgml": s["b12_target_above_pg_ml"], "setting": "b12_target_above_pmol_l"},
        ]


# The pages and the stylesheet are files beside this module: base.html.j2 (the frame, with report.css inline),
# index.html.j2 (the main page) and practice.html.j2 (a practice's page) extending it, macros.html.j2 (the
# pieces both draw, imported with the page's context).
TEMPLATES_DIR = Path(__file__).parent / "templates"

_environment = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=StrictUndefined,
                           trim_blocks=False, lstrip_blocks=False)
_environment.filters["number"] = number
_environment.filters["long_date"] = long_date
_environment.filters["break_at_underscores"] = break_at_underscores


def render_page(data) -> str:
    """The report page for `data` (a b12lab.report.page.ReportData)."""
    from b12lab.report.worklists import NO_PRACTICE_LABEL

    view = View(data)
    by_urgency = {kind: [row["code"] for row in sorted(data.vocabulary[kind], key=lambda row: row["urgency"])]
                  for kind in ("reasons", "flags")}
    return _environment.get_template("index.html.j2").render(
        data=data, view=view, run=data.run, settings=data.settings, metrics=data.metrics, previous=data.previous,
        no_practice=NO_PRACTICE_LABEL, outcome_text=OUTCOME_TEXT, reason_order=by_urgency["reasons"],
        flag_order=by_urgency["flags"])


def render_practice_page(data, practice: str, slug: str) -> str:
    """The page of one practice for `data` (a b12lab.report.page.ReportData): its measures against all
    practices with their limits, its trends and its worklist counts; self-contained like the main page."""
    view = View(data)
    counts = next((row for row in data.by_practice if row["practice"] == practice), {})
    worklist = next((row for row in data.worklists if row["practice"] == practice), {})
    return _environment.get_template("practice.html.j2").render(
        data=data, view=view, run=data.run, settings=data.settings, previous=data.previous, practice=practice,
        slug=slug, counts=counts, worklist=worklist)
