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
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import Any

from coverage_runtime.errors import ReportError
from coverage_runtime.report.evidence import bits_of
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
