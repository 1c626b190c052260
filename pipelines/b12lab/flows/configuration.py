"""A run's configuration, checked in one place before any data is touched: the settings (B12LAB_*, with the
command line's options over them), the rules file and profile, the lab mapping and the as-of date.

The command line calls `load_configuration` before Prefect starts (a typo costs a second, not a server
start-up) and the flow calls it again when it runs (a served deployment's run starts there). Each error is
one line that names what is wrong: SettingsError, RulesError, MappingError, ValueError or OSError.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from b12lab.common.settings import Settings, load_settings
from b12lab.ingest import LabMapping, MappingError, load_mapping
from b12lab.ingest.mapping import check_mapping_files
from b12lab.rules.rules_file import Rules, RulesError, load_rules

# The lake holds nothing older: a run as of an earlier date could only report an empty population.
EARLIEST_AS_OF = date(1900, 1, 1)
# What a configuration check may raise: every one a line for the operator.
CONFIGURATION_ERRORS = (RulesError, MappingError, ValueError, OSError)


@dataclass(frozen=True)
class RunConfiguration:
    settings: Settings
    rules: Rules
    mapping: LabMapping | None


def check_as_of(as_of: date, today: date) -> None:
    """Refuse an as-of date no run can mean: after today, or before anything the lake can hold."""
    if as_of > today:
        raise ValueError(f"--as-of {as_of.isoformat()} is after today ({today.isoformat()}): "
                         "a run cannot classify patients on a day that has not come")
    if as_of < EARLIEST_AS_OF:
        raise ValueError(f"--as-of {as_of.isoformat()} is before {EARLIEST_AS_OF.isoformat()}, "
                         "the earliest date the lake accepts")


def load_configuration(rules_file: Path | None, profile: str | None, mapping: str | None, *,
                       max_quarantine_share: float | None = None, buckets: int | None = None,
                       as_of: date | None = None,
                       today: date | None = None, input_dir: Path | None = None) -> RunConfiguration:
    """Everything a run is configured with, checked; `max_quarantine_share` (an option) overrides the setting.
    `buckets` (an option) overrides B12LAB_BUCKETS. With `input_dir` (an existing drop folder), the files the
    mapping names are checked against it too."""
    rules = load_rules(rules_file, profile)
    lab_mapping = load_mapping(mapping)
    if lab_mapping is not None and input_dir is not None and Path(input_dir).is_dir():
        check_mapping_files(lab_mapping, Path(input_dir))
    settings = load_settings(max_quarantine_share=max_quarantine_share, buckets=buckets)
    if as_of is not None:
        check_as_of(as_of, today or date.today())
    return RunConfiguration(settings=settings, rules=rules, mapping=lab_mapping)
