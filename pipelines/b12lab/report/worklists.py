"""Identified worklists for care teams: one CSV per worklist and practice, the most urgent first.

Layout under OUTPUT/report/worklists/ (folder 0o750, files 0o640: owner and group only, since these name
patients, unlike the report page):

    items/<practice-slug>.csv             one row per patient and item (an under-monitoring reason, a flag,
                                          DEFICIENT or BORDERLINE_NEEDS_MMA): the mart `worklist`
    deficient/<practice-slug>.csv         one row per deficient patient: the mart `worklist_deficient`
    borderline/<practice-slug>.csv        one row per borderline patient: the mart `worklist_borderline`
    under_monitored/<practice-slug>.csv   one row per under-monitored patient, all reasons joined: the mart
                                          `worklist_under_monitored`
    flagged/<practice-slug>.csv           one row per patient with a safety or case-finding flag, all flags
                                          joined: the mart `worklist_flagged`
    README.txt                            the legend: the folders, every column of each file, what `priority`
                                          and `urgency` mean, and the full urgency order of items/ with each
                                          item's next action, read from the warehouse (the mart worklist_items,
                                          the seed worklist_tiers), so it never goes stale

Every practice known to the publication gets a file in every folder (header only when it has no patient), so a
care team that finds its file empty knows there is nothing to do rather than wondering whether the run failed.
Patients without a practice go to `no-practice.csv`.

Order (most urgent first; patient_id last, so the order is always the same), as the marts define it (the
cohorts' marts number their patients in `position`):
- deficient: neurological involvement first (the seed: seek urgent specialist advice); then untreated before
  treated; then the lowest index value in pmol/L (b12 or holotc; an index that is not in pmol/L, the elevated
  MMA of MMA_ON_SUPPLEMENT, comes after those); then the oldest index date.
- borderline: MMA needed before MMA normal; then the oldest index date.
- under_monitored: deficient patients with neurological involvement first; then the most urgent reason of the
  patient (reason_codes.urgency); then the oldest last monitoring test (b12, holotc or mma; never tested first);
  then the oldest index date.
- flagged: the most urgent flag of the patient (flag_codes.urgency); then the oldest flag date.
- items: the mart's `urgency`, one order across every item (the tiers of the seed worklist_tiers, within a tier
  the urgency of reason_codes or flag_codes: deficient with neurological involvement, FOLATE_BEFORE_B12,
  deficient untreated, the reasons, the other flags, deficient treated, BORDERLINE_NEEDS_MMA); then the gap
  open longest (`open_since`, oldest first; none known first); then patient_id and item.
Every row carries `next_action`: what to do, in plain words (the vocabulary tables reason_codes, flag_codes and
deficient_actions; for several reasons or flags, each action once, most urgent first).

The folder is rebuilt whole under a temporary name and swapped in, so a practice that has left a cohort
leaves no stale file behind. A file whose rows are those of the same file in the live publication's folder
(`previous`) is that file, linked (a second name of it), not written again: each file's rows are summed up in
a key (their number and the sum of their hashes, with the columns and this module's code), kept in the
folder's `.keys.json`; a night with no patient whose worklist rows changed writes none of the hundreds of
thousands of rows again.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import duckdb

from b12lab.common.links import hard_link

WORKLISTS_DIR_NAME = "worklists"
DIR_MODE = 0o750
FILE_MODE = 0o640
NO_PRACTICE_LABEL = "(no practice)"
NO_PRACTICE_SLUG = "no-practice"
# The worklist folders: the four cohorts, and items (the mart `worklist`: one row per patient and item).
COHORTS = ("deficient", "borderline", "under_monitored", "flagged", "items")
README_NAME = "README.txt"

_SLUG_MAX = 80
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}

_PRACTICE = f"coalesce(nullif(trim(practice), ''), '{NO_PRACTICE_LABEL}')"

# The mart behind each folder and the order of its rows, most urgent first. The cohorts' marts number their
# patients in `position` (the worklists' priority order is defined there, once); the items of the worklist mart
# are in one urgency order across practices.
SOURCES = {
    "deficient": ("worklist_deficient", "position"),
    "borderline": ("worklist_borderline", "position"),
    "under_monitored": ("worklist_under_monitored", "position"),
    "flagged": ("worklist_flagged", "position"),
    "items": ("worklist", "urgency, open_since asc nulls first, patient_id, item"),
}


def worklist_query(cohort: str, practices: bool = False) -> str:
    """The rows of one worklist folder: the columns its files hold (COLUMN_NOTES, in order) from its mart;
    with `practices`, those of the practices in the query parameter $practices only."""
    table, order = SOURCES[cohort]
    where = " where practice in (select unnest($practices::varchar[]))" if practices else ""
    return f"select {', '.join(COLUMN_NOTES[cohort])} from {table}{where} order by {order}"


# The urgency order of items/ for the legend: every item the worklist can hold, as the mart worklist_items
# numbers them (the worklist mart reads the same table), with its label and next action.
URGENCY_ORDER_QUERY = """
    select urgency, item, kind, label, next_action
    from worklist_items
    order by urgency
