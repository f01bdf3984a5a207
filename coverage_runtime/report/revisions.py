"""The checkout's lines at other revisions, through git: what production ran still counts.

An environment recorded under another ``CODE_REVISION`` ran that revision's
lines.  A line of the checkout that git shows unchanged since that revision
(renames followed) carries the evidence over, as Codecov shifts carried-forward
coverage by a diff; a changed or new line gets nothing from it.  The diff is
``git diff -M --histogram`` from the revision to the working tree, parsed by
``unidiff``, with a context wide enough that every unchanged line of a changed
file is a context line with its old and its new number.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coverage_runtime.errors import ReportError

_ALL_CONTEXT = "-U1000000"  # every unchanged line of a changed file, numbered on both sides


def run_git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None:
        raise ReportError("git is not installed: it is needed to map revisions")
    try:
        return subprocess.run(  # noqa: S603 (our own arguments; a revision never starts with -)
            [git, "-C", str(repo), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReportError(f"git {args[0]} failed: {exc}") from exc


def unidiff_patch() -> Any:
    """unidiff's PatchSet, or a `ReportError` saying how to install it."""
    try:
        from unidiff import PatchSet
    except ImportError as exc:
        raise ReportError(
            "unidiff is not installed: pip install 'lambda-coverage[report]' (or unidiff)"
        ) from exc
    return PatchSet


def repository_root(path: Path) -> Path | None:
    """The top of the git work tree ``path`` is in, or None."""
    found = run_git(path, "rev-parse", "--show-toplevel")
    return Path(found.stdout.strip()) if found.returncode == 0 else None


@dataclass
class LineMap:
    """From the checkout's files (paths relative to the work tree) to one revision's lines.

    ``changed``: path -> (path at the revision or None when new, {line now: line then},
    or None when only the name changed) for the files the diff names; any other
    tracked file is unchanged.
    """

    revision: str
    commit: str
    tracked: set[str]
    changed: dict[str, tuple[str | None, dict[int, int] | None]] = field(default_factory=dict)

    def old_path(self, path: str) -> str | None:
        if path in self.changed:
            return self.changed[path][0]
        return path if path in self.tracked else None

    def old_line(self, path: str, line: int) -> int | None:
        """The number ``line`` of ``path`` had at the revision, None when changed or new."""
        if path in self.changed:
            then, lines = self.changed[path]
            if then is None:
                return None
            return line if lines is None else lines.get(line)
        return line if path in self.tracked else None


def other_revisions(source_root: Path, revisions: set[str]) -> list[str]:
    """Of ``revisions`` (as recorded), those that are not the commit checked out at
    ``source_root``; [] outside a git work tree."""
    top = repository_root(source_root)
    if top is None or not revisions:
        return []
    head = run_git(top, "rev-parse", "--verify", "--quiet", "HEAD").stdout.strip()
    found = []
    for revision in sorted(revisions):
        if revision.startswith("-"):
            found.append(revision)
            continue
        commit = run_git(top, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        if commit.returncode != 0 or commit.stdout.strip() != head:
            found.append(revision)
    return found


class Revisions:
    """Line maps from the checkout (a git work tree) to the revisions environments ran."""

    def __init__(self, source_root: Path) -> None:
        self.source_root = Path(os.path.abspath(source_root))
        self.top = repository_root(self.source_root)
        self._maps: dict[str, LineMap | None] = {}

    def relative(self, path: str) -> str | None:
        """``path`` (absolute) relative to the work tree, '/'-separated; None outside it."""
        if self.top is None:
            return None
        real = os.path.realpath(path)
        top = os.path.realpath(self.top)
        if not real.startswith(top.rstrip("/") + "/"):
            return None
        return os.path.relpath(real, top).replace(os.sep, "/")

    def absolute(self, relative: str) -> str:
        assert self.top is not None
        return os.path.join(str(self.top), relative)

    def map_for(self, revision: str) -> LineMap | None:
        """The line map to ``revision``, or None when the checkout does not know it."""
        if revision not in self._maps:
            self._maps[revision] = self._build(revision)
        return self._maps[revision]

    def _build(self, revision: str) -> LineMap | None:
        patch_set = unidiff_patch()
        if self.top is None or revision.startswith("-"):
            return None
        found = run_git(self.top, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        if found.returncode != 0:
            return None
        commit = found.stdout.strip()
        listed = run_git(self.top, "ls-tree", "-r", "--name-only", "-z", commit)
        tracked = {p for p in listed.stdout.split("\0") if p}
        diff = run_git(
            self.top,
            "-c",
            "core.quotePath=false",
            "diff",
            "--no-color",
            "--no-ext-diff",
            "-M",
            "--histogram",
            _ALL_CONTEXT,
            commit,
            "--",
            "*.py",
        )
        if diff.returncode != 0:
            raise ReportError(f"git diff {revision} failed: {diff.stderr.strip()}")
        line_map = LineMap(revision, commit, tracked)
        for patched in patch_set(diff.stdout):
            if patched.is_removed_file:
                continue
            now = _strip(patched.target_file)
            then = None if patched.is_added_file else _strip(patched.source_file)
            lines: dict[int, int] | None = None  # no hunk: renamed (or mode) only
            for hunk in patched:
                lines = lines if lines is not None else {}
                for line in hunk:
                    if line.is_context and line.target_line_no and line.source_line_no:
                        lines[line.target_line_no] = line.source_line_no
            line_map.changed[now] = (then, lines)
        return line_map


def _strip(name: str) -> str:
    return name[2:] if name.startswith(("a/", "b/")) else name
