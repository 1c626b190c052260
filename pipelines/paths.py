"""Where the project's data files live, wherever the package is installed."""
from pathlib import Path

import expectations
import transforms

TRANSFORMS_DIR = Path(transforms.__file__).parent
REFERENCE_DIR = TRANSFORMS_DIR / "reference"
INGEST_SQL_DIR = TRANSFORMS_DIR / "ingest"
RULES_DIR = TRANSFORMS_DIR / "rules"
EXPECTATIONS_DIR = Path(expectations.__file__).parent


def read_sql(path: Path) -> str:
    return path.read_text(encoding="utf-8")
