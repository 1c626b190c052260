"""The command line, run as the `b12lab` process: fatal errors give one line on stderr and a non-zero exit,
before any data is touched; no traceback ever reaches the terminal."""
from __future__ import annotations

import pytest

from tests.helpers.processes import b12lab


@pytest.mark.parametrize("command", [[], ["run"], ["synth"], ["sql"], ["serve"], ["notify"]])
def test_every_command_has_help(command):
    result = b12lab(*command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout and result.stderr == ""


def test_missing_input_folder_is_one_line_and_exit_1(tmp_path):
    result = b12lab("run", "--input", tmp_path / "nope", "--output", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"b12lab: error: input folder not found: {tmp_path / 'nope'}"]
    assert not (tmp_path / "out").exists()


def test_unknown_profile_is_a_usage_error_naming_it_and_the_known_ones(tmp_path):
    (tmp_path / "in").mkdir()
    result = b12lab("run", "--input", tmp_path / "in", "--output", tmp_path / "out", "--profile", "no_such_profile")
    assert result.returncode == 2
    assert ("Error: Invalid value for '--profile': b12_rules.yaml: profile: unknown profile 'no_such_profile' "
            "(known: bsh_2014, nice_ng239, seed)") in result.stderr.splitlines()
    assert result.stderr.startswith("Usage: b12lab run ") and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_mapping_name_is_a_usage_error_listing_the_shipped_ones(tmp_path):
    (tmp_path / "in").mkdir()
    result = b12lab("run", "--input", tmp_path / "in", "--output", tmp_path / "out", "--mapping", "no_such_site")
    assert result.returncode == 2
    assert ("Error: Invalid value for '--mapping': no mapping named 'no_such_site' (shipped: lab_csv, mimic3; "
            "or give a .yaml file)") in result.stderr.splitlines()
    assert not (tmp_path / "out").exists()


def test_a_mapping_file_that_is_missing_is_an_error_not_a_usage_error(tmp_path):
    (tmp_path / "in").mkdir()
    result = b12lab("run", "--input", tmp_path / "in", "--output", tmp_path / "out",
                    "--mapping", tmp_path / "site.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"b12lab: error: mapping file not found: {tmp_path / 'site.yaml'}"]


def test_an_unknown_profile_from_the_environment_is_a_setting_error_of_serve(tmp_path):
    result = b12lab("serve", "--input", tmp_path, "--output", tmp_path / "out",
                    env={"B12LAB_PROFILE": "no_such_profile", "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("b12lab: error: b12_rules.yaml: profile: unknown profile 'no_such_profile'")


@pytest.mark.parametrize("command", [["run", "--input", "{tmp}"], ["serve", "--input", "{tmp}"], ["sql", "select 1"]])
def test_an_output_that_is_a_file_is_a_usage_error(tmp_path, command):
    a_file = tmp_path / "warehouse.duckdb"
    a_file.write_text("")
    args = [arg.format(tmp=tmp_path) for arg in command]
    result = b12lab(*args, "--output", a_file, env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert result.returncode == 2
    assert f"Error: Invalid value for '--output': {a_file} is a file, not a folder" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


def test_unreadable_rules_file_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    result = b12lab("run", "--input", tmp_path / "in", "--output", tmp_path / "out",
                    "--rules", tmp_path / "missing.yaml")
    assert result.returncode == 1 and "missing.yaml" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_memory_limit_duckdb_would_refuse_is_named_before_any_data_is_touched(tmp_path):
    (tmp_path / "in").mkdir()
    result = b12lab("run", "--input", tmp_path / "in", "--output", tmp_path / "out",
                    env={"B12LAB_MAX_QUARANTINE_SHARE": "0.2", "B12LAB_MEMORY_LIMIT": "plenty"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "b12lab: error: B12LAB_MEMORY_LIMIT: 'plenty' is not a memory size (for example 1GB or 1536MB)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("share", ["1.5", "-0.1"])
def test_a_quarantine_share_outside_0_to_1_is_refused(tmp_path, share):
    (tmp_path / "in").mkdir()
    result = b12lab("run", "--input", tmp_path / "in", "--output", tmp_path / "out",
                    env={"B12LAB_MAX_QUARANTINE_SHARE": share})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"b12lab: error: B12LAB_MAX_QUARANTINE_SHARE: {float(share)} is not a share between 0 and 1 (default 0.2)"]


@pytest.mark.parametrize("as_of, why", [
    ("2999-01-01", "is after today"),
    ("1899-12-31", "is before 1900-01-01, the earliest date the lake accepts"),
    ("0001-01-01", "is before 1900-01-01"),
])
def test_an_as_of_date_no_run_can_mean_is_refused_in_one_line(tmp_path, as_of, why):
    (tmp_path / "in").mkdir()
    result = b12lab("run", "--input", tmp_path / "in", "--output", tmp_path / "out", "--as-of", as_of)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"b12lab: error: --as-of {as_of} ") and why in line
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2_with_clicks_message(tmp_path):
    result = b12lab("run", "--input", tmp_path, "--output", tmp_path / "out", "--as-of", "yesterday")
    assert result.returncode == 2 and "Invalid value for '--as-of'" in result.stderr
    assert "Traceback" not in result.stderr


def test_sql_without_a_warehouse_is_one_line(tmp_path):
    result = b12lab("sql", "select 1", "--output", tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"b12lab: error: no warehouse at {tmp_path / 'warehouse.duckdb'}: "
                                          "run `b12lab run` first"]


def test_serve_without_a_prefect_server_is_refused(tmp_path):
    result = b12lab("serve", "--input", tmp_path, "--output", tmp_path / "out", env={"PREFECT_API_URL": ""})
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("b12lab: error: PREFECT_API_URL is not set")


def test_serve_refuses_a_cron_it_cannot_read(tmp_path):
    result = b12lab("serve", "--input", tmp_path, "--output", tmp_path / "out", "--cron", "every night",
                    env={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("b12lab: error: --cron / B12LAB_CRON:")


def test_synth_end_before_start_is_one_line(tmp_path):
    result = b12lab("synth", "--patients", "3", "--out", tmp_path, "--start", "2025-01-01", "--end", "2024-01-01")
    assert result.returncode == 1 and result.stderr.splitlines() == ["b12lab: error: --end must be after --start"]
