"""Where a night's warehouse starts from: the live publication's, when an incremental build may follow it.

A nightly run's warehouse is built in its own publication folder and switched in whole (publication.py). An
incremental night starts that warehouse as a copy of the live one, which holds, besides the marts and the
lake tables, the patient-level models' tables (schema `incremental`) and the state of the build that made
them (`incremental.build_state`). The copy gets the rows of the lake files committed since, and the list of
patients whose rows can have changed (`incremental.rebuild_patients`): those the new files name, and those
whose rows of the previous as-of date held only until tonight's as-of date or earlier
(`incremental.int_patient_validity`). The dbt models then rebuild those patients only
(transforms/macros/incremental.sql). The copy is a file copy: the warehouse stays one self-contained, movable
file.

A night starts afresh (a full build, exactly as `dbt build` in an empty warehouse) when there is no live
publication, when it was built by other models or rules (the fingerprint differs), when its lake files are not
all still committed, for a reproduction (a past date), and when the trend gains a month end the live
publication did not evaluate (a month end passed without a night on it): that month end must be evaluated
for everyone.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb

from b12lab.common.paths import TRANSFORMS_DIR
from b12lab.lake.lake import DATA_SCHEMAS, DATA_TABLES, Lake, empty_relation_sql
from b12lab.rules.rules_file import Rules

SCHEMA = "incremental"
BUILD_STATE = f"{SCHEMA}.build_state"
REBUILD_PATIENTS = f"{SCHEMA}.rebuild_patients"
LAKE_FILES = f"{SCHEMA}.lake_files"  # the committed lake files whose rows the warehouse holds


@dataclass(frozen=True)
class BuildStart:
    """How tonight's warehouse starts: from `previous` (a warehouse file to copy) or empty (a full build)."""

    previous: Path | None
    reason: str  # why: said in the run's log

    @property
    def incremental(self) -> bool:
        return self.previous is not None


def fingerprint(rules: Rules) -> str:
    """A digest of what every model row depends on besides the data and the as-of date: the dbt project's
    files (models, macros, seeds, variables), dbt's version and the rules in force."""
    import dbt.version

    digest = hashlib.sha256(str(dbt.version.__version__).encode())
    for path in sorted(p for p in TRANSFORMS_DIR.rglob("*")
                       if p.is_file() and p.suffix in (".sql", ".yml", ".csv")):
        digest.update(str(path.relative_to(TRANSFORMS_DIR)).encode() + b"\0" + path.read_bytes())
    digest.update(json.dumps([rules.version, rules.profile, rules.settings, sorted(map(list, rules.codes))],
                             default=str, sort_keys=True).encode())
    return digest.hexdigest()


def choose_start(live_warehouse: Path, lake: Lake, rules: Rules, as_of: date, reproduction: bool) -> BuildStart:
    """Whether tonight's build may start from the live warehouse, and why not when it may not."""
    if reproduction:
        return BuildStart(None, "a reproduction is built afresh")
    if not live_warehouse.is_file():
        return BuildStart(None, "no earlier publication")
    try:
        with duckdb.connect(str(live_warehouse), read_only=True) as con:
            state = con.execute(f"select as_of, fingerprint from {BUILD_STATE}").fetchall()
            held = {(table, name) for table, name in con.execute(
                f"select table_name, file_name from {LAKE_FILES}").fetchall()}
    except duckdb.Error:
        return BuildStart(None, "the live warehouse holds no incremental state")
    if len(state) != 1:
        return BuildStart(None, "the live warehouse holds no incremental state")
    previous_as_of, previous_fingerprint = state[0]
    if previous_fingerprint != fingerprint(rules):
        return BuildStart(None, "the models or rules changed since the live publication")
    if as_of < previous_as_of:
        return BuildStart(None, "the as-of date is before the live publication's")
    if not evaluates_the_same_month_ends(previous_as_of, as_of):
        return BuildStart(None, "a month end passed without a night on it")
    if not held <= _committed_lake_files(lake):
        return BuildStart(None, "the live warehouse holds lake files no longer committed")
    return BuildStart(live_warehouse, "incremental: from the live publication")


