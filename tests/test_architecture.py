"""The package's folders are its layers, and imports point one way (README, Layers): checked on every import
statement of every module, function-level imports included."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipelines" / "b12lab"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())

# subpackage -> the b12lab subpackages it may import (itself always)
ALLOWED = {
    "common": set(),
    "rules": {"common"},
    "lake": {"common"},
    "ingest": {"common", "lake"},
    "quality": {"common"},
    "publish": {"common", "lake", "rules"},
    "report": {"common"},  # reads the published warehouse only: no ingest, model, lake or rules code
    "synth": {"common"},
    "flows": {"common", "rules", "lake", "ingest", "quality", "publish", "report"},
    "cli": {"common", "rules", "lake", "ingest", "flows", "synth", "publish"},
}


def imported_subpackages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "b12lab" and len(parts) > 1 and parts[1] in SUBPACKAGES:
                found.add(parts[1])
    return found


def test_every_subpackage_has_a_rule():
    assert set(SUBPACKAGES) == set(ALLOWED)


@pytest.mark.parametrize("subpackage", sorted(ALLOWED))
def test_imports_point_one_way(subpackage):
    wrong = {}
    for path in sorted((PACKAGE / subpackage).rglob("*.py")):
        bad = imported_subpackages(path) - ALLOWED[subpackage] - {subpackage}
        if bad:
            wrong[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert wrong == {}


def test_nothing_imports_the_flows_but_the_command_line():
    """The benchmarks included: they run the pipeline through the `b12lab` process or the command line."""
    modules = [*PACKAGE.rglob("*.py"), *BENCHMARKS.rglob("*.py")]
    importers = {str(path.relative_to(PACKAGE.parents[1])) for path in modules
                 if "flows" in imported_subpackages(path)
                 and not (path.is_relative_to(PACKAGE) and path.parent.name in ("flows", "cli"))}
    assert importers == set()


def test_the_flows_rule_sees_a_benchmark_that_imports_the_flows(tmp_path):
    offender = tmp_path / "bench.py"
    offender.write_text("def main():\n    from b12lab.flows.nightly import run_pipeline\n")
    assert imported_subpackages(offender) == {"flows"}


def test_no_module_at_the_package_root_but_its_init():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]
