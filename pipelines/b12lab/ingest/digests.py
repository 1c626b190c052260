"""The sha256 of each drop-folder file, remembered between nights under the file's identity.

Every night finds its new exports by their content's sha256 (a file already committed is skipped, whatever its
name). A drop folder that keeps its history is read whole each night for that: 0.84 s for the 10M-row
benchmark's nine files, and it grows with the folder. A file whose path, size, modification and change times
and inode are those it had when it was hashed has the same content: rewriting a file changes its change time
(ctime), which no tool can set back, and replacing it changes its inode. So a digest is computed again only for
a file whose identity changed.

One exception, the one git calls racy: a file written again within the clock's resolution of the moment it was
hashed could keep every one of those numbers. A digest is remembered only for a file untouched for
UNTOUCHED_SECONDS when it was hashed; a file still being written is hashed again next night.

The digests are kept in OUTPUT/.cache/export-digests.json (layout.export_digests): file paths and digests, no
content. A missing or unreadable file means every digest is computed, as on a first night.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

UNTOUCHED_SECONDS = 2


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DigestCache:
    """`digest(path)`: the file's sha256, from the cache when its identity is unchanged. `save()` keeps the
    digests of the files asked for since `load` (the folder's files tonight), and forgets the others."""

    def __init__(self, path: Path | None, remembered: dict[str, list]):
        self.path = path
        self._remembered = remembered
        self._tonight: dict[str, list] = {}
        self.reused = 0
        self.computed = 0

    @classmethod
    def load(cls, path: Path) -> DigestCache:
        return cls(path, read_remembered(path))

    @classmethod
    def none(cls) -> DigestCache:
        """Every digest computed, nothing kept (a caller without an output folder)."""
        return cls(None, {})

    def digest(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.absolute())
        identity = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        entry = self._remembered.get(key)
        if isinstance(entry, list) and len(entry) == 5 and entry[:4] == identity:
            self.reused += 1
            self._tonight[key] = entry
            return entry[4]
        digest = content_hash(file)
        self.computed += 1
        if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > UNTOUCHED_SECONDS * 1_000_000_000:
            self._tonight[key] = [*identity, digest]
        return digest

    def save(self) -> None:
        if self.path is None:
            return
        write_remembered(self.path, self._tonight)


def read_remembered(path: Path) -> dict[str, list]:
    """The digests a night kept, by key; none when the file is missing or unreadable (as on a first night)."""
    try:
        remembered = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return remembered if isinstance(remembered, dict) else {}


def write_remembered(path: Path, entries: dict[str, list]) -> None:
    """Replace the file at once: a night killed while writing it leaves the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(entries, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)
