"""A verdict for every unit of the checkout: does production run it, how widely, how sure?

The evidence says which environments ran which lines of the revision they
ran; `revisions` carries that onto the checkout's lines; a unit gets the
environments of every cohort whose revision still holds the unit's code
unchanged (the "comparable" ones), and a verdict from them:

- ``never_run``: no comparable environment ran a line of it (``safe_to_delete``
  when the static check, vulture, also finds nothing that references it);
- ``init_only``: it ran only under the init label (only where labels record init),
  for functions and methods: a module or class body runs when it is imported,
  which is what an environment's init does, so it is judged on its environments;
- ``low_traffic``: fewer than ``low_traffic`` of the comparable environments ran it;
- ``active``: the rest;
- ``no_data``: no comparable environment: the unit is new or changed since every
  observed revision, or its revision is unknown to the checkout.

With the unit tests' data, production x tests: ``untested_in_production`` (it
runs in production, no test runs it) and ``tested_only`` (tests run it,
production never did).  The confidence falls with thin observation
(`confidence`: thresholds below, documented in docs/insights.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coverage_runtime.report.evidence import Cohort, Count, Evidence, Profile, bits_of
from coverage_runtime.report.revisions import LineMap, Revisions
from coverage_runtime.report.units import CLASS, MODULE, Unit

NEVER_RUN = "never_run"
SAFE_TO_DELETE = "safe_to_delete"
INIT_ONLY = "init_only"
LOW_TRAFFIC = "low_traffic"
ACTIVE = "active"
NO_DATA = "no_data"
UNTESTED_IN_PRODUCTION = "untested_in_production"
TESTED_ONLY = "tested_only"
VERDICTS = (
    SAFE_TO_DELETE,
    NEVER_RUN,
    TESTED_ONLY,
    INIT_ONLY,
    LOW_TRAFFIC,
    UNTESTED_IN_PRODUCTION,
    ACTIVE,
    NO_DATA,
)
RAN = (INIT_ONLY, LOW_TRAFFIC, ACTIVE)
# Units whose code runs when they are imported: under the init label by nature, so
# never init_only (every module would be), but judged on the environments that ran them.
IMPORTED_BODIES = (MODULE, CLASS)
DEFAULT_LOW_TRAFFIC = 0.01

# Confidence: "low" below LOW_* environments or days, "medium" below MEDIUM_* or with
# a single revision observed, "high" above; "none" for no_data.
LOW_ENVIRONMENTS, LOW_DAYS = 10, 2
MEDIUM_ENVIRONMENTS, MEDIUM_DAYS = 100, 7


def confidence(environments: int, days: int, revisions: int) -> str:
    if environments == 0:
        return "none"
    if environments < LOW_ENVIRONMENTS or days < LOW_DAYS:
        return "low"
    if environments < MEDIUM_ENVIRONMENTS or days < MEDIUM_DAYS or revisions < 2:
        return "medium"
    return "high"


@dataclass
class Observed:
    """What the verdicts stand on: the environments of the revisions the checkout knows."""

    environments: int = 0
    invocations: int = 0
    days: int = 0
    revisions: int = 0
    unknown_revisions: int = 0
    without_revision: int = 0  # environments taken as the checkout's (no CODE_REVISION)
    left_out: int = 0  # environments of unknown revisions
    unknown: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environments": self.environments,
            "invocations": self.invocations,
            "days": self.days,
            "revisions": self.revisions,
            "unknown_revisions": self.unknown_revisions,
            "unknown_revision_ids": self.unknown,
            "environments_without_revision": self.without_revision,
            "environments_left_out": self.left_out,
        }


@dataclass
class Judged:
    unit: Unit
    verdict: str
    confidence: str
    environments: int = 0  # comparable environments that ran a line of the unit
    invocations: int = 0
    observed: int = 0  # comparable environments
    last_seen: str | None = None
    last_version: str | None = None
    production: str | None = None  # the production verdict, when tests changed it
    tested: bool | None = None
    statically_unused: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        unit = self.unit
        found: dict[str, Any] = {
            "path": unit.path,
            "qualname": unit.qualname,
            "kind": unit.kind,
            "start_line": unit.start_line,
            "end_line": unit.end_line,
            "statements": len(unit.lines),
            "verdict": self.verdict,
            "confidence": self.confidence,
            "environments": self.environments,
            "invocations": self.invocations,
            "observed_environments": self.observed,
            "share": round(self.environments / self.observed, 6) if self.observed else None,
            "last_seen": self.last_seen,
            "last_version": self.last_version,
        }
        if self.tested is not None:
            found["production_verdict"] = self.production
            found["tested"] = self.tested
        if self.statically_unused is not None:
            found["statically_unused"] = self.statically_unused
        return found


@dataclass
class Tally:
    """Environments that could have run some lines (``observed``) and those that did."""

    observed: int = 0
    environments: int = 0
    invocations: int = 0
    served: bool = False  # some of it ran outside the init label
    last_seen: str | None = None
    last_version: str | None = None
    dates: set[str] = field(default_factory=set)
    revisions: set[str] = field(default_factory=set)

    def add(self, cohort: Cohort, count: Count) -> None:
        self.environments += count.environments
        self.invocations += count.invocations
        last = self.last_seen
        if last is None or cohort.date > last:
            self.last_seen, self.last_version = cohort.date, cohort.version
        elif cohort.date == last and cohort.version > (self.last_version or ""):
            self.last_version = cohort.version


@dataclass
class Comparable:
    """For one revision: where the unit's lines were then, and the bits to test."""

    revision: str
    cohorts: list[Cohort]
    path: str
    mask: int


