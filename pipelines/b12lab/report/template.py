"""The report page: one Jinja2 template (autoescaped: every text is escaped) and the view it is rendered from.

The page has no script and loads nothing: the CSS is inline and the charts are inline SVG made by
`b12lab.report.charts`. Numbers a test or a reader may want to pick out carry stable attributes:
`data-metric` (headline count, with `data-value`), `data-delta`, `data-practice` / `data-practice-metric`
(table cells), `data-chart` (each SVG), `data-threshold` (the rules' B12 thresholds).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

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


def practice_anchor(name: str) -> str:
    """A practice as an id fragment (chart ids must be unique and plain)."""
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-") or "practice"


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

    def funnel(self, m) -> Markup:
        points = [charts.FunnelPoint(r.practice, r.denominator, r.rate, self._outlier_kind(m, r))
                  for r in m.practices if r.rate is not None]
        curve = [charts.FunnelCurve(c.denominator, c.lower_95, c.upper_95, c.lower_998, c.upper_998)
                 for c in m.curve]
        overall = m.population.rate if m.population else None
        return Markup(charts.funnel_chart(f"funnel-{m.measure.code}", f"{m.measure.label}: funnel plot", points,
                                          curve, overall))

    def funnel_text(self, m) -> str:
        pop = m.population
        if pop is None or pop.rate is None:
            return f"Funnel plot of {m.measure.label}: no patient is in the denominator."
        text = (f"Funnel plot: {m.measure.label} of each practice (points) against its denominator; "
                f"all practices {pop.rate * 100:.1f} % (dotted line) with 95 % and 99.8 % control limits. ")
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
        def rate(r):
            return "no rate" if r.rate is None else f"{r.rate * 100:.1f} %"
        return (f"Monthly trend of {m.measure.label} for {who} (line, left axis) with its denominator "
                f"(bars, right axis): {rate(first)} of {first.denominator:,} on {long_date(first.as_of)}, "
                f"{rate(last)} of {last.denominator:,} on {long_date(last.as_of)}.")

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
                last = points[-1]
                rate = "no rate" if last.rate is None else f"{last.rate * 100:.1f} %"
                parts.append(f"{m.measure.label} {rate} of {last.denominator:,}")
        return (f"Monthly rates of {practice} (line) against all practices (dotted), one panel per measure; "
                f"as of the last month: " + "; ".join(parts) + "." if parts else
                f"Monthly rates of {practice}: none computed.")

    def trend_rows(self, m, practice: str | None = None) -> list[tuple]:
        population = {r.as_of: r for r in m.trend.get(None, [])}
        return [(r, population.get(r.as_of)) for r in m.trend.get(practice, [])]

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


CSS = r"""
:root { --ink:#1f2933; --muted:#5f6b7a; --line:#dde1e6; --bg:#f5f6f8; --card:#fff;
  --deficient:#b2182b; --borderline:#d97706; --under:#2166ac; --flag:#6a3d9a; --good:#1a7f37; --bad:#b2182b; }
* { box-sizing: border-box; }
html { background: var(--bg); }
body { margin: 0; color: var(--ink); font: 14px/1.45 "Segoe UI", "Helvetica Neue", Arial, "Liberation Sans", "DejaVu Sans", sans-serif; }
.page { max-width: 1180px; margin: 0 auto; padding: 0 24px 40px; }
header.masthead { background: #17324d; color: #fff; }
header.masthead .page { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: flex-end; gap: 16px; padding-top: 22px; padding-bottom: 18px; }
.eyebrow { margin: 0; text-transform: uppercase; letter-spacing: .08em; font-size: 12px; color: #b9cde0; }
h1 { margin: 2px 0 0; font-size: 26px; font-weight: 600; }
.run-meta { display: grid; grid-template-columns: repeat(4, auto); gap: 4px 28px; margin: 0; }
.run-meta dt { font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: #b9cde0; }
.run-meta dd { margin: 0; font-size: 14px; font-weight: 600; }
.run-meta code { font-weight: 500; }
nav.sections { background: #fff; border-bottom: 1px solid var(--line); }
nav.sections .page { padding-top: 8px; padding-bottom: 8px; display: flex; gap: 20px; flex-wrap: wrap; }
nav.sections a { color: #17324d; text-decoration: none; font-weight: 600; font-size: 13px; }
nav.sections a:hover { text-decoration: underline; }
section { margin-top: 28px; }
h2 { font-size: 19px; margin: 0 0 4px; }
h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 18px 0 8px; }
.lede { margin: 0 0 12px; color: var(--muted); }
.cards { display: grid; gap: 12px; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); }
.cards.wide { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-left: 5px solid var(--muted); border-radius: 6px; padding: 12px 14px; }
.card.tone-deficient { border-left-color: var(--deficient); }
.card.tone-borderline { border-left-color: var(--borderline); }
.card.tone-under { border-left-color: var(--under); }
.card.tone-flag { border-left-color: var(--flag); }
.card.off { opacity: .6; }
.card h4 { margin: 0; font-size: 14px; }
.card .value { font-size: 30px; font-weight: 700; line-height: 1.15; font-variant-numeric: tabular-nums; }
.card .figure { display: flex; align-items: baseline; gap: 10px; margin: 4px 0 2px; }
.card .rule { margin: 6px 0 0; font-size: 12px; color: var(--muted); }
.card code { overflow-wrap: anywhere; }
.card code, td code { font-size: 11px; color: #3b4754; background: #eef1f4; padding: 1px 4px; border-radius: 3px; }
.parts { display: flex; gap: 18px; margin: 4px 0 0; padding: 0; list-style: none; font-size: 13px; }
.parts .value { font-size: 17px; }
.delta { font-size: 12px; font-weight: 600; white-space: nowrap; }
.delta.up { color: var(--bad); } .delta.down { color: var(--good); } .delta.same, .delta.first { color: var(--muted); font-weight: 500; }
.off-note { font-size: 12px; color: var(--muted); font-style: italic; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 14px 16px; margin-top: 12px; overflow-x: auto; }
figure.chart { margin: 0; }
figure.chart svg { display: block; width: 100%; height: auto; max-width: 100%; }
figure.chart figcaption { color: var(--muted); font-size: 12px; margin-top: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: bottom; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
.num { text-align: right; }
td:first-child { white-space: nowrap; }
td.zero { color: #a3acb7; }
td.hot { font-weight: 700; }
td.hot.tone-deficient { color: var(--deficient); } td.hot.tone-flag { color: var(--flag); }
tr.total td { font-weight: 700; border-top: 2px solid #b9c0c8; border-bottom: none; }
tbody tr:nth-child(even) { background: #fafbfc; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
@media (max-width: 900px) { .two { grid-template-columns: 1fr; } .run-meta { grid-template-columns: repeat(2, auto); } }
details summary { cursor: pointer; color: #17324d; font-weight: 600; margin-top: 8px; }
.notice { border-left: 4px solid var(--borderline); background: #fff8eb; padding: 8px 12px; border-radius: 4px; margin-top: 10px; }
.ok { color: var(--good); font-weight: 600; } .warn { color: var(--borderline); font-weight: 600; } .fail { color: var(--bad); font-weight: 600; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 12px; }
a { color: #1d5fa3; }
@media print { html { background: #fff; } nav.sections { display: none; } .card, .panel { break-inside: avoid; } header.masthead { background: #fff; color: var(--ink); border-bottom: 2px solid var(--ink); } .run-meta dt, .eyebrow { color: var(--muted); } }
.banner { border: 2px solid var(--borderline); background: #fff4dc; border-radius: 6px; padding: 12px 16px; margin-top: 20px; font-size: 15px; }
.banner strong { color: #8a4b00; }
.measure h3 { margin-top: 0; color: var(--ink); font-size: 15px; text-transform: none; letter-spacing: 0; }
.measure .definition { margin: 0 0 8px; color: var(--muted); }
.measure .outliers { margin: 8px 0 0; }
.tag { display: inline-block; font-size: 11px; font-weight: 700; padding: 1px 6px; border-radius: 3px; }
.tag.concern { background: #fde8ea; color: var(--bad); } .tag.better { background: #e6f4ea; color: var(--good); } .tag.within { background: #eef1f4; color: var(--muted); }
"""

_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="b12lab">
<title>B12 monitoring report – as of {{ run.as_of | long_date }}</title>
<style>
{{ css }}</style>
</head>
<body>
{{ macros_placeholder }}
<header class="masthead"><div class="page">
  <div>
    <p class="eyebrow">Vitamin B12 deficiency &amp; pernicious anaemia</p>
    <h1>Monitoring report</h1>
  </div>
  <dl class="run-meta">
    <div><dt>As of</dt><dd id="as-of" data-as-of="{{ run.as_of.isoformat() }}">{{ run.as_of | long_date }}</dd></div>
    <div><dt>Rules</dt><dd id="rules" data-rules-version="{{ settings.rules_version }}" data-rules-profile="{{ settings.rules_profile }}">v{{ settings.rules_version }} · {{ settings.rules_profile }}</dd></div>
    <div><dt>Run</dt><dd id="run-id" data-run-id="{{ run.run_id }}"><code>{{ run.run_id }}</code></dd></div>
    <div><dt>Generated</dt><dd id="generated-at" data-generated-at="{{ data.generated_at.isoformat(timespec='seconds') }}">{{ data.generated_at | long_date }}</dd></div>
  </dl>
</div></header>
<nav class="sections"><div class="page">
  <a href="#headline">Headline</a><a href="#measures">Measures</a><a href="#practices">By practice</a><a href="#trend">Trend</a>
  <a href="#distribution">B12 results</a><a href="#quality">Data quality</a><a href="#worklists">Worklists</a>
</div></nav>
<main class="page">
{{ banner(data.banner) }}
<section id="headline">
  <h2>Headline</h2>
  <p class="lede">Patients as of {{ run.as_of | long_date }}, out of
    <span id="metric-patients" data-metric="patients" data-value="{{ metrics.patients }}">{{ metrics.patients | number }}</span> patients known{% if previous %}
    ({{ delta_badge(view.delta('patients')) }}){% endif %}.
    {% if previous %}Changes are since the previous published run <code>{{ previous.run_id }}</code> (as of {{ previous.as_of | long_date }}).
    {% else %}This is the first published run: there is no earlier run to compare with.{% endif %}
    Counts are of patients; nothing on this page identifies one.</p>
  <h3>Cohorts</h3>
  <div class="cards wide">{% for m in view.cohorts %}{{ card(m) }}{% endfor %}</div>
  <h3>Under-monitored, by reason <span class="off-note">(a patient can have several)</span></h3>
  <div class="cards">{% for m in view.reasons %}{{ card(m) }}{% endfor %}</div>
  <h3>Safety and case-finding flags</h3>
  <div class="cards wide">{% for m in view.flags %}{{ card(m) }}{% endfor %}</div>
</section>

<section id="measures">
  <h2>Quality measures</h2>
  <p class="lede">Each measure is a rate: its numerator of its denominator, for every practice. A funnel plot sets each practice's
    rate against its size, with control limits around the rate of all practices that narrow as the denominator grows: 95 % (about
    2 standard deviations, dashed) and 99.8 % (about 3, solid), exact binomial limits (Spiegelhalter, Statistics in Medicine 2005).
    A practice inside the limits differs by no more than chance explains; one outside the 99.8 % limits is an outlier worth a look,
    <span class="tag concern">a concern</span> on the worse side, <span class="tag better">better than expected</span> on the other.
    Every rate and limit is the warehouse's table <code>practice_measures</code>.</p>
  {%- for m in data.measures %}{{ measure_panel(m) }}{% endfor %}
</section>

<section id="practices">
  <h2>By practice</h2>
  {%- if data.practice_pages %}
  <p class="lede" id="practice-pages">A page per practice, to send to it (its measures against all practices, its trends and its worklist counts; it
    names no patient): {% for name, href in data.practice_pages %}<a href="{{ href }}" data-practice-page="{{ name }}">{{ name }} (page {{ href }})</a>{% if not loop.last %}, {% endif %}{% endfor %}.
    The pages are the files <code>practices/&lt;practice&gt;.html</code> beside this page.</p>
  {%- endif %}
  <p class="lede">Where the gaps are. Patients without a practice in the registry are shown as “{{ no_practice }}”.</p>
  <div class="panel">
    <figure class="chart" id="chart-practices">{{ view.practice_chart }}
      <figcaption>Patients in each cohort per practice; “flag” counts patients with any safety or case-finding flag.</figcaption>
    </figure>
  </div>
  <div class="panel">
    <table id="table-practices">
      <thead><tr><th>Practice</th>{% for key, header, tone in view.practice_columns %}<th scope="col" class="num">{{ header }}</th>{% endfor %}</tr></thead>
      <tbody>
      {%- for row in data.by_practice %}
        <tr data-practice="{{ row.practice }}"><td>{{ row.practice }}</td>
        {%- for key, header, tone in view.practice_columns %}
          <td data-practice-metric="{{ key }}" data-value="{{ row[key] }}" class="num {% if row[key] == 0 %}zero{% elif key in ('deficient_untreated', 'deficient_neuro', 'flag.FOLATE_BEFORE_B12') %}hot tone-{{ tone }}{% endif %}">{{ row[key] | number }}</td>
        {%- endfor %}</tr>
      {%- endfor %}
      </tbody>
      <tfoot><tr class="total"><td>All practices</td>{% for key, header, tone in view.practice_columns %}<td class="num">{{ metrics[key] | number }}</td>{% endfor %}</tr></tfoot>
    </table>
  </div>
  <div class="panel">
    <table id="table-practice-reasons">
      <thead><tr><th>Practice: under-monitored patients by reason</th>{% for key, header, code in view.reason_columns %}<th scope="col" class="num" title="{{ code }}">{{ header }}</th>{% endfor %}</tr></thead>
      <tbody>
      {%- for row in data.by_practice %}
        <tr data-practice="{{ row.practice }}"><td>{{ row.practice }}</td>
        {%- for key, header, code in view.reason_columns %}
          <td data-practice-metric="{{ key }}" data-value="{{ row[key] }}" class="num {% if row[key] == 0 %}zero{% endif %}">{{ row[key] | number }}</td>
        {%- endfor %}</tr>
      {%- endfor %}
      </tbody>
      <tfoot><tr class="total"><td>All practices</td>{% for key, header, code in view.reason_columns %}<td class="num">{{ metrics[key] | number }}</td>{% endfor %}</tr></tfoot>
    </table>
  </div>
</section>

<section id="trend">
  <h2>Trend</h2>
  <p class="lede">Each point re-runs the full classification, with the rules of this run, as of that month end over all the data known today
    (results reported late or corrected since then are included).</p>
  <div class="panel">
    <figure class="chart" id="chart-trend">{{ view.trend_chart }}
      <figcaption>Deficient and borderline patients (status at the month end) and under-monitored patients (any reason).</figcaption>
    </figure>
    <details><summary>Values</summary>
      <table id="table-trend">
        <thead><tr><th>Month end</th><th class="num">Deficient</th><th class="num">Borderline</th><th class="num">Under-monitored</th></tr></thead>
        <tbody>{% for p in data.trend %}<tr data-month-end="{{ p.month_end.isoformat() }}" data-deficient="{{ p.deficient }}" data-borderline="{{ p.borderline }}" data-under-monitored="{{ p.under_monitored }}"><td>{{ p.month_end | long_date }}</td><td class="num">{{ p.deficient | number }}</td><td class="num">{{ p.borderline | number }}</td><td class="num">{{ p.under_monitored | number }}</td></tr>{% endfor %}</tbody>
      </table>
    </details>
  </div>
</section>

<section id="distribution">
  <h2>B12 results</h2>
  <p class="lede">Every counted serum B12 result collected {{ data.b12_period[0] | long_date }} – {{ data.b12_period[1] | long_date }}
    (final or corrected, duplicates once), in pmol/L.
    {% if data.b12_censored %}{{ data.b12_censored | number }} censored results (such as “&lt;100”) are drawn at their bound.{% endif %}</p>
  <div class="panel">
    <figure class="chart" id="chart-b12"{% for t in view.threshold_rows %} data-threshold-{{ t.name }}="{{ t.pmol }}"{% endfor %}>{{ view.b12_chart }}
      <figcaption>Thresholds from the rules in force (profile {{ settings.rules_profile }}). Results reported in
        {% for unit, n in data.b12_units %}{{ unit }} ({{ n | number }}){% if not loop.last %}, {% endif %}{% endfor %};
        a result in pg/mL or ng/L is classified against the pg/mL thresholds in the unit the lab reported, and drawn here converted to pmol/L.</figcaption>
    </figure>
    <table id="table-thresholds">
      <thead><tr><th>Threshold</th><th class="num">pmol/L</th><th class="num">pg/mL</th><th>Setting</th></tr></thead>
      <tbody>{% for t in view.threshold_rows %}<tr><td>{{ t.label }}</td><td class="num" data-threshold="{{ t.name }}" data-value="{{ t.pmol }}">{{ t.pmol | number }}</td><td class="num">{{ t.pgml | number }}</td><td><code>{{ t.setting }}</code></td></tr>{% endfor %}</tbody>
    </table>
  </div>
</section>

<section id="quality">
  <h2>Data quality</h2>
  <p class="lede">Every input row is accepted, quarantined with a reason, or dropped by a named rule.
    {% if data.validation.files_skipped %}{{ data.validation.files_skipped | number }} files in the drop folder were already ingested and skipped.{% endif %}</p>
  <div class="two">
    <div class="panel">
      <h3 style="margin-top:0">Row accounting</h3>
      <table id="table-accounting">
        <thead><tr><th></th><th class="num">This run</th><th class="num">All runs</th></tr></thead>
        <tbody>
        {%- for key, label in (("files", "Files ingested"), ("rows_read", "Rows read"), ("rows_out_of_scope", "Out of scope (code of no analyte)"), ("rows_in_scope", "In scope"), ("rows_accepted", "Accepted"), ("rows_quarantined", "Quarantined"), ("rows_dropped_in_scope", "Dropped by another rule"), ("rows_dropped", "Dropped, all rules")) %}
          <tr><td>{{ label }}</td><td class="num" data-accounting="this_run.{{ key }}" data-value="{{ data.accounting.this_run[key] }}">{{ data.accounting.this_run[key] | number }}</td><td class="num" data-accounting="total.{{ key }}" data-value="{{ data.accounting.total[key] }}">{{ data.accounting.total[key] | number }}</td></tr>
        {%- endfor %}
        </tbody>
      </table>
    </div>
    <div class="panel">
      <h3 style="margin-top:0">Validation (Great Expectations)</h3>
      <table id="table-validation">
        <tbody>
          <tr><td>Expectations evaluated</td><td class="num" data-gx="evaluated" data-value="{{ data.validation.evaluated }}">{{ data.validation.evaluated | number }}</td></tr>
          <tr><td>Critical failures</td><td data-gx="failed" data-value="{{ data.validation.failed }}" class="num {{ 'fail' if data.validation.failed else 'ok' }}">{{ data.validation.failed | number }}</td></tr>
          <tr><td>Warnings</td><td data-gx="warnings" data-value="{{ data.validation.warnings }}" class="num {{ 'warn' if data.validation.warnings else 'ok' }}">{{ data.validation.warnings | number }}</td></tr>
        </tbody>
      </table>
      {%- if data.validation.warning_list %}
      <ul>{% for text, n in data.validation.warning_list %}<li><code>{{ text }}</code>{% if n > 1 %} ×{{ n }}{% endif %}</li>{% endfor %}</ul>
      {%- endif %}
      {%- if data.validation.data_docs %}
      <p><a id="data-docs-link" href="{{ data.validation.data_docs }}">Open the Data Docs of this run</a> (the validation results in detail:
        the file <code>{{ data.validation.data_docs }}</code> in the report folder of the output share; everything the headline needs is on this page).</p>
      {%- elif data.validation.evaluated == 0 %}
      <p class="off-note">No new rows this run: nothing to validate.</p>
      {%- endif %}
    </div>
  </div>
  {%- if data.files_this_run %}
  <div class="panel">
    <h3 style="margin-top:0">Files ingested by this run</h3>
    <table id="table-files">
      <thead><tr><th>File</th><th>Kind</th><th class="num">Read</th><th class="num">Accepted</th><th class="num">Quarantined</th><th class="num">Dropped</th></tr></thead>
      <tbody>{% for f in data.files_this_run %}<tr><td>{{ f.source_file }}</td><td>{{ f.kind }}</td><td class="num">{{ f.rows_read | number }}</td><td class="num">{{ f.rows_accepted | number }}</td><td class="num {% if not f.rows_quarantined %}zero{% endif %}">{{ f.rows_quarantined | number }}</td><td class="num {% if not f.rows_dropped %}zero{% endif %}">{{ f.rows_dropped | number }}</td></tr>{% endfor %}</tbody>
    </table>
  </div>
  {%- endif %}
  <div class="two">
    <div class="panel">
      <h3 style="margin-top:0">Quarantined by reason, dropped by rule</h3>
      <table id="table-outcomes">
        <thead><tr><th>Outcome</th><th>Reason or rule</th><th class="num">This run</th><th class="num">All runs</th></tr></thead>
        <tbody>{% for o in data.outcomes %}<tr data-outcome="{{ o.outcome }}" data-reason="{{ o.reason }}"><td>{{ outcome_text.get(o.outcome, o.outcome) }}</td><td><code>{{ o.reason }}</code></td><td data-value="{{ o.this_run }}" class="num {% if not o.this_run %}zero{% endif %}">{{ o.this_run | number }}</td><td class="num" data-value="{{ o.total }}">{{ o.total | number }}</td></tr>
        {%- else %}<tr><td colspan="4">No row was quarantined or dropped.</td></tr>{% endfor %}</tbody>
      </table>
    </div>
    <div class="panel">
      <h3 style="margin-top:0">Quarantine by file</h3>
      <table id="table-quarantine">
        <thead><tr><th>File</th><th>Reason</th><th class="num">This run</th><th class="num">All runs</th></tr></thead>
        <tbody>{% for q in data.quarantine_by_file %}<tr><td>{{ q.source_file }}</td><td><code>{{ q.reason }}</code></td><td class="num {% if not q.this_run %}zero{% endif %}">{{ q.this_run | number }}</td><td class="num">{{ q.total | number }}</td></tr>
        {%- else %}<tr><td colspan="4">The quarantine is empty.</td></tr>{% endfor %}</tbody>
      </table>
      <p class="off-note">The rows themselves (which may name patients) are in the warehouse table <code>quarantine</code>.</p>
    </div>
  </div>
</section>

<section id="worklists">
  <h2>Worklists</h2>
  <div class="notice">Worklists name patients. They are kept beside this page in <code>worklists/</code>, readable by the
    owner and group of the output folder only: do not forward them by email. Each count links to its file,
    <code>worklists/&lt;cohort&gt;/&lt;practice&gt;.csv</code> in the report folder of the output share; the links work where that folder can be read,
    and <code>worklists/README.txt</code> explains the columns and the urgency order.</div>
  <div class="panel">
    <table id="table-worklists">
      <thead><tr><th>Practice</th><th class="num">Deficient</th><th class="num">Borderline</th><th class="num">Under-monitored</th><th class="num">Flagged</th><th class="num">All items, most urgent first</th></tr></thead>
      <tbody>{% for w in data.worklists %}<tr data-practice="{{ w.practice }}"><td>{{ w.practice }}</td>
        {%- for cohort in ("deficient", "borderline", "under_monitored", "flagged", "items") %}{% set item = w.get(cohort) %}
        <td class="num">{% if item %}<a href="{{ item.href }}" data-worklist="{{ cohort }}" data-value="{{ item.rows }}" title="file {{ item.href }} beside this page">{{ item.rows | number }} {{ ("item" if item.rows == 1 else "items") if cohort == "items" else ("patient" if item.rows == 1 else "patients") }}</a>{% else %}–{% endif %}</td>
        {%- endfor %}</tr>{% endfor %}</tbody>
    </table>
    <p class="off-note">One row per patient, most urgent first, each with a plain next action: deficient – neurological
      features first, then untreated, then lowest B12, then oldest result; borderline – MMA needed, then oldest result;
      under-monitored – neurological features first, then most urgent reason
      ({% for code in reason_order %}{{ code }}{% if not loop.last %} › {% endif %}{% endfor %}), then longest since the last B12, holoTC or MMA test;
      flagged – most urgent flag ({% for code in flag_order %}{{ code }}{% if not loop.last %} › {% endif %}{% endfor %}), then oldest flag.</p>
  </div>
</section>

<footer>
  Rules file version {{ settings.rules_version }}, profile {{ settings.rules_profile }}; every threshold and window on this page is read from
  the rules in force (table <code>rules_settings</code>). Query the data behind it with <code>b12lab sql</code> (see the analyst guide).
  Report built in {{ "%.1f" | format(data.build_seconds or 0) }} s{% if data.trend_seconds is not none %}, of which the {{ data.trend | length }}-month trend took {{ "%.1f" | format(data.trend_seconds) }} s{% endif %}.
</footer>
</main>
</body>
</html>
"""

_PRACTICE_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="b12lab">
<title>{{ practice }} – B12 monitoring, as of {{ run.as_of | long_date }}</title>
<style>
{{ css }}</style>
</head>
<body>
{{ macros_placeholder }}
<header class="masthead"><div class="page">
  <div>
    <p class="eyebrow">Vitamin B12 deficiency &amp; pernicious anaemia · practice page</p>
    <h1 id="practice-name" data-practice="{{ practice }}">{{ practice }}</h1>
  </div>
  <dl class="run-meta">
    <div><dt>As of</dt><dd id="as-of" data-as-of="{{ run.as_of.isoformat() }}">{{ run.as_of | long_date }}</dd></div>
    <div><dt>Rules</dt><dd id="rules">v{{ settings.rules_version }} · {{ settings.rules_profile }}</dd></div>
    <div><dt>Run</dt><dd id="run-id" data-run-id="{{ run.run_id }}"><code>{{ run.run_id }}</code></dd></div>
    <div><dt>Generated</dt><dd id="generated-at">{{ data.generated_at | long_date }}</dd></div>
  </dl>
</div></header>
<main class="page">
{{ banner(data.banner) }}
<section id="summary">
  <h2>Summary</h2>
  <p class="lede">{{ practice }} as of {{ run.as_of | long_date }}, against all practices. This page counts patients and names none;
    the practice's worklists, which name patients, are kept apart (below). It is one of the pages of the monitoring report, which
    explains every rule.</p>
  <div class="panel">
    <table id="table-practice-measures">
      <thead><tr><th>Measure</th><th class="num">{{ practice }}</th><th class="num">Rate</th><th class="num">All practices</th><th class="num">95 % limits</th><th class="num">99.8 % limits</th><th>Position</th></tr></thead>
      <tbody>{% for m in data.measures %}{% set own = m.practice(practice) %}<tr data-measure="{{ m.measure.code }}"{% if own %} data-numerator="{{ own.numerator }}" data-denominator="{{ own.denominator }}" data-position="{{ own.position or '' }}"{% endif %}>
        <td>{{ m.measure.label }} <span class="off-note">({{ "higher" if m.measure.better == "higher" else "lower" }} is better)</span></td>
        {%- if own %}<td class="num">{{ own.numerator | number }} of {{ own.denominator | number }}</td><td class="num">{{ percent(own.rate) }}</td><td class="num">{{ percent(own.overall_rate) }}</td><td class="num">{{ percent(own.lower_95) }} – {{ percent(own.upper_95) }}</td><td class="num">{{ percent(own.lower_998) }} – {{ percent(own.upper_998) }}</td><td>{{ position_tag(m, own) }}</td>
        {%- else %}<td class="num" colspan="6">no patient</td>{% endif %}</tr>{% endfor %}</tbody>
    </table>
    <p class="off-note">The limits are for a practice of this size around the rate of all practices: inside them, a difference chance explains;
      outside the 99.8 % limits (about 3 standard deviations), one it hardly does (exact binomial limits, Spiegelhalter 2005).</p>
  </div>
  <div class="panel">
    <table id="table-practice-counts">
      <thead><tr><th>Patients</th>{% for key, header, tone in view.practice_columns %}<th scope="col" class="num">{{ header }}</th>{% endfor %}</tr></thead>
      <tbody><tr data-practice="{{ practice }}"><td>{{ practice }}</td>{% for key, header, tone in view.practice_columns %}<td data-practice-metric="{{ key }}" data-value="{{ counts.get(key, 0) }}" class="num {% if not counts.get(key, 0) %}zero{% endif %}">{{ counts.get(key, 0) | number }}</td>{% endfor %}</tr></tbody>
    </table>
  </div>
</section>
<section id="measures">
  <h2>Measures</h2>
  <p class="lede">{{ practice }}'s rate of each measure at every month end, with all practices' rate dotted. Where it stands among the
    practices of every size, with the control limits, is in the table above and in the funnel plots of the main report.</p>
  <div class="panel">
    <figure class="chart" id="chart-practice-trends">{{ view.practice_trends(practice) }}
      <figcaption>{{ view.practice_trends_text(practice) }}</figcaption>
    </figure>
  </div>
  {%- for m in data.measures %}
  <div class="panel measure" id="measure-{{ m.measure.code }}" data-measure="{{ m.measure.code }}">
    <details><summary>{{ m.measure.label }}: monthly numbers</summary>
      <p class="definition">{{ view.measure_definition(m) }}. {{ "Higher" if m.measure.better == "higher" else "Lower" }} is better.</p>
      {{ trend_table(m, practice) }}
    </details>
  </div>
  {%- endfor %}
</section>
<section id="worklists">
  <h2>Worklists</h2>
  <div class="notice">The worklists of {{ practice }} name patients, so they are not part of this page: they are the files
    <code>worklists/&lt;cohort&gt;/{{ slug }}.csv</code> in the report folder of the output share, readable by its owner and group only.</div>
  <div class="panel">
    <table id="table-practice-worklists">
      <thead><tr><th>Worklist</th><th class="num">Rows</th><th>File</th></tr></thead>
      <tbody>{% for cohort, label in (("deficient", "Deficient"), ("borderline", "Borderline"), ("under_monitored", "Under-monitored"), ("flagged", "Flagged"), ("items", "All items, most urgent first (rows)")) %}{% set item = worklist.get(cohort) %}<tr data-worklist="{{ cohort }}" data-value="{{ item.rows if item else 0 }}"><td>{{ label }}</td><td class="num">{{ (item.rows if item else 0) | number }}</td><td><code>worklists/{{ cohort }}/{{ slug }}.csv</code></td></tr>{% endfor %}</tbody>
    </table>
  </div>
</section>
<footer>
  Rules file version {{ settings.rules_version }}, profile {{ settings.rules_profile }}. Every number on this page is read from the warehouse
  (tables <code>practice_measures</code>, <code>funnel_limits</code>, <code>cohort_counts</code>) of run <code>{{ run.run_id }}</code>.
</footer>
</main>
</body>
</html>
"""

_MACROS = r"""{%- macro delta_badge(d) -%}
<span class="delta {{ d.tone }}" data-delta="{{ d.raw }}"{% if previous %} title="change since run {{ previous.run_id }} (as of {{ previous.as_of | long_date }})"{% endif %}>{{ d.text }}</span>
{%- endmacro %}
{%- macro banner(text) -%}
{%- if text %}<div class="banner" id="banner" role="alert"><strong>{{ text.headline }}</strong> {{ text.detail }}</div>{% endif %}
{%- endmacro %}
{%- macro percent(value) -%}{% if value is none %}–{% else %}{{ "%.1f" | format(value * 100) }} %{% endif %}{%- endmacro %}
{%- macro position_tag(m, r) -%}
{%- if r.position is none %}<span class="tag within">no rate</span>{% elif not r.is_outlier %}<span class="tag within">within limits</span>{% elif m.concern(r) %}<span class="tag concern">{{ r.position }} limits: a concern</span>{% else %}<span class="tag better">{{ r.position }} limits: better than expected</span>{% endif %}
{%- endmacro %}
{%- macro trend_table(m, practice) -%}
<table id="table-measure-trend-{{ m.measure.code }}">
  <thead><tr><th>Month end</th><th class="num">{{ practice or "All practices" }}: numerator</th><th class="num">Denominator</th><th class="num">Rate</th>{% if practice %}<th class="num">All practices: rate</th>{% endif %}</tr></thead>
  <tbody>{% for r, all in view.trend_rows(m, practice) %}<tr data-measure-as-of="{{ r.as_of.isoformat() }}" data-numerator="{{ r.numerator }}" data-denominator="{{ r.denominator }}"><td>{{ r.as_of | long_date }}</td><td class="num">{{ r.numerator | number }}</td><td class="num">{{ r.denominator | number }}</td><td class="num">{{ percent(r.rate) }}</td>{% if practice %}<td class="num">{{ percent(all.rate if all else none) }}</td>{% endif %}</tr>{% endfor %}</tbody>
</table>
{%- endmacro %}
{%- macro measure_panel(m) -%}
{%- set code = m.measure.code %}{% set pop = m.population %}
<article class="panel measure" id="measure-{{ code }}" data-measure="{{ code }}" data-better="{{ m.measure.better }}">
  <h3>{{ m.measure.label }}</h3>
  <p class="definition">{{ view.measure_definition(m) }}. {{ "Higher" if m.measure.better == "higher" else "Lower" }} is better.
    {%- if not view.measure_enabled(m) %} <span class="off-note">Its rule is switched off in profile {{ settings.rules_profile }}: the numerator is 0.</span>{% endif %}
    {%- if pop %} All practices: <span data-measure-population="{{ code }}" data-numerator="{{ pop.numerator }}" data-denominator="{{ pop.denominator }}" data-rate="{{ pop.rate if pop.rate is not none else '' }}">{{ pop.numerator | number }} of {{ pop.denominator | number }} ({{ percent(pop.rate) }})</span>.{% endif %}
</p>
  <div class="two">
    <figure class="chart" id="chart-funnel-{{ code }}">{{ view.funnel(m) }}
      <figcaption>{{ view.funnel_text(m) }}</figcaption>
    </figure>
    <figure class="chart" id="chart-rate-trend-{{ code }}">{{ view.rate_trend(m) }}
      <figcaption>{{ view.rate_trend_text(m) }}</figcaption>
    </figure>
  </div>
  <p class="outliers" data-outliers="{{ code }}">{% if m.outliers %}Outside the 99.8 % limits: {% for r in m.outliers %}<strong data-outlier="{{ r.practice }}" data-position="{{ r.position }}">{{ r.practice }}</strong> ({{ r.numerator | number }} of {{ r.denominator | number }}, {{ percent(r.rate) }}; {{ "a concern" if m.concern(r) else "better than expected" }}){% if not loop.last %}; {% endif %}{% endfor %}.{% else %}No practice is outside the 99.8 % limits.{% endif %}</p>
  <details><summary>Numbers</summary>
    <table id="table-measure-{{ code }}">
      <thead><tr><th>Practice</th><th class="num">Numerator</th><th class="num">Denominator</th><th class="num">Rate</th><th class="num">95 % limits</th><th class="num">99.8 % limits</th><th>Position</th></tr></thead>
      <tbody>{% for r in ([pop] if pop else []) + m.practices %}<tr data-measure-unit="{{ r.practice or '' }}" data-numerator="{{ r.numerator }}" data-denominator="{{ r.denominator }}" data-position="{{ r.position or '' }}"><td>{{ r.practice or "All practices" }}</td><td class="num">{{ r.numerator | number }}</td><td class="num">{{ r.denominator | number }}</td><td class="num">{{ percent(r.rate) }}</td><td class="num">{{ percent(r.lower_95) }} – {{ percent(r.upper_95) }}</td><td class="num">{{ percent(r.lower_998) }} – {{ percent(r.upper_998) }}</td><td>{% if r.practice %}{{ position_tag(m, r) }}{% endif %}</td></tr>{% endfor %}</tbody>
    </table>
    {{ trend_table(m, none) }}
    <p class="off-note">Why it matters: {{ m.measure.source }}.</p>
  </details>
</article>
{%- endmacro %}
{%- macro card(m) -%}
<article class="card tone-{{ m.tone }}{% if not m.enabled %} off{% endif %}" data-card="{{ m.key }}">
  <h4>{{ m.label }}</h4>
  <div class="figure"><span class="value" id="{{ m.id }}" data-metric="{{ m.key }}" data-value="{{ m.value }}">{{ m.value | number }}</span>{{ delta_badge(m.delta) }}</div>
  {%- if m.parts %}
  <ul class="parts">{% for p in m.parts %}<li>{{ p.label }} <span class="value" id="{{ p.id }}" data-metric="{{ p.key }}" data-value="{{ p.value }}">{{ p.value | number }}</span> {{ delta_badge(p.delta) }}</li>{% endfor %}</ul>
  {%- endif %}
  {%- if not m.enabled %}<p class="off-note">Switched off in profile {{ settings.rules_profile }}</p>{% endif %}
  <p class="rule">{{ m.rule }}{% if m.code %} <code>{{ m.code }}</code>{% endif %}</p>
</article>
{%- endmacro %}"""
_TEMPLATE = _TEMPLATE.replace("{{ macros_placeholder }}", _MACROS)
_PRACTICE_TEMPLATE = _PRACTICE_TEMPLATE.replace("{{ macros_placeholder }}", _MACROS)

_environment = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)
_environment.filters["number"] = number
_environment.filters["long_date"] = long_date
_template = _environment.from_string(_TEMPLATE)
_practice_template = _environment.from_string(_PRACTICE_TEMPLATE)


def render_page(data) -> str:
    """The report page for `data` (a b12lab.report.page.ReportData)."""
    from b12lab.report.worklists import NO_PRACTICE_LABEL

    view = View(data)
    by_urgency = {kind: [row["code"] for row in sorted(data.vocabulary[kind], key=lambda row: row["urgency"])]
                  for kind in ("reasons", "flags")}
    return _template.render(css=Markup(CSS), data=data, view=view, run=data.run, settings=data.settings, metrics=data.metrics,
                            previous=data.previous, no_practice=NO_PRACTICE_LABEL, outcome_text=OUTCOME_TEXT,
                            reason_order=by_urgency["reasons"], flag_order=by_urgency["flags"])


def render_practice_page(data, practice: str, slug: str) -> str:
    """The page of one practice for `data` (a b12lab.report.page.ReportData): its measures against all
    practices with their limits, its trends and its worklist counts; self-contained like the main page."""
    view = View(data)
    counts = next((row for row in data.by_practice if row["practice"] == practice), {})
    worklist = next((row for row in data.worklists if row["practice"] == practice), {})
    return _practice_template.render(css=Markup(CSS), data=data, view=view, run=data.run, settings=data.settings,
                                     practice=practice, slug=slug, counts=counts, worklist=worklist)
