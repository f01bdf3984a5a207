"""The insights step of the pipeline, after the merge: the checkout's units, judged.

Input is what `pipeline.collect` leaves in the output directory (or an
earlier report's): ``merged.coverage`` with every file of the measured source,
and ``evidence.json.gz``.  coverage.py's own analysis of the merged data gives
each file's statements (with the project's exclusions, ``--include`` and
``--omit``); `units` cuts them into units; `verdicts` judges them, against the
evidence of the ``--context`` labels only when some are given (`labels.restrict`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coverage_runtime.errors import ReportError
from coverage_runtime.report.evidence import EVIDENCE_NAME, Evidence
from coverage_runtime.report.labels import LabelSelection, Restriction, restrict
from coverage_runtime.report.revisions import Revisions
from coverage_runtime.report.units import Unit, units_of
from coverage_runtime.report.verdicts import (
    DEFAULT_LOW_TRAFFIC,
    VERDICTS,
    Judge,
    Judged,
    Observed,
    statically_unused,
    tests_lines,
)

UNUSED_NAME = "unused.json"
UNUSED_FORMAT = 1


@dataclass
class Options:
    source_root: Path
    rcfile: str | None = None
    include: tuple[str, ...] = ()
    omit: tuple[str, ...] = ()
    low_traffic: float = DEFAULT_LOW_TRAFFIC
    tests_data: str | None = None
    static: bool = True
    labels: LabelSelection = field(default_factory=LabelSelection)  # --context


@dataclass
class Insights:
    observed: Observed
    judged: list[Judged]
    low_traffic: float
    warnings: list[str] = field(default_factory=list)
    tests: bool = False
    static: bool = False
    restriction: Restriction | None = None  # --context: the labels judged

    def counts(self) -> dict[str, int]:
        found = Counter(j.verdict for j in self.judged)
        return {v: found[v] for v in VERDICTS if found[v]}

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": UNUSED_FORMAT,
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "observed": self.observed.as_dict(),
            "labels": self.restriction.as_dict() if self.restriction else None,
            "low_traffic": self.low_traffic,
            "tests_data": self.tests,
            "static_check": self.static,
            "verdicts": self.counts(),
            "warnings": self.warnings,
            "units": [j.as_dict() for j in self.judged],
        }


def statements(data_file: Path, options: Options) -> dict[str, set[int]]:
    """Statements per reported file (absolute path), from coverage.py's JSON report."""
    from coverage.exceptions import CoverageException

    from coverage_runtime.report.output import load_coverage

    with tempfile.TemporaryDirectory(prefix="lambda-coverage-units-") as scratch:
        out = os.path.join(scratch, "coverage.json")
        try:
            cov = load_coverage(data_file, options.rcfile, options.include, options.omit)
            cov.json_report(outfile=out)
        except (CoverageException, OSError) as exc:
            raise ReportError(f"coverage.py could not analyse the source: {exc}") from exc
        with open(out, encoding="utf-8") as handle:
            files = json.load(handle)["files"]
    return {
        os.path.abspath(name): set(entry["executed_lines"]) | set(entry["missing_lines"])
        for name, entry in files.items()
    }


def checkout_units(data_file: Path, options: Options) -> list[tuple[str, list[Unit]]]:
    """(absolute path, units) of every reported file of the checkout."""
    root = os.path.abspath(options.source_root)
    found: list[tuple[str, list[Unit]]] = []
    for path, lines in sorted(statements(data_file, options).items()):
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        try:
            source = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ReportError(f"cannot read {path}: {exc}") from exc
        found.append((path, units_of(relative, source, lines)))
    return found


@dataclass
class Checkout:
    """The checkout's units and a judge of them against the evidence."""

    files: list[tuple[str, list[Unit]]]
    judge: Judge
    warnings: list[str]
    static: bool
    restriction: Restriction | None = None


def prepare(
    directory: Path, options: Options, evidence: Evidence | None = None, static: bool = False
) -> Checkout:
    """Units of the checkout (``directory``: the merged data and evidence of a report)."""
    from coverage_runtime.layout import MERGED_DATA_NAME

    data_file = directory / MERGED_DATA_NAME
    if not data_file.is_file():
        raise ReportError(f"no merged data at {data_file}: run lambda-coverage report first")
    if evidence is None:
        evidence = Evidence.load(directory / EVIDENCE_NAME, relative_to=options.source_root)
    warnings: list[str] = []
    restriction = None
    if options.labels.patterns:
        evidence, restriction, warnings = restrict(evidence, options.labels)
    files = checkout_units(data_file, options)
    revisions = Revisions(options.source_root)
    if revisions.top is None and any(c.revision for c in evidence.cohorts):
        warnings.append(
            f"{options.source_root} is not a git work tree: the environments' code revisions "
            "cannot be mapped to it and are left out (unknown_revisions)"
        )
    tested = tests_lines(options.tests_data) if options.tests_data else None
    unused = None
    if static:
        try:
            import vulture  # noqa: F401
        except ImportError:
            warnings.append("vulture is not installed: no static check (pip install vulture)")
        else:
            unused = statically_unused([path for path, _ in files])
    judge = Judge(evidence, revisions, options.low_traffic, tested, unused)
    if judge.observed.unknown:
        warnings.append(
            f"{judge.observed.left_out} environment(s) ran revision(s) this checkout does not "
            f"know and are left out: {', '.join(judge.observed.unknown[:5])}"
        )
    return Checkout(files, judge, warnings, unused is not None, restriction)


def analyse(directory: Path, options: Options, evidence: Evidence | None = None) -> Insights:
    """Judge every unit of the checkout against the evidence in ``directory``."""
    checkout = prepare(directory, options, evidence, static=options.static)
    judge = checkout.judge
    judged = [judge.judge(u, path) for path, units in checkout.files for u in units if u.lines]
    return Insights(
        judge.observed,
        judged,
        options.low_traffic,
        checkout.warnings,
        tests=options.tests_data is not None,
        static=checkout.static,
        restriction=checkout.restriction,
    )


def write_json(insights: Insights, directory: Path) -> Path:
    path = directory / UNUSED_NAME
    path.write_text(json.dumps(insights.as_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def selected(insights: Insights, verdicts: Sequence[str] | None) -> list[Judged]:
    return [j for j in insights.judged if not verdicts or j.verdict in verdicts]