"""

FOLDER_NOTES = {
    "items": "one row per patient and item - an under-monitoring reason, a safety or case-finding flag, DEFICIENT "
             "or BORDERLINE_NEEDS_MMA: everything to do, in one urgency order (below); a patient with several "
             "items has a row for each",
    "deficient": "one row per deficient patient",
    "borderline": "one row per borderline patient (MMA needed, or MMA normal)",
    "under_monitored": "one row per under-monitored patient, all the patient's reasons joined",
    "flagged": "one row per patient with a safety or case-finding flag, all the patient's flags joined",
}

# What each column of each worklist holds, in the order of the files: the columns selected from each folder's
# mart (worklist_query), and README.txt lists every column of every file with this.
COLUMN_NOTES = {
    "items": {
        "practice": "the patient's practice; (no practice) when none is recorded",
        "patient_id": "the patient identifier as exported",
        "item": "what is to be done about the patient: a reason code, a flag code, DEFICIENT or "
                "BORDERLINE_NEEDS_MMA (see the urgency order below)",
        "urgency": "the item's place in the urgency order below, 1 = most urgent; a DEFICIENT row's number "
                   "depends on its situation (neurological involvement, untreated, treated)",
        "next_action": "what to do, in plain words",
        "detail": "the evidence in words: results, dates and the window in which a test was missing",
        "open_since": "since when the gap is open (YYYY-MM-DD): for a reason the day its window closed (for "
                      "example the day after the last B12 test fell out of the annual window for "
                      "PA_OVERDUE_ANNUAL_B12), or the date of the "
                      "latest result the status rests on when the reason has no date of its own; for a flag its "
                      "date; for DEFICIENT and BORDERLINE_NEEDS_MMA the date of the result; empty when no date "
                      "is known",
    },
    "deficient": {
        "patient_id": "the patient identifier as exported",
        "practice": "the patient's practice; (no practice) when none is recorded",
        "rule_id": "the rule that made the patient deficient (B12_DEFICIENT, HOLOTC_DEFICIENT, FUNCTIONAL_MMA, "
                   "MMA_ON_SUPPLEMENT)",
        "treatment": "treated (B12 active on the result's date or started soon after) or untreated",
        "index_analyte": "the test the status rests on: b12, holotc, or mma for MMA_ON_SUPPLEMENT",
        "index_value": "its value as the laboratory reported it (< or > for a censored value)",
        "index_unit": "its unit as reported",
        "index_date": "its collection date",
        "index_value_pmol_l": "its value in pmol/L (empty when the test is not measured in pmol/L)",
        "mma_value": "the MMA result that decided the status, when one did",
        "mma_unit": "its unit",
        "mma_date": "its collection date",
        "has_pa": "true when pernicious anaemia is on record",
        "on_b12": "true when a B12 medication is active on the as-of date",
        "treatment_start": "the start of the patient's first B12 medication record",
        "neuro_involvement": "true when a diagnosis points to neurological involvement",
        "neuro_detail": "those diagnoses, with their dates",
        "next_action": "what to do, in plain words",
    },
    "borderline": {
        "patient_id": "the patient identifier as exported",
        "practice": "the patient's practice; (no practice) when none is recorded",
        "rule_id": "BORDERLINE_NEEDS_MMA or BORDERLINE_MMA_NORMAL",
        "mma_status": "needed (no MMA around the borderline result: order one) or normal",
        "index_analyte": "the borderline test: b12 or holotc",
        "index_value": "its value as the laboratory reported it",
        "index_unit": "its unit as reported",
        "index_date": "its collection date",
        "mma_value": "the normal MMA result, when there is one",
        "mma_unit": "its unit",
        "mma_date": "its collection date",
        "has_pa": "true when pernicious anaemia is on record",
        "on_b12": "true when a B12 medication is active on the as-of date",
    },
    "under_monitored": {
        "patient_id": "the patient identifier as exported",
        "practice": "the patient's practice; (no practice) when none is recorded",
        "reasons": "the patient's reason codes, most urgent first",
        "priority": "the urgency of the patient's most urgent reason (reason_codes), 1 = most urgent",
        "last_test_date": "the date of the latest B12, holoTC or MMA test (empty: never tested)",
        "status": "the patient's status (deficient, borderline_needs_mma, borderline_mma_normal, normal, "
                  "not_tested)",
        "rule_id": "the rule behind the status",
        "index_analyte": "the test the status rests on",
        "index_value": "its value as reported",
        "index_unit": "its unit as reported",
        "index_date": "its collection date",
        "has_pa": "true when pernicious anaemia is on record",
        "on_b12": "true when a B12 medication is active on the as-of date",
        "treatment_start": "the start of the patient's first B12 medication record",
        "neuro_involvement": "true for a deficient patient with neurological involvement (listed first)",
        "next_action": "what to do for each reason, most urgent first, each action once",
        "details": "each reason with its evidence in words",
    },
    "flagged": {
        "patient_id": "the patient identifier as exported",
        "practice": "the patient's practice; (no practice) when none is recorded",
        "flags": "the patient's flag codes, most urgent first",
        "priority": "the urgency of the patient's most urgent flag (flag_codes), 1 = most urgent",
        "first_flag_date": "the earliest date of the patient's flags",
        "status": "the patient's status",
        "rule_id": "the rule behind the status",
        "has_pa": "true when pernicious anaemia is on record",
        "on_b12": "true when a B12 medication is active on the as-of date",
        "next_action": "what to do for each flag, most urgent first, each action once",
        "details": "each flag with its date and evidence in words",
    },
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


def cell_text(column: str, column_type: str) -> str:
    """SQL for one column's CSV cell: a date as YYYY-MM-DD, a boolean as true/false, a fraction with up to 10
    significant digits, and text a spreadsheet would run as a formula (=, +, @, tab or CR first, or - not
    starting a number) quoted with '. Made by DuckDB, not cell by cell in Python: the 5.8 million cells of the
    worklists of 1M patients took 5 s that way."""
    quoted = f'"{column}"'
    if column_type == "BOOLEAN":
        return f"case when {quoted} then 'true' when not {quoted} then 'false' end"
    if column_type in ("DOUBLE", "FLOAT"):
        return f"printf('%.10g', {quoted})"
    if column_type in ("DATE", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"):
        return f"cast({quoted} as varchar)"
    text = f"cast({quoted} as varchar)"
    formula = (f"regexp_matches({text}, '^[=+@\\t\\r]') "
               f"or (starts_with({text}, '-') and not regexp_full_match({text}, '-[0-9]+([.][0-9]+)?'))")
    return f"case when {formula} then chr(39) || {text} else {text} end"


def csv_rows_query(con: duckdb.DuckDBPyConnection, cohort: str) -> str:
    """worklist_query(cohort, practices=True) with each cell as its CSV text (cell_text, left unnamed so that the
    order is the columns'), then the practice as the mart holds it (what the rows are grouped by; not written):
    one practice's rows after another, each in worklist order."""
    table, order = SOURCES[cohort]
    relation = con.sql(worklist_query(cohort))
    cells = [cell_text(column, str(column_type)) for column, column_type in zip(relation.columns, relation.types)]
    return (f"select {', '.join(cells)}, practice from {table} "
            f"where practice in (select unnest($practices::varchar[])) order by practice, {order}")


def readme_text(con: duckdb.DuckDBPyConnection, headers: dict[str, list[str]]) -> str:
    """The legend of the worklists folder: the folders, each file's columns (`headers`: worklist -> its CSV
    header), what priority and urgency mean, and the urgency order of items/ from the mart worklist_items."""
    as_of, version, profile = con.execute(
        "select as_of, rules_version, rules_profile from rules_settings").fetchall()[0]
    order = con.execute(URGENCY_ORDER_QUERY).fetchall()
    tiers = con.execute("select tier, description from worklist_tiers order by tier").fetchall()
    lines = [
        f"Worklists as of {as_of.isoformat()} (rules {version}, profile {profile})",
        "",
        *_wrapped("These files name patients: they are readable by the owner and group of this folder only. "
                  "Do not forward them by email."),
        "",
        *_wrapped("Each folder holds one CSV file per practice, named after the practice (no-practice.csv: "
                  "patients without a practice). Every practice has a file in every folder: a file with only "
                  "its header means there is nothing to do. Rows are most urgent first. A cell a spreadsheet "
                  "would read as a formula starts with an apostrophe ('). Dates are YYYY-MM-DD."),
        "",
        "FOLDERS",
        "",
    ]
    folders = sorted(COHORTS, key=lambda cohort: cohort != "items")  # the whole worklist first
    for cohort in folders:
        lines += _wrapped(FOLDER_NOTES[cohort], f"  {cohort + '/':<18}")
    lines += [
        "",
        "PRIORITY AND URGENCY (1 is the most urgent)",
        "",
        *_wrapped("urgency (items/): the item's place in one order across every item, listed below. Rows are "
                  "sorted by urgency, then by open_since (the gap open longest first), then by patient.", "  "),
        *_wrapped("priority (under_monitored/, flagged/): the urgency of the patient's most urgent reason (1 to "
                  f"{_count(order, 'reason')}, in the order of the reasons below) or flag (1 to "
                  f"{_count(order, 'flag')}, in the order of the flags below), on the folder's own scale; "
                  "deficient patients with neurological involvement come first in under_monitored/ whatever "
                  "their priority.", "  "),
        *_wrapped("deficient/ and borderline/ have no number: deficient/ lists neurological involvement first, "
                  "then untreated, then the lowest result, then the oldest; borderline/ lists MMA needed first, "
                  "then the oldest result.", "  "),
        "",
        "URGENCY ORDER OF items/",
        "",
        *_wrapped("The items are numbered through these tiers, in this order, and within a tier in the order "
                  "of the reasons' and flags' own urgency:", "  "),
    ]
    for tier, description in tiers:
        lines += _wrapped(description, f"  {tier:>4}. ")
    lines += [
        "",
        f"  {'urgency':>7}  {'item':<38}  next action  [label]",
    ]
    for urgency, item, kind, label, next_action in order:
        name = item if kind != "deficient" else f"{item} ({label.removeprefix('Deficient, ')})"
        lines += _wrapped(f"{next_action}  [{label}]", f"  {urgency:>7}  {name:<38}  ")
    lines += ["", "COLUMNS", ""]
    for cohort in folders:
        lines.append(f"  {cohort}/")
        notes = COLUMN_NOTES[cohort]
        for column in headers[cohort]:
            lines += _wrapped(notes.get(column, ""), f"    {column:<20}")
        lines.append("")
    return "\n".join(lines)


def _count(order: list[tuple], kind: str) -> int:
    return sum(1 for row in order if row[2] == kind)


def _wrapped(text: str, prefix: str = "", width: int = 110) -> list[str]:
    """`text` wrapped to `width`, the first line after `prefix`, the others indented as far."""
    return textwrap.wrap(text, width=width, initial_indent=prefix, subsequent_indent=" " * len(prefix)) or [prefix]


def _write_text(path: Path, text: str) -> None:
    """A text file created with the worklists' file mode, never readable by others, even for a moment."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text + "\n")
    os.chmod(path, FILE_MODE)


KEYS_NAME = ".keys.json"
_CODE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]  # how a file is written


def file_keys(con: duckdb.DuckDBPyConnection, cohort: str, practices: set[str]) -> dict[str, tuple[int, str]]:
    """Practice -> (rows, key) of its file in `cohort`: files with equal keys are the same file (module
    docstring)."""
    summed = {practice: (count, digest) for practice, count, digest in con.execute(
        f"select practice, count(*), sum(hash(*columns(*))::hugeint)::varchar from ({worklist_query(cohort)}) "
        "group by practice").fetchall()}
    columns = ",".join(COLUMN_NOTES[cohort])
    keys = {}
    for practice in practices:
        count, digest = summed.get(practice, (0, ""))
        keys[practice] = (count, f"{_CODE_DIGEST}:{columns}:{count}:{digest}")
    return keys


def _previous_keys(previous: Path | None) -> dict[str, str]:
    try:
        return json.loads((previous / KEYS_NAME).read_text(encoding="utf-8")) if previous is not None else {}
    except (OSError, ValueError):
        return {}


# Rows fetched from DuckDB at a time, and characters of CSV text written to a file at a time: a cohort's rows
# are never held whole (the under-monitored of 3M patients: about 2 GiB as Python strings).
_FETCH_ROWS = 20_000
_WRITE_CHARS = 1 << 20


def _practice_files(con: duckdb.DuckDBPyConnection, query: str, practices: list[str], folder: Path,
                    slugs: dict[str, str], columns: list[str]) -> dict[str, int]:
    """Each practice's CSV file in `folder` from `query` (csv_rows_query: one practice's rows after another),
    a file with the header alone for a practice with no row; returns practice -> rows written."""
    rows = dict.fromkeys(practices, 0)
    handle, text, writer, practice = None, io.StringIO(newline=""), None, None

    def open_file(name: str):
        nonlocal handle, writer
        # Created with the final mode, so the file is never readable by others, even for a moment.
        descriptor = os.open(folder / f"{slugs[name]}.csv", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        handle = os.fdopen(descriptor, "w", encoding="utf-8-sig", newline="")
        writer = csv.writer(text)
        writer.writerow(columns)

    def flush():  # the text so far, in one write: a write per row encodes each row apart
        handle.write(text.getvalue())
        text.seek(0)
        text.truncate()

    def close_file():
        flush()
        handle.close()

    result = con.execute(query, {"practices": practices})
    try:
        while batch := result.fetchmany(_FETCH_ROWS):
            for row in batch:
                if row[-1] != practice:
                    if handle is not None:
                        close_file()
                    practice = row[-1]
                    open_file(practice)
                writer.writerow(row[:-1])
                rows[practice] += 1
            if text.tell() > _WRITE_CHARS:
                flush()
    finally:
        if handle is not None:
            close_file()
    for name in practices:
        if not rows[name]:
            open_file(name)
            close_file()
    for name in practices:
        os.chmod(folder / f"{slugs[name]}.csv", FILE_MODE)
    return rows


def write_worklists(con: duckdb.DuckDBPyConnection, report_dir: Path, run_tag: str = "new",
                    previous: Path | None = None) -> list[Worklist]:
    """Write every worklist (the cohorts and items/) from the publication in `con` to report_dir/worklists/,
    with README.txt beside them; return the worklists. `previous`: the live publication's worklists folder,
    whose files with the same rows are linked rather than written again."""
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / WORKLISTS_DIR_NAME
    for leftover in report_dir.glob(f".{WORKLISTS_DIR_NAME}.*"):  # left by a run killed while writing
        shutil.rmtree(leftover, ignore_errors=True)
    building = report_dir / f".{WORKLISTS_DIR_NAME}.{run_tag}.tmp"
    building.mkdir(mode=DIR_MODE)
    os.chmod(building, DIR_MODE)

    # Every practice gets a file in every cohort, even an empty one: the practices first, then one cohort at a
    # time, its rows streamed into the files (_practice_files), never held whole.
    practices = {name for (name,) in con.execute(f"select distinct {_PRACTICE} from patient_status").fetchall()}
    for cohort in COHORTS:
        practices.update(name for (name,) in con.execute(
            f"select distinct practice from {SOURCES[cohort][0]}"
        ).fetchall())
    slugs = practice_slugs(sorted(practices))

    written: list[Worklist] = []
    headers: dict[str, list[str]] = {}
    known, keys = _previous_keys(previous), {}
    for cohort in COHORTS:
        first = len(written)
        folder = building / cohort
        folder.mkdir(mode=DIR_MODE)
        os.chmod(folder, DIR_MODE)
        reused = set()
        for practice, (count, key) in file_keys(con, cohort, practices).items():
            name = f"{cohort}/{slugs[practice]}.csv"
            keys[name] = key
            if known.get(name) == key and hard_link(previous / name, building / name):
                reused.add(practice)
                written.append(Worklist(cohort, practice, target / name, count))
        to_write = sorted(practices - reused)
        columns = list(COLUMN_NOTES[cohort])
        headers[cohort] = columns
        rows = _practice_files(con, csv_rows_query(con, cohort), to_write, folder, slugs, columns) if to_write else {}
        for practice in to_write:
            written.append(Worklist(cohort, practice, target / cohort / f"{slugs[practice]}.csv", rows[practice]))
        written[first:] = sorted(written[first:], key=lambda worklist: worklist.practice)
    _write_text(building / README_NAME, readme_text(con, headers))
    _write_text(building / KEYS_NAME, json.dumps(keys, sort_keys=True))

    previous = report_dir / f".{WORKLISTS_DIR_NAME}.{run_tag}.old"
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        os.replace(target, previous)
    os.replace(building, target)
    os.chmod(target, DIR_MODE)
    shutil.rmtree(previous, ignore_errors=True)
    return written
