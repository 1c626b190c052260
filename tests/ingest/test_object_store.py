"""A drop folder on an object store (b12lab/ingest/object_store.py), against a real S3 API on this machine
(moto's server: the S3 protocol as s3fs speaks it to AWS, MinIO or Ceph), read through fsspec and s3fs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from b12lab.ingest.contract import EXPORT_BY_NAME, IGNORED_BY_NAME, discover_exports, known_by_name
from b12lab.ingest.digests import content_hash
from b12lab.ingest.object_store import (DropUnreadable, ObjectDigests, drop_location, is_remote, list_drop,
                                        stage_drop)
from benchmarks.harness import free_port
from tests.helpers.processes import SAMPLE, SAMPLE_AS_OF, b12lab

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class S3:
    """moto's S3 server on a free port, and an s3fs client of it."""

    def __init__(self, endpoint: str):
        import s3fs

        self.endpoint = endpoint
        self.env = {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": endpoint}  # how a `b12lab` process is pointed at it
        self.fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint, skip_instance_cache=True)

    def bucket(self, name: str) -> str:
        self.fs.mkdir(name)
        return name

    def put(self, url: str, content: bytes) -> None:
        self.fs.pipe_file(url.removeprefix("s3://"), content)
        self.fs.invalidate_cache()


@pytest.fixture(scope="module")
def s3():
    import fsspec.config
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved_env = {key: os.environ.get(key) for key in CREDENTIALS}
    saved_conf = fsspec.config.conf.get("s3")
    os.environ.update(CREDENTIALS)
    fsspec.config.conf["s3"] = {"endpoint_url": endpoint}  # in this process, as FSSPEC_S3_ENDPOINT_URL does
    try:
        yield S3(endpoint)
    finally:
        server.stop()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if saved_conf is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = saved_conf


@pytest.fixture
def drop(s3, request) -> str:
    """An empty prefix in a bucket of its own for each test."""
    name = "drop-" + request.node.name.replace("_", "-")[:40].strip("-").lower()
    s3.bucket(name)
    return f"s3://{name}/exports"


def test_a_url_is_an_object_store_and_anything_else_a_folder():
    assert is_remote("s3://bucket/prefix") and is_remote("gs://b/p") and is_remote("az://container/p")
    assert not is_remote("/data/drop") and not is_remote("drop") and not is_remote("file:///data/drop")
    assert drop_location("s3://bucket/prefix/") == "s3://bucket/prefix"  # never a Path: it would fold the //
    assert drop_location("file:///data/drop") == Path("/data/drop")
    assert drop_location("data/drop") == Path("data/drop")


@pytest.mark.parametrize("name, mapping, expected", [
    ("labs_north.csv", None, EXPORT_BY_NAME),
    ("patients.csv.gz", None, EXPORT_BY_NAME),
    ("Observation.000.ndjson", None, EXPORT_BY_NAME),
    ("notes.txt", None, IGNORED_BY_NAME),
    ("LABEVENTS.csv", None, IGNORED_BY_NAME),
    ("LABEVENTS.csv", "mimic3", EXPORT_BY_NAME),  # the mapping's pattern
    ("D_LABITEMS.csv", "mimic3", None),           # the mapping's dictionary, read with its lab files
    ("patient-1.json", None, None),               # a Bundle: its resource types are in its content
    ("Medication.ndjson", None, None),            # read for references whatever is new
    ("manifest.json", None, None),                # a $export manifest
])
def test_what_a_file_is_by_its_name_alone(name, mapping, expected):
    from b12lab.ingest.mapping import load_mapping

    assert known_by_name(name, load_mapping(mapping) if mapping else None) == expected


def _stage(drop: str, tmp_path: Path, committed: set[str]):
    digests = ObjectDigests.load(tmp_path / "object-digests.json")
    staged = stage_drop(drop, tmp_path / "staged", digests, committed, known_by_name)
    exports, ignored = discover_exports(staged.folder, None, staged.digests)
    digests.save()
    return staged, exports, ignored


