"""From the paths recorded in the image to the paths of a local checkout.

The function ran from ``/var/task`` (its ``LAMBDA_TASK_ROOT``); the report
reads the source from wherever the checkout is.  Recorded paths under a task
root are mapped to the source root (or to a root of their own:
``--task-root /image/path=local/path``); a measured file with no local source
is listed, so the report can stop or leave it out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coverage_runtime.errors import ReportError
from coverage_runtime.report.merge import Partial


@dataclass(frozen=True)
class PathMap:
    """Maps the image's task root(s) to the local checkout."""

    roots: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, task_roots: Iterable[str], source_root: str | Path) -> PathMap:
        """``OLD`` maps to ``source_root``; ``OLD=NEW`` maps to NEW."""
        local = os.path.abspath(source_root)
        roots: list[tuple[str, str]] = []
        for spec in task_roots:
            old, sep, new = spec.partition("=")
            old = old.rstrip("/") or "/"
            if not old.startswith("/"):
                raise ReportError(f"invalid --task-root {spec!r}: the image path must be absolute")
            roots.append((os.path.normpath(old), os.path.abspath(new) if sep and new else local))
        roots.sort(key=lambda pair: len(pair[0]), reverse=True)
        return cls(tuple(roots))

    def map(self, path: str) -> tuple[str, bool]:
        """(local path, was it remapped?)."""
        for old, new in self.roots:
            if path == old or path.startswith(old + "/"):
                return os.path.normpath(new + path[len(old) :]), True
        return path, False


@dataclass
class MissingSource:
    recorded: str
    local: str
    remapped: bool

    def __str__(self) -> str:
        if self.remapped:
            return f"{self.recorded} -> {self.local}"
        return self.local


def remap(partial: Partial, path_map: PathMap) -> tuple[Partial, list[MissingSource]]:
    """The partial with local paths, and the measured files with no local source."""
    mapped = Partial(
        line_files=partial.line_files,
        arc_files=partial.arc_files,
        merged=partial.merged,
        skipped=list(partial.skipped),
    )
    missing: dict[str, MissingSource] = {}
    seen: dict[str, tuple[str, bool]] = {}
    for path in partial.paths():
        local, was = path_map.map(path)
        seen[path] = (local, was)
        if not os.path.exists(local):
            missing[local] = MissingSource(path, local, was)
    for (path, ctx), bits in partial.lines.items():
        key = (seen[path][0], ctx)
        mapped.lines[key] = mapped.lines.get(key, 0) | bits
    for (path, ctx), arcs in partial.arcs.items():
        key = (seen[path][0], ctx)
        mapped.arcs.setdefault(key, set()).update(arcs)
    mapped.evidence = partial.evidence.remap(lambda path: seen[path][0])
    return mapped, sorted(missing.values(), key=lambda m: m.local)


def drop_paths(partial: Partial, paths: set[str]) -> None:
    for key in [k for k in partial.lines if k[0] in paths]:
        del partial.lines[key]
    for key in [k for k in partial.arcs if k[0] in paths]:
        del partial.arcs[key]
