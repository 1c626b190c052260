"""A drop folder on an object store: S3, Google Cloud Storage, Azure Blob Storage, or any other store fsspec
reaches (`--input s3://bucket/prefix`).

A night reads such a drop as it reads a local folder (b12lab.ingest.contract.discover_exports), from a folder
of the night's own in the output folder's scratch space (OUTPUT/.tmp/drop/), which it stages first:

- every object at the top of the prefix whose name does not start with a dot becomes a file of that folder;
- an object whose content is already committed to the lake, and whose name alone says what export it is
  (labs*.csv, Observation*.ndjson, a mapping's pattern, ...), is not downloaded again: its file is an empty
  placeholder, and its sha256 is the one remembered for the object's size and version (its ETag, generation or
  modification time: what changes whenever the object is written again). It is counted as already ingested
  and never read;
- an object whose name says it is no export (notes.txt) is a placeholder too: it is named as ignored, as a
  local folder's would be, and never read;
- every other object is downloaded: new or rewritten exports, and the files a night reads whatever is new
  (FHIR Bundles, whose resource types are in their content; Medication and Organization NDJSON, read for
  references; a $export manifest; a mapping's dictionary).

So a night downloads what it ingests and little else, and keeps no copy: the folder is removed when the
night's files are ingested (and with the rest of OUTPUT/.tmp by the next night, after a run that was killed).
The objects' digests are remembered in OUTPUT/.cache/object-digests.json (object URLs, sizes, versions and
digests; no content).

Which store and which credentials are fsspec's: the protocol's package (s3fs for s3://, gcsfs for gs://,
adlfs for az://) must be installed, and its credentials and options come from the environment as that package
reads them (AWS_ACCESS_KEY_ID, ..., or FSSPEC_S3_ENDPOINT_URL and other FSSPEC_<PROTOCOL>_<OPTION> variables).
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from b12lab.common.file_names import reported_name
from b12lab.ingest.contract import EXPORT_BY_NAME, IGNORED_BY_NAME
from b12lab.ingest.digests import DigestCache, content_hash, read_remembered, write_remembered

# A URL with a scheme (s3://, gs://, az://, memory://, ...): anything else is a local path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# What an fsspec listing calls the object's version, by store: whichever it gives first.
_VERSION_FIELDS = ("ETag", "etag", "generation", "version_id", "VersionId", "md5_hash", "LastModified",
                   "last_modified", "mtime", "updated", "created")


class DropUnreadable(RuntimeError):
    """The object store's drop could not be listed or an object not downloaded; one line, no content."""


def is_remote(location: str | Path) -> bool:
    """Whether a drop location is an object store's URL (file:// is a local folder)."""
    text = str(location)
    return bool(_URL.match(text)) and not text.lower().startswith("file://")


def drop_location(value: str | Path) -> str | Path:
    """The drop as given: a URL stays text (a Path would fold its //), anything else is a local folder."""
    text = str(value)
    if is_remote(text):
        return text.rstrip("/")
    return Path(text[len("file://"):] if text.lower().startswith("file://") else text)


@dataclass(frozen=True)
class DropObject:
    name: str     # the object's name under the prefix
    size: int
    version: str  # what changes when the object is written again

    def identity(self) -> list:
        return [self.size, self.version]


