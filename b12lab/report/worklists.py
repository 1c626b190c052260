"""Identified worklists for care teams: one CSV per cohort and practice, the most urgent patient first.

Layout under OUTPUT/report/worklists/ (folder 0o750, files 0o640: owner and group only, since these name
patients, unlike the report page):

    deficient/<practice-slug>.csv         one row per deficient patient
    borderline/<practice-slug>.csv        one row per borderline patient
    under_monitored/<practice-slug>.csv   one row per under-monitored patient, all reasons joined
    flagged/<practice-slug>.csv           one row per patient with a safety or case-finding flag, all flags joined

Every practice known to the publication gets a file in every cohort (header only when it has no patient), so a
care team that finds its file empty knows there is nothing to do rather than wondering whether the run failed.
Patients without a practice go to `no-practice.csv`.

Order (most urgent first; patient_id last, so the order is always the same):
- deficient: neurological involvement first (the seed: seek urgent specialist advice); then untreated before
  treated; then the lowest index value in pmol/L (b12 or holotc; an index that is not in pmol/L, the elevated
  MMA of MMA_ON_SUPPLEMENT, comes after those); then the oldest index date.
- borderline: MMA needed before MMA normal; then the oldest index date.
- under_monitored: deficient patients with neurological involvement first; then the most urgent reason of the
  patient (reason_codes.urgency); then the oldest last monitoring test (b12, holotc or mma; never tested first);
  then the oldest index date.
- flagged: the most urgent flag of the patient (flag_codes.urgency); then the oldest flag date.
Every row carries `next_action`: what to do, in plain words (the vocabulary tables reason_codes, flag_codes and
deficient_actions; for several reasons or flags, each action once, most urgent first).

The folder is rebuilt whole under a temporary name and swapped in, so a practice that has left a cohort
leaves no stale file behind.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import duckdb

WORKLISTS_DIR_NAME = "worklists"
DIR_MODE = 0o750
FILE_MODE = 0o640
NO_PRACTICE_LABEL = "(no practice)"
NO_PRACTICE_SLUG = "no-practice"
COHORTS = ("deficient", "borderline", "under_monitored", "flagged")

_SLUG_MAX = 80
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}

_PRACTICE = f"coalesce(nullif(trim(practice), ''), '{NO_PRACTICE_LABEL}')"

QUERIES = {
    "deficient": f"""
        select
            patient_id,
            {_PRACTICE} as practice,
            rule_id,
            treatment,
            index_analyte,
            coalesce(index_comparator, '') || printf('%.10g', index_value) as index_value,
            index_unit,
            index_date,
            case when index_unit_si = 'pmol/L' then index_value_si end as index_value_pmol_l,
            case when mma_value is not null then printf('%.10g', mma_value) end as mma_value,
            mma_unit,
            mma_date,
            has_pa,
            on_b12,
            treatment_start,
            neuro_involvement,
            neuro_detail,
            deficient_actions.next_action
        from cohort_deficient
        inner join deficient_actions on deficient_actions.situation = case
            when neuro_involvement then 'neurological_involvement'
            when treatment = 'untreated' then 'untreated'
            else 'treated'
        end
        order by
            neuro_involvement desc nulls last,
            treatment = 'treated',
            case when index_unit_si = 'pmol/L' then index_value_si end asc nulls last,
            index_date asc nulls last,
            patient_id
    """,
    "borderline": f"""
        select
            patient_id,
            {_PRACTICE} as practice,
            rule_id,
            mma_status,
            index_analyte,
            coalesce(index_comparator, '') || printf('%.10g', index_value) as index_value,
            index_unit,
            index_date,
            case when mma_value is not null then printf('%.10g', mma_value) end as mma_value,
            mma_unit,
            mma_date,
            has_pa,
            on_b12
        from cohort_borderline
        order by
            mma_status <> 'needed',
            index_date asc nulls last,
            patient_id
    """,
    "under_monitored": f"""
        with
        reasons as (
            select
                cohort_under_monitored.patient_id,
                min(reason_codes.urgency) as severity,
                string_agg(cohort_under_monitored.reason, '; '
                           order by reason_codes.urgency, cohort_under_monitored.reason) as reasons,
                string_agg(cohort_under_monitored.reason || ': ' || cohort_under_monitored.detail, ' | '
                           order by reason_codes.urgency, cohort_under_monitored.reason) as details
            from cohort_under_monitored
            inner join reason_codes on reason_codes.reason = cohort_under_monitored.reason
            group by cohort_under_monitored.patient_id
        ),
        actions as (
            select patient_id, string_agg(next_action, '; ' order by severity) as next_action
            from (
                select
                    cohort_under_monitored.patient_id,
                    reason_codes.next_action,
                    min(reason_codes.urgency) as severity
                from cohort_under_monitored
                inner join reason_codes on reason_codes.reason = cohort_under_monitored.reason
                group by all
            )
            group by patient_id
        ),
        last_test as (
            select patient_id, max(collected_on) as last_test_date
            from result_classification
            where analyte in ('b12', 'holotc', 'mma') and category is not null
            group by patient_id
        )
        select
            patient_status.patient_id,
            coalesce(nullif(trim(patient_status.practice), ''), '{NO_PRACTICE_LABEL}') as practice,
            reasons.reasons,
            reasons.severity as priority,
            last_test.last_test_date,
            patient_status.status,
            patient_status.rule_id,
            patient_status.index_analyte,
            coalesce(patient_status.index_comparator, '')
                || printf('%.10g', patient_status.index_value) as index_value,
            patient_status.index_unit,
            patient_status.index_date,
            patient_status.has_pa,
            patient_status.on_b12,
            patient_status.treatment_start,
            coalesce(cohort_deficient.neuro_involvement, false) as neuro_involvement,
            actions.next_action,
            reasons.details
        from reasons
        inner join patient_status on patient_status.patient_id = reasons.patient_id
        left join actions on actions.patient_id = reasons.patient_id
        left join cohort_deficient on cohort_deficient.patient_id = reasons.patient_id
        left join last_test on last_test.patient_id = reasons.patient_id
        order by
            coalesce(cohort_deficient.neuro_involvement, false) desc,
            reasons.severity,
            last_test.last_test_date asc nulls first,
            patient_status.index_date asc nulls first,
            patient_status.patient_id
    """,
    "flagged": f"""
        with
        flags as (
            select
                patient_flags.patient_id,
                min(flag_codes.urgency) as severity,
                min(patient_flags.flag_date) as first_flag_date,
                string_agg(patient_flags.flag, '; ' order by flag_codes.urgency, patient_flags.flag) as flags,
                string_agg(patient_flags.flag || ' ('
                           || coalesce(strftime(patient_flags.flag_date, '%Y-%m-%d'), 'no date') || '): '
                           || patient_flags.detail,
                           ' | ' order by flag_codes.urgency, patient_flags.flag) as details
            from patient_flags
            inner join flag_codes on flag_codes.flag = patient_flags.flag
            group by patient_flags.patient_id
        ),
        actions as (
            select patient_id, string_agg(next_action, '; ' order by severity) as next_action
            from (
                select
                    patient_flags.patient_id,
                    flag_codes.next_action,
                    min(flag_codes.urgency) as severity
                from patient_flags
                inner join flag_codes on flag_codes.flag = patient_flags.flag
                group by all
            )
            group by patient_id
        )
        select
            flags.patient_id,
            coalesce(nullif(trim(patient_status.practice), ''), '{NO_PRACTICE_LABEL}') as practice,
            flags.flags,
            flags.severity as priority,
            flags.first_flag_date,
            patient_status.status,
            patient_status.rule_id,
            patient_status.has_pa,
            patient_status.on_b12,
            actions.next_action,
            flags.details
        from flags
        inner join patient_status on patient_status.patient_id = flags.patient_id
        left join actions on actions.patient_id = flags.patient_id
        order by
            flags.severity,
            flags.first_flag_date asc nulls first,
            flags.patient_id
    """,
}


@dataclass(frozen=True)
class Worklist:
    cohort: str
    practice: str
    path: Path
    rows: int


def practice_slug(name: str | None) -> str:
    """A safe, readable file name stem for a practice: ASCII letters, digits and '-', never empty, never a
    path, never a reserved device name. Distinct names that give the same slug are told apart by
    `practice_slugs`."""
    if name is None or not str(name).strip() or name == NO_PRACTICE_LABEL:
        return NO_PRACTICE_SLUG
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii").lower()
    text = text.replace("&", " and ").replace("'", "")
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:_SLUG_MAX].strip("-")
    if not slug:
        slug = "practice-" + _short_hash(str(name))
    if slug in _WINDOWS_RESERVED or slug == NO_PRACTICE_SLUG:
        slug = f"{slug}-practice"
    return slug


def practice_slugs(names: list[str]) -> dict[str, str]:
    """practice name -> slug for a set of practices, unique: names whose slugs collide all get a short hash
    of their name appended, so each keeps the same file name whatever else is in the list."""
    slugs = {name: practice_slug(name) for name in names}
    counts: dict[str, int] = {}
    for slug in slugs.values():
        counts[slug] = counts.get(slug, 0) + 1
    return {
        name: (f"{slug}-{_short_hash(name)}" if counts[slug] > 1 and name != NO_PRACTICE_LABEL else slug)
        for name, slug in slugs.items()
    }


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _safe_cell(value) -> str:
    """A CSV cell; text a spreadsheet would run as a formula (=, +, @, -, tab, CR first) is quoted with '."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float):
        return format(value, ".10g")
    text = str(value)
    if text and (text[0] in "=+@\t\r" or (text[0] == "-" and not re.fullmatch(r"-\d+(\.\d+)?", text))):
        return "'" + text
    return text


