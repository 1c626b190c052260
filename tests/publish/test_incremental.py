"""Incremental nights publish exactly what a full rebuild publishes (docs/incremental.md).

Several nights run on one output folder, each as a nightly run does (run_pipeline: ingest, validate, commit,
build from the live warehouse, publish): the history, new results over months, results collected months
earlier arriving late, corrected results, a registry change (a practice moved, deaths), nights with no new file
while the as-of date moves (windows open and close), and as-of dates crossing month ends. After every night,
every mart of the live warehouse is compared row for row with a full build of the same lake at the same date in
an empty warehouse (what `dbt build` alone gives). Some nights build their patients in one bucket, the others
split them into 4 (docs/buckets.md).
"""
from __future__ import annotations

import csv
import errno
import gzip
import re
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from b12lab.common.layout import OutputLayout, PublicationLayout
from b12lab.flows.nightly import run_pipeline
from b12lab.lake.runs import RunRecord
from b12lab.publish import dbt_build, publication
from b12lab.publish import incremental
from b12lab.publish.incremental import BuildStart, evaluates_the_same_month_ends
from b12lab.rules.rules_file import load_rules
from b12lab.synth.csv_exports import synthesize

LAB_FILES = ("labs_northgate.csv", "labs_riverside.csv.gz", "labs_valley.csv")


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        writer.writerows(rows)


class Exports:
    """A synthetic site's exports, handed over night by night as slices of its lab rows."""

    def __init__(self, folder: Path):
        synthesize(1500, folder, seed=11)
        self.folder = folder
        self.labs = {}
        for name in LAB_FILES:
            header, rows = read_rows(folder / name)
            self.header = header
            self.labs[name] = rows

    def labs_where(self, keep) -> list[dict]:
        return [row for rows in self.labs.values() for row in rows if keep(row)]


def collected(row: dict) -> str:
    return row["collected_at"][:10]


