"""Every setting b12lab takes from the environment (B12LAB_*), with its default: the one module that reads them.

`load_settings()` reads the environment afresh on every call (a test or an operator may change it between
runs) and checks every value; a value it cannot take raises SettingsError, one line naming the variable, which
the command line prints as `b12lab: error: ...`. Options of the command line override the environment:
they are passed to `load_settings` by name. `DEFAULTS` holds the defaults alone, without reading anything,
for help texts. README.md lists every setting (Settings).
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "B12LAB_"

# The named points where a test run kills itself (b12lab/common/faults.py).
CrashPoint = Literal["ingest", "classify", "publish"]


# A Dask scheduler's address as its clients name it: protocol, host and port (tls:// for a secured cluster).
DASK_ADDRESS = re.compile(r"(tcp|tls|ws|wss)://[^\s/:]+(:\d+)?|(tcp|tls)://\[[0-9a-fA-F:]+\](:\d+)?")


class SettingsError(ValueError):
    """A setting b12lab cannot take; the message is one line that names the variable."""


class Settings(BaseSettings):
    """The settings, each read from B12LAB_<NAME>; the description is what README.md's table says of it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    # --- a run ---------------------------------------------------------------------------------------------
    max_quarantine_share: float = Field(
        0.2, description="A feed (a night's files of one kind and site) of which more than this share of the "
                         "records in scope is quarantined stops the run, as a failed critical expectation does "
                         "(--max-quarantine-share)")
    fail_on_suspected_unmapped: bool = Field(
        False, description="A run that drops results under a code whose test name looks like an analyte's "
                           "(a suspected unmapped analyte) fails instead of naming it and publishing")
    # Bounded so that a run's memory does not grow with the size of the lake: DuckDB spills to disk instead.
    # 768 MB keeps a run under 2 GiB with Python, Prefect, GX and a validation batch beside it; measured at 10M
    # lab rows: 1,956 MiB peak, where 1 GB gave 2,175 MiB and an 11 % faster run.
    memory_limit: str = Field("768MB", description="DuckDB's memory limit for each connection of a run; beyond "
                                                   "it DuckDB spills to OUTPUT/.tmp")
    dbt_work_dir: Path | None = Field(
        None, description="dbt's compiled SQL and parse cache (no patient data); unset: OUTPUT/.dbt. One folder "
                          "may serve many output folders (the test suite's runs share one parse)")
    cache_dir: Path = Field(
        default_factory=lambda: default_cache_dir(),
        description="What any run on this machine can reuse and that holds no patient data: dbt's parse of the "
                    "project and its catalogue page, by the project's version and place, so that a first night in "
                    "a new output folder does not parse the project again; unset: $XDG_CACHE_HOME/b12lab, else "
                    "~/.cache/b12lab")
    expectations_dir: Path | None = Field(
        None, description="A site's own Great Expectations project (for example with tighter suites); unset: "
                          "the shipped expectations/")
    pseudonym_key: SecretStr | None = Field(
        None, description="Key of the keyed hash (HMAC-SHA-256) that turns patient_id into patient_key in "
                          "OUTPUT/analytics/analytics.duckdb; unset: that pseudonymised mart is not written")
    # --- where the tasks run (`run` and `serve`) ------------------------------------------------------------
    dask_address: str | None = Field(
        None, description="`run`, `serve`: the scheduler of an existing Dask cluster, tcp://HOST:PORT, on whose "
                          "workers each export file is ingested and validated (--dask-address); unset: in the "
                          "command's own process, or on a local cluster with --workers")
    buckets: int = Field(
        1, ge=1, le=4096,
        description="`run`, `serve`: the patients a night builds are split by a hash of patient_id into this many "
                    "buckets, each a task that builds its patients' patient-level models in a DuckDB file of its "
                    "own, on a Dask worker when there is a cluster (--buckets); 1: the warehouse's build alone")
    # --- `b12lab serve` (each also an option of the command) ----------------------------------------------
    input_dir: str | None = Field(None, description="`serve`: the drop folder read every night, or an object "
                                                    "store's URL, s3://bucket/prefix (--input)")
    output_dir: Path | None = Field(None, description="`serve`: the output folder (--output)")
    cron: str = Field("0 2 * * *", description="`serve`: when to run, as a cron expression (--cron)")
    timezone: str | None = Field(None, description="`serve`: time zone of the cron expression (--timezone); "
                                                   "unset: this machine's")
    rules: Path | None = Field(None, description="`serve`: rules file (--rules); unset: the shipped rules")
    profile: str | None = Field(None, description="`serve`: guideline profile of the rules file (--profile)")
    mapping: str | None = Field(None, description="`serve`: mapping for lab CSVs in a site's own layout, a "
                                                  "file or a shipped name (--mapping)")
    # --- tools and tests -----------------------------------------------------------------------------------
    chromium: Path | None = Field(None, description="The Chromium the report's screenshot drives; unset: "
                                                    "/usr/bin/chromium or chromium on the PATH")
    crash_at: CrashPoint | None = Field(
        None, description="Tests only: the run kills itself (SIGKILL) at this step: ingest, classify or publish")
    reference_data: Path | None = Field(
        None, description="benchmarks/calibrate_synth.py: a folder holding nhanes/; unset: tests/data")

    @field_validator("max_quarantine_share")
    @classmethod
    def _a_share(cls, share: float) -> float:
        if not 0 <= share <= 1:
            default = cls.model_fields["max_quarantine_share"].default
            raise ValueError(f"{share} is not a share between 0 and 1 (default {default})")
        return share

    @field_validator("memory_limit")
    @classmethod
    def _a_memory_size(cls, limit: str) -> str:
        if not _duckdb_takes_memory_limit(limit):
            raise ValueError(f"{limit!r} is not a memory size (for example 1GB or 1536MB)")
        return limit

    @field_validator("dask_address")
    @classmethod
    def _a_scheduler_address(cls, address: str | None) -> str | None:
        if address is not None and not DASK_ADDRESS.fullmatch(address):
            raise ValueError(f"{address!r} is not a Dask scheduler address (for example tcp://10.0.0.5:8786)")
        return address

    def key(self) -> bytes | None:
        """The pseudonym key as bytes, or None when none is set."""
        return self.pseudonym_key.get_secret_value().encode("utf-8") if self.pseudonym_key else None


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/b12lab, else ~/.cache/b12lab: where a user's caches go on Linux (XDG Base Directory)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "b12lab"