def write_worklists(con: duckdb.DuckDBPyConnection, report_dir: Path, run_tag: str = "new") -> list[Worklist]:
    """Write every cohort's worklists from the publication in `con` to report_dir/worklists/; return them."""
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / WORKLISTS_DIR_NAME
    for leftover in report_dir.glob(f".{WORKLISTS_DIR_NAME}.*"):  # left by a run killed while writing
        shutil.rmtree(leftover, ignore_errors=True)
    building = report_dir / f".{WORKLISTS_DIR_NAME}.{run_tag}.tmp"
    building.mkdir(mode=DIR_MODE)
    os.chmod(building, DIR_MODE)

    # Every practice gets a file in every cohort, even an empty one: the practices first, then one cohort's
    # rows at a time, so that memory holds one cohort, not all three (hundreds of thousands of rows at scale).
    practices = {name for (name,) in con.execute(f"select distinct {_PRACTICE} from patient_status").fetchall()}
    for cohort in COHORTS:
        practices.update(name for (name,) in con.execute(
            f"select distinct worklist.practice from ({QUERIES[cohort]}) as worklist"
        ).fetchall())
    slugs = practice_slugs(sorted(practices))

    written: list[Worklist] = []
    for cohort in COHORTS:
        result = con.execute(QUERIES[cohort])
        columns, rows = [d[0] for d in result.description], result.fetchall()
        folder = building / cohort
        folder.mkdir(mode=DIR_MODE)
        os.chmod(folder, DIR_MODE)
        by_practice: dict[str, list[tuple]] = {name: [] for name in sorted(practices)}
        for row in rows:  # already in worklist order; grouping keeps it
            by_practice[row[columns.index("practice")]].append(row)
        for practice, practice_rows in by_practice.items():
            path = folder / f"{slugs[practice]}.csv"
            # Created with the final mode, so the file is never readable by others, even for a moment.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(descriptor, "w", encoding="utf-8-sig", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                writer.writerows([_safe_cell(value) for value in row] for row in practice_rows)
            os.chmod(path, FILE_MODE)
            written.append(Worklist(cohort, practice, target / cohort / path.name, len(practice_rows)))
        del rows, by_practice

    previous = report_dir / f".{WORKLISTS_DIR_NAME}.{run_tag}.old"
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        os.replace(target, previous)
    os.replace(building, target)
    os.chmod(target, DIR_MODE)
    shutil.rmtree(previous, ignore_errors=True)
    return written