class Judge:
    """Verdicts of units against the evidence, through the revisions."""

    def __init__(
        self,
        evidence: Evidence,
        revisions: Revisions,
        low_traffic: float = DEFAULT_LOW_TRAFFIC,
        tested: Mapping[str, set[int]] | None = None,
        unused: set[tuple[str, int, str]] | None = None,
    ) -> None:
        self.evidence = evidence
        self.revisions = revisions
        self.low_traffic = low_traffic
        self.tested = {os.path.realpath(p): lines for p, lines in (tested or {}).items()}
        self.has_tests = tested is not None
        self.unused = unused
        # Profiles by (real path, revision): a comparable revision reads its own only.
        self.by_path: dict[tuple[str, str], list[tuple[Profile, Count]]] = {}
        real: dict[str, str] = {}
        for profile, count in evidence.profiles.items():
            path = real.get(profile.path)
            if path is None:
                path = real[profile.path] = os.path.realpath(profile.path)
            key = (path, profile.cohort.revision)
            self.by_path.setdefault(key, []).append((profile, count))
        self._unions: dict[tuple[str, str], dict[Cohort, int]] = {}
        self.by_revision: dict[str, list[Cohort]] = {}
        self.maps: dict[str, LineMap | None] = {}
        self.observed = Observed()
        dates: set[str] = set()
        for cohort, count in sorted(evidence.cohorts.items()):
            if cohort.revision:
                line_map = self.maps.setdefault(cohort.revision, revisions.map_for(cohort.revision))
                if line_map is None:
                    self.observed.left_out += count.environments
                    if cohort.revision not in self.observed.unknown:
                        self.observed.unknown.append(cohort.revision)
                    continue
            else:
                self.observed.without_revision += count.environments
            self.by_revision.setdefault(cohort.revision, []).append(cohort)
            self.observed.environments += count.environments
            self.observed.invocations += count.invocations
            dates.add(cohort.date)
        self.observed.days = len(dates)
        self.observed.revisions = len([r for r in self.by_revision if r])
        self.observed.unknown_revisions = len(self.observed.unknown)

    def _comparable(self, path: str, lines: set[int]) -> list[Comparable]:
        found: list[Comparable] = []
        relative = self.revisions.relative(path)
        for revision, cohorts in self.by_revision.items():
            if not revision:
                found.append(Comparable(revision, cohorts, os.path.realpath(path), bits_of(lines)))
                continue
            line_map = self.maps[revision]
            assert line_map is not None
            if relative is None:
                continue
            then = line_map.old_path(relative)
            if then is None:
                continue
            olds = [line_map.old_line(relative, n) for n in lines]
            if any(n is None for n in olds):
                continue
            old_path = os.path.realpath(self.revisions.absolute(then))
            found.append(Comparable(revision, cohorts, old_path, bits_of(n for n in olds if n)))
        return found

    def tally(self, path: str, lines: set[int]) -> Tally:
        """The evidence of ``lines`` of the checkout's ``path``: comparable environments
        (whose revision holds all of them unchanged) and those that ran any of them."""
        comparable = self._comparable(path, lines) if lines else []
        found = Tally()
        for k in comparable:
            for cohort in k.cohorts:
                found.observed += self.evidence.cohorts[cohort].environments
                found.dates.add(cohort.date)
                if cohort.revision:
                    found.revisions.add(cohort.revision)
            mask = k.mask
            environments = invocations = 0
            served = False
            latest: Cohort | None = None
            for profile, count in self.by_path.get((k.path, k.revision), ()):
                hit = profile.lines & mask  # the hot loop: one bit-and per profile
                if hit:
                    environments += count.environments
                    invocations += count.invocations
                    if not served and hit & ~profile.init_only:
                        served = True
                    cohort = profile.cohort
                    if latest is None or (
                        cohort.date >= latest.date
                        and (cohort.date > latest.date or cohort.version > latest.version)
                    ):
                        latest = cohort
            if latest is not None:
                found.add(latest, Count(environments, invocations))
                found.served = found.served or served
        return found

    def line_cohorts(self, path: str, line: int) -> set[Cohort]:
        """The cohorts (of known revisions) with an environment that ran ``line`` of the
        checkout's ``path`` as it is now."""
        found: set[Cohort] = set()
        for k in self._comparable(path, {line}):
            for cohort, bits in self._cohort_lines(k.path, k.revision).items():
                if bits & k.mask:
                    found.add(cohort)
        return found

    def _cohort_lines(self, path: str, revision: str) -> dict[Cohort, int]:
        """The lines each cohort ran of one file (the union of its profiles), kept: a
        per-line question then costs one bit test per cohort, not per profile."""
        key = (path, revision)
        found = self._unions.get(key)
        if found is None:
            found = self._unions[key] = {}
            for profile, _ in self.by_path.get(key, ()):
                found[profile.cohort] = found.get(profile.cohort, 0) | profile.lines
        return found

    def judge(self, unit: Unit, path: str) -> Judged:
        """The verdict of ``unit`` of the checkout's file ``path`` (absolute)."""
        tally = self.tally(path, unit.lines)
        result = Judged(
            unit,
            NO_DATA,
            "none",
            environments=tally.environments,
            invocations=tally.invocations,
            observed=tally.observed,
            last_seen=tally.last_seen,
            last_version=tally.last_version,
        )
        if tally.observed:
            served = tally.served or unit.kind in IMPORTED_BODIES
            result.verdict = self._production(result, served)
            result.confidence = confidence(
                tally.observed, len(tally.dates), len(tally.revisions) or 1
            )
        self._static_and_tests(result, path)
        return result

    def _production(self, result: Judged, served: bool) -> str:
        if result.environments == 0:
            return NEVER_RUN
        if not served:
            return INIT_ONLY
        if result.environments < self.low_traffic * result.observed:
            return LOW_TRAFFIC
        return ACTIVE

    def _static_and_tests(self, result: Judged, path: str) -> None:
        unit = result.unit
        if self.unused is not None:
            result.statically_unused = statically_unused_unit(self.unused, path, unit)
            if result.verdict == NEVER_RUN and result.statically_unused:
                result.verdict = SAFE_TO_DELETE
        if self.has_tests:
            tested_lines = self.tested.get(os.path.realpath(path), set())
            result.tested = bool(unit.lines & tested_lines)
            result.production = result.verdict
            if result.verdict in RAN and not result.tested:
                result.verdict = UNTESTED_IN_PRODUCTION
            elif result.verdict in (NEVER_RUN, SAFE_TO_DELETE) and result.tested:
                result.verdict = TESTED_ONLY