@functools.lru_cache(maxsize=64)
def _duckdb_takes_memory_limit(limit: str) -> bool:
    """Whether DuckDB takes `limit` as a memory limit. Asked once per value: opening a DuckDB connection costs
    about 12 ms, and a night that ingests thousands of small files reads the settings once per file."""
    try:
        with duckdb.connect() as con:
            con.execute("set memory_limit = $limit", {"limit": limit})
    except duckdb.Error:
        return False
    return True


def variable(name: str) -> str:
    """The environment variable of the setting `name`: max_quarantine_share -> B12LAB_MAX_QUARANTINE_SHARE."""
    return ENV_PREFIX + name.upper()


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    name = variable(str(first["loc"][0])) if first["loc"] else "B12LAB settings"
    if first["type"] == "value_error":
        return f"{name}: {first['ctx']['error']}"
    # A value of the wrong type (a share that is no number): never echo a secret.
    shown = "" if first["loc"] and first["loc"][0] == "pseudonym_key" else f"{first['input']!r}: "
    return f"{name}: {shown}{first['msg'].lower()}"


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment, with the command line's options (`overrides` that are not None)
    taking precedence; raises SettingsError naming the first value it cannot take."""
    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as error:
        raise SettingsError(_one_line(error)) from None


# The defaults alone (no environment read), for help texts and documentation.
DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
