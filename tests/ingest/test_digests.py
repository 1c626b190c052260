"""The drop files' sha256 remembered between nights: reused only for a file whose identity is unchanged."""
import hashlib
import os
import time

from b12lab.ingest import discover_exports
from b12lab.ingest.digests import DigestCache
from tests.helpers.exports import lab_row, write_labs

AN_HOUR_AGO = time.time() - 3600


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settled(path, content: bytes):
    """A file last written an hour ago (its change time is now: only its modification time can be set back)."""
    path.write_bytes(content)
    os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    return path


def night(cache_file, *files) -> tuple[list[str], DigestCache]:
    digests = DigestCache.load(cache_file)
    found = [digests.digest(path) for path in files]
    digests.save()
    return found, digests


def test_an_unchanged_file_is_not_read_again(tmp_path, monkeypatch):
    cache = tmp_path / "cache.json"
    export = settled(tmp_path / "labs.csv", b"patient_id\n1\n")
    monkeypatch.setattr("b12lab.ingest.digests.UNTOUCHED_SECONDS", 0)  # its change time is a moment ago
    first, digests = night(cache, export)
    assert first == [sha256(export)] and (digests.computed, digests.reused) == (1, 0)
    again, digests = night(cache, export)
    assert again == first and (digests.computed, digests.reused) == (0, 1)


def test_a_file_rewritten_with_its_size_and_times_put_back_is_read_again(tmp_path, monkeypatch):
    cache = tmp_path / "cache.json"
    export = settled(tmp_path / "labs.csv", b"patient_id\n1\n")
    monkeypatch.setattr("b12lab.ingest.digests.UNTOUCHED_SECONDS", 0)
    night(cache, export)
    time.sleep(0.01)
    settled(export, b"patient_id\n2\n")  # same size, same modification time: only the change time tells
    again, digests = night(cache, export)
    assert again == [sha256(export)] and (digests.computed, digests.reused) == (1, 0)


def test_a_file_replaced_by_another_of_the_same_name_is_read_again(tmp_path, monkeypatch):
    cache = tmp_path / "cache.json"
    export = settled(tmp_path / "labs.csv", b"patient_id\n1\n")
    monkeypatch.setattr("b12lab.ingest.digests.UNTOUCHED_SECONDS", 0)
    night(cache, export)
    replacement = settled(tmp_path / "new.csv", b"patient_id\n3\n")
    os.replace(replacement, export)
    again, digests = night(cache, export)
    assert again == [sha256(export)] and digests.computed == 1


def test_a_file_written_a_moment_ago_is_not_remembered(tmp_path):
    # Racy: it could be written again within the clock's resolution and keep every number of its identity.
    cache = tmp_path / "cache.json"
    export = tmp_path / "labs.csv"
    export.write_bytes(b"patient_id\n1\n")
    night(cache, export)
    _, digests = night(cache, export)
    assert (digests.computed, digests.reused) == (1, 0)


def test_a_damaged_cache_means_every_digest_is_computed_and_files_gone_are_forgotten(tmp_path, monkeypatch):
    cache = tmp_path / "cache.json"
    monkeypatch.setattr("b12lab.ingest.digests.UNTOUCHED_SECONDS", 0)
    kept, gone = settled(tmp_path / "a.csv", b"a"), settled(tmp_path / "b.csv", b"b")
    cache.write_text("{not json")
    found, digests = night(cache, kept, gone)
    assert found == [sha256(kept), sha256(gone)] and digests.computed == 2
    night(cache, kept)  # b.csv is no longer in the folder
    assert list(__import__("json").loads(cache.read_text())) == [str(kept.absolute())]


def test_discovery_gives_the_same_source_hashes_with_and_without_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr("b12lab.ingest.digests.UNTOUCHED_SECONDS", 0)
    drop = tmp_path / "drop"
    drop.mkdir()
    write_labs(drop / "labs_a.csv", [lab_row()])
    cache = tmp_path / "cache.json"
    plain, _ = discover_exports(drop)
    for _ in range(2):
        digests = DigestCache.load(cache)
        cached, _ = discover_exports(drop, digests=digests)
        digests.save()
        assert [e.source_hash for e in cached] == [e.source_hash for e in plain] == [sha256(drop / "labs_a.csv")]
    assert digests.reused == 1
