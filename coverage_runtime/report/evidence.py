"""Evidence per line: which environments ran it, how often they were invoked, when, where.

The merged data file keeps the union of lines; the questions the insights
answer (is this function dead? how widely does this changed line run?) need
more: for every line (and arc), the environments that ran it, their
invocations, the first and last date and the function versions and code
revisions seen.

Stored per line, that would cost a counter per line per environment.  It is
stored instead per *profile*: environments of one cohort (function, version,
init date, code revision) that ran exactly the same lines of a file share
one entry with a count of environments and of their invocations.  Real
environments of one deployment run the same paths again and again, so the
number of profiles stays near the number of distinct paths through the
code, not the number of environments; every per-line figure (and the exact
number of environments that ran *any* line of a function) is read back from
the profiles.  Profiles add up, so the evidence of batches, of worker
processes and of earlier runs merges by addition, in any order.

Labels (the shim's dynamic contexts) are kept too, so that ``unused`` and
``diff`` can judge what chosen labels ran (`labels.restrict`): a profile holds
each label's lines, and the evidence counts environments per (cohort, set of
labels they recorded).  An environment with no label at all (only coverage.py's
empty context) adds neither, so unlabelled data costs what it did.

The file is ``evidence.json.gz`` beside ``merged.coverage`` (`EVIDENCE_VERSION`
below; fields in docs/insights.md).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from coverage_runtime.errors import ReportError

EVIDENCE_NAME = "evidence.json.gz"
EVIDENCE_VERSION = 2  # 2: each profile's lines per label, environments per label set
READABLE_VERSIONS = (1, EVIDENCE_VERSION)  # 1 has no labels: `has_labels` is False
GZIP_LEVEL = 6  # gzip's default 9 took twice as long for 4% less (40,000 profiles)
INIT_CONTEXT = "init"  # the label of what runs while an environment initialises


class Cohort(NamedTuple):
    """Environments that count alike: same function, version, init date and revision."""

    function: str
    version: str
    date: str
    revision: str  # "" when the environment recorded none


class Profile(NamedTuple):
    """What one or more environments of a cohort ran of one file."""

    path: str
    cohort: Cohort
    lines: int  # bit set: bit n = line n ran
    init_only: int  # lines that ran only under the init label
    arcs: frozenset[tuple[int, int]] | None  # branch data, when recorded
    # Each label's lines (sorted by label), or None when the environments recorded no
    # label at all: then every line ran under the empty label "".
    labels: tuple[tuple[str, int], ...] | None = None

    def label_lines(self) -> tuple[tuple[str, int], ...]:
        return (("", self.lines),) if self.labels is None else self.labels


LabelSet = tuple[Cohort, frozenset[str]]  # a cohort and the labels its environments recorded
_Key = TypeVar("_Key", "Profile", "Cohort", "LabelSet")


@dataclass(slots=True)
class Count:
    environments: int = 0
    invocations: int = 0


@dataclass
class LineEvidence:
    """The evidence of one line, as `Evidence.lines_of` reads it back."""

    environments: int = 0
    invocations: int = 0
    first: str = ""
    last: str = ""
    versions: set[str] = field(default_factory=set)
    revisions: set[str] = field(default_factory=set)

    def add(self, cohort: Cohort, count: Count) -> None:
        self.environments += count.environments
        self.invocations += count.invocations
        self.first = min(self.first or cohort.date, cohort.date)
        self.last = max(self.last, cohort.date)
        self.versions.add(cohort.version)
        if cohort.revision:
            self.revisions.add(cohort.revision)


def add_counts(table: dict[_Key, Count], counts: Iterable[tuple[_Key, Count]]) -> None:
    """Add ``counts`` into ``table`` (evidence adds up: profiles, cohorts, label sets)."""
    for key, count in counts:
        mine = table.get(key)
        if mine is None:
            table[key] = Count(count.environments, count.invocations)
        else:
            mine.environments += count.environments
            mine.invocations += count.invocations


def _per_label(
    lines: Mapping[tuple[str, str], int], arcs: Mapping[tuple[str, str], set[tuple[int, int]]]
) -> dict[str, tuple[dict[str, int], set[tuple[int, int]] | None]]:
    """Per file: each label's lines (for arcs, the lines of its arcs), and the arcs."""
    per_path: dict[str, tuple[dict[str, int], set[tuple[int, int]] | None]] = {}
    for (path, context), bits in lines.items():
        if bits:
            labels, _ = per_path.setdefault(path, ({}, None))
            labels[context] = labels.get(context, 0) | bits
    for (path, context), found in arcs.items():
        if not found:
            continue
        labels, pairs = per_path.get(path, ({}, None))
        pairs = pairs if pairs is not None else set()
        pairs |= found
        labels[context] = labels.get(context, 0) | bits_of(n for arc in found for n in arc)
        per_path[path] = (labels, pairs)
    return per_path


