"""The command line: fatal errors give one line and a non-zero exit before any data is touched."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import main


@pytest.mark.parametrize("command", [["--help"], ["run", "--help"], ["synth", "--help"], ["sql", "--help"]])
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0 and "Usage:" in result.output


def test_missing_input_folder_is_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(main, ["run", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"b12lab: error: input folder not found: {tmp_path / 'nope'}"]
    assert not (tmp_path / "out").exists()


def test_unknown_profile_is_refused_naming_it(tmp_path):
    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(main, ["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                                       "--profile", "no_such_profile"])
    assert result.exit_code == 1
    assert "no_such_profile" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unreadable_rules_file_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(main, ["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                                       "--rules", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "missing.yaml" in result.output


def test_console_script_is_installed():
    result = subprocess.run([str(Path(sys.executable).parent / "b12lab"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "run" in result.stdout


def test_a_memory_limit_duckdb_would_refuse_is_named_before_any_data_is_touched(tmp_path):
    (tmp_path / "in").mkdir()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "b12lab"), "run", "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "out")],
        env={**os.environ, "B12LAB_MEMORY_LIMIT": "plenty"}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "b12lab: error: B12LAB_MEMORY_LIMIT: 'plenty' is not a memory size (for example 1GB or 1536MB)"]
    assert not (tmp_path / "out").exists()
