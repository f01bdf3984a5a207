"""A local cache of downloaded data objects, keyed by S3 ETag: one SQLite file per bucket.

``<cache>/<bucket>.sqlite3`` holds, for each key, the ETag, size, metadata and
bytes of the version last downloaded. An object whose listed ETag and size
match is not downloaded again, so a second report downloads only the
environments that changed.

One file, not a file per object: creating thousands of small files was the
largest client cost of a cold report (system time in the filesystem, several
times more on a disk where many files were just deleted; see
docs/scaling.md), and one file is also what a CI cache stores and restores
best. Rows are written in transactions from one thread; SQLite's locking
keeps two reports sharing a cache consistent. The cache is disposable: one
that SQLite cannot read is started afresh.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_FLUSH_ROWS = 256  # rows per transaction at most
_FLUSH_BYTES = 16 * 2**20  # and bytes held for it at most (branch data runs to MBs a file)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lambda-coverage"


@dataclass(frozen=True)
class CacheEntry:
    etag: str
    size: int
    metadata: dict[str, str]


class ObjectCache:
    """The cached objects of one bucket.

    `lookup` may be called from any thread. `read`, `store`, `flush` and
    `close` belong to the thread that opened the cache (an SQLite connection
    is not shared between threads).
    """

    def __init__(self, root: Path | str, bucket: str) -> None:
        self.path = Path(root) / f"{bucket}.sqlite3"
        self._entries: dict[str, CacheEntry] = {}
        self._pending: list[tuple[str, str, int, str, bytes]] = []
        self._pending_bytes = 0
        self._db: sqlite3.Connection | None = None
        self.write_error: str | None = None  # why the cache takes no new objects
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._open()
            except sqlite3.DatabaseError:
                # Not a database, or damaged (a power cut with the last writes
                # unsynced): the objects are in S3, so start an empty cache.
                self._discard()
                self._open()
        except (OSError, sqlite3.Error) as exc:
            # No usable cache here at all: the report still runs, downloading everything.
            self.write_error = f"{self.path}: {exc}"

    def _open(self) -> None:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA page_size = 16384")  # data files are tens of KB: fewer pages
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, etag TEXT NOT NULL, "
                "size INTEGER NOT NULL, metadata TEXT NOT NULL, body BLOB NOT NULL)"
            )
            db.commit()
            rows = db.execute("SELECT key, etag, size, metadata FROM objects").fetchall()
        except sqlite3.DatabaseError:
            db.close()
            raise
        self._db = db
        for key, etag, size, metadata in rows:
            with contextlib.suppress(TypeError, ValueError):  # an odd row is a cache miss
                self._entries[key] = CacheEntry(etag, int(size), dict(json.loads(metadata)))

    def _discard(self) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def lookup(self, key: str, etag: str, size: int) -> CacheEntry | None:
        """The cached entry when it is exactly this version of the object."""
        found = self._entries.get(key)
        if found is None or found.etag != etag or found.size != size:
            return None
        return found

    def read(self, key: str, etag: str, size: int) -> bytes | None:
        """The bytes of this version of ``key``, or None (not cached, or unreadable)."""
        if self.lookup(key, etag, size) is None or self._db is None:
            return None
        try:
            row = self._db.execute(
                "SELECT body FROM objects WHERE key = ? AND etag = ?", (key, etag)
            ).fetchone()
        except sqlite3.DatabaseError:
            return None  # downloaded again instead
        if row is None or len(row[0]) != size:
            return None
        return row[0]  # bytes: sqlite3 returns a BLOB as bytes

    def store(self, key: str, etag: str, body: bytes, metadata: Mapping[str, str]) -> None:
        """Keep this version of ``key`` (written with the next `flush`)."""
        entry = CacheEntry(etag, len(body), dict(metadata))
        self._entries[key] = entry
        self._pending.append((key, etag, len(body), json.dumps(entry.metadata), body))
        self._pending_bytes += len(body)
        if len(self._pending) >= _FLUSH_ROWS or self._pending_bytes >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what `store` kept; a full disk costs the cache, never the report."""
        rows, self._pending, self._pending_bytes = self._pending, [], 0
        if not rows or self._db is None or self.write_error:
            return
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO objects (key, etag, size, metadata, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            self.write_error = f"{self.path}: {exc}"

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ObjectCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
