"""A local cache of downloaded data objects, keyed by S3 ETag.

Each version of an object is one file, ``<cache>/<bucket>/<key>.<etag>``, and
one index per bucket, ``<cache>/<bucket>/index.sqlite3``, maps each key to the
ETag, size and metadata of its cached version.  An object whose listed ETag
and size match the index is not downloaded again, so a second report
downloads only the environments that changed.

A row is added to the index only after its file is completely written, so an
interrupted run leaves at worst a file that no row names, which the next run
writes again.  Files are created once per object version, without a sidecar
or a temporary name: creating files is what a cold report pays for on a busy
filesystem (a sidecar per object, each written to a temporary name and
renamed, made the download three times slower; see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

INDEX_NAME = "index.sqlite3"
_SAFE_ETAG = re.compile(r"[0-9A-Za-z-]{1,128}")
_FLUSH_EVERY = 256


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lambda-coverage"


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    etag: str
    size: int
    metadata: dict[str, str]


class ObjectCache:
    """Data files of one bucket on local disk, and their index.

    `lookup` and `write` may be called from any thread; `record` and `flush`
    from the thread that created the cache (SQLite connections are not
    shared between threads).
    """

    def __init__(self, root: Path | str, bucket: str) -> None:
        self.root = Path(root) / bucket
        self._entries: dict[str, tuple[str, int, dict[str, str]]] = {}
        self._pending: list[tuple[str, str, int, str]] = []
        self._db: sqlite3.Connection | None = None
        self._open_index()

    # -- the index ------------------------------------------------------------

    def _open_index(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        index = self.root / INDEX_NAME
        try:
            self._db = self._connect(index)
        except sqlite3.DatabaseError:
            # Not an index (a crash mid-creation, a stray file): the cache is
            # disposable, so start a new one rather than fail the report.
            index.unlink(missing_ok=True)
            self._db = self._connect(index)
        for key, etag, size, metadata in self._db.execute(
            "SELECT key, etag, size, metadata FROM entries"
        ):
            try:
                self._entries[key] = (etag, int(size), dict(json.loads(metadata or "{}")))
            except (TypeError, ValueError):
                continue  # an unreadable row is a cache miss

    @staticmethod
    def _connect(index: Path) -> sqlite3.Connection:
        db = sqlite3.connect(index, timeout=30)
        db.execute(
            "CREATE TABLE IF NOT EXISTS entries "
            "(key TEXT PRIMARY KEY, etag TEXT NOT NULL, size INTEGER NOT NULL, metadata TEXT)"
        )
        db.commit()
        return db

    def record(self, key: str, etag: str, size: int, metadata: Mapping[str, str]) -> None:
        """Index a completely written file (see `write`); saved by `flush`."""
        previous = self._entries.get(key)
        if previous is not None and previous[0] != etag:
            with contextlib.suppress(OSError, ValueError):
                self.path_for(key, previous[0]).unlink(missing_ok=True)
        self._entries[key] = (etag, size, dict(metadata))
        self._pending.append((key, etag, size, json.dumps(dict(metadata))))
        if len(self._pending) >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self._pending or self._db is None:
            return
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO entries (key, etag, size, metadata) VALUES (?, ?, ?, ?)",
                self._pending,
            )
        self._pending = []

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> ObjectCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the files ------------------------------------------------------------

    def path_for(self, key: str, etag: str) -> Path:
        """Where this version of ``key`` lives; ValueError for a key unsafe on disk."""
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"unsafe key for the local cache: {key!r}")
        if not _SAFE_ETAG.fullmatch(etag):
            etag = hashlib.sha256(etag.encode()).hexdigest()[:32]
        parts[-1] = f"{parts[-1]}.{etag}"
        return self.root.joinpath(*parts)

    def lookup(self, key: str, etag: str, size: int) -> CacheEntry | None:
        """The cached entry when it is exactly this version of the object."""
        found = self._entries.get(key)
        if found is None or found[0] != etag or found[1] != size:
            return None
        path = self.path_for(key, etag)
        try:
            if path.stat().st_size != size:
                return None
        except OSError:
            return None
        return CacheEntry(path, etag, size, dict(found[2]))

    def write(self, key: str, etag: str, body: bytes) -> Path:
        """Write this version's file (not yet indexed: `record` does that)."""
        path = self.path_for(key, etag)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "xb") as out:  # the usual case: one new file, nothing else
                out.write(body)
        except FileExistsError:
            # Left by an interrupted run, or being written by a concurrent one:
            # replace it whole, so no reader ever sees a torn file.
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(body)
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        return path
