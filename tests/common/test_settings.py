"""The settings: one module reads every B12LAB_* variable, checks it, and README.md lists each one."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from b12lab.common.layout import OutputLayout
from b12lab.common.settings import DEFAULTS, Settings, SettingsError, load_settings, variable

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MODULE = ROOT / "pipelines" / "b12lab" / "common" / "settings.py"


def test_defaults_hold_without_any_variable(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(variable(name), raising=False)
    settings = load_settings()
    assert settings.max_quarantine_share == 0.2 and settings.memory_limit == "768MB"
    assert settings.key() is None and settings.dbt_work_dir is None


def test_a_variable_is_read_and_an_option_overrides_it(monkeypatch, tmp_path):
    monkeypatch.setenv("B12LAB_MAX_QUARANTINE_SHARE", "0.5")
    monkeypatch.setenv("B12LAB_DBT_WORK_DIR", str(tmp_path))
    monkeypatch.setenv("B12LAB_PSEUDONYM_KEY", "secret")
    assert load_settings().max_quarantine_share == 0.5
    assert load_settings(max_quarantine_share=0.1).max_quarantine_share == 0.1
    assert load_settings(max_quarantine_share=None).max_quarantine_share == 0.5
    assert load_settings().key() == b"secret"
    assert OutputLayout.of(tmp_path / "out", load_settings().dbt_work_dir).dbt_work == tmp_path


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("B12LAB_MEMORY_LIMIT", "")
    assert load_settings().memory_limit == DEFAULTS["memory_limit"]


@pytest.mark.parametrize("name, value, message", [
    ("B12LAB_MAX_QUARANTINE_SHARE", "1.5", "B12LAB_MAX_QUARANTINE_SHARE: 1.5 is not a share between 0 and 1 (default 0.2)"),
    ("B12LAB_MAX_QUARANTINE_SHARE", "most", "B12LAB_MAX_QUARANTINE_SHARE: 'most': input should be a valid number"),
    ("B12LAB_MEMORY_LIMIT", "plenty", "B12LAB_MEMORY_LIMIT: 'plenty' is not a memory size (for example 1GB or 1536MB)"),
    ("B12LAB_CRASH_AT", "later", "B12LAB_CRASH_AT: 'later': input should be 'ingest', 'classify' or 'publish'"),
    ("B12LAB_BUCKETS", "0", "B12LAB_BUCKETS: '0': input should be greater than or equal to 1"),
    ("B12LAB_BUCKETS", "some", "B12LAB_BUCKETS: 'some': input should be a valid integer"),
])
def test_a_value_it_cannot_take_is_one_line_naming_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_a_bad_key_is_never_echoed(monkeypatch):
    # Not a case a string setting can reach today; the message must still never show a key's value.
    from pydantic import ValidationError

    from b12lab.common import settings as module

    with pytest.raises(ValidationError) as error:
        Settings(pseudonym_key=12345)
    assert "12345" not in module._one_line(error.value)


def _reads_the_environment(path: Path) -> list[str]:
    """`os.environ[...]`, `os.environ.get(...)` or `os.getenv(...)` of a B12LAB_ name, or a B12LAB_ name handed
    to click's `envvar`: every way a module could read a setting behind the settings module's back."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        text = ast.unparse(node) if isinstance(node, (ast.Call, ast.Subscript)) else ""
        if re.search(r"(environ(\.get)?|getenv)\(?\[?['\"]B12LAB_", text) or re.search(r"envvar=['\"]B12LAB_", text):
            found.append(f"{path}:{node.lineno}")
    return found


def test_no_module_but_the_settings_reads_a_b12lab_variable():
    modules = [*(ROOT / "pipelines").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    readers = sorted({hit for path in modules if path != SETTINGS_MODULE for hit in _reads_the_environment(path)})
    assert readers == []


def test_the_check_finds_a_module_that_reads_a_variable(tmp_path):
    offender = tmp_path / "offender.py"
    offender.write_text('import os\nlimit = os.environ.get("B12LAB_MEMORY_LIMIT")\nkey = os.environ["B12LAB_PSEUDONYM_KEY"]\n')
    assert _reads_the_environment(offender) == [f"{offender}:2", f"{offender}:3"]


def test_the_readme_lists_every_setting_and_dbts_three_variables():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(B12LAB_[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert listed == {variable(name) for name in Settings.model_fields}
    assert all(f"`{name}`" in readme for name in
               ("B12LAB_WAREHOUSE_FILE", "B12LAB_DUCKDB_MEMORY_LIMIT", "B12LAB_DUCKDB_THREADS"))
