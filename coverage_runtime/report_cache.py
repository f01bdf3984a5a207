"""A local cache of downloaded data objects, keyed by S3 ETag.

The cache mirrors the keys: ``<cache>/<bucket>/<key>`` holds the bytes and
``<cache>/<bucket>/<key>.meta.json`` the ETag, size and object metadata.  An
object whose listed ETag and size match its sidecar is not downloaded again,
so a second report downloads only the environments that changed.  Each entry
is written to a temporary name and renamed, the sidecar last, so an
interrupted run never leaves an entry that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

META_SUFFIX = ".meta.json"


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
    """Data files of one bucket on local disk."""

    def __init__(self, root: Path | str, bucket: str) -> None:
        self.root = Path(root) / bucket

    def path_for(self, key: str) -> Path:
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"unsafe key for the local cache: {key!r}")
        return self.root.joinpath(*parts)

    def lookup(self, key: str, etag: str, size: int) -> CacheEntry | None:
        """The cached entry when it is exactly this version of the object."""
        path = self.path_for(key)
        try:
            with open(str(path) + META_SUFFIX, encoding="utf-8") as handle:
                meta = json.load(handle)
            if meta.get("etag") != etag or meta.get("size") != size:
                return None
            if path.stat().st_size != size:
                return None
        except (OSError, ValueError):
            return None
        return CacheEntry(path, etag, size, dict(meta.get("metadata") or {}))

    def store(self, key: str, body: bytes, etag: str, metadata: Mapping[str, str]) -> CacheEntry:
        path = self.path_for(key)
        sidecar_path = Path(str(path) + META_SUFFIX)
        sidecar_path.unlink(missing_ok=True)  # never a new body under an old sidecar
        self._write(path, body)
        sidecar = {"key": key, "etag": etag, "size": len(body), "metadata": dict(metadata)}
        self._write(sidecar_path, json.dumps(sidecar).encode())
        return CacheEntry(path, etag, len(body), dict(metadata))

    def store_metadata(self, key: str, etag: str, size: int, metadata: Mapping[str, str]) -> None:
        """Record metadata for an entry whose bytes are already cached."""
        path = self.path_for(key)
        sidecar = {"key": key, "etag": etag, "size": size, "metadata": dict(metadata)}
        self._write(Path(str(path) + META_SUFFIX), json.dumps(sidecar).encode())

    @staticmethod
    def _write(path: Path, body: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
