"""The report's download cache: one file per object version, one index per bucket."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coverage_runtime.report_cache import INDEX_NAME, ObjectCache
from coverage_runtime.report_objects import DataObject, with_metadata

KEY = "coverage/fn/$LATEST/2026-11-25/env-1.coverage"


def test_an_entry_is_found_only_once_indexed_and_only_for_its_etag_and_size(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        path = cache.write(KEY, "etag1", b"body")
        assert path.read_bytes() == b"body"
        assert cache.lookup(KEY, "etag1", 4) is None, "written but not indexed: not complete"
        cache.record(KEY, "etag1", 4, {"invocations": "3"})
        entry = cache.lookup(KEY, "etag1", 4)
        assert entry is not None and entry.path == path and entry.metadata == {"invocations": "3"}
        assert cache.lookup(KEY, "etag2", 4) is None
        assert cache.lookup(KEY, "etag1", 5) is None
    # A new process (a second report) sees what the first indexed.
    again = ObjectCache(tmp_path, "bucket")
    assert again.lookup(KEY, "etag1", 4) is not None
    again.close()


def test_a_file_missing_or_cut_short_on_disk_is_a_miss(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        path = cache.write(KEY, "e", b"body")
        cache.record(KEY, "e", 4, {})
        path.write_bytes(b"bo")
        assert cache.lookup(KEY, "e", 4) is None
        path.unlink()
        assert cache.lookup(KEY, "e", 4) is None


def test_a_leftover_of_an_interrupted_run_is_replaced_whole(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        leftover = cache.path_for(KEY, "e")
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"half")
        assert cache.write(KEY, "e", b"the whole body") == leftover
        assert leftover.read_bytes() == b"the whole body"
        assert [p.name for p in leftover.parent.iterdir()] == [leftover.name], "no temporary left"


def test_a_new_version_replaces_the_old_file(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        old = cache.write(KEY, "old", b"1")
        cache.record(KEY, "old", 1, {})
        new = cache.write(KEY, "new", b"22")
        cache.record(KEY, "new", 2, {})
        assert not old.exists() and new.read_bytes() == b"22"
        assert cache.lookup(KEY, "old", 1) is None
        assert cache.lookup(KEY, "new", 2) is not None


def test_an_unreadable_index_starts_an_empty_cache_instead_of_failing(tmp_path: Path):
    (tmp_path / "bucket").mkdir()
    (tmp_path / "bucket" / INDEX_NAME).write_bytes(b"not a database at all" * 100)
    with ObjectCache(tmp_path, "bucket") as cache:
        assert cache.lookup(KEY, "e", 1) is None
        cache.write(KEY, "e", b"x")
        cache.record(KEY, "e", 1, {})
    with sqlite3.connect(tmp_path / "bucket" / INDEX_NAME) as db:
        assert db.execute("SELECT key, etag FROM entries").fetchall() == [(KEY, "e")]


@pytest.mark.parametrize("key", ["a/../b", "/abs", "a//b", "./x"])
def test_keys_that_would_escape_the_cache_are_refused(tmp_path: Path, key: str):
    with ObjectCache(tmp_path, "bucket") as cache, pytest.raises(ValueError, match="unsafe key"):
        cache.path_for(key, "e")


def test_odd_etags_still_name_one_safe_file(tmp_path: Path):
    with ObjectCache(tmp_path, "bucket") as cache:
        path = cache.path_for(KEY, "../../x y")
        assert path.parent == cache.root / "coverage/fn/$LATEST/2026-11-25"
        assert ".." not in path.name and " " not in path.name


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
