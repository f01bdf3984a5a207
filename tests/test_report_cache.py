"""The report's download cache: one SQLite file per bucket, keyed by ETag."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from coverage_runtime.report.cache import ObjectCache
from coverage_runtime.report.objects import DataObject, with_metadata

KEY = "coverage/fn/$LATEST/2026-11-25/env-1.coverage"


def test_an_object_is_found_only_for_its_etag_and_size_and_survives_the_process(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        assert cache.lookup(KEY, "etag1", 4) is None and cache.read(KEY, "etag1", 4) is None
        cache.store(KEY, "etag1", b"body", {"invocations": "3"})
        entry = cache.lookup(KEY, "etag1", 4)
        assert entry is not None and entry.metadata == {"invocations": "3"}
        assert cache.lookup(KEY, "etag2", 4) is None
        assert cache.lookup(KEY, "etag1", 5) is None
    assert (tmp_path / "bucket.sqlite3").is_file(), "one file for the whole bucket"
    # A second report (a new process) finds what the first stored, bytes included.
    with ObjectCache(tmp_path, "bucket") as again:
        assert again.read(KEY, "etag1", 4) == b"body"
        assert again.read(KEY, "etag2", 4) is None


def test_a_new_version_replaces_the_old_one(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        cache.store(KEY, "old", b"1", {})
        cache.flush()
        cache.store(KEY, "new", b"22", {})
    with ObjectCache(tmp_path, "bucket") as cache:
        assert cache.read(KEY, "old", 1) is None
        assert cache.read(KEY, "new", 2) == b"22"
    with sqlite3.connect(tmp_path / "bucket.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM objects").fetchone() == (1,)


def test_an_unreadable_cache_file_starts_an_empty_cache_instead_of_failing(tmp_path: Path):
    (tmp_path / "bucket.sqlite3").write_bytes(b"not a database at all" * 1000)
    with ObjectCache(tmp_path, "bucket") as cache:
        assert cache.lookup(KEY, "e", 1) is None
        cache.store(KEY, "e", b"x", {})
    with ObjectCache(tmp_path, "bucket") as cache:
        assert cache.read(KEY, "e", 1) == b"x"


def test_a_cache_that_cannot_be_written_says_why_and_costs_nothing_else(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        # A full disk, as SQLite reports it: no page may be added to the file.
        pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
        cache._db.execute(f"PRAGMA max_page_count = {pages}")
        cache.store(KEY, "e", b"x" * 100_000, {})
        cache.flush()
        assert cache.write_error is not None and "full" in cache.write_error
        cache.store("other", "e", b"y", {})  # later objects are not tried again
    with ObjectCache(tmp_path, "bucket") as cache:
        assert cache.read(KEY, "e", 100_000) is None


def test_big_objects_are_written_before_many_pile_up_in_memory(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        for number in range(3):
            cache.store(f"{KEY}.{number}", "e", b"x" * (7 * 2**20), {})
        with sqlite3.connect(tmp_path / "bucket.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM objects").fetchone() == (3,)


def test_lookups_work_from_download_threads(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        cache.store(KEY, "e", b"body", {"invocations": "1"})
        found = []
        thread = threading.Thread(target=lambda: found.append(cache.lookup(KEY, "e", 4)))
        thread.start()
        thread.join()
        assert found[0] is not None and found[0].metadata == {"invocations": "1"}


def test_metadata_keys_are_case_insensitive_like_s3():
    # S3 sends x-amz-meta-invocations; MinIO and some proxies X-Amz-Meta-Invocations.
    obj = DataObject(
        key=KEY,
        etag="e",
        size=1,
        last_modified=None,
        function="fn",
        version="$LATEST",
        date="2026-11-25",
        environment_id="env-1",
    )
    tagged = with_metadata(obj, {"Invocations": "7", "Code-Revision": "abc"})
    assert tagged.invocations == 7 and tagged.revision == "abc"
