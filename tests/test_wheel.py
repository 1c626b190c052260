"""The wheel is the product as a site installs it: built from the checkout, installed into a fresh virtualenv,
it carries the dbt project (transforms/) and the GX project (expectations/) and runs the sample from a working
directory that is not the checkout."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers.processes import SAMPLE, SAMPLE_AS_OF, command_env

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.process, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """A fresh virtualenv holding the wheel built from this checkout. Its dependencies are the test session's own
    (a path entry to its site-packages), so nothing is downloaded; b12lab itself comes only from the wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--wheel-dir", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp / "dist").glob("b12lab-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "session_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                                "--quiet", "--no-deps", str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    return venv


def _env() -> dict:
    from prefect.settings import PREFECT_API_URL

    return command_env({"PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": None})


def test_the_wheel_carries_both_projects(installed_wheel, tmp_path):
    where = subprocess.run([str(installed_wheel / "bin" / "python"), "-c",
                            "from b12lab.common import paths; print(paths.PACKAGE_DIR); print(paths.TRANSFORMS_DIR);"
                            " print(paths.EXPECTATIONS_DIR)"],
                           cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    package, transforms, expectations = map(Path, where.stdout.split())
    assert package.is_relative_to(installed_wheel)
    assert transforms == package / "_projects" / "transforms" and (transforms / "dbt_project.yml").is_file()
    assert expectations == package / "_projects" / "expectations"
    assert (expectations / "great_expectations.yml").is_file()
    assert sorted(p.name for p in (expectations / "expectations").glob("*.json")) == sorted(
        p.name for p in (ROOT / "expectations" / "expectations").glob("*.json"))


def test_the_installed_command_runs_the_sample_from_any_folder(installed_wheel, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([str(installed_wheel / "bin" / "b12lab"), "run", "--input", str(SAMPLE),
                             "--output", "out", "--as-of", SAMPLE_AS_OF],
                            cwd=elsewhere, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (elsewhere / "out" / "warehouse.duckdb").exists() and (elsewhere / "out" / "report" / "index.html").exists()
    assert (elsewhere / "out" / "current" / "catalogue" / "index.html").exists()
