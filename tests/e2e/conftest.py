"""End-to-end tests: the whole pipeline on real or sample data (slow; -m e2e selects them, -m "not e2e" skips)."""
from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: runs the whole pipeline end to end (slow)")
