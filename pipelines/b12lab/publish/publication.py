"""Commit ingested files to the lake, build a publication, and switch it in atomically.

A publication is one folder, OUTPUT/publications/<run_id>/, holding everything a run publishes:

    warehouse.duckdb      the catalog analysts query: marts, lake tables and rules, all as tables
    <mart>.parquet        each mart, for Spark, Trino or pandas
    report/               the QI report and the worklists
    catalogue/index.html  dbt's catalogue of the models: every table, column and test, and the lineage
    gx/                   Great Expectations results and Data Docs
    run_summary.json

It is built whole, then made live by one atomic switch: the link OUTPUT/current is renamed over to point at
it. OUTPUT/warehouse.duckdb and OUTPUT/report are fixed links through `current`, so the warehouse, the marts,
the report and the worklists change together or not at all; a run that fails before the switch (a report
that cannot be built included) leaves the previous publication whole. An analyst who holds the old
warehouse open keeps reading it; a new connection sees the new one.

The warehouse holds copies of the lake tables, not views over lake paths: it opens and reads the same data
wherever the output folder is moved or copied, and a copy never reads the original's files.

A run as of a date before the live publication's is a reproduction: the same folder is built under
OUTPUT/as-of/<date>/ and the live publication is not touched.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Collection, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import yaml

from b12lab.common.duck import connect
from b12lab.common.faults import crash_point
from b12lab.common.layout import REPORT_NAME, WAREHOUSE_NAME, OutputLayout, PublicationLayout
from b12lab.common.links import hard_link
from b12lab.common.settings import variable
from b12lab.lake.lake import (BOOKKEEPING_SCHEMAS, COMMIT_TABLE, DATA_TABLES, METRICS_TABLE, OUTCOMES_TABLE,
                              RUNS_TABLE, Lake, empty_relation_sql, table_ddl)
from b12lab.lake.runs import RunRecord
from b12lab.publish import buckets, incremental
from b12lab.publish.incremental import BuildStart
from b12lab.publish.pseudonymise import build_analytics
from b12lab.rules.rules_file import Rules, install_rules
from b12lab.publish.dbt_build import MART_TABLES, MODELS_DIR, WORKING_MODELS

# Earlier publications are kept a few nights for comparison; one an analyst holds open stays readable to
# them after it is removed (the file lives on until its last reader closes it).
PUBLICATIONS_KEPT = 7

# The output contract: the marts (transforms/models/marts/), published in the catalog and as Parquet,
# and the lake tables, copied into the catalog.
LAKE_VIEWS = (*DATA_TABLES, COMMIT_TABLE, OUTCOMES_TABLE, RUNS_TABLE, METRICS_TABLE)



class IngestedFile(Protocol):
    """What committing needs of a file's account (b12lab.ingest's FileAccount is one)."""

    source_file: str
    source_hash: str
    kind: str
    rows_read: int
    rows_accepted: int
    rows_quarantined: int
    rows_dropped: int
    by_reason: Mapping[tuple[str, str], int]


def live_as_of(layout: OutputLayout) -> date | None:
    """The as-of date of the live publication, or None before the first one."""
    summary = layout.live.summary
    try:
        return date.fromisoformat(json.loads(summary.read_text())["as_of"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def new_rows_files(lake: Lake, source_hashes: list[str]) -> dict[str, list[Path]]:
    """The files this run wrote to each lake table (not yet committed), for validation."""
    files = {}
    for table in DATA_TABLES:
        paths = [path for h in source_hashes if (path := lake.data_file(table, h)).exists()]
        if paths:
            files[table] = paths
    return files


def commit_files(lake: Lake, run_id: str, accounts: list[IngestedFile]) -> None:
    """Record the outcomes, then the commit record: from this moment the files are part of the lake."""
    if not accounts:
        return
    committed_at = datetime.now()
    outcomes = [
        {"source_file": a.source_file, "source_hash": a.source_hash, "ingest_run": run_id,
         "outcome": outcome, "reason": reason, "rows": rows}
        for a in accounts for (outcome, reason), rows in sorted(a.by_reason.items())
    ]
    lake.append_rows(OUTCOMES_TABLE, run_id, outcomes)
    files = [
        {"source_file": a.source_file, "source_hash": a.source_hash, "kind": a.kind, "ingest_run": run_id,
         "committed_at": committed_at, "rows_read": a.rows_read, "rows_accepted": a.rows_accepted,
         "rows_quarantined": a.rows_quarantined, "rows_dropped": a.rows_dropped}
        for a in accounts
    ]
    lake.append_rows(COMMIT_TABLE, run_id, files)


def record_run(lake: Lake, record: RunRecord) -> None:
    lake.append_rows(RUNS_TABLE, record.run_id, [record.as_dict()])


def write_summary(layout: OutputLayout, publication: PublicationLayout | None, text: str,
                  latest: bool = True) -> None:
    """The run's summary in its publication folder and, for a nightly run, as OUTPUT/run_summary.json."""
    if publication is not None:
        publication.root.mkdir(parents=True, exist_ok=True)
        publication.summary.write_text(text)
    if latest:
        target = layout.summary
        temporary = target.with_suffix(".json.tmp")
        temporary.write_text(text)
        os.replace(temporary, target)


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_lake_views(con: duckdb.DuckDBPyConnection, lake: Lake, materialise: bool = False,
                      run_record: RunRecord | None = None, tables: tuple[str, ...] = LAKE_VIEWS) -> None:
    """One relation per lake table over the committed files; `run_record` is added to `runs`.

    Views (for in-memory work) name the committed files explicitly, as quoted literals: a view's stored SQL
    cannot hold bound parameters, and these are paths this program made (hash- or run-named), never input
    names. `materialise` copies the rows into tables instead, which a published warehouse needs to stay
    readable when it is moved and to never read another folder's lake.
    """
    kind = "table" if materialise else "view"
    committed = lake.committed_hashes() if set(tables) & set(DATA_TABLES) else set()  # read once for all tables
    for table in tables:
        files = lake.committed_files(table, committed) if table in DATA_TABLES else lake.files(table)
        if files:
            paths = ", ".join(_quote_literal(str(path.resolve())) for path in files)
            # union by name with the declared columns: files written before a column was added read it as null
            con.execute(f"create or replace {kind} {table} as "
                        f"select * from read_parquet([{paths}], union_by_name = true) "
                        f"union all by name {empty_relation_sql(table)}")
        else:
            # No file of the table yet: the table still exists, empty, with the lake contract's columns.
            con.execute(f"create or replace table {table} ({table_ddl(table)})")
    if run_record is not None:
        if not materialise:
            raise ValueError("a run record is added to a materialised runs table only")
        # The run's own record, published with it; the lake's copy is written once the switch is done.
        this_run = pa.Table.from_pylist([run_record.as_dict()], schema=BOOKKEEPING_SCHEMAS[RUNS_TABLE])
        con.register("this_run", this_run)
        con.execute(f"insert into {RUNS_TABLE} by name select * from this_run")
        con.unregister("this_run")


