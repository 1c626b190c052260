"""Where the package's data files live, wherever it is installed."""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
TRANSFORMS_DIR = PACKAGE_DIR / "transforms"  # the SQL models (a dbt project)
REFERENCE_DIR = TRANSFORMS_DIR / "seeds" / "reference"  # value sets: ingest reads the files, dbt loads them as seeds
VOCABULARY_DIR = TRANSFORMS_DIR / "seeds" / "vocabulary"  # the clinical vocabulary: codes, labels, urgency, actions
INGEST_SQL_DIR = PACKAGE_DIR / "ingest" / "sql"
MAPPINGS_DIR = PACKAGE_DIR / "ingest" / "mappings"
RULES_DIR = PACKAGE_DIR / "rules"
EXPECTATIONS_DIR = PACKAGE_DIR / "quality" / "gx_project"


def read_sql(path: Path) -> str:
    return path.read_text(encoding="utf-8")
