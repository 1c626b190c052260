"""The clinical rules file: load, validate, select a profile, and install it as SQL tables.

The rules file (`b12lab/rules/b12_rules.yaml`) holds every threshold, window, code list and switch of
the clinical rules (docs/models.md, "Clinical rules"). This module is the only place that knows which settings
exist and what type each has (`SETTING_KINDS`); the file must name exactly these settings, and the SQL models
read them from the tables that `install_rules` creates. A bad file is refused before anything runs, with a
one-line `RulesError` that names the offending key.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from b12lab.common.paths import RULES_DIR

DEFAULT_RULES_PATH = RULES_DIR / "b12_rules.yaml"

# Kinds of setting, with how each is checked and stored:
#   threshold    a concentration or volume bound: a number > 0, stored as DOUBLE
#   days         a window length in days: an integer >= 0, stored as INTEGER
#   offset_days  a signed day offset relative to an event: an integer, stored as INTEGER
#   switch       turns a rule on or off: true or false, stored as BOOLEAN
#   share        a proportion from 0 to 1 (a published figure the report compares with), stored as DOUBLE
SQL_TYPES = {"threshold": "DOUBLE", "days": "INTEGER", "offset_days": "INTEGER", "switch": "BOOLEAN",
             "share": "DOUBLE"}

SETTING_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "b12_deficient_below_pmol_l": "threshold",
        "b12_deficient_below_pg_ml": "threshold",
        "b12_borderline_max_pmol_l": "threshold",
        "b12_borderline_max_pg_ml": "threshold",
        "b12_target_above_pmol_l": "threshold",
        "b12_target_above_pg_ml": "threshold",
        "holotc_deficient_below_pmol_l": "threshold",
        "holotc_indeterminate_max_pmol_l": "threshold",
        "mma_elevated_above_umol_l": "threshold",
        "mma_use_lab_upper_limit": "switch",
        "homocysteine_above_target_from_umol_l": "threshold",
        "homocysteine_elevated_above_umol_l": "threshold",
        "homocysteine_use_lab_upper_limit": "switch",
        "mcv_macrocytosis_above_fl": "threshold",
        "lookback_days": "days",
        "mma_window_start_offset_days": "offset_days",
        "mma_window_end_offset_days": "offset_days",
        "deficient_treated_within_days": "days",
        "reason_pa_no_post_treatment_recheck_enabled": "switch",
        "pa_recheck_window_start_days": "days",
        "pa_recheck_window_end_days": "days",
        "reason_pa_overdue_annual_b12_enabled": "switch",
        "pa_annual_recheck_days": "days",
        "reason_borderline_no_mma_enabled": "switch",
        "borderline_mma_grace_days": "days",
        "reason_supplemented_no_mma_enabled": "switch",
        "supplemented_mma_lookback_days": "days",
        "reason_treated_below_target_enabled": "switch",
        "below_target_after_treatment_days": "days",
        "flag_folate_before_b12_enabled": "switch",
        "flag_macrocytosis_not_tested_enabled": "switch",
        "macrocytosis_window_before_days": "days",
        "macrocytosis_window_after_days": "days",
        "reason_deficient_no_if_antibody_enabled": "switch",
        "deficient_if_antibody_grace_days": "days",
        "reason_deficient_no_blood_count_enabled": "switch",
        "deficient_blood_count_grace_days": "days",
        "blood_count_window_start_offset_days": "offset_days",
        "blood_count_window_end_offset_days": "offset_days",
        "reason_pa_not_on_treatment_enabled": "switch",
        "pa_known_for_days": "days",
        "pa_treatment_lapse_days": "days",
        "reason_treated_markers_not_normal_enabled": "switch",
        "markers_after_treatment_days": "days",
        "neuro_involvement_enabled": "switch",
        "flag_metformin_b12_not_tested_enabled": "switch",
        "metformin_min_duration_days": "days",
        "metformin_b12_lookback_days": "days",
        "flag_mma_renal_caveat_enabled": "switch",
        "egfr_renal_impairment_below": "threshold",
        "egfr_mma_window_days": "days",
        "flag_b12_injections_without_deficiency_enabled": "switch",
        "response_baseline_before_days": "days",
        "response_1m_start_days": "days",
        "response_1m_end_days": "days",
        "response_3_6m_start_days": "days",
        "response_3_6m_end_days": "days",
        "response_12m_start_days": "days",
        "response_12m_end_days": "days",
        "response_oral_1m_reference_share": "share",
    }
)

# Pairs (lower, upper) whose values must satisfy upper >= lower: anything else is an impossible range.
ORDERED_PAIRS: tuple[tuple[str, str], ...] = (
    ("b12_deficient_below_pmol_l", "b12_borderline_max_pmol_l"),
    ("b12_deficient_below_pg_ml", "b12_borderline_max_pg_ml"),
    ("holotc_deficient_below_pmol_l", "holotc_indeterminate_max_pmol_l"),
    ("homocysteine_above_target_from_umol_l", "homocysteine_elevated_above_umol_l"),
    ("mma_window_start_offset_days", "mma_window_end_offset_days"),
    ("pa_recheck_window_start_days", "pa_recheck_window_end_days"),
    ("blood_count_window_start_offset_days", "blood_count_window_end_offset_days"),
    ("response_1m_start_days", "response_1m_end_days"),
    ("response_3_6m_start_days", "response_3_6m_end_days"),
    ("response_12m_start_days", "response_12m_end_days"),
)

# Code lists: value set -> the code systems it may use.
CODE_SYSTEMS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "pa_diagnosis": frozenset({"ICD-10", "ICD-9", "SNOMED-CT"}),
        "b12_drug": frozenset({"ATC", "drug_name"}),
        "folic_acid": frozenset({"ATC", "drug_name"}),
        "b12_mass_unit": frozenset({"unit"}),
        "neurological_features": frozenset({"ICD-10", "ICD-9", "SNOMED-CT"}),
        "metformin": frozenset({"ATC", "drug_name"}),
        "intramuscular_route": frozenset({"route"}),
        "oral_route": frozenset({"route"}),
    }
)

TOP_LEVEL_KEYS = frozenset({"version", "default_profile", "settings", "codes", "profiles"})
SETTING_FIELDS = frozenset({"value", "unit", "description", "source"})
REQUIRED_SETTING_FIELDS = ("value", "description", "source")
OVERRIDE_FIELDS = frozenset({"value", "source", "description"})
REQUIRED_OVERRIDE_FIELDS = ("value", "source")
CODE_LIST_FIELDS = frozenset({"description", "source", "codes"})
PROFILE_FIELDS = frozenset({"description", "source", "settings", "codes"})
REQUIRED_PROFILE_FIELDS = ("description", "source")

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


class RulesError(ValueError):
    """The rules file cannot be used; the message is one line and names the key."""


class UnknownProfile(RulesError):
    """The profile asked for is not one of the rules file's: a usage error of `--profile`."""


