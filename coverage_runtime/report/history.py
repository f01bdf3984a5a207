"""``lambda-coverage history``: one self-contained page of how coverage moved.

Two kinds of input:

- run summaries: the combiner's ``combined/<function>/<version>/history/*.json`` in S3 and
  the ``summary.json`` of local report runs (``--runs``): coverage, environments and
  invocations merged, per run, per day (the last run of a day counts for the day);
- the evidence of one merge (``--data``, a report's output directory): environments and
  invocations per init day, lines reached for the first time per day, and coverage per
  function version (the statements the environments of each version ran).

Charts are uPlot (vendored, 51 KB, MIT; coverage_runtime/report/vendor/README.md says why),
inlined with the data, so the page opens from a file with no network.  Each chart leaves the
points it drew in a ``data-points`` attribute, which the browser test reads.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coverage_runtime import layout
from coverage_runtime.errors import ReportError
from coverage_runtime.report.insights import Checkout

HISTORY_NAME = "history.html"
VENDOR = Path(__file__).resolve().parent / "vendor"


@dataclass(frozen=True)
class RunSummary:
    """One merge: when, of what, and what it found."""

    time: str  # ISO 8601, UTC
    scope: str  # function/version, or where the summary came from
    percent: float
    environments: int
    invocations: int

    @property
    def day(self) -> str:
        return self.time[:10]


def _time_of(summary: dict[str, Any], fallback: float) -> str:
    stamp = summary.get("generated_at")
    if isinstance(stamp, str):
        for form in ("%Y-%m-%dT%H-%M-%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%SZ"):
            try:
                parsed = datetime.strptime(stamp, form).replace(tzinfo=UTC)
            except ValueError:
                continue
            return parsed.isoformat(timespec="seconds")
    return datetime.fromtimestamp(fallback, UTC).isoformat(timespec="seconds")


def parse_summary(document: Any, scope: str, fallback_time: float) -> RunSummary:
    """A run summary from a report's or the combiner's ``summary.json``."""
    if not isinstance(document, dict) or "percent" not in document:
        raise ReportError(f"{scope}: not a lambda-coverage summary (no 'percent')")
    environments = document.get("environments") or {}
    return RunSummary(
        time=_time_of(document, fallback_time),
        scope=scope,
        percent=float(document["percent"]),
        environments=int(environments.get("merged", 0)),
        invocations=int(environments.get("invocations", 0)),
    )


def local_summaries(paths: Iterable[str]) -> list[RunSummary]:
    """The summaries of local report runs: output directories or ``summary.json`` files."""
    found: list[RunSummary] = []
    for given in paths:
        path = Path(given)
        file = path / "summary.json" if path.is_dir() else path
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReportError(f"--runs {given!r}: cannot read a summary: {exc}") from exc
        scope = document.get("selection") if isinstance(document, dict) else None
        scope = str(scope or file.parent.name)
        found.append(parse_summary(document, scope, file.stat().st_mtime))
    return found


def s3_summaries(
    client: Any, bucket: str, prefix: str, functions: Sequence[str]
) -> list[RunSummary]:
    """The combiner's dated summaries, ``<prefix>combined/<function>/<version>/history/``."""
    from botocore.exceptions import BotoCoreError, ClientError

    from coverage_runtime.report.client import explain_s3_error

    where = f"{prefix}{layout.COMBINED_FOLDER}"
    found: list[RunSummary] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=where):
            for item in page.get("Contents", ()):
                parts = item["Key"][len(where) :].split("/")
                if len(parts) != 4 or parts[2] != "history" or not parts[3].endswith(".json"):
                    continue
                if functions and not set(parts[0].split("+")) & set(functions):
                    continue
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                try:
                    document = json.loads(body)
                except ValueError:
                    continue
                found.append(
                    parse_summary(
                        document, f"{parts[0]}/{parts[1]}", item["LastModified"].timestamp()
                    )
                )
    except (ClientError, BotoCoreError) as exc:
        raise explain_s3_error(exc, bucket, f"reading s3://{bucket}/{where}") from exc
    return found


@dataclass
class Series:
    """One chart: x labels (days, versions) or times, and named y series."""

    title: str
    x: list[str]
    series: dict[str, list[float | None]] = field(default_factory=dict)
    time_axis: bool = True
    unit: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "x": self.x,
            "series": self.series,
            "time": self.time_axis,
            "unit": self.unit,
        }


def summary_charts(runs: Sequence[RunSummary]) -> list[Series]:
    """Coverage per day per scope (the day's last run), and what each day's runs merged."""
    last: dict[tuple[str, str], RunSummary] = {}
    for run in sorted(runs, key=lambda r: r.time):
        last[(run.day, run.scope)] = run
    days = sorted({day for day, _ in last})
    scopes = sorted({scope for _, scope in last})
    coverage = Series("Coverage per day (%)", days, unit="%")
    merged = Series("Environments and invocations merged (the day's last run)", days)
    for scope in scopes:
        coverage.series[scope] = [
            round(last[(d, scope)].percent, 2) if (d, scope) in last else None for d in days
        ]
    merged.series["environments"] = [
        float(sum(r.environments for (d, _), r in last.items() if d == day)) for day in days
    ]
    merged.series["invocations"] = [
        float(sum(r.invocations for (d, _), r in last.items() if d == day)) for day in days
    ]
    return [coverage, merged] if days else []