def prepare_warehouse(layout: OutputLayout, publication: PublicationLayout, rules: Rules, as_of: date,
                      run_record: RunRecord, start: BuildStart) -> Path:
    """The publication folder's warehouse with the models' sources in it: the lake tables as committed (and
    this run's record) and the rules tables as of `as_of`; return its path. An incremental start copies the
    live warehouse and adds the lake files committed since (b12lab.publish.incremental); a full one copies
    every lake table. The models are built in it next (b12lab.publish.dbt_build.build), by dbt's own
    connection, so this one is closed first."""
    lake = Lake(layout.lake)
    publication.root.mkdir(parents=True, exist_ok=True)
    warehouse = publication.warehouse
    warehouse.unlink(missing_ok=True)
    if start.incremental:
        started = time.perf_counter()
        how = incremental.copy_previous(start.previous, warehouse)
        seconds = time.perf_counter() - started
        copied = f"{how} the live warehouse ({warehouse.stat().st_size / 1e9:.1f} GB) in {seconds:.1f} s"
    with connect(warehouse, temp_dir=layout.scratch) as con:
        if start.incremental:
            bookkeeping = tuple(table for table in LAKE_VIEWS if table not in DATA_TABLES)
            create_lake_views(con, lake, materialise=True, run_record=run_record, tables=bookkeeping)
            files = incremental.add_new_lake_files(con, lake, as_of)
            patients = con.execute(f"select count(*) from {incremental.REBUILD_PATIENTS}").fetchall()[0][0]
            print(f"models: {start.reason}; {copied}; {files} lake files added, {patients} patients to rebuild")
        else:
            create_lake_views(con, lake, materialise=True, run_record=run_record)
            incremental.start_empty(con, lake)
            print(f"models: a full build ({start.reason})")
        install_rules(con, rules, as_of)
        con.execute("checkpoint")
    return warehouse