def tests_lines(data_file: str) -> dict[str, set[int]]:
    """Lines per file of the unit tests' coverage.py data file (``--tests-data``)."""
    from coverage import CoverageData
    from coverage.exceptions import CoverageException

    from coverage_runtime.errors import ReportError

    if not os.path.isfile(data_file):
        raise ReportError(f"--tests-data {data_file!r}: no such file")
    data = CoverageData(basename=data_file)
    try:
        data.read()
        found: dict[str, set[int]] = {}
        for path in data.measured_files():
            lines = set(data.lines(path) or ())
            found[os.path.abspath(path)] = lines
    except (CoverageException, OSError, ValueError) as exc:
        raise ReportError(
            f"--tests-data {data_file!r} is not a coverage.py data file: {exc}"
        ) from exc
    finally:
        data.close()
    return found


def statically_unused(paths: Sequence[str]) -> set[tuple[str, int, str]]:
    """(real path, last line, name) of what vulture finds unreferenced, at any confidence.

    The last line, not the first: vulture's first line of a decorated definition is
    its first decorator's, a unit's is its ``def`` line.
    """
    try:
        from vulture import Vulture
    except ImportError:
        return set()
    finder = Vulture()
    finder.scavenge(list(paths))
    return {
        (os.path.realpath(str(item.filename)), int(item.last_lineno), str(item.name))
        for item in finder.get_unused_code()
        if item.typ in ("function", "method", "class", "property")
    }


def statically_unused_unit(unused: set[tuple[str, int, str]], path: str, unit: Unit) -> bool:
    name = unit.qualname.rsplit(".", 1)[-1]
    return (os.path.realpath(path), unit.end_line, name) in unused