def evidence_charts(checkout: Checkout) -> list[Series]:
    """Per init day: environments and invocations merged, and the checkout's statements
    reached for the first time; per function version: the share of the statements its
    environments ran.  Lines are the checkout's, through the revisions (`verdicts.Judge`)."""
    judge = checkout.judge
    cohorts = judge.evidence.cohorts
    days = sorted({c.date for c in cohorts})
    per_day = Series("Environments and invocations per init day", days)
    per_day.series["environments"] = [
        float(sum(n.environments for c, n in cohorts.items() if c.date == d)) for d in days
    ]
    per_day.series["invocations"] = [
        float(sum(n.invocations for c, n in cohorts.items() if c.date == d)) for d in days
    ]
    first: list[str] = []
    ran_by_version: dict[str, int] = {}
    total = 0
    for path, units in checkout.files:
        for line in sorted(set().union(*(u.lines for u in units)) if units else ()):
            total += 1
            ran = judge.line_cohorts(path, line)
            if ran:
                first.append(min(c.date for c in ran))
            for version in {c.version for c in ran}:
                ran_by_version[version] = ran_by_version.get(version, 0) + 1
    reached = Series("Lines reached for the first time", days)
    reached.series["new lines"] = [float(first.count(day)) for day in days]
    reached.series["lines reached so far"] = [
        float(sum(1 for d in first if d <= day)) for day in days
    ]
    versions = sorted({c.version for c in cohorts}, key=_version_order)
    per_version = Series("Coverage per function version (%)", versions, time_axis=False, unit="%")
    per_version.series["coverage"] = [
        round(100.0 * ran_by_version.get(v, 0) / total, 2) if total else None for v in versions
    ]
    return [per_day, reached, per_version] if days else []


def _version_order(version: str) -> tuple[int, int, str]:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def load_evidence_charts(directory: Path, source_root: Path, rcfile: str | None) -> list[Series]:
    from coverage_runtime.report.insights import Options, prepare

    return evidence_charts(prepare(directory, Options(source_root, rcfile=rcfile)))


_SCRIPT = """
const data = JSON.parse(document.getElementById('history-data').textContent);
const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];
data.charts.forEach((chart, index) => {
  const el = document.getElementById('chart-' + index);
  const xs = chart.x.map((label, i) => chart.time ? Date.parse(label + 'T00:00:00Z') / 1000 : i);
  const names = Object.keys(chart.series);
  const opts = {
    title: chart.title, width: 760, height: 260,
    scales: {
      x: xs.length > 1 ? {time: chart.time} : {time: chart.time, auto: false,
        range: [xs[0] - (chart.time ? 86400 : 1), xs[0] + (chart.time ? 86400 : 1)]},
      y: chart.unit === '%' ? {range: [0, 100]} : {},
    },
    axes: [{values: chart.time ? undefined : (u, ticks) => ticks.map(t => chart.x[t] ?? '')},
           {label: chart.unit}],
    series: [{label: chart.time ? 'day' : 'version'}].concat(names.map((name, i) => ({
      label: name, stroke: colors[i % colors.length], width: 2,
      points: {show: true, size: 7}, spanGaps: true,
    }))),
  };
  const plot = new uPlot(opts, [xs].concat(names.map(n => chart.series[n])), el);
  el.dataset.points = JSON.stringify(names.map((name, i) => [name, plot.data[i + 1]]));
  el.dataset.rendered = String(el.querySelectorAll('canvas').length);
});
"""


def page(charts: Sequence[Series], title: str, notes: Sequence[str] = ()) -> str:
    """The page: uPlot, its stylesheet, the data and the drawing script, all inline."""
    uplot = (VENDOR / "uPlot.iife.min.js").read_text(encoding="utf-8")
    style = (VENDOR / "uPlot.min.css").read_text(encoding="utf-8")
    document = json.dumps({"charts": [c.as_dict() for c in charts]}).replace("</", "<\\/")
    blocks = "\n".join(
        f'<section><div class="chart" id="chart-{i}" data-title="{html.escape(c.title)}"></div>'
        f"</section>"
        for i, c in enumerate(charts)
    )
    listed = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{style}\n"
        "body{font:14px system-ui,sans-serif;margin:2em}section{margin:1em 0}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><ul>{listed}</ul>{blocks}"
        f'<script id="history-data" type="application/json">{document}</script>'
        f"<script>{uplot}</script><script>{_SCRIPT}</script></body></html>\n"
    )


def write_page(charts: Sequence[Series], output: Path, title: str, notes: Sequence[str]) -> Path:
    if not charts:
        raise ReportError(
            "nothing to chart: give run summaries (--runs, or the combiner's history in "
            "--bucket) or a report's directory (--data)"
        )
    output.mkdir(parents=True, exist_ok=True)
    path = output / HISTORY_NAME
    path.write_text(page(charts, title, notes), encoding="utf-8")
    return path
