"""Reports by label: which labels to report (shell patterns), and what each label ran.

A label is what the shim records as coverage.py's *dynamic context*: ``init``
for what ran while an environment initialised, ``""`` (coverage.py's empty
context) for invocations with no label, and anything else a caller sent
(e.g. a pytest node id).  The merge keeps them (`merge.Partial` is keyed by
(file, context)), so the merged data file carries every label under which
each line ran, as ``coverage run --context`` data would.

Selecting labels is coverage.py's own job (``[report] contexts``: regexes,
`CoverageData.set_query_contexts`); this module only turns the shell-style
patterns a user types into such regexes, exactly, and checks them against the
labels the data holds, so that a typo is an error and not a 0% report.

``unused`` and ``diff`` read the evidence, not coverage.py's data, so
`restrict` narrows the evidence the same way: what the verdicts would be if the
data held only the selected labels' runs.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from coverage_runtime.errors import ReportError
from coverage_runtime.report.evidence import (
    INIT_CONTEXT,
    Cohort,
    Count,
    Evidence,
    Profile,
    add_counts,
    bits_of,
)
from coverage_runtime.report.merge import Partial

NO_LABEL = ""  # coverage.py's empty context: invocations that carried no label
NO_LABEL_SHOWN = '""'  # how tables and errors show it; `--context ''` selects it
SHOWN_IN_ERRORS = 20  # labels named in a "nothing matched" error at most


def pattern_regex(pattern: str) -> str:
    """A regex that matches exactly the labels ``pattern`` selects.

    coverage.py matches context regexes with `re.search`, so the shell
    pattern (`fnmatch.translate`, anchored at its end) is anchored at the
    start too.  A pattern also selects the label spelled exactly like it:
    pytest node ids carry ``[param]``, which would otherwise be a character
    class (``test_x[a]`` would match ``test_xa`` and not itself).
    """
    return rf"\A(?:{fnmatch.translate(pattern)}|{re.escape(pattern)}\Z)"


def shown(label: str) -> str:
    """A label as tables and messages print it: never raw (labels come from callers)."""
    if label == NO_LABEL:
        return NO_LABEL_SHOWN
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in label)


@dataclasses.dataclass(frozen=True)
class LabelSelection:
    """The ``--context`` patterns, as coverage.py's report contexts."""

    patterns: tuple[str, ...] = ()

    @property
    def regexes(self) -> list[str]:
        return [pattern_regex(p) for p in self.patterns]

    def selects(self, label: str) -> bool:
        return not self.patterns or any(re.search(r, label) for r in self.regexes)

    def describe(self) -> str:
        """The patterns as a shell would take them back (``''`` for the empty label)."""
        return " ".join(shlex.quote(p) for p in self.patterns)

    def check(self, labels: Iterable[str]) -> list[str]:
        """Warnings for patterns that select none of ``labels``; a `ReportError`
        when no pattern selects any (the report would be empty)."""
        if not self.patterns:
            return []
        present = sorted(set(labels))
        regexes = [re.compile(r) for r in self.regexes]
        idle = [
            p
            for p, r in zip(self.patterns, regexes, strict=True)
            if not any(map(r.search, present))
        ]
        if len(idle) == len(self.patterns):
            names = ", ".join(shown(label) for label in present[:SHOWN_IN_ERRORS])
            left = len(present) - SHOWN_IN_ERRORS
            more = f" and {left} more" if left > 0 else ""
            raise ReportError(
                f"no label matches --context {' '.join(repr(p) for p in self.patterns)}; "
                f"the data holds {len(present)} label(s): {names}{more} "
                "(lambda-coverage report --contexts lists them)"
            )
        return [f"--context {p!r} matches no label of the data" for p in idle]


@dataclasses.dataclass(frozen=True)
class LabelCount:
    """What one label ran, over every merged environment."""

    label: str
    files: int
    lines: int  # distinct (file, line) pairs
    arcs: int | None  # distinct (file, arc) pairs; None for line data
    selected: bool = True

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def count_labels(
    partial: Partial, branch: bool, selection: LabelSelection = LabelSelection()
) -> list[LabelCount]:
    """Per label of the merged data: files, lines (and arcs) it ran; most lines first.

    Lines are counted as coverage.py's ``contexts_by_lineno`` reads the merged
    data file: recorded lines, or for branch data the lines of the arcs.
    """
    # Per (file, label), the lines as one int bit set (bit n = line n), as the merge holds
    # them: a count is one popcount, whatever the number of labels and lines.
    bits: dict[tuple[str, str], int] = {} if branch else dict(partial.lines)
    arcs: dict[str, int] = {}
    for key, pairs in partial.arcs.items():
        bits[key] = bits.get(key, 0) | bits_of(n for arc in pairs for n in arc)
        if branch:
            arcs[key[1]] = arcs.get(key[1], 0) + len(pairs)
    files: dict[str, int] = {}
    lines: dict[str, int] = {}
    for (_, label), found in bits.items():
        if found:
            files[label] = files.get(label, 0) + 1
            lines[label] = lines.get(label, 0) + found.bit_count()
    counts = [
        LabelCount(
            label,
            files[label],
            lines[label],
            arcs.get(label, 0) if branch else None,
            selection.selects(label),
        )
        for label in files
    ]
    return sorted(counts, key=lambda c: (-c.lines, c.label))