def _filesystem(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:  # no package for the protocol, or one fsspec does not know
        raise DropUnreadable(f"input {url}: {_first_line(error)}") from error


def list_drop(url: str) -> list[DropObject]:
    """The objects at the top of the prefix, by name: a drop folder's files. Raises DropUnreadable."""
    fs, root = _filesystem(url)
    return _list_objects(fs, root, url)


def _list_objects(fs, root: str, url: str) -> list[DropObject]:
    try:
        entries = fs.ls(root, detail=True, refresh=True)
    except FileNotFoundError as error:
        raise DropUnreadable(f"input {url}: no such bucket or prefix") from error
    except Exception as error:  # the store's own errors (credentials, network): named, one line
        raise DropUnreadable(f"input {url} could not be listed: {type(error).__name__}: {_first_line(error)}") \
            from error
    objects = []
    for entry in entries:
        name = str(entry.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") != "file" or not name or name.startswith("."):
            continue
        version = next((str(entry[field]) for field in _VERSION_FIELDS if entry.get(field)), "")
        objects.append(DropObject(name=name, size=int(entry.get("size") or 0), version=version))
    return sorted(objects, key=lambda item: item.name)


class ObjectDigests:
    """The sha256 of each object, remembered under its URL, size and version between nights."""

    def __init__(self, path: Path, remembered: dict[str, list]):
        self.path = path
        self._remembered = remembered
        self._tonight: dict[str, list] = {}

    @classmethod
    def load(cls, path: Path) -> ObjectDigests:
        return cls(path, read_remembered(path))

    def known(self, url: str, item: DropObject) -> str | None:
        entry = self._remembered.get(url)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == item.identity() and item.version:
            return entry[2]
        return None

    def remember(self, url: str, item: DropObject, digest: str) -> None:
        if item.version:  # an object without a version could change unseen: hashed every night
            self._tonight[url] = [*item.identity(), digest]

    def save(self) -> None:
        """Keep tonight's objects' digests, forget those of objects no longer there."""
        write_remembered(self.path, self._tonight)


@dataclass(frozen=True)
class StagedDrop:
    """The night's folder standing for the drop, and the digests discover_exports takes for its files."""

    folder: Path
    digests: DigestCache
    downloaded: int
    downloaded_bytes: int
    placeholders: int


class _StagedDigests(DigestCache):
    """A placeholder's digest is its object's remembered one; a downloaded file's is computed, and then
    remembered under its object's URL, size and version."""

    def __init__(self, url: str, objects: ObjectDigests, placeholders: dict[Path, str],
                 downloaded: dict[Path, DropObject]):
        super().__init__(None, {})
        self._url = url
        self._objects = objects
        self._placeholders = placeholders
        self._downloaded = downloaded

    def digest(self, file: Path) -> str:
        if file in self._placeholders:
            self.reused += 1
            return self._placeholders[file]
        digest = content_hash(file)
        self.computed += 1
        item = self._downloaded.get(file)
        if item is not None:
            self._objects.remember(f"{self._url}/{item.name}", item, digest)
        return digest


def stage_drop(url: str, folder: Path, digests: ObjectDigests, committed: set[str],
               known_by_name: Callable[[str], str | None]) -> StagedDrop:
    """Stage the drop at `url` in `folder` (emptied first): placeholders for the objects `known_by_name`
    calls "ignored" and for those it calls "export" whose content is committed, downloads for the others."""
    fs, root = _filesystem(url)
    objects = _list_objects(fs, root, url)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    placeholders: dict[Path, str] = {}   # committed exports: their remembered digests
    downloaded: dict[Path, DropObject] = {}
    ignored = 0
    for item in objects:
        object_url = f"{url}/{item.name}"
        target = folder / item.name
        known, by_name = digests.known(object_url, item), known_by_name(item.name)
        if by_name == IGNORED_BY_NAME:
            target.touch()
            ignored += 1
            continue
        if by_name == EXPORT_BY_NAME and known is not None and known in committed:
            target.touch()
            placeholders[target] = known
            digests.remember(object_url, item, known)
            continue
        temporary = folder / f".{item.name}.part"
        try:
            fs.get_file(f"{root.rstrip('/')}/{item.name}", str(temporary))
        except Exception as error:
            # by its pattern: a per-patient Bundle's name may carry the person's name
            raise DropUnreadable(f"input {url}: {reported_name(item.name)} could not be downloaded: "
                                 f"{type(error).__name__}") from error
        os.replace(temporary, target)
        downloaded[target] = item
    return StagedDrop(folder=folder, digests=_StagedDigests(url, digests, placeholders, downloaded),
                      downloaded=len(downloaded),
                      downloaded_bytes=sum(path.stat().st_size for path in downloaded),
                      placeholders=len(placeholders) + ignored)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
