"""The insights as people read them: a terminal table, Markdown, and a static HTML page.

Markdown is for a pull-request comment or a wiki; the HTML page is one file
with no script and no network, like coverage.py's own pages.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from coverage_runtime.report.changes import NEVER_RAN, NEW, RAN, Classified, UnitChange
from coverage_runtime.report.insights import Insights
from coverage_runtime.report.labels import Restriction
from coverage_runtime.report.verdicts import Judged

COLUMNS = ("verdict", "confidence", "unit", "kind", "lines", "envs", "invocations", "last seen")


def _row(j: Judged) -> tuple[str, ...]:
    unit = j.unit
    share = f" ({j.environments / j.observed:.1%})" if j.observed and j.environments else ""
    return (
        j.verdict,
        j.confidence,
        f"{unit.path}:{unit.start_line} {unit.qualname}",
        unit.kind,
        f"{unit.start_line}-{unit.end_line}",
        f"{j.environments}/{j.observed}{share}",
        str(j.invocations),
        f"{j.last_seen} v{j.last_version}" if j.last_seen else "-",
    )


def _observed_line(insights: Insights) -> str:
    o = insights.observed
    text = (
        f"observed: {o.environments} environment(s), {o.invocations} invocation(s), "
        f"{o.days} day(s), {o.revisions} revision(s)"
    )
    if o.without_revision:
        text += f", {o.without_revision} environment(s) without a revision taken as the checkout's"
    if o.unknown_revisions:
        text += (
            f"; {o.unknown_revisions} unknown revision(s) left out ({o.left_out} environment(s))"
        )
    return text


def _labels_lines(restriction: Restriction | None) -> list[str]:
    """Under ``--context``: which labels' runs the figures count, and what they mean."""
    return [restriction.describe()] if restriction else []


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>|~&#!])")


def _md_literal(text: str) -> str:
    """``text`` shown as written in Markdown: labels are callers' text (``*``, ``[x]``...)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def _counts_line(insights: Insights) -> str:
    return ", ".join(f"{verdict} {count}" for verdict, count in insights.counts().items())


def terminal(insights: Insights, judged: Sequence[Judged]) -> str:
    rows = [COLUMNS, *(_row(j) for j in judged)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(_observed_line(insights))
    lines += _labels_lines(insights.restriction)
    lines.append(f"verdicts: {_counts_line(insights)}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def markdown(insights: Insights, judged: Sequence[Judged], title: str) -> str:
    out = [f"## {_md(title)}", "", _md(_observed_line(insights)), ""]
    out += [
        line for text in _labels_lines(insights.restriction) for line in (_md_literal(text), "")
    ]
    out.append(_md(_counts_line(insights)))
    out += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for j in judged:
        cells = list(_row(j))
        cells[2] = f"`{j.unit.path}:{j.unit.start_line}` `{j.unit.qualname}`"
        out.append("| " + " | ".join(_md(c) if i != 2 else c for i, c in enumerate(cells)) + " |")
    return "\n".join(out) + "\n"


_STYLE = """body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
.never_run,.safe_to_delete{background:#fdd}.tested_only{background:#fec}
.low_traffic,.init_only{background:#ffd}.untested_in_production{background:#def}
.no_data{color:#888}"""


def page(insights: Insights, judged: Sequence[Judged], title: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "\n".join(
        f'<tr class="{html.escape(j.verdict)}">'
        + "".join(f"<td>{html.escape(c)}</td>" for c in _row(j))
        + "</tr>"
        for j in judged
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(_observed_line(insights))}</p>"
        + "".join(
            f'<p class="labels">{html.escape(text)}</p>'
            for text in _labels_lines(insights.restriction)
        )
        + f"<p>{html.escape(_counts_line(insights))}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></body></html>\n"
    )


# -- a change against production -------------------------------------------------------

DIFF_COLUMNS = ("unit", "kind", "ran", "never_ran", "new", "widest line ran in", "invocations")


def _diff_row(change: UnitChange) -> tuple[str, ...]:
    unit = change.unit
    share = "-"
    if change.observed:
        share = f"{change.environments}/{change.observed} envs "
        share += f"({change.environments / change.observed:.0%})"
    return (
        f"{unit.path}:{unit.start_line} {unit.qualname}",
        unit.kind,
        str(change.counts[RAN]),
        str(change.counts[NEVER_RAN]),
        str(change.counts[NEW]),
        share,
        str(change.invocations),
    )


def _diff_totals(classified: Classified) -> str:
    counts = classified.counts()
    return (
        f"changed statements: {counts[RAN]} ran in production, {counts[NEVER_RAN]} never ran, "
        f"{counts[NEW]} new ({classified.ran_percent():.1f}% of those production could run ran)"
    )


def diff_terminal(classified: Classified) -> str:
    rows = [DIFF_COLUMNS, *(_diff_row(c) for c in classified.units)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(DIFF_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    labels = _labels_lines(classified.restriction)
    return "\n".join([*lines, "", *labels, _diff_totals(classified)]) + "\n"


def diff_markdown(classified: Classified, title: str) -> str:
    out = [f"## {_md(title)}", ""]
    out += [
        line for text in _labels_lines(classified.restriction) for line in (_md_literal(text), "")
    ]
    out += [_md(_diff_totals(classified)), ""]
    out += ["| " + " | ".join(DIFF_COLUMNS) + " |", "|" + "---|" * len(DIFF_COLUMNS)]
    for change in classified.units:
        cells = list(_diff_row(change))
        cells[0] = f"`{change.unit.path}:{change.unit.start_line}` `{change.unit.qualname}`"
        out.append("| " + " | ".join(c if i == 0 else _md(c) for i, c in enumerate(cells)) + " |")
    never = [line for line in classified.lines if line.status == NEVER_RAN]
    if never:
        out += ["", "Changed lines production never ran:", ""]
        out += [f"- `{line.as_dict()['path']}:{line.line}`" for line in never]
    return "\n".join(out) + "\n"
