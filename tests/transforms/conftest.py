"""Fixtures for the SQL model tests: hand-built lake rows in an in-memory DuckDB (see lake.py)."""
from __future__ import annotations

import pytest

from tests.transforms import lake


@pytest.fixture
def build_lake():
    """build_lake(labs=[...], patients=[...], diagnoses=[...], medications=[...], as_of=..., profile=...) -> con"""
    connections = []

    def build(*args, **kwargs):
        con = lake.build(*args, **kwargs)
        connections.append(con)
        return con

    yield build
    for con in connections:
        con.close()