def evaluates_the_same_month_ends(previous_as_of: date, as_of: date) -> bool:
    """Whether the trend's month ends as of `as_of` (stg_as_of_dates: the last day of each month before the
    as-of date's) are all dates the build as of `previous_as_of` evaluated: the same month, or the next month
    after a night on the last day of the month before."""
    months_apart = (as_of.year - previous_as_of.year) * 12 + as_of.month - previous_as_of.month
    last_day_of_its_month = (previous_as_of + timedelta(days=1)).month != previous_as_of.month
    return months_apart == 0 or (months_apart == 1 and last_day_of_its_month)


def start_empty(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """A full build: the lake files it holds (the models' own sources are created empty by the dbt project's
    on-run-start, so that `dbt build` alone in an empty warehouse is the same full build)."""
    con.execute(f"create schema if not exists {SCHEMA}")
    _record_lake_files(con, _committed_lake_files(lake))


# Linux's FICLONE ioctl (linux/fs.h, _IOW(0x94, 9, int)): make a file share another's blocks.
_FICLONE = 0x40049409


def copy_previous(previous: Path, warehouse: Path) -> str:
    """Tonight's warehouse as a copy of the live one; returns how it was made, "cloned" or "copied".

    Where the filesystem has reflinks (XFS, the default of RHEL 8 and later; Btrfs; ZFS 2.2 and later) the copy
    is a clone: it shares the live file's blocks until tonight's build writes its own, so it costs neither time
    nor space however large the warehouse is, and the live file is never written. Elsewhere (ext4, NFS, another
    system) it is a byte copy: about 10 s for the 9.8 GB warehouse of 30M lab rows on this project's ext4
    test machine."""
    temporary = warehouse.with_name(f".{warehouse.name}.copy.tmp")
    try:
        _clone(previous, temporary)
        how = "cloned"
    except (OSError, ImportError):  # no reflinks here (EOPNOTSUPP, EXDEV, ENOTTY), or no fcntl (Windows)
        temporary.unlink(missing_ok=True)
        shutil.copyfile(previous, temporary)
        how = "copied"
    temporary.replace(warehouse)
    return how


def _clone(source: Path, target: Path) -> None:
    import fcntl  # POSIX only

    with open(source, "rb") as original, open(target, "wb") as clone:
        fcntl.ioctl(clone.fileno(), _FICLONE, original.fileno())


def add_new_lake_files(con: duckdb.DuckDBPyConnection, lake: Lake, as_of: date) -> int:
    """Append the rows of the lake files committed since the copied warehouse's build; list in
    `incremental.rebuild_patients` the patients they name and those whose rows expire by `as_of`; return the
    number of files added."""
    held = {(table, name) for table, name in con.execute(f"select table_name, file_name from {LAKE_FILES}").fetchall()}
    committed = lake.committed_hashes()
    con.execute(f"delete from {REBUILD_PATIENTS}")
    added = 0
    for table in DATA_TABLES:
        new_files = [path for path in lake.committed_files(table, committed) if (table, path.name) not in held]
        if not new_files:
            continue
        paths = ", ".join("'" + str(path.resolve()).replace("'", "''") + "'" for path in new_files)
        con.execute(f"create or replace temporary table new_rows as "
                    f"select * from read_parquet([{paths}], union_by_name = true) "
                    f"union all by name {empty_relation_sql(table)}")
        con.execute(f"insert into {table} by name select * from new_rows")
        if "patient_id" in DATA_SCHEMAS[table].names:  # the tables of patients' records, not the accounting
            con.execute(f"insert into {REBUILD_PATIENTS} select distinct patient_id from new_rows "
                        "where patient_id is not null")
        con.execute("drop table new_rows")
        added += len(new_files)
    con.execute(f"insert into {REBUILD_PATIENTS} select patient_id from {SCHEMA}.int_patient_validity "
                "where valid_until <= $as_of", {"as_of": as_of})
    con.execute(f"create temporary table distinct_changed as select distinct patient_id from {REBUILD_PATIENTS}")
    con.execute(f"delete from {REBUILD_PATIENTS}")
    con.execute(f"insert into {REBUILD_PATIENTS} select patient_id from distinct_changed")
    con.execute("drop table distinct_changed")
    _record_lake_files(con, _committed_lake_files(lake, committed))
    return added


def _committed_lake_files(lake: Lake, committed: set[str] | None = None) -> set[tuple[str, str]]:
    """(table, file name) of every committed data file; the commit records are read once for all tables."""
    committed = lake.committed_hashes() if committed is None else committed
    return {(table, path.name) for table in DATA_TABLES for path in lake.committed_files(table, committed)}


def _record_lake_files(con: duckdb.DuckDBPyConnection, files: set[tuple[str, str]]) -> None:
    con.execute(f"create or replace table {LAKE_FILES} (table_name varchar, file_name varchar)")
    if files:
        # one statement: executemany inserts row by row, about 0.7 ms a file (5 s for a night of 600 Bundles)
        tables, names = zip(*sorted(files))
        con.execute(f"insert into {LAKE_FILES} select unnest($tables), unnest($names)",
                    {"tables": list(tables), "names": list(names)})


# What a night with no patient to rebuild on the same as-of date still builds: the models that read the lake's
# accounting (the night's files, outcomes and runs), not its patients' records. Every other model's rows are
# those of the copied warehouse, already tested.
ACCOUNTING_SOURCES = ("quarantine", "unmapped_codes", "unreadable_fields", "ingested_files", "ingest_outcomes",
                      "runs", "run_metrics")


@dataclass(frozen=True)
class NightlySelection:
    """dbt's node selection for tonight's build (dbt's --select and --exclude syntax); both empty: every node."""

    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    scope: str = ""  # said on the terminal when the build is not the whole project


# A copied warehouse holds the seeds (the vocabularies and reference tables) of a build with the same
# fingerprint, whose files include the seeds' CSV: they are tonight's seeds already. (Their tests check the
# project's files and run in the test suite, never at night: dbt_build.SEED_TESTS.)
SEEDS_ALREADY_BUILT = ("resource_type:seed",)


def models_to_build(warehouse: Path, as_of: date) -> NightlySelection:
    """What tonight's build builds: every node in a warehouse built afresh; the models (not the seeds) in a copy
    of the live warehouse; only the models downstream of the accounting in a copy built as of the same date with
    no patient to rebuild."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        try:
            [(previous_as_of, rebuild)] = con.execute(
                f"select (select max(as_of) from {BUILD_STATE}), (select count(*) from {REBUILD_PATIENTS})").fetchall()
        except duckdb.Error:
            return NightlySelection()
    if previous_as_of is None:
        return NightlySelection()
    if previous_as_of != as_of or rebuild:
        return NightlySelection(exclude=SEEDS_ALREADY_BUILT, scope="the seeds are the live publication's")
    return NightlySelection(select=tuple(f"source:lake.{table}+" for table in ACCOUNTING_SOURCES),
                            scope="no patient to rebuild: the models of the night's accounting only")


def record_build_state(con: duckdb.DuckDBPyConnection, rules: Rules) -> None:
    """After the models are built, before the working models are dropped: what the next night starts from.
    A build of the accounting's models only (models_to_build) leaves the state as it was."""
    built_dates = con.execute("select count(*) from duckdb_tables() where schema_name = 'main' "
                              "and table_name = 'stg_as_of_dates'").fetchall()[0][0]
    if not built_dates:
        return
    con.execute(f"delete from {BUILD_STATE}")
    con.execute(f"insert into {BUILD_STATE} select max(as_of), list(as_of order by as_of), $fingerprint "
                "from main.stg_as_of_dates", {"fingerprint": fingerprint(rules)})
    con.execute(f"delete from {REBUILD_PATIENTS}")