def finish_warehouse(layout: OutputLayout, publication: PublicationLayout, rules: Rules, run_id: str,
                     start: BuildStart | None = None, rebuilt: Collection[str] = ()) -> Path:
    """After the models are built: the run's own headline counts added to run_metrics (the lake's copy is
    written once the run is switched in), each mart as Parquet beside the warehouse (write_mart_files), the
    staging and intermediate tables dropped (steps, not products), the lake and rules tables described; return
    the warehouse. `start`: how the warehouse started (a copy of the live one, or empty); `rebuilt`: the models
    tonight's build built."""
    warehouse = publication.warehouse
    with connect(warehouse, temp_dir=layout.scratch) as con:
        con.execute(f"insert into {METRICS_TABLE} {_RUN_METRICS_QUERY}", {"run_id": run_id})
        write_mart_files(con, publication, start, rebuilt)
        incremental.record_build_state(con, rules)
        buckets.forget_buckets(con)
        for table in WORKING_MODELS:  # the incremental schema's models stay: the next night starts from them
            con.execute(f"drop table if exists main.{table}")
        apply_comments(con)
        comment_rules_settings(con, rules)
        con.execute("checkpoint")
    return warehouse


def write_mart_files(con: duckdb.DuckDBPyConnection, publication: PublicationLayout, start: BuildStart | None,
                     rebuilt: Collection[str]) -> None:
    """Each mart as Parquet beside the warehouse. A mart that tonight's build did not build, in a warehouse
    that started as a copy of the live one, holds the live publication's rows: its Parquet file is the live
    one's, linked (a hard link: a second name for the same file, so each publication folder stays whole when
    the other is removed) or copied where links are not possible. A night with no patient to rebuild builds
    only the accounting's models, so the large marts (result_classification: 11M rows, 6.8 s to write at 10M
    lab rows) are not written again."""
    previous = PublicationLayout(start.previous.resolve().parent) if start is not None and start.incremental else None
    reused = []
    # A table's rows have no order (every reader orders by the table's key): without keeping the table's
    # storage order, DuckDB writes the file on every thread (result_classification at 10M lab rows, 11.2M rows:
    # 10.3 s down to 6.3 s on 2 cores, the same 255 MiB).
    con.execute("set preserve_insertion_order = false")
    for table in MART_TABLES:
        target = publication.mart_file(table)
        if previous is not None and table not in rebuilt and _same_file(previous.mart_file(table), target):
            reused.append(table)
            continue
        con.execute("copy (select * from " + table + ") to $target (format parquet, compression zstd)",
                    {"target": str(target)})
    con.execute("reset preserve_insertion_order")
    if reused:
        print(f"marts' Parquet: {len(MART_TABLES) - len(reused)} written, {len(reused)} not rebuilt tonight "
              "and the live publication's")


