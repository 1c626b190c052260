"""The SQL models, a dbt project (this folder: dbt_project.yml, models/, seeds/), and the runner that builds it."""
from b12lab.transforms.runner import MART_TABLES, WORKING_MODELS, BuildResult, ModelError, build, docs

__all__ = ["MART_TABLES", "WORKING_MODELS", "BuildResult", "ModelError", "build", "docs"]
