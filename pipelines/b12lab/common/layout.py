"""The output folder's layout, and the names of what a publication folder holds: built once from the output
folder and handed down, so that every reader and writer of a path agrees where it is.

    OUTPUT/
      lake/                     the append-only Parquet lake (b12lab/lake/lake.py)
      publications/<run_id>/    one folder per nightly run's publication (PublicationLayout)
      current -> publications/<run_id>    the live publication, switched atomically
      warehouse.duckdb -> current/warehouse.duckdb, report -> current/report   fixed links through current
      run_summary.json          the last nightly run's summary
      analytics/analytics.duckdb    the pseudonymised mart (when a key is set)
      as-of/<date>/             reproductions of an earlier date (a publication folder each)
      logs/<run_id>.log         each run's log file
      .tmp/                     scratch: decompressed exports, DuckDB spill files, the night's patient buckets,
                                an object store's drop as staged for the night (drop/)
      .dbt/                     dbt's compiled SQL and parse cache (or B12LAB_DBT_WORK_DIR); buckets/<n>/ each
                                bucket's (b12lab/publish/buckets.py)
      .cache/                   the report's charts as last drawn, the drop files' (or objects') sha256 as last
                                computed
      .b12lab.lock              one run at a time
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

WAREHOUSE_NAME = "warehouse.duckdb"
REPORT_NAME = "report"
SUMMARY_NAME = "run_summary.json"
CATALOGUE_NAME = "catalogue"  # dbt's static catalogue of the models
GX_NAME = "gx"  # Great Expectations results and Data Docs
ANALYTICS_NAME = "analytics.duckdb"


@dataclass(frozen=True)
class PublicationLayout:
    """What one publication folder (OUTPUT/publications/<run_id>/ or OUTPUT/as-of/<date>/) holds."""

    root: Path

    @property
    def warehouse(self) -> Path:
        return self.root / WAREHOUSE_NAME

    @property
    def report(self) -> Path:
        return self.root / REPORT_NAME

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_NAME

    @property
    def catalogue_page(self) -> Path:
        return self.root / CATALOGUE_NAME / "index.html"

    @property
    def gx(self) -> Path:
        return self.root / GX_NAME

    def mart_file(self, table: str) -> Path:
        return self.root / f"{table}.parquet"


@dataclass(frozen=True)
class OutputLayout:
    """Every path of an output folder. `dbt_work` is OUTPUT/.dbt unless the settings name another folder."""

    root: Path
    dbt_work: Path

    @classmethod
    def of(cls, output_dir: Path, dbt_work_dir: Path | None = None) -> OutputLayout:
        output_dir = Path(output_dir)
        return cls(root=output_dir, dbt_work=Path(dbt_work_dir) if dbt_work_dir else output_dir / ".dbt")

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def publications(self) -> Path:
        return self.root / "publications"

    @property
    def current(self) -> Path:
        """The link to the live publication."""
        return self.root / "current"

    @property
    def live(self) -> PublicationLayout:
        """The live publication, read through `current`."""
        return PublicationLayout(self.current)

    @property
    def summary(self) -> Path:
        """The last nightly run's summary."""
        return self.root / SUMMARY_NAME

    @property
    def analytics(self) -> Path:
        return self.root / "analytics"

    @property
    def analytics_warehouse(self) -> Path:
        return self.analytics / ANALYTICS_NAME

    @property
    def reproductions(self) -> Path:
        return self.root / "as-of"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def chart_cache(self) -> Path:
        """The report's charts as last drawn (b12lab/report/chart_cache.py): a chart whose numbers did not
        change is copied, not drawn again."""
        return self.root / ".cache" / "charts"

    @property
    def export_digests(self) -> Path:
        """The drop folder's files' sha256 as last computed, under each file's identity
        (b12lab/ingest/digests.py): an unchanged file is not read again to find it was already ingested."""
        return self.root / ".cache" / "export-digests.json"

    @property
    def object_digests(self) -> Path:
        """An object store's drop: each object's sha256 as last computed, under its URL, size and version
        (b12lab/ingest/object_store.py): an object already ingested is not downloaded again."""
        return self.root / ".cache" / "object-digests.json"

    @property
    def staged_drop(self) -> Path:
        """An object store's drop as staged for the night: its new objects downloaded, placeholders for the
        others (b12lab/ingest/object_store.py); removed once the night's files are ingested."""
        return self.scratch / "drop"

    @property
    def scratch(self) -> Path:
        """Decompressed exports and DuckDB's spill files: patient data that belongs to the running run only."""
        return self.root / ".tmp"

    @property
    def lock(self) -> Path:
        return self.root / ".b12lab.lock"

    def live_link(self, name: str) -> Path:
        """OUTPUT/<name>, a fixed link to current/<name> (the warehouse, the report)."""
        return self.root / name

    def publication(self, run_id: str) -> PublicationLayout:
        """Where a nightly run builds its publication (and keeps its GX results, published or not)."""
        return PublicationLayout(self.publications / run_id)

    def reproduction(self, as_of: date) -> PublicationLayout:
        return PublicationLayout(self.reproductions / as_of.isoformat())

    def reproduction_staging(self, as_of: date, run_id: str) -> PublicationLayout:
        """Where a reproduction is built before it is moved to `reproduction(as_of)`."""
        return PublicationLayout(self.reproductions / f".{as_of.isoformat()}.{run_id}.tmp")

    def log(self, run_id: str) -> Path:
        return self.logs / f"{run_id}.log"
