"""Each chart drawn once per content: a night whose numbers for a chart did not change (no new file, or none for
that practice) copies the SVG drawn before instead of drawing it again. A chart costs milliseconds to draw, but a
report draws one per measure and one per practice, and the distribution of every B12 result grows with the lake.

The SVG is kept under the output folder (OUTPUT/.cache/charts/, beside the data it was drawn from), named by a
digest of the chart function, its arguments and the chart code: any change to any of them draws it again. After a
report only the charts it used are kept.
"""
from __future__ import annotations

import functools
import hashlib
import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

_folder: ContextVar[Path | None] = ContextVar("chart_cache_folder", default=None)
_used: ContextVar[set[str] | None] = ContextVar("chart_cache_used", default=None)


@functools.cache
def _code_digest() -> bytes:
    from b12lab.report import charts

    return hashlib.sha256(Path(charts.__file__).read_bytes()).digest()


def cached(draw: Callable[..., str]) -> Callable[..., str]:
    """`draw`'s SVG from the cache when one is open (chart_cache) and holds it; drawn and kept otherwise."""

    @functools.wraps(draw)
    def cached_draw(*args, **kwargs) -> str:
        folder = _folder.get()
        if folder is None:
            return draw(*args, **kwargs)
        key = hashlib.sha256(_code_digest() + pickle.dumps((draw.__name__, args, sorted(kwargs.items())),
                                                            protocol=5)).hexdigest()
        _used.get().add(key)
        path = folder / f"{key}.svg"
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            pass
        svg = draw(*args, **kwargs)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(svg, encoding="utf-8")
        os.replace(temporary, path)
        return svg

    return cached_draw


@contextmanager
def chart_cache(folder: Path | None) -> Iterator[None]:
    """Charts drawn inside come from and go to `folder` (None: no cache); afterwards the charts not used are
    removed, so that the folder holds one report's charts."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    folder_token, used_token = _folder.set(folder), _used.set(used)
    try:
        yield
    finally:
        _folder.reset(folder_token)
        _used.reset(used_token)
    for path in folder.glob("*.svg"):
        if path.stem not in used:
            path.unlink(missing_ok=True)
