"""A progress bar over a run's long steps, shown only when a person watches a terminal.

Under a scheduler or in a log file the Prefect task logs tell the same story, so nothing is drawn there.
Labels are file names and step names, never data.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def tracked(items: Iterable[Item], description: str, label=str) -> Iterator[Item]:
    items = list(items)
    if not items or not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[current]}"))
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=len(items), current="")
        for item in items:
            progress.update(task, current=label(item))
            yield item
            progress.advance(task)