def test_a_night_downloads_only_what_it_must_read(s3, drop, tmp_path):
    """The first night downloads every export; the next, with their content committed, downloads none of
    them, only a new object, a rewritten one and the files read whatever is new (a Bundle, Medication
    NDJSON); a file that is no export is never downloaded, and is still named as ignored."""
    labs = (SAMPLE / "labs_valley.csv").read_bytes()
    patients = (SAMPLE / "patients.csv").read_bytes()
    bundle = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}}]}).encode()
    s3.put(f"{drop}/labs_valley.csv", labs)
    s3.put(f"{drop}/patients.csv", patients)
    s3.put(f"{drop}/notes.txt", b"not an export")
    s3.put(f"{drop}/Medication.ndjson", b'{"resourceType": "Medication", "id": "m1"}\n')
    s3.put(f"{drop}/patient-1.json", bundle)

    staged, exports, ignored = _stage(drop, tmp_path, committed=set())
    assert (staged.downloaded, staged.placeholders) == (4, 1)  # all but notes.txt
    assert [path.name for path in ignored] == ["notes.txt"]
    assert (staged.folder / "notes.txt").stat().st_size == 0
    by_name = {export.name: export.source_hash for export in exports}
    assert by_name["labs_valley.csv"] == content_hash(SAMPLE / "labs_valley.csv")
    assert by_name["patients.csv"] == content_hash(SAMPLE / "patients.csv")

    # Tonight the two CSVs are committed; labs_valley.csv is rewritten, a new lab file arrives.
    rewritten = labs + b"\n"
    s3.put(f"{drop}/labs_valley.csv", rewritten)
    s3.put(f"{drop}/labs_north.csv", labs)
    staged, exports, ignored = _stage(drop, tmp_path, committed=set(by_name.values()))
    placeholders = sorted(p.name for p in staged.folder.iterdir() if p.stat().st_size == 0)
    assert placeholders == ["notes.txt", "patients.csv"]
    assert staged.downloaded == 4  # the rewritten and the new lab file, the Bundle, the Medication NDJSON
    by_name = {export.name: export.source_hash for export in exports}
    assert by_name["patients.csv"] == content_hash(SAMPLE / "patients.csv")  # remembered, never read
    assert by_name["labs_valley.csv"] == content_hash(staged.folder / "labs_valley.csv")
    assert (staged.folder / "labs_valley.csv").read_bytes() == rewritten
    assert by_name["labs_north.csv"] == content_hash(SAMPLE / "labs_valley.csv")
    assert [path.name for path in ignored] == ["notes.txt"]


def test_an_object_not_yet_committed_is_downloaded_again(s3, drop, tmp_path):
    """A digest alone is not enough: an export whose content the lake does not hold (a night that failed
    before its commit) is downloaded again, to be ingested."""
    s3.put(f"{drop}/labs_valley.csv", (SAMPLE / "labs_valley.csv").read_bytes())
    _stage(drop, tmp_path, committed=set())
    staged, exports, _ = _stage(drop, tmp_path, committed=set())
    assert (staged.downloaded, staged.placeholders) == (1, 0)
    assert exports[0].source_hash == content_hash(SAMPLE / "labs_valley.csv")


def test_an_object_that_cannot_be_downloaded_is_named_by_its_pattern(s3, drop, tmp_path, monkeypatch):
    """An object listed then gone (or unreadable) stops the staging in one line; a per-patient Bundle is named
    by its pattern, never by the person's name its file name carries."""
    from b12lab.ingest import object_store
    from b12lab.ingest.object_store import DropObject

    bundle = "Jane_Doe_8f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b.json"
    monkeypatch.setattr(object_store, "_list_objects", lambda fs, root, url: [DropObject(bundle, 10, "v1")])
    with pytest.raises(DropUnreadable) as raised:
        _stage(drop, tmp_path, committed=set())
    assert str(raised.value) == (f"input {drop}: <Given>_<Family>_<id>.json could not be downloaded: "
                                 "FileNotFoundError")
    assert "Jane" not in str(raised.value) and "Doe" not in str(raised.value)


def test_a_missing_bucket_or_prefix_is_one_line(s3, tmp_path):
    with pytest.raises(DropUnreadable, match=r"^input s3://no-such-bucket/exports: no such bucket or prefix$"):
        list_drop("s3://no-such-bucket/exports")


def _file_lines(stdout: str) -> list[str]:
    return [line.split(" - ", 1)[1] for line in stdout.splitlines() if "Flow run" in line and ": read " in line]


@pytest.mark.process
def test_the_sample_from_s3_publishes_what_the_folder_does(s3, drop, published_sample_night, tmp_path):
    """`b12lab run --input s3://...`: the sample's files as objects give the tables of the session's night on
    the same files from a folder, row for row, and the night leaves no downloaded file behind. (What a later
    night downloads: test_a_night_downloads_only_what_it_must_read.)"""
    from prefect.settings import PREFECT_API_URL

    from benchmarks.compare_publications import compare

    for path in sorted(SAMPLE.iterdir()):
        s3.put(f"{drop}/{path.name}", path.read_bytes())
    s3.put(f"{drop}/README.txt", b"exports of the laboratory information system")
    output = tmp_path / "out"
    env = {**s3.env, "PREFECT_API_URL": PREFECT_API_URL.value(), "B12LAB_PSEUDONYM_KEY": None}
    result = b12lab("run", "--input", drop + "/", "--output", output, "--as-of", SAMPLE_AS_OF, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"{drop}: 7 objects, 6 downloaded (0.7 MB), 1 not downloaded (already ingested, or not export files)" \
        in result.stdout
    assert "README.txt: not an export file" in result.stdout
    assert _file_lines(result.stdout) == _file_lines(published_sample_night.result.stdout)
    assert compare(published_sample_night.output, output) == 0
    assert not (output / ".tmp" / "drop").exists()


@pytest.mark.process
def test_an_unreadable_drop_stops_the_command_in_one_line_before_prefect(s3, tmp_path):
    result = b12lab("run", "--input", "s3://no-such-bucket/exports", "--output", tmp_path / "out", env=s3.env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["b12lab: error: input s3://no-such-bucket/exports: no such bucket or prefix"]
    assert "Traceback" not in result.stdout + result.stderr
