"""Where the package's data files and its two projects live, whether it runs from a checkout or an installed wheel.

The dbt project (`transforms/`) and the Great Expectations project (`expectations/`) sit beside the package
in the repository, where dbt and GX users expect them. A wheel carries copies of both inside the package
(`b12lab/_projects/`, written by setup.py's build step); a checkout (including an editable install) uses the
repository's folders. This module is the one place that decides which.
"""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
_BUNDLED_DIR = PACKAGE_DIR / "_projects"  # only in a built wheel
_CHECKOUT_DIR = PACKAGE_DIR.parents[1]    # the repository root: pipelines/b12lab -> .


def _project_dir(name: str) -> Path:
    for candidate in (_BUNDLED_DIR / name, _CHECKOUT_DIR / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the {name}/ project is neither in the installed package nor beside it ({_CHECKOUT_DIR})")


TRANSFORMS_DIR = _project_dir("transforms")  # the SQL models (a dbt project)
EXPECTATIONS_DIR = _project_dir("expectations")  # the Great Expectations project
REFERENCE_DIR = TRANSFORMS_DIR / "seeds" / "reference"  # value sets: ingest reads the files, dbt loads them as seeds
VOCABULARY_DIR = TRANSFORMS_DIR / "seeds" / "vocabulary"  # the clinical vocabulary: codes, labels, urgency, actions
INGEST_SQL_DIR = PACKAGE_DIR / "ingest" / "sql"
MAPPINGS_DIR = PACKAGE_DIR / "ingest" / "mappings"
RULES_DIR = PACKAGE_DIR / "rules"


def read_sql(path: Path) -> str:
    return path.read_text(encoding="utf-8")