def bits_of(lines: Iterable[int]) -> int:
    bits = 0
    for line in lines:
        if line > 0:
            bits |= 1 << line
    return bits


def lines_in(bits: int) -> Iterator[int]:
    line = 0
    while bits:
        if bits & 1:
            yield line
        bits >>= 1
        line += 1


@dataclass
class Evidence:
    """Profiles with their counts, plus the environments and invocations of each cohort."""

    profiles: dict[Profile, Count] = field(default_factory=dict)
    cohorts: dict[Cohort, Count] = field(default_factory=dict)
    # Environments that recorded a label other than "", by cohort and their labels; the
    # rest of a cohort's environments recorded only "".
    label_sets: dict[LabelSet, Count] = field(default_factory=dict)
    has_labels: bool = True  # False for a version 1 file, which kept no labels

    def add_environment(
        self,
        cohort: Cohort,
        invocations: int,
        lines: Mapping[tuple[str, str], int],
        arcs: Mapping[tuple[str, str], set[tuple[int, int]]],
    ) -> None:
        """One environment's data: ``lines`` / ``arcs`` per (path, context), as read."""
        count = self.cohorts.setdefault(cohort, Count())
        count.environments += 1
        count.invocations += invocations
        if not arcs and all(context == "" for _, context in lines):
            # No labels, no branches (the common case): one profile per file as read.
            for (path, _), bits in lines.items():
                self._count(Profile(path, cohort, bits, 0, None), invocations)
            return
        per_path = _per_label(lines, arcs)
        recorded = frozenset(label for labels, _ in per_path.values() for label in labels)
        if recorded - {""}:
            add_counts(self.label_sets, [((cohort, recorded), Count(1, invocations))])
        for path, (labels, pairs) in per_path.items():
            init = labels.get(INIT_CONTEXT, 0)
            served = 0
            for label, bits in labels.items():
                if label != INIT_CONTEXT:
                    served |= bits
            profile = Profile(
                path,
                cohort,
                served | init,
                init & ~served,
                frozenset(pairs) if pairs is not None else None,
                tuple(sorted(labels.items())) if recorded - {""} else None,
            )
            self._count(profile, invocations)

    def _count(self, profile: Profile, invocations: int) -> None:
        seen = self.profiles.get(profile)
        if seen is None:
            self.profiles[profile] = Count(1, invocations)
        else:
            seen.environments += 1
            seen.invocations += invocations

    def absorb(self, other: Evidence) -> None:
        add_counts(self.profiles, other.profiles.items())
        add_counts(self.cohorts, other.cohorts.items())
        add_counts(self.label_sets, other.label_sets.items())
        self.has_labels = self.has_labels and other.has_labels

    def remap(self, mapper: Callable[[str], str]) -> Evidence:
        """The same evidence with every path passed through ``mapper``."""
        mapped = Evidence(has_labels=self.has_labels)
        add_counts(mapped.cohorts, self.cohorts.items())
        add_counts(mapped.label_sets, self.label_sets.items())
        add_counts(
            mapped.profiles,
            ((p._replace(path=mapper(p.path)), count) for p, count in self.profiles.items()),
        )
        return mapped

    # -- reading it back ---------------------------------------------------------

    @property
    def environments(self) -> int:
        return sum(c.environments for c in self.cohorts.values())

    @property
    def invocations(self) -> int:
        return sum(c.invocations for c in self.cohorts.values())

    def paths(self) -> set[str]:
        return {p.path for p in self.profiles}

    def labels(self) -> set[str]:
        """Every label under which some environment ran a line ("" for no label)."""
        return {label for p in self.profiles for label, bits in p.label_lines() if bits}

    def by_path(self) -> dict[str, list[tuple[Profile, Count]]]:
        found: dict[str, list[tuple[Profile, Count]]] = {}
        for profile, count in self.profiles.items():
            found.setdefault(profile.path, []).append((profile, count))
        return found

    def lines_of(self, path: str) -> dict[int, LineEvidence]:
        """Every line of ``path`` that ran, with its evidence (all cohorts)."""
        found: dict[int, LineEvidence] = {}
        for profile, count in self.profiles.items():
            if profile.path != path:
                continue
            for line in lines_in(profile.lines):
                found.setdefault(line, LineEvidence()).add(profile.cohort, count)
        return found

    def arcs_of(self, path: str) -> dict[tuple[int, int], LineEvidence]:
        found: dict[tuple[int, int], LineEvidence] = {}
        for profile, count in self.profiles.items():
            if profile.path == path and profile.arcs:
                for arc in profile.arcs:
                    found.setdefault(arc, LineEvidence()).add(profile.cohort, count)
        return found

    # -- the file ----------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        cohorts = sorted(self.cohorts)
        index = {c: i for i, c in enumerate(cohorts)}
        files: dict[str, list[list[Any]]] = {}
        for profile, count in sorted(self.profiles.items(), key=lambda pc: pc[0][:2]):
            files.setdefault(profile.path, []).append(
                [
                    index[profile.cohort],
                    count.environments,
                    count.invocations,
                    format(profile.lines, "x"),
                    format(profile.init_only, "x"),
                    None if profile.arcs is None else sorted(profile.arcs),
                    None
                    if profile.labels is None
                    else [[label, format(bits, "x")] for label, bits in profile.labels],
                ]
            )
        return {
            "version": EVIDENCE_VERSION,
            "cohorts": [
                [*c, self.cohorts[c].environments, self.cohorts[c].invocations] for c in cohorts
            ],
            "label_sets": [
                [index[cohort], sorted(labels), count.environments, count.invocations]
                for (cohort, labels), count in sorted(
                    self.label_sets.items(),
                    key=lambda item: (index[item[0][0]], sorted(item[0][1])),
                )
            ],
            "files": files,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Evidence:
        file_version = document.get("version")
        if file_version not in READABLE_VERSIONS:
            raise ReportError(
                f"evidence file version {file_version!r} is not "
                f"{EVIDENCE_VERSION}: run the report again to rebuild it"
            )
        evidence = cls(has_labels=file_version == EVIDENCE_VERSION)
        cohorts: list[Cohort] = []
        for function, version, date, revision, environments, invocations in document["cohorts"]:
            cohort = Cohort(function, version, date, revision)
            cohorts.append(cohort)
            evidence.cohorts[cohort] = Count(environments, invocations)
        for cohort_index, labels, environments, invocations in document.get("label_sets", ()):
            key = (cohorts[cohort_index], frozenset(labels))
            evidence.label_sets[key] = Count(environments, invocations)
        for path, rows in document["files"].items():
            for row in rows:
                cohort_index, environments, invocations, lines, init, arcs = row[:6]
                by_label = row[6] if len(row) > 6 else None
                profile = Profile(
                    path,
                    cohorts[cohort_index],
                    int(lines, 16),
                    int(init, 16),
                    None if arcs is None else frozenset((a, b) for a, b in arcs),
                    None
                    if by_label is None
                    else tuple((label, int(bits, 16)) for label, bits in by_label),
                )
                evidence.profiles[profile] = Count(environments, invocations)
        return evidence

    def save(self, path: Path, relative_to: Path | None = None) -> Path:
        """Write the evidence file; paths under ``relative_to`` are stored relative to it."""
        evidence = self
        if relative_to is not None:
            root = os.path.abspath(relative_to)
            evidence = self.remap(lambda p: _relative(p, root))
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=GZIP_LEVEL) as out:
            json.dump(evidence.as_json(), out, separators=(",", ":"))
        return path

    @classmethod
    def load(cls, path: Path, relative_to: Path | None = None) -> Evidence:
        """Read an evidence file; relative paths are taken under ``relative_to``."""
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                evidence = cls.from_json(json.load(handle))
        except FileNotFoundError as exc:
            raise ReportError(
                f"no evidence file at {path}: run lambda-coverage report first (the "
                "reduce step of a distributed map keeps none yet)"
            ) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"unreadable evidence file {path}: {exc}") from exc
        if relative_to is not None:
            root = os.path.abspath(relative_to)
            evidence = evidence.remap(
                lambda p: p if os.path.isabs(p) else os.path.normpath(os.path.join(root, p))
            )
        return evidence


def _relative(path: str, root: str) -> str:
    if path.startswith(root.rstrip("/") + "/"):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return path