def table(counts: Sequence[LabelCount]) -> str:
    """The terminal table of ``--contexts``: one row per label."""
    if not counts or all(c.label == NO_LABEL for c in counts):
        return (
            "labels: the data carries none (every invocation ran unlabelled; see the "
            "README's 'Reports by label')\n"
        )
    names = [shown(c.label) for c in counts]
    width = max(len("label"), *(len(n) for n in names))
    branch = counts[0].arcs is not None
    filtered = not all(c.selected for c in counts)
    header = f"{'label':<{width}}  files  lines" + ("   arcs" if branch else "")
    rows = [header + ("  selected" if filtered else "")]
    for name, count in zip(names, counts, strict=True):
        row = f"{name:<{width}}  {count.files:>5}  {count.lines:>5}"
        if branch:
            row += f"  {count.arcs:>5}"
        if filtered:
            row += "  yes" if count.selected else "  no"
        rows.append(row)
    return "\n".join(rows) + "\n"


# -- unused and diff: the evidence of the selected labels -------------------------------


@dataclasses.dataclass(frozen=True)
class Restriction:
    """What ``unused`` / ``diff`` were restricted to: the patterns and the labels they chose."""

    patterns: tuple[str, ...]
    labels: tuple[str, ...]  # the data's labels the patterns select, sorted

    # What the counts mean under a filter, for every output.
    MEANING = (
        "environments count only where a selected label ran a measured line; invocations "
        "are those environments' totals (the data does not count invocations per label)"
    )

    def as_dict(self) -> dict[str, Any]:
        return {
            "patterns": list(self.patterns),
            "selected": list(self.labels),
            "meaning": self.MEANING,
        }

    def describe(self) -> str:
        names = ", ".join(shown(label) for label in self.labels[:SHOWN_IN_ERRORS])
        left = len(self.labels) - SHOWN_IN_ERRORS
        more = f" and {left} more" if left > 0 else ""
        return (
            f"labels: only the runs of --context {LabelSelection(self.patterns).describe()} "
            f"({len(self.labels)} label(s): {names}{more}); {self.MEANING}"
        )


def restrict(
    evidence: Evidence, selection: LabelSelection
) -> tuple[Evidence, Restriction, list[str]]:
    """The evidence as if the environments had recorded only the selected labels' runs,
    what it was restricted to, and warnings for patterns that select nothing.

    - Lines: a profile keeps the lines its selected labels ran (a profile left with
      none is dropped).
    - Environments (and so ``observed``, days, revisions): those in which a selected
      label ran a measured line; invocations are their totals.
    - ``init_only``: lines that ran under ``init`` and under no other *selected* label,
      so ``--context '' --context init`` calls a function that production traffic never
      ran but cold starts do ``init_only``, even when a test ran it too; ``--context init``
      alone calls every function the init runs ``init_only``.  (Whether a function runs
      at cold start and never after, in any environment under any label, is the verdict
      without ``--context``: a run in another environment under an unselected label would
      otherwise have to count, and the filter would no longer be one.)
    - Arcs are not kept per label: the restricted profiles hold none (no verdict reads them).
    """
    if not evidence.has_labels:
        raise ReportError(
            "--context needs an evidence file with labels; this one was written before "
            "they were kept: run lambda-coverage report (or unused / diff without --data) "
            "again to rebuild it"
        )
    present = evidence.labels()
    warnings = selection.check(present)
    chosen = {label for label in present if selection.selects(label)}  # matched once
    restricted = Evidence()
    add_counts(
        restricted.cohorts,
        (
            (cohort, count)
            for (cohort, labels), count in evidence.label_sets.items()
            if not labels.isdisjoint(chosen)
        ),
    )
    if selection.selects(NO_LABEL):
        add_counts(restricted.cohorts, _unlabelled(evidence).items())
    for profile, count in evidence.profiles.items():
        kept = tuple((label, bits) for label, bits in profile.label_lines() if label in chosen)
        lines = 0
        for _, bits in kept:
            lines |= bits
        if not lines:
            continue
        init = dict(kept).get(INIT_CONTEXT, 0)
        others = 0
        for label, bits in kept:
            if label != INIT_CONTEXT:
                others |= bits
        narrowed = Profile(profile.path, profile.cohort, lines, init & ~others, None, kept)
        add_counts(restricted.profiles, [(narrowed, count)])
    return restricted, Restriction(selection.patterns, tuple(sorted(chosen))), warnings


def _unlabelled(evidence: Evidence) -> dict[Cohort, Count]:
    """Per cohort, the environments that recorded no label but "" (and their invocations)."""
    rest = {cohort: Count(c.environments, c.invocations) for cohort, c in evidence.cohorts.items()}
    for (cohort, _), count in evidence.label_sets.items():
        rest[cohort].environments -= count.environments
        rest[cohort].invocations -= count.invocations
    return {cohort: count for cohort, count in rest.items() if count.environments > 0}
