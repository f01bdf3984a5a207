"""Which files under a source directory belong to installed distributions.

AWS's recipe for a function image on a non-AWS base installs the dependencies
with ``pip install --target <task root>``, so the task root that is measured
by default also holds FastAPI, pydantic, boto3 and their friends.  They are
not the function's code: measuring them costs time and fills the report with
files that have no local source.  pip leaves a ``<name>.dist-info`` directory
per distribution (``RECORD`` lists every file it installed; ``top_level.txt``,
where present, the top-level names), setuptools' older installs a
``<name>.egg-info`` with ``top_level.txt``.  From those come the top-level
modules and packages to omit.

On the init path: ``os.path`` and ``open``, not ``pathlib`` (3-4 ms of imports
in the image that a minimal handler never makes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable


def installed_top_levels(directory: str) -> set[str]:
    """Top-level module and package names installed into ``directory``."""
    names: set[str] = set()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return names
    for entry in entries:
        if not entry.is_dir() or not entry.name.endswith((".dist-info", ".egg-info")):
            continue
        names.update(_from_top_level(os.path.join(entry.path, "top_level.txt")))
        names.update(_from_record(os.path.join(entry.path, "RECORD"), entry.name))
    return {name for name in names if name and name not in (".", "..", "__pycache__")}


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _from_top_level(path: str) -> set[str]:
    try:
        return {line.strip() for line in _read(path).decode().splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError):
        return set()


def _from_record(path: str, own_directory: str) -> set[str]:
    """The top-level names of the files a RECORD lists.

    On the init path, and a task root's RECORDs run to thousands of rows
    (botocore's data files): the rows stay bytes (decoding them all cost more
    than the rest, 2 of 5 ms for 33 RECORDs in bench/heavy), the part before
    the first ``/`` of each is taken in one pass, and only the few distinct
    ones are decoded and looked at; a quoted row (a comma in its path) goes
    through `csv`.
    """
    try:
        data = _read(path)
    except OSError:
        return set()
    rows = data.split(b"\n")
    # A top-level file's row has no "/" before its hash: cut at the comma after.
    heads = {row.split(b"/", 1)[0] for row in rows if row[:1] != b'"'}
    firsts: set[str] = set()
    for head in {h.split(b",", 1)[0] for h in heads}:
        with contextlib.suppress(UnicodeDecodeError):
            firsts.add(head.decode().strip())
    quoted = [row for row in rows if row[:1] == b'"']
    if quoted:
        import csv

        with contextlib.suppress(csv.Error, UnicodeDecodeError):
            lines = [row.decode() for row in quoted]
            firsts.update(r[0].split("/", 1)[0] for r in csv.reader(lines) if r)
    names: set[str] = set()
    for component in firsts:
        first = component.replace("\\", "/").split("/", 1)[0]
        if first in ("", ".", "..") or first == own_directory:
            continue  # (".." and "": console scripts and data installed elsewhere)
        if first.endswith((".dist-info", ".egg-info", ".data")):
            continue
        names.add(first[:-3] if first.endswith(".py") else first.split(".", 1)[0])
    return names


def installed_paths(sources: Iterable[str]) -> tuple[str, ...]:
    """What distributions installed into ``sources``: a package directory
    (ending with a separator) or a module file, per top-level name.

    A source directory that is itself inside an installed package (named
    explicitly in ``COVERAGE_SOURCE``) is measured: its package is not left out.
    """
    sources = [os.path.normpath(source) for source in sources]
    paths: list[str] = []
    for source in sources:
        for name in sorted(installed_top_levels(source)):
            package = os.path.join(source, name)
            if any(s == package or s.startswith(package + os.sep) for s in sources):
                continue
            paths += [package + os.sep, package + ".py"]
    return tuple(paths)


def omit_patterns(
    sources: Iterable[str], installed: Iterable[str] | None = None
) -> tuple[str, ...]:
    """coverage.py ``omit`` patterns for what distributions installed into ``sources``
    (``installed``: `installed_paths` of them, when already known)."""
    patterns: list[str] = []
    for path in installed_paths(sources) if installed is None else installed:
        if path.endswith(os.sep):
            package = path[:-1]
            patterns += [path + "*", package + ".*.so"]
        else:
            patterns.append(path)
    return tuple(patterns)
