"""The progress bar is drawn for a person at a terminal and never into logs."""
from __future__ import annotations

import io
import sys

from b12lab.flows.progress import tracked


def test_without_a_terminal_items_pass_through_and_nothing_is_drawn(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert list(tracked(["labs_a.csv", "labs_b.csv"], "ingesting")) == ["labs_a.csv", "labs_b.csv"]
    assert sys.stderr.getvalue() == ""


def test_at_a_terminal_every_item_still_comes_through(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert list(tracked(range(3), "ingesting", label=str)) == [0, 1, 2]