def _same_file(source: Path, target: Path) -> bool:
    """`target` as a second name of `source`, or a copy where links are not possible; False when `source` is
    not there."""
    target.unlink(missing_ok=True)
    if hard_link(source, target):
        return True
    try:
        shutil.copyfile(source, target)
    except FileNotFoundError:
        return False
    return True


def stamp_finished(layout: OutputLayout, publication: PublicationLayout, run_id: str, finished_at: datetime) -> None:
    """The time the run ends, on its own `runs` row in its warehouse (added without one before the models ran):
    called just before the switch, the run's last step, so the warehouse, the lake and the summary agree."""
    with connect(publication.warehouse, temp_dir=layout.scratch) as con:
        con.execute(f"update {RUNS_TABLE} set finished_at = $finished_at where run_id = $run_id",
                    {"finished_at": finished_at, "run_id": run_id})
        con.execute("checkpoint")


# The run's headline counts: cohort_counts for the whole population on the run's date.
_RUN_METRICS_QUERY = """
    select $run_id as run_id, cohort_counts.as_of, cohort_counts.metric, cohort_counts.patients as value
    from cohort_counts
    inner join rules_settings on rules_settings.as_of = cohort_counts.as_of
    where cohort_counts.practice is null
    order by cohort_counts.metric"""


def record_metrics(lake: Lake, run_id: str, warehouse: Path) -> Path:
    """The run's headline counts (its rows of the warehouse's run_metrics) as
    OUTPUT/lake/run_metrics/<run_id>.parquet: what the next night's report compares itself with."""
    with connect(warehouse, read_only=True) as con:
        records = con.sql(f"select * from {METRICS_TABLE} where run_id = $run_id order by metric",
                          params={"run_id": run_id}).to_arrow_table()
    return lake.append_records(METRICS_TABLE, run_id, records.cast(BOOKKEEPING_SCHEMAS[METRICS_TABLE]))


def switch_live(layout: OutputLayout, publication: PublicationLayout, key: bytes | None) -> None:
    """Make `publication` the live one: the pseudonymised mart (when a pseudonym key is set), then the one
    switch of OUTPUT/current."""
    _publish_analytics(layout, publication.root.name, publication.warehouse, key)
    crash_point("publish")
    _point_current_at(layout, publication)
    for name in (WAREHOUSE_NAME, REPORT_NAME):
        _link_through_current(layout, name)
    _prune_publications(layout, keep=publication)


def switch_reproduction(layout: OutputLayout, building: PublicationLayout, as_of: date) -> PublicationLayout:
    """Move a reproduction's finished folder to OUTPUT/as-of/<date>/, replacing an earlier one of that date."""
    target = layout.reproduction(as_of)
    replaced = target.root.with_name(f".{target.root.name}.{building.root.name}.old")
    if target.root.exists():
        os.replace(target.root, replaced)
    os.replace(building.root, target.root)
    shutil.rmtree(replaced, ignore_errors=True)
    return target


def _link_through_current(layout: OutputLayout, name: str) -> None:
    """OUTPUT/<name> -> current/<name>, made once; what an earlier layout left there (a file or folder) is
    replaced by the link."""
    link = layout.live_link(name)
    wanted = str(layout.current.relative_to(layout.root) / name)
    if link.is_symlink() and os.readlink(link) == wanted:
        return
    temporary = link.with_name(f".{name}.link.tmp")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(wanted)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    os.replace(temporary, link)


