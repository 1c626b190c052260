"""The wheel carries the two projects that sit beside the package in the repository: the dbt project
(transforms/) and the Great Expectations project (expectations/), copied to b12lab/_projects/ at build time.
b12lab.common.paths finds them there when installed, and beside the package in a checkout."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROJECTS = ("transforms", "expectations")
# What dbt and GX write when run by hand in a checkout: never shipped.
IGNORED = shutil.ignore_patterns("target", "logs", "dbt_packages", "uncommitted", "__pycache__", "*.duckdb*", ".user.yml")


class BuildWithProjects(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders
            return
        for name in PROJECTS:
            target = Path(self.build_lib) / "b12lab" / "_projects" / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(ROOT / name, target, ignore=IGNORED)


setup(cmdclass={"build_py": BuildWithProjects})
