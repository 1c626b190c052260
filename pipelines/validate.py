"""Great Expectations validation of the rows a run is about to add to the lake.

One suite per lake table (expectations/suites/<table>.json). The committed GX project is copied into the run's
output folder and loaded with `gx.get_context(context_root_dir=...)`, so validation results and the HTML
Data Docs land next to the run's other outputs. Each failed expectation is judged by its own severity:
`critical` stops the run before publication, anything else is reported.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from pipelines.paths import EXPECTATIONS_DIR

SUITE_FILES = ("lab_results", "quarantine", "patients", "diagnoses", "medications")
CRITICAL = "critical"


@dataclass(frozen=True)
class ExpectationOutcome:
    table: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int | None

    @property
    def description(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        count = "" if self.unexpected_count is None else f" ({self.unexpected_count} rows)"
        return f"{where}: {self.expectation}{count}"


@dataclass
class ValidationReport:
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    data_docs_index: Path | None = None

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == CRITICAL]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity != CRITICAL]

    @property
    def evaluated(self) -> int:
        return len(self.outcomes)


class CriticalExpectationFailed(RuntimeError):
    pass


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def _dates_as_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """Date columns as timestamps, so that GX compares them with the suites' ISO date-time bounds."""
    converted = frame.copy(deep=False)
    for column in converted.columns:
        values = converted[column].dropna()
        if converted[column].dtype == object and len(values) and isinstance(values.iloc[0], date):
            converted[column] = pd.to_datetime(converted[column])
    return converted


def expectations_dir() -> Path:
    """The committed GX project, or a site's own (B12LAB_EXPECTATIONS_DIR), for example with tighter suites."""
    return Path(os.environ.get("B12LAB_EXPECTATIONS_DIR") or EXPECTATIONS_DIR)


def prepare_context(gx_dir: Path, project_dir: Path | None = None):
    """A file-backed GX context in gx_dir holding a copy of the GX project and its suites."""
    _quiet_gx()
    project_dir = project_dir or expectations_dir()
    import great_expectations as gx

    if gx_dir.exists():
        shutil.rmtree(gx_dir)
    # Plain copies: the package's file modes must not override the run's private umask.
    (gx_dir / "suites").mkdir(parents=True)
    for suite in (project_dir / "suites").glob("*.json"):
        shutil.copyfile(suite, gx_dir / "suites" / suite.name)
    shutil.copyfile(project_dir / "great_expectations.yml", gx_dir / "great_expectations.yml")
    return gx.get_context(context_root_dir=str(gx_dir))


def validate_tables(tables: dict[str, pd.DataFrame], gx_dir: Path, today: date,
                    project_dir: Path | None = None) -> ValidationReport:
    """Validate each table's new rows against its suite; build Data Docs; return every outcome."""
    import great_expectations as gx

    context = prepare_context(gx_dir, project_dir)
    source = context.data_sources.add_pandas(name="lake")
    validations = []
    for table, frame in tables.items():
        batch_definition = source.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe(table)
        suite = context.suites.get(table)
        validations.append(
            (frame, context.validation_definitions.add(
                gx.ValidationDefinition(name=table, data=batch_definition, suite=suite)
            ))
        )
    report = ValidationReport()
    for frame, validation in validations:
        result = validation.run(
            batch_parameters={"dataframe": _dates_as_timestamps(frame)},
            expectation_parameters={"today": f"{today.isoformat()}T23:59:59"},
            result_format="SUMMARY",
        )
        for item in result.results:
            config = item.expectation_config
            report.outcomes.append(
                ExpectationOutcome(
                    table=validation.name,
                    expectation=config.type,
                    column=config.kwargs.get("column"),
                    severity=str(getattr(config.severity, "value", config.severity)),
                    success=bool(item.success),
                    unexpected_count=(item.result or {}).get("unexpected_count"),
                )
            )
    context.build_data_docs()
    index = gx_dir / "data_docs" / "index.html"
    report.data_docs_index = index if index.exists() else None
    return report