def remove_stale_temporaries(layout: OutputLayout) -> int:
    """What a killed run leaves behind: catalogs never switched in (so nobody can be reading them), and its
    scratch folder OUTPUT/.tmp (decompressed copies of exports, DuckDB spill files), which holds patient data
    and belongs to no one once the run that wrote it is gone. Called under the run lock."""
    analytics = layout.analytics_warehouse
    stale = [*layout.root.glob(".*.tmp"),
             *analytics.parent.glob(f".{analytics.name}.*.tmp"),
             *layout.reproductions.glob(".*.tmp"), *layout.reproductions.glob(".*.old"),
             *_unfinished_publications(layout)]
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    scratch = layout.scratch
    leftovers = list(scratch.iterdir()) if scratch.is_dir() else []
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stale) + len(leftovers)


def _unfinished_publications(layout: OutputLayout) -> list[Path]:
    """Publication folders of runs that were killed: no runs record (a finished run, published or failed,
    always has one) and not live."""
    folder = layout.publications
    if not folder.is_dir():
        return []
    recorded = Lake(layout.lake).run_ids()
    live = layout.current.resolve()
    return [path for path in folder.iterdir()
            if path.is_dir() and path.name not in recorded and path.resolve() != live]


def _publish_analytics(layout: OutputLayout, run_id: str, warehouse: Path, key: bytes | None) -> None:
    """The pseudonymised mart beside the identified warehouse, switched in the same way (if a key is set)."""
    if key is None:
        print(f"pseudonymised analytics mart not written: set {variable('pseudonym_key')} to publish it")
        return
    target = layout.analytics_warehouse
    target.parent.mkdir(exist_ok=True)
    temporary = target.with_name(f".{target.name}.{run_id}.tmp")
    build_analytics(warehouse, MART_TABLES, temporary, key)
    os.replace(temporary, target)


def _point_current_at(layout: OutputLayout, publication: PublicationLayout) -> None:
    """OUTPUT/current -> publications/<run_id>, switched atomically (a new link renamed over the old)."""
    link = layout.current
    temporary = link.with_name(f".{link.name}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(publication.root.relative_to(layout.root), target_is_directory=True)
    os.replace(temporary, link)


def _prune_publications(layout: OutputLayout, keep: PublicationLayout) -> None:
    """Keep the last few publications (an analyst may hold an old catalog open) and no more."""
    folders = sorted(p for p in layout.publications.iterdir() if p.is_dir())
    for folder in folders[:-PUBLICATIONS_KEPT]:
        if folder != keep.root:
            shutil.rmtree(folder, ignore_errors=True)


def comment_rules_settings(con: duckdb.DuckDBPyConnection, rules: Rules) -> None:
    """Each rules_settings column explained by the rules file itself: what it means and where it comes from."""
    columns = {name for (name,) in con.execute(
        "select column_name from duckdb_columns() where table_name = 'rules_settings'").fetchall()}
    for name in sorted(columns & set(rules.settings)):
        unit = f" [{rules.units[name]}]" if rules.units.get(name) else ""
        text = f"{rules.descriptions.get(name, name)}{unit}. Source: {rules.sources.get(name, 'rules file')}"
        con.execute(f"comment on column rules_settings.{name} is {_quote_literal(text)}")


def apply_comments(con: duckdb.DuckDBPyConnection) -> None:
    """COMMENT ON every lake and rules table and column described in models/sources.yml (dbt writes the
    models' and seeds' own comments from the .yml beside each)."""
    sources = yaml.safe_load((MODELS_DIR / "sources.yml").read_text(encoding="utf-8"))["sources"]
    existing = {
        (table, column) for table, column in con.execute(
            "select table_name, column_name from duckdb_columns() where schema_name = 'main'"
        ).fetchall()
    }
    tables = {name for name, _ in existing}
    for source in sources:
        for spec in source["tables"]:
            table = spec["name"]
            if table not in tables:
                continue
            con.execute(f"comment on table {table} is {_quote_literal(spec['description'])}")
            for column in spec.get("columns", []):
                if (table, column["name"]) in existing:
                    con.execute(f"comment on column {table}.{column['name']} is "
                                f"{_quote_literal(str(column['description']))}")
