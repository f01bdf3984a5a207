"""coverage.py's multiline maps of the measured code, computed once when the image is built.

    python -m coverage_runtime.shim.maps_cache [SOURCE_DIR ...]   # (the Dockerfile runs it)

With branches on the ``sysmon`` core (3.14), a file's first branch event makes
coverage.py tokenize the whole file for its multiline map.  That is most of
coverage.py's first sight of the function's code: at 2,000 modules of the
synthetic function, 834 ms of the first hand-over's 1,340 ms of CPU in the
image (`bench/replay_share.py`), in every environment, on the shipping
thread, beside the invocations that thaw it, or in an early shutdown's window.
The source does not change between the environments of one image, so the
image's build computes each measured file's map once, with coverage.py's own
function (`coverage_adapter.multiline_map`), into one file per source
directory (`CACHE_NAME`), keyed by file name with its size and modification
time; at run time a file whose size or time differs (or that the build did not
see) is tokenized as before, so a stale cache costs time, never exactness.
The cache is read when coverage.py first asks for a map (`Known`), on the
thread that replays, never at init.  It only serves the Python and coverage.py
versions that wrote it.
"""

from __future__ import annotations

import json
import marshal
import os
import sys
from collections.abc import Iterable

from coverage_runtime.shim import coverage_adapter, distributions

CACHE_NAME = ".coverage-multiline-maps"
FORMAT = 1
_SKIPPED_DIRS = frozenset(("__pycache__", "site-packages", "dist-packages", ".git"))

# file name -> (size, modification time in ns, the map)
Maps = dict[str, tuple[int, int, dict[int, int]]]


def _stamp() -> tuple[int, str, str]:
    """What a cache is only valid for: its format, this Python, this coverage.py."""
    coverage = coverage_adapter.import_coverage()
    return FORMAT, sys.version, str(coverage.__version__)


def source_files(source_dirs: Iterable[str]) -> list[str]:
    """The Python files under ``source_dirs`` that the shim may measure: not the
    installed distributions (`distributions`), nor anything under
    ``site-packages`` or ``dist-packages``."""
    sources = list(source_dirs)
    installed = distributions.installed_paths(sources)
    found = []
    for source in sources:
        for directory, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                if not any(path == p or path.startswith(p) for p in installed):
                    found.append(path)
    return found


def build(source_dirs: Iterable[str]) -> dict[str, int]:
    """Compute and write each source directory's cache; how many files per directory."""
    stamp = _stamp()
    written = {}
    for source in source_dirs:
        maps: Maps = {}
        for path in source_files([source]):
            try:
                found = coverage_adapter.multiline_map(path)
                status = os.stat(path)
            except Exception:  # noqa: S112 - coverage.py lets some through: computed live then
                continue
            entry = (status.st_size, status.st_mtime_ns, found)
            maps[path] = entry
            real = os.path.realpath(path)
            if real != path:  # (code objects may carry either name)
                maps[real] = entry
        target = os.path.join(source, CACHE_NAME)
        with open(target + ".tmp", "wb") as handle:
            marshal.dump((stamp, maps), handle)
        os.replace(target + ".tmp", target)
        written[source] = len(maps)
    return written


class Known:
    """The maps the image's build computed for ``source_dirs``, as a lookup for
    `coverage_adapter.use_known_maps`: read on first use."""

    def __init__(self, source_dirs: Iterable[str]) -> None:
        self._dirs = tuple(source_dirs)
        self._maps: Maps | None = None
        self.hits = 0

    def _load(self) -> Maps:
        maps: Maps = {}
        stamp = _stamp()
        for source in self._dirs:
            try:
                with open(os.path.join(source, CACHE_NAME), "rb") as handle:
                    # (As trusted as the code beside it: whoever writes it writes the code.)
                    found_stamp, found = marshal.load(handle)  # noqa: S302
            except (OSError, EOFError, ValueError, TypeError):
                continue  # none, or unreadable: tokenized as before
            if found_stamp == stamp and isinstance(found, dict):
                maps.update(found)
        return maps

    def __call__(self, filename: str) -> dict[int, int] | None:
        maps = self._maps
        if maps is None:
            maps = self._maps = self._load()
        entry = maps.get(filename)
        if entry is None:
            return None
        try:
            size, mtime_ns, found = entry
            status = os.stat(filename)
        except (OSError, TypeError, ValueError):  # (a malformed entry: tokenized as before)
            return None
        if status.st_size != size or status.st_mtime_ns != mtime_ns or type(found) is not dict:
            return None  # changed since the build
        self.hits += 1
        return found


def main(argv: list[str]) -> int:
    """Write the caches of the given source directories, else of the shim's own
    (``COVERAGE_SOURCE``, else ``LAMBDA_TASK_ROOT``); one JSON line says what."""
    sources = argv[1:]
    if not sources:
        from coverage_runtime.settings import load_settings

        sources = list(load_settings(os.environ).source)
    if getattr(sys, "monitoring", None) is None:
        print(json.dumps({"written": {}, "reason": "no sys.monitoring (Python 3.12+)"}))
        return 0
    try:
        written = build(sources)
    except coverage_adapter.InternalsChanged as exc:
        print(json.dumps({"written": {}, "reason": str(exc)}))
        return 0
    print(json.dumps({"written": written}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
