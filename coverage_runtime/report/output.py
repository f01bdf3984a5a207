"""Write the reports of a merged data file: HTML, Cobertura XML, LCOV, JSON, terminal.

All of them are coverage.py's own reporters run on the merged data file, so
they read the project's coverage configuration (``.coveragerc`` or
``[tool.coverage]``: exclusions, precision) exactly as ``coverage html`` would.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coverage_runtime.errors import ReportError
from coverage_runtime.report.merge import process_pool

FORMATS = ("html", "xml", "lcov", "json")
OUTPUT_NAMES = {
    "html": "html/index.html",
    "xml": "coverage.xml",
    "lcov": "coverage.lcov",
    "json": "coverage.json",
}


@dataclass
class Totals:
    """What the summary and the CI gate need."""

    percent: float
    percent_display: str
    covered_lines: int
    statements: int
    missing_lines: int
    covered_branches: int | None
    branches: int | None
    files: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "percent": round(self.percent, 4),
            "percent_display": self.percent_display,
            "lines": {
                "covered": self.covered_lines,
                "statements": self.statements,
                "missing": self.missing_lines,
            },
            "branches": None
            if self.branches is None
            else {"covered": self.covered_branches, "total": self.branches},
            "files": self.files,
        }


@dataclass
class Outputs:
    totals: Totals
    files: dict[str, Path] = field(default_factory=dict)
    terminal: str = ""


def parse_formats(
    value: str | Sequence[str] | None, allowed: Sequence[str] = FORMATS
) -> tuple[str, ...]:
    """The formats a ``--format`` comma list names, of ``allowed``; 'all' or 'none'."""
    if value is None:
        return tuple(allowed)
    items = value.split(",") if isinstance(value, str) else list(value)
    chosen: list[str] = []
    for item in (i.strip().lower() for i in items):
        if not item or item == "none":
            continue
        if item == "all":
            chosen.extend(allowed)
        elif item in allowed:
            chosen.append(item)
        else:
            raise ReportError(
                f"invalid report format {item!r}: expected a comma list of "
                f"{', '.join(allowed)}, all or none"
            )
    return tuple(dict.fromkeys(chosen))


def load_coverage(
    data_file: Path,
    rcfile: str | None,
    include: Sequence[str],
    omit: Sequence[str],
    contexts: Sequence[str] = (),
) -> Any:
    """coverage.py on the merged data, with the report options of the command line.

    ``contexts`` (regexes, coverage.py's ``[report] contexts``; else the
    rcfile's) also narrow the data itself: coverage.py's summary, HTML and
    JSON reporters apply them, its XML and LCOV reporters (7.17) do not and
    read whatever the data was last narrowed to.
    """
    import coverage

    cov = coverage.Coverage(data_file=str(data_file), config_file=rcfile or True)
    if include:
        cov.set_option("report:include", list(include))
    if omit:
        cov.set_option("report:omit", list(omit))
    if contexts:
        cov.set_option("report:contexts", list(contexts))
    cov.load()
    configured = cov.get_option("report:contexts")
    cov.get_data().set_query_contexts(configured if isinstance(configured, list) else None)
    return cov


def _html_report(
    data_file: Path,
    directory: Path,
    *,
    rcfile: str | None,
    include: Sequence[str],
    omit: Sequence[str],
    contexts: Sequence[str],
    show_contexts: bool,
    title: str | None,
) -> None:
    load_coverage(data_file, rcfile, include, omit, contexts).html_report(
        directory=str(directory), show_contexts=show_contexts, title=title
    )


_FN_WITH_END_LINE = re.compile(r"^FN:(\d+),\d+,(.*)$", re.MULTILINE)


def portable_lcov(path: Path) -> None:
    """Make coverage.py's LCOV file read the same by lcov 1.x and 2.x.

    coverage.py 7.17 writes ``FN:<first>,<last>,<name>``, which only lcov 2
    understands: lcov 1.16 (Debian 12 and many CI images) takes ``<last>,<name>``
    for the name, so no ``FNDA`` matches and every function counts twice.  The
    end line is optional in lcov 2, so ``FN:<first>,<name>`` suits both.
    """
    text = path.read_text(encoding="utf-8")
    path.write_text(_FN_WITH_END_LINE.sub(r"FN:\1,\2", text), encoding="utf-8")


def _html_in_a_worker(data_file: Path, directory: Path, **options: Any) -> Any:
    """Start the HTML report in a forked process, or None where none can be forked.

    Every coverage.py reporter analyses every file again, and HTML is the
    slowest; on its own core it overlaps the others (and the totals).
    """
    pool = process_pool(1, fork_only=True)  # spawning would cost more than it saves
    if pool is None:
        return None
    future = pool.submit(_html_report, data_file, directory, **options)
    pool.shutdown(wait=False)
    return future


def write_reports(
    data_file: Path,
    output_dir: Path,
    formats: Sequence[str],
    *,
    branch: bool,
    contexts: Sequence[str] = (),
    show_contexts: bool = False,
    json_contexts: bool = False,
    rcfile: str | None = None,
    title: str | None = None,
    show_missing: bool = True,
    include: Sequence[str] = (),
    omit: Sequence[str] = (),
    terminal: bool = True,
) -> Outputs:
    """Run coverage.py's reporters on ``data_file``; return the totals and paths.

    The terminal table is only made when ``terminal`` is true.  ``contexts``:
    report only what these labels ran (regexes, `labels.LabelSelection`);
    ``show_contexts``: the labels of each line in the HTML report,
    ``json_contexts``: in the JSON report.
    """
    from coverage.exceptions import CoverageException

    written: dict[str, Path] = {}
    html_job = None
    if "html" in formats:
        written["html"] = output_dir / "html" / "index.html"
        # Forked before this process opens the data file: nothing shared.
        html_options: dict[str, Any] = {
            "rcfile": rcfile,
            "include": include,
            "omit": omit,
            "contexts": contexts,
            "show_contexts": show_contexts,
            "title": title,
        }
        html_job = _html_in_a_worker(data_file, output_dir / "html", **html_options)
    table = io.StringIO()
    try:
        cov = load_coverage(data_file, rcfile, include, omit, contexts)
        if "html" in formats and html_job is None:
            _html_report(data_file, output_dir / "html", **html_options)
        if "xml" in formats:
            written["xml"] = output_dir / OUTPUT_NAMES["xml"]
            cov.xml_report(outfile=str(written["xml"]))
        if "lcov" in formats:
            written["lcov"] = output_dir / OUTPUT_NAMES["lcov"]
            cov.lcov_report(outfile=str(written["lcov"]))
            portable_lcov(written["lcov"])
        if "json" in formats:
            written["json"] = output_dir / OUTPUT_NAMES["json"]
            cov.json_report(outfile=str(written["json"]), show_contexts=json_contexts)
            report = json.loads(written["json"].read_text())
        else:
            with tempfile.TemporaryDirectory() as scratch:
                path = os.path.join(scratch, "coverage.json")
                cov.json_report(outfile=path)
                with open(path, encoding="utf-8") as handle:
                    report = json.load(handle)
        if terminal:
            cov.report(file=table, show_missing=show_missing, skip_empty=True)
        if html_job is not None:
            html_job.result()
    except (CoverageException, OSError) as exc:
        raise ReportError(f"coverage.py could not write the report: {exc}") from exc
    totals = report["totals"]
    return Outputs(
        totals=Totals(
            percent=float(totals["percent_covered"]),
            percent_display=str(totals["percent_covered_display"]),
            covered_lines=int(totals["covered_lines"]),
            statements=int(totals["num_statements"]),
            missing_lines=int(totals["missing_lines"]),
            covered_branches=int(totals["covered_branches"]) if branch else None,
            branches=int(totals["num_branches"]) if branch else None,
            files=len(report.get("files", {})),
        ),
        files=written,
        terminal=table.getvalue(),
    )


def fails_under(totals: Totals, threshold: float, rcfile: str | None = None) -> bool:
    """coverage.py's own rule: compare at the configured display precision."""
    import coverage
    from coverage.results import should_fail_under

    precision = coverage.Coverage(config_file=rcfile or True).get_option("report:precision")
    return should_fail_under(totals.percent, threshold, int(str(precision or 0)))