@dataclass(frozen=True)
class Rules:
    """One validated rules file with one profile applied."""

    version: str
    profile: str
    settings: Mapping[str, bool | int | float]
    codes: tuple[tuple[str, str, str], ...]  # (value_set, code_system, code)
    sources: Mapping[str, str] = field(default_factory=dict)  # setting -> source of the value in force
    descriptions: Mapping[str, str] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None

    def __getitem__(self, name: str) -> bool | int | float:
        return self.settings[name]


def load_rules(path: Path | None = None, profile: str | None = None) -> Rules:
    """Read, validate and return the rules file at `path` with `profile` (default: the file's default)."""
    path = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RulesError(f"cannot read rules file {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise RulesError(f"{path}: not valid YAML{at}") from None
    return _validate(document, path, profile)


def install_rules(con: Any, rules: Rules, as_of: dt.date) -> None:
    """Create `rules_settings` (one row) and `rules_codes` in the DuckDB connection `con`.

    Values are bound parameters; column names come only from the validated `SETTING_KINDS`.
    """
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    if not isinstance(as_of, dt.date):
        raise RulesError(f"as_of: expected a date, got {type(as_of).__name__}")
    names = list(SETTING_KINDS)
    for name in names:  # belt and braces: the names are constants, but they become SQL identifiers
        if not _IDENTIFIER.match(name):
            raise RulesError(f"{name}: not a valid setting name")
    columns = [f"{name} {SQL_TYPES[SETTING_KINDS[name]]}" for name in names]
    columns += ["as_of DATE", "rules_version VARCHAR", "rules_profile VARCHAR"]
    values = [rules.settings[name] for name in names] + [as_of, rules.version, rules.profile]
    con.execute(f"create or replace table rules_settings ({', '.join(columns)})")
    con.execute(f"insert into rules_settings values ({', '.join('?' for _ in values)})", values)
    con.execute("create or replace table rules_codes (value_set VARCHAR, code_system VARCHAR, code VARCHAR)")
    if rules.codes:
        con.executemany("insert into rules_codes values (?, ?, ?)", [list(row) for row in rules.codes])


# --- validation ---------------------------------------------------------------------------------------


def _validate(document: Any, path: Path, profile: str | None) -> Rules:
    def fail(key: str, problem: str) -> RulesError:
        return RulesError(f"{path.name}: {key}: {problem}")

    if not isinstance(document, dict):
        raise fail("(top level)", "expected a mapping of version, default_profile, settings, codes, profiles")
    _check_keys(document, TOP_LEVEL_KEYS, TOP_LEVEL_KEYS, "", fail)
    version = document["version"]
    if not isinstance(version, str) or not version.strip():
        raise fail("version", "wrong type: expected a non-empty string (quote it)")
    default_profile = _non_empty_string(document["default_profile"], "default_profile", fail)

    base_settings, base_sources, descriptions, units = _read_settings(document["settings"], fail)
    base_codes = _read_code_lists(document["codes"], "codes", fail, require_all=True)

    profiles = document["profiles"]
    if not isinstance(profiles, dict) or not profiles:
        raise fail("profiles", "wrong type: expected a mapping of profile names")
    resolved: dict[str, tuple[dict, dict, dict]] = {}
    for name, body in profiles.items():
        resolved[str(name)] = _apply_profile(str(name), body, base_settings, base_sources, base_codes, fail)
    if default_profile not in resolved:
        raise fail("default_profile", f"unknown profile '{default_profile}' (known: {', '.join(sorted(resolved))})")

    chosen = default_profile if profile is None else profile
    if chosen not in resolved:
        raise UnknownProfile(f"{path.name}: profile: unknown profile '{chosen}' "
                             f"(known: {', '.join(sorted(resolved))})")
    settings, sources, codes = resolved[chosen]
    code_rows = tuple(
        (value_set, code_system, code)
        for value_set in sorted(codes)
        for code_system in sorted(codes[value_set])
        for code in codes[value_set][code_system]
    )
    return Rules(
        version=version.strip(),
        profile=chosen,
        settings=MappingProxyType(dict(settings)),
        codes=code_rows,
        sources=MappingProxyType(dict(sources)),
        descriptions=MappingProxyType(dict(descriptions)),
        units=MappingProxyType(dict(units)),
        path=path,
    )


def _check_keys(mapping: dict, allowed: frozenset, required, prefix: str, fail) -> None:
    for key in mapping:
        if key not in allowed:
            raise fail(f"{prefix}{key}", "unknown key")
    for key in required:
        if key not in mapping or mapping[key] is None:
            raise fail(f"{prefix}{key}", "missing value")


def _non_empty_string(value: Any, key: str, fail) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(key, "wrong type: expected a non-empty string")
    return value.strip()


def _typed_value(name: str, value: Any, key: str, fail) -> bool | int | float:
    kind = SETTING_KINDS[name]
    if kind == "switch":
        if not isinstance(value, bool):
            raise fail(key, f"wrong type: expected true or false, got {type(value).__name__}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(key, f"wrong type: expected a number, got {type(value).__name__}")
    if kind == "share":
        if not 0 <= value <= 1:  # also refuses NaN
            raise fail(key, f"impossible value {value}: a share is from 0 to 1")
        return float(value)
    if kind == "threshold":
        if not value > 0:  # also refuses NaN
            raise fail(key, f"impossible value {value}: a threshold must be above zero")
        return float(value)
    if not isinstance(value, int):
        raise fail(key, f"wrong type: expected a whole number of days, got {value}")
    if kind == "days" and value < 0:
        raise fail(key, f"impossible value {value}: a window cannot be negative")
    return value


def _read_settings(section: Any, fail):
    if not isinstance(section, dict):
        raise fail("settings", "wrong type: expected a mapping of setting names")
    settings: dict[str, Any] = {}
    sources: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    units: dict[str, str] = {}
    for name, entry in section.items():
        key = f"settings.{name}"
        if name not in SETTING_KINDS:
            raise fail(key, "unknown key")
        if not isinstance(entry, dict):
            raise fail(key, "wrong type: expected a mapping with value, description and source")
        _check_keys(entry, SETTING_FIELDS, REQUIRED_SETTING_FIELDS, f"{key}.", fail)
        settings[name] = _typed_value(name, entry["value"], f"{key}.value", fail)
        sources[name] = _non_empty_string(entry["source"], f"{key}.source", fail)
        descriptions[name] = _non_empty_string(entry["description"], f"{key}.description", fail)
        if "unit" in entry:
            units[name] = _non_empty_string(entry["unit"], f"{key}.unit", fail)
    for name in SETTING_KINDS:
        if name not in settings:
            raise fail(f"settings.{name}", "missing value")
    return settings, sources, descriptions, units


def _read_code_lists(section: Any, prefix: str, fail, require_all: bool) -> dict[str, dict[str, tuple[str, ...]]]:
    if not isinstance(section, dict):
        raise fail(prefix, "wrong type: expected a mapping of value sets")
    code_lists: dict[str, dict[str, tuple[str, ...]]] = {}
    for value_set, entry in section.items():
        key = f"{prefix}.{value_set}"
        if value_set not in CODE_SYSTEMS:
            raise fail(key, "unknown key")
        if not isinstance(entry, dict):
            raise fail(key, "wrong type: expected a mapping with description, source and codes")
        _check_keys(entry, CODE_LIST_FIELDS, CODE_LIST_FIELDS, f"{key}.", fail)
        _non_empty_string(entry["description"], f"{key}.description", fail)
        _non_empty_string(entry["source"], f"{key}.source", fail)
        systems = entry["codes"]
        if not isinstance(systems, dict) or not systems:
            raise fail(f"{key}.codes", "wrong type: expected a mapping of code system to a list of codes")
        code_lists[value_set] = {}
        for code_system, codes in systems.items():
            code_key = f"{key}.codes.{code_system}"
            if code_system not in CODE_SYSTEMS[value_set]:
                raise fail(code_key, "unknown key")
            if not isinstance(codes, list) or not codes:
                raise fail(code_key, "missing value: expected a non-empty list of codes")
            for code in codes:
                if not isinstance(code, str) or not code.strip():
                    raise fail(code_key, f"wrong type: codes must be non-empty quoted strings, got {code!r}")
            code_lists[value_set][code_system] = tuple(code.strip() for code in codes)
    if require_all:
        for value_set in CODE_SYSTEMS:
            if value_set not in code_lists:
                raise fail(f"{prefix}.{value_set}", "missing value")
    return code_lists


def _apply_profile(name, body, base_settings, base_sources, base_codes, fail):
    prefix = f"profiles.{name}"
    if not isinstance(body, dict):
        raise fail(prefix, "wrong type: expected a mapping with description, source and settings")
    _check_keys(body, PROFILE_FIELDS, REQUIRED_PROFILE_FIELDS, f"{prefix}.", fail)
    settings = dict(base_settings)
    sources = dict(base_sources)
    overrides = body.get("settings") or {}
    if not isinstance(overrides, dict):
        raise fail(f"{prefix}.settings", "wrong type: expected a mapping of setting names")
    for setting, entry in overrides.items():
        key = f"{prefix}.settings.{setting}"
        if setting not in SETTING_KINDS:
            raise fail(key, "unknown key")
        if not isinstance(entry, dict):
            raise fail(key, "wrong type: expected a mapping with value and source")
        _check_keys(entry, OVERRIDE_FIELDS, REQUIRED_OVERRIDE_FIELDS, f"{key}.", fail)
        settings[setting] = _typed_value(setting, entry["value"], f"{key}.value", fail)
        sources[setting] = _non_empty_string(entry["source"], f"{key}.source", fail)
    for lower, upper in ORDERED_PAIRS:
        if settings[upper] < settings[lower]:
            changed = [key for key in (upper, lower) if key in overrides]
            where = f"{prefix}.settings.{changed[0]}" if changed else f"settings.{upper}"
            raise fail(
                where,
                f"impossible range: {upper} ({settings[upper]}) is below {lower} ({settings[lower]})"
                f" in profile '{name}'",
            )
    codes = dict(base_codes)
    if body.get("codes") is not None:
        codes.update(_read_code_lists(body["codes"], f"{prefix}.codes", fail, require_all=False))
    return settings, sources, codes