def marts(warehouse: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        found = {}
        for table in dbt_build.MART_TABLES:
            columns = [name for (name,) in con.execute(
                "select column_name from duckdb_columns() where schema_name = 'main' and table_name = $t "
                "order by column_index", {"t": table}).fetchall()]
            listed = ", ".join(f'"{c}"' for c in columns)
            found[table] = con.execute(f"select {listed} from main.{table} order by all").fetchall()
        return found


def full_build(layout: OutputLayout, folder: Path, as_of: date, dbt_work: Path) -> Path:
    """The same lake at the same date, built in an empty warehouse; `dbt_work` is shared by the full builds of
    a test, so that dbt parses the project once for them, not once a build."""
    rules = load_rules()
    build = PublicationLayout(folder)
    record = RunRecord(run_id="full-build", status="published", as_of=as_of)
    warehouse = publication.prepare_warehouse(layout, build, rules, as_of, record, BuildStart(None, "test"))
    dbt_build.build(warehouse, dbt_work, as_of, log=lambda line: None, data_tests=False)
    return warehouse


def marts_differing_from_their_parquet(publication_root: Path) -> list[str]:
    """The marts whose Parquet file beside the warehouse does not hold the table's rows (in any order)."""
    with duckdb.connect(str(publication_root / "warehouse.duckdb"), read_only=True) as con:
        return [table for table in dbt_build.MART_TABLES if con.execute(
            f"select (select count(*) from (from main.{table} except all from read_parquet($file))) "
            f"+ (select count(*) from (from read_parquet($file) except all from main.{table}))",
            {"file": str(publication_root / f"{table}.parquet")}).fetchall() != [(0,)]]


# Tables whose rows describe the night rather than the data: what tonight's files were (data_quality's
# accounting of the run) differs between a night and a rebuild that ingested everything at once.
NIGHT_TABLES = {"data_quality"}


@pytest.mark.slow
def test_every_night_publishes_what_a_full_rebuild_publishes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("B12LAB_MAX_QUARANTINE_SHARE", "1")
    exports = Exports(tmp_path / "site")
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in ("diagnoses.csv", "medications.csv"):
        shutil.copy(exports.folder / name, drop / name)
    registry_header, registry = read_rows(exports.folder / "patients.csv")
    write_rows(drop / "patients.csv", registry_header, registry)

    late = {"labs_riverside.csv.gz"}  # this lab's June results arrive in September
    moved = [row["patient_id"] for row in registry[:6]]
    nights = [
        # (as-of date, the lab rows delivered that night, what else changes); one day apart, as nights are
        (date(2025, 6, 29), lambda r, lab: collected(r) <= "2025-05-31" and r["status"] != "C", None),
        (date(2025, 6, 30), lambda r, lab: "2025-06-01" <= collected(r) <= "2025-06-30" and lab not in late
         and r["status"] != "C", None),
        (date(2025, 7, 1), None, None),  # no new file, and a month end passed
        (date(2025, 7, 1), None, None),  # again: nothing to rebuild, only the night's accounting is built
        (date(2025, 7, 2), lambda r, lab: ("2025-06-01" <= collected(r) <= "2025-06-30" and lab in late
                                           and r["status"] != "C")
         or (r["status"] == "C" and collected(r) <= "2025-07-01"), "registry"),
        (date(2025, 7, 3), None, None),
    ]
    # One output folder; each night builds its patients in one bucket (the warehouse's build computes every row)
    # or split into 4 buckets, each built in a DuckDB file of its own (docs/buckets.md), so that both kinds of
    # build meet a full build (night 1, in buckets), new results (2, in buckets), time passing (3 and 6), a night
    # with nothing to rebuild (4) and late, corrected and registry records (5), and each starts from a warehouse
    # the other kind built. Four buckets, not more: each costs about 1.4 s of dbt here; 16 buckets are run on
    # the sample (tests/flows/test_cluster.py).
    buckets_of_night = {1: 4, 2: 4, 3: 1, 4: 1, 5: 1, 6: 4}
    output = tmp_path / "out"
    layout = OutputLayout.of(output)
    full_builds = {}  # (as-of date, the drop's files): the marts of a full build of that lake at that date
    for night, (as_of, delivered, change) in enumerate(nights, start=1):
        if delivered is not None:
            rows = [row for lab, lab_rows in exports.labs.items() for row in lab_rows if delivered(row, lab)]
            write_rows(drop / f"labs_night{night}.csv", exports.header, rows)
        if change == "registry":
            changed = [dict(row) for row in registry]
            for row in changed:
                if row["patient_id"] in moved[:3]:
                    row["practice"] = "Riverside Health Centre"
            header = registry_header + ["death_date"]
            deaths = {moved[3]: "2025-06-15", moved[4]: "2025-07-02", moved[5]: "2025-07-03"}  # the last: next night
            for row in changed:
                row["death_date"] = deaths.get(row["patient_id"], "")
            write_rows(drop / f"patients_night{night}.csv", header, changed)
        buckets = buckets_of_night[night]
        capsys.readouterr()  # what the comparison build of the night before said
        before = layout.current.resolve() if night > 1 else None
        summary = run_pipeline(drop, output, as_of=as_of, buckets=buckets)
        assert summary.status == "published"
        said = capsys.readouterr().out
        assert ("models: a full build" in said) == (night == 1)
        if night > 1:  # how the live warehouse was copied is said, with its size and time
            assert re.search(r"models: incremental: from the live publication; (cloned|copied) the live "
                             r"warehouse \(\d+\.\d GB\) in \d+\.\d s; \d+ lake files added, \d+ patients "
                             r"to rebuild", said), said
        assert ("no patient to rebuild" in said) == (night == 4)
        # Every night with more than one bucket builds its patients bucket by bucket.
        assert ("buckets: " in said) == (buckets > 1), f"night {night}: {said}"
        if night == 1:
            assert "patients built in 4 of 4 buckets" in said
        assert "unfinished files" not in said  # nothing of the night before was left behind
        # The marts' Parquet files hold the marts' rows; those the night did not rebuild are the live ones'.
        assert marts_differing_from_their_parquet(layout.current.resolve()) == [], f"night {night}"
        linked = [table for table in dbt_build.MART_TABLES if before is not None
                  and layout.live.mart_file(table).stat().st_ino == (before / f"{table}.parquet").stat().st_ino]
        assert ("result_classification" in linked) == (night == 4), f"night {night}: {linked}"
        assert ("not rebuilt tonight and the live publication's" in said) == (night == 4)
        # Nothing of the buckets stays: their files, their list and the patients' assignment.
        assert not (layout.scratch / "buckets").exists()
        with duckdb.connect(str(layout.live.warehouse), read_only=True) as con:
            assert con.execute("select count(*) from duckdb_tables() where table_name in "
                               "('patient_buckets', 'bucket_files')").fetchall() == [(0,)]
        live = marts(layout.live.warehouse)
        lake_and_date = (as_of, tuple(sorted(path.name for path in drop.iterdir())))
        if lake_and_date not in full_builds:  # night 4 has night 3's lake and date
            full_builds[lake_and_date] = marts(full_build(layout, tmp_path / f"full{night}", as_of,
                                                          tmp_path / "full-dbt"))
        rebuilt = full_builds[lake_and_date]
        for table in sorted(set(live) - NIGHT_TABLES):
            assert live[table] == rebuilt[table], \
                f"night {night} ({as_of}), {buckets} buckets: {table} differs from a full rebuild"
    assert set(buckets_of_night.values()) == {1, 4}


@pytest.mark.parametrize("previous, as_of, same", [
    (date(2025, 6, 29), date(2025, 6, 30), True),    # the same month
    (date(2025, 6, 30), date(2025, 7, 1), True),     # the night after a month end: its night evaluated it
    (date(2025, 6, 30), date(2025, 7, 31), True),
    (date(2025, 6, 29), date(2025, 7, 1), False),    # 30 June passed without a night on it
    (date(2025, 6, 30), date(2025, 8, 1), False),    # 31 July never evaluated
    (date(2024, 12, 31), date(2025, 1, 1), True),    # across a year end
    (date(2024, 2, 28), date(2024, 3, 1), False),    # a leap year's 29 February is the month end
    (date(2024, 2, 29), date(2024, 3, 1), True),
])
def test_a_night_is_incremental_only_when_every_month_end_of_the_trend_was_evaluated(previous, as_of, same):
    assert evaluates_the_same_month_ends(previous, as_of) is same


def test_every_incremental_model_deletes_the_rebuilt_patients_and_checkpoints_before_its_transaction():
    # A deletion's bookkeeping stays in DuckDB's memory until a checkpoint: 8 bytes per row of the table when
    # the rebuilt patients are spread over it. In the model's transaction it cannot be checkpointed, and at 30M
    # lab rows (73M rows of int_status_on_date) it took the model past the 768 MB limit.
    incremental_models = sorted(path for path in dbt_build.MODELS_DIR.rglob("*.sql")
                                if "materialized='incremental'" in path.read_text(encoding="utf-8"))
    assert len(incremental_models) >= 10
    for path in incremental_models:
        config = path.read_text(encoding="utf-8").split("{{ config(", 1)[1].split("]) }}", 1)[0]
        assert 'before_begin("{{ delete_rebuilt_patients() }}")' in config, path.name
        assert "forget_rebuilt_patients(" in config.split("before_begin", 1)[1], path.name  # after it, in the transaction
    macros = (dbt_build.PROJECT_DIR / "macros" / "incremental.sql").read_text(encoding="utf-8")
    deleting = macros.split("{% macro delete_rebuilt_patients() -%}", 1)[1].split("{%- endmacro %}", 1)[0]
    assert "delete from {{ this }}" in deleting and "checkpoint;" in deleting
    forgetting = macros.split("{% macro forget_rebuilt_patients(", 1)[1].split("{%- endmacro %}", 1)[0]
    assert "delete from {{ this }} where patient_id" not in forgetting


def test_every_patient_level_model_takes_the_rows_built_in_buckets_when_there_are_some():
    """A bucket builds every incremental model (its patient-level models) for its patients; the warehouse's build
    then takes each one's rows from the buckets (docs/buckets.md). A patient-level model that computed its rows
    itself on such a night would have none for the rebuilt patients' dates it does not read: every one must
    end with the switch, and the buckets build exactly these models."""
    from b12lab.publish.buckets import BUCKET_SELECTION, patient_level_models

    incremental_models = sorted(path for path in dbt_build.MODELS_DIR.rglob("*.sql")
                                if "materialized='incremental'" in path.read_text(encoding="utf-8"))
    assert [path.stem for path in incremental_models] == sorted(patient_level_models())
    for path in incremental_models:
        assert path.read_text(encoding="utf-8").rstrip().endswith("select * from {{ built_in_buckets_or('final') }}"), \
            path.name
    others = [path for path in dbt_build.MODELS_DIR.rglob("*.sql") if path not in incremental_models]
    assert not [path.name for path in others if "built_in_buckets_or" in path.read_text(encoding="utf-8")]
    assert BUCKET_SELECTION == ("+config.materialized:incremental",)


def test_the_live_warehouse_copied_for_a_night_is_its_own_file(tmp_path):
    """A clone (where the filesystem has reflinks) or a byte copy: either way the night's file has the live
    one's bytes, and writing it leaves the live one as it was."""
    live, night = tmp_path / "live.duckdb", tmp_path / "night" / "warehouse.duckdb"
    live.write_bytes(bytes(range(256)) * 4096)
    night.parent.mkdir()
    how = incremental.copy_previous(live, night)
    assert how in ("cloned", "copied")
    assert night.read_bytes() == live.read_bytes()
    with night.open("r+b") as written:
        written.write(b"tonight")
    assert live.read_bytes() == bytes(range(256)) * 4096
    assert not list(night.parent.glob(".*.tmp"))


def test_without_reflinks_the_live_warehouse_is_copied(tmp_path, monkeypatch):
    def no_reflinks(source, target):
        target.write_bytes(b"")  # a failed clone can leave its empty target behind
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(incremental, "_clone", no_reflinks)
    live, night = tmp_path / "live.duckdb", tmp_path / "warehouse.duckdb"
    live.write_bytes(b"the live warehouse")
    assert incremental.copy_previous(live, night) == "copied"
    assert night.read_bytes() == b"the live warehouse"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["live.duckdb", "warehouse.duckdb"]
