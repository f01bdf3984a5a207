"""A change held against production: how widely does each line it touches run?

diff-cover answers "are the changed lines covered?" from a binary report; it
cannot say how widely a line runs, so the join is ours: every Python
statement line the change adds or modifies (from ``git diff BASE`` or a diff
file, parsed by ``unidiff``) is classified from the evidence, through the
revisions, as

- ``ran``: production ran this very line (unchanged in a deployed revision),
  with the share of the comparable environments and their invocations;
- ``never_ran``: deployed unchanged, and no environment ran it;
- ``new``: no observed revision holds the line as it is now.

and the lines are summed per function (the unit that owns them).  With
``--context`` the evidence is that of the selected labels (`labels.restrict`):
``ran`` then means a selected label ran the line (e.g. an integration test, in
the deployed function), among the environments where one ran anything.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coverage_runtime.errors import ReportError
from coverage_runtime.report.insights import Checkout
from coverage_runtime.report.labels import Restriction
from coverage_runtime.report.revisions import repository_root, run_git, unidiff_patch
from coverage_runtime.report.units import Unit

RAN = "ran"
NEVER_RAN = "never_ran"
NEW = "new"
STATUSES = (RAN, NEVER_RAN, NEW)


def changed_lines(
    source_root: Path, base: str | None = None, diff_file: str | None = None
) -> dict[str, set[int]]:
    """Added or modified lines per file (absolute path) of ``git diff BASE`` or a diff file."""
    patch_set = unidiff_patch()
    from unidiff.errors import UnidiffParseError

    top = repository_root(source_root)
    if diff_file is not None:
        try:
            text = Path(diff_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"cannot read --diff-file {diff_file!r}: {exc}") from exc
    else:
        if top is None:
            raise ReportError(f"--base needs a git work tree: {source_root} is not in one")
        if not base or base.startswith("-"):
            raise ReportError(f"invalid --base {base!r}")
        found = run_git(top, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
        if found.returncode != 0:
            raise ReportError(f"--base {base!r} is not a revision of {top}")
        diff = run_git(
            top, "-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff", "-M",
            "--histogram", "-U0", found.stdout.strip(), "--", "*.py",
        )  # fmt: skip
        if diff.returncode != 0:
            raise ReportError(f"git diff {base} failed: {diff.stderr.strip()}")
        text = diff.stdout
    try:
        patch = patch_set(text)
    except UnidiffParseError as exc:
        raise ReportError(f"not a unified diff: {exc}") from exc
    root = top if top is not None else Path(os.path.abspath(source_root))
    found_lines: dict[str, set[int]] = {}
    for patched in patch:
        if patched.is_removed_file or not patched.path.endswith(".py"):
            continue
        added = {line.target_line_no for hunk in patched for line in hunk if line.is_added}
        name = patched.target_file
        name = name[2:] if name.startswith("b/") else name
        if added:
            found_lines[os.path.join(str(root), name)] = {n for n in added if n}
    return found_lines


@dataclass
class LineVerdict:
    path: str
    line: int
    status: str
    unit: Unit | None
    environments: int = 0
    observed: int = 0
    invocations: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.unit.path if self.unit else self.path,
            "line": self.line,
            "status": self.status,
            "unit": self.unit.qualname if self.unit else None,
            "environments": self.environments,
            "observed_environments": self.observed,
            "share": round(self.environments / self.observed, 6) if self.observed else None,
            "invocations": self.invocations,
        }


@dataclass
class UnitChange:
    unit: Unit
    counts: Counter[str] = field(default_factory=Counter)
    environments: int = 0  # the most environments any of its touched lines ran in
    observed: int = 0
    invocations: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.unit.path,
            "qualname": self.unit.qualname,
            "kind": self.unit.kind,
            "start_line": self.unit.start_line,
            "end_line": self.unit.end_line,
            **{status: self.counts[status] for status in STATUSES},
            "environments": self.environments,
            "observed_environments": self.observed,
            "invocations": self.invocations,
        }


@dataclass
class Classified:
    lines: list[LineVerdict]
    units: list[UnitChange]
    observed: dict[str, Any]
    restriction: Restriction | None = None  # --context: the labels whose runs count

    def counts(self) -> dict[str, int]:
        found = Counter(line.status for line in self.lines)
        return {status: found[status] for status in STATUSES}

    def ran_percent(self) -> float:
        """Touched lines production ran, of those it could have run (100 when none)."""
        counts = self.counts()
        known = counts[RAN] + counts[NEVER_RAN]
        return 100.0 * counts[RAN] / known if known else 100.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "observed": self.observed,
            "labels": self.restriction.as_dict() if self.restriction else None,
            "lines": self.counts(),
            "ran_percent": round(self.ran_percent(), 2),
            "units": [u.as_dict() for u in self.units],
            "changed_lines": [line.as_dict() for line in self.lines],
        }


def classify(checkout: Checkout, changed: dict[str, set[int]]) -> Classified:
    """Every touched statement line of the checkout's reported files, classified."""
    judge = checkout.judge
    lines: list[LineVerdict] = []
    units: dict[tuple[str, str, int], UnitChange] = {}
    for path, file_units in checkout.files:
        touched = changed.get(path) or changed.get(os.path.realpath(path)) or set()
        statements = set().union(*(u.lines for u in file_units)) if file_units else set()
        for number in sorted(touched & statements):
            owner = next((u for u in file_units if number in u.lines), None)
            tally = judge.tally(path, {number})
            status = NEW if not tally.observed else RAN if tally.environments else NEVER_RAN
            verdict = LineVerdict(
                path, number, status, owner, tally.environments, tally.observed, tally.invocations
            )
            lines.append(verdict)
            if owner is None:
                continue
            change = units.setdefault(
                (owner.path, owner.qualname, owner.start_line), UnitChange(owner)
            )
            change.counts[status] += 1
            if tally.environments >= change.environments:
                change.environments, change.observed = tally.environments, tally.observed
                change.invocations = max(change.invocations, tally.invocations)
    ordered = sorted(units.values(), key=lambda c: (c.unit.path, c.unit.start_line))
    return Classified(lines, ordered, judge.observed.as_dict(), checkout.restriction)
