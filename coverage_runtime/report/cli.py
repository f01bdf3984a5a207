"""``lambda-coverage``: list the coverage data in S3 and build one report from it.

    lambda-coverage list   --bucket B [filters]
    lambda-coverage report --bucket B [filters] [-o coverage-report] [--fail-under 80]
                           [--context PATTERN ...] [--contexts]
    lambda-coverage unused --bucket B [filters] [--tests-data .coverage]   (or --data DIR)
                           [--context PATTERN ...]
    lambda-coverage diff   --bucket B [filters] --base origin/main [--fail-under 50]
                           [--context PATTERN ...]
    lambda-coverage history [--bucket B] [--runs DIR ...] [--data DIR]

``--context PATTERN`` (repeatable shell patterns; ``''`` is the empty label of
invocations that carried none, ``init`` what ran while environments
initialised) restricts each command to what the matching labels ran: ``report``
reports only their lines; ``unused`` and ``diff`` judge as if the environments
had recorded only their runs (environments where a matching label ran a line;
their invocation totals).

Exit status: 0 done, 1 an error (bad input, S3, unreadable data), 2 the total
is below ``--fail-under`` (as ``coverage report --fail-under``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, TextIO

from coverage_runtime import __version__, env, layout
from coverage_runtime.env import parse_list
from coverage_runtime.errors import ReportError
from coverage_runtime.layout import DEFAULT_PREFIX, DEFAULT_TASK_ROOT
from coverage_runtime.report.client import explain_s3_error, make_client
from coverage_runtime.report.listing import ListingSummary, human_size
from coverage_runtime.report.objects import (
    DataObject,
    assembled,
    list_objects,
    require_some,
    with_metadata,
)
from coverage_runtime.report.selection import DateRange, Selection

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_FAIL_UNDER = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"lambda-coverage: error: {message}\n")


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where the data is")
    where.add_argument(
        "--bucket",
        default=_env(env.S3_BUCKET),
        help="S3 bucket (default: $COVERAGE_S3_BUCKET)",
    )
    where.add_argument(
        "--prefix",
        default=os.environ.get(env.S3_PREFIX, DEFAULT_PREFIX),
        help="key prefix the functions upload under (default: $COVERAGE_S3_PREFIX or coverage/)",
    )
    where.add_argument(
        "--endpoint-url",
        default=_env(env.S3_ENDPOINT_URL),
        help="S3 endpoint, for a local S3 only (default: $COVERAGE_S3_ENDPOINT_URL)",
    )
    where.add_argument("--region", default=None, help="AWS region (default: $AWS_REGION)")
    where.add_argument(
        "--expected-owner",
        default=_env(env.S3_EXPECTED_OWNER),
        help="12-digit account id the bucket must belong to",
    )
    which = parser.add_argument_group("which environments (filters combine with AND)")
    which.add_argument(
        "--function", action="append", metavar="NAME", help="function name (repeat or comma list)"
    )
    which.add_argument(
        "--function-version",
        "--version",  # the first spelling, kept for scripts that use it
        dest="function_version",
        action="append",
        metavar="VERSION",
        help="function version, e.g. '$LATEST' or 7 (repeat or comma list)",
    )
    which.add_argument(
        "--since", metavar="DATE", help="first init date, YYYY-MM-DD, 'today' or Nd (N days ago)"
    )
    which.add_argument("--until", metavar="DATE", help="last init date (inclusive), same forms")
    which.add_argument("--date", metavar="DATE", help="one init date (same as --since D --until D)")
    which.add_argument(
        "--revision",
        action="append",
        metavar="REV",
        help="code revision from the object metadata (CODE_REVISION; repeat or comma list)",
    )


def _selection(args: argparse.Namespace) -> Selection:
    if not args.bucket:
        raise ReportError("no bucket: pass --bucket or set COVERAGE_S3_BUCKET")
    prefix = layout.parse_prefix(args.prefix)
    if prefix is None:
        raise ReportError(
            f"invalid --prefix {args.prefix.strip()!r}: expected {layout.PREFIX_RULE}"
        )
    if args.date and (args.since or args.until):
        raise ReportError("invalid date range: --date cannot be combined with --since/--until")
    since, until = (args.date, args.date) if args.date else (args.since, args.until)
    return Selection(
        bucket=args.bucket,
        prefix=prefix,
        functions=parse_list(args.function),
        versions=parse_list(args.function_version),
        dates=DateRange.parse(since, until),
        revisions=parse_list(args.revision),
        expected_owner=args.expected_owner,
    )


def _add_output_arguments(parser: argparse.ArgumentParser, formats: str) -> Any:
    out = parser.add_argument_group("output")
    out.add_argument(
        "-o",
        "--output",
        default="coverage-report",
        help="output directory (default: coverage-report)",
    )
    out.add_argument("--format", default="all", help=f"comma list of {formats}")
    return out


def _add_path_arguments(parser: argparse.ArgumentParser) -> None:
    paths = parser.add_argument_group("paths")
    paths.add_argument(
        "--task-root",
        action="append",
        metavar="PATH[=LOCAL]",
        help=f"the image's task root to map to the checkout (default {DEFAULT_TASK_ROOT}; "
        "repeatable; PATH=LOCAL maps one root elsewhere)",
    )
    paths.add_argument(
        "--source-root",
        default=".",
        help="local checkout the task root maps to (default: current directory)",
    )
    paths.add_argument(
        "--source",
        action="append",
        metavar="DIR",
        help="the measured source in the checkout, as the function's COVERAGE_SOURCE "
        "(repeatable; default: [run] source of the coverage config, else the directories "
        "that hold the recorded files); its files no environment imported report at 0%%",
    )
    paths.add_argument("--no-remap", action="store_true", help="keep the recorded paths")
    paths.add_argument(
        "--ignore-missing-source",
        action="store_true",
        help="leave out measured files that have no local source instead of failing",
    )


def _add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    merge = parser.add_argument_group("merging")
    merge.add_argument(
        "--measure",
        choices=("auto", "line", "branch"),
        default="auto",
        help="auto: branch when every environment has branch data, else lines (default)",
    )
    merge.add_argument(
        "--jobs",
        type=int,
        help="merge worker processes (default: one per core, up to 8; 0 = merge in this "
        "process; either way overlapped with the downloads)",
    )
    merge.add_argument("--download-workers", type=int, default=16, help="parallel downloads")
    merge.add_argument(
        "--downloader",
        choices=("auto", "presigned", "boto3"),
        default="auto",
        help="presigned GETs on a shared connection pool (fast), or boto3 get_object; auto "
        "uses boto3 when --expected-owner or a proxy is set",
    )
    merge.add_argument(
        "--cache-dir",
        help="download cache, keyed by ETag (default: $XDG_CACHE_HOME/lambda-coverage)",
    )
    bar = merge  # --progress / --no-progress: the last one given wins
    bar.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal; needs tqdm)",
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="no bar")


def _add_checkout_arguments(parser: argparse.ArgumentParser, out: Any) -> None:
    """What unused and diff share: the checkout's files, the paths and the merge."""
    out.add_argument("--rcfile", help="coverage.py configuration file")
    out.add_argument("--include", action="append", metavar="PATTERN", help="only these files")
    out.add_argument("--omit", action="append", metavar="PATTERN", help="leave these files out")
    out.add_argument("-q", "--quiet", action="store_true", help="no terminal table")
    _add_path_arguments(parser)
    _add_merge_arguments(parser)


def _add_label_arguments(parser: argparse.ArgumentParser, listing: bool = False) -> None:
    """``--context`` for report, unused and diff; with ``listing`` (report) the label
    table and the labels per line of the reports too."""
    labels = parser.add_argument_group(
        "labels (coverage.py dynamic contexts: init, a test's node id, a request kind, ...)"
    )
    labels.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="PATTERN",
        help="count only what labels matching this shell pattern ran (repeatable; a label "
        "spelled exactly also matches; '' selects invocations with no label, 'init' what "
        "ran while environments initialised, '*' all)",
    )
    if not listing:
        return
    labels.add_argument(
        "--contexts",
        action="store_true",
        help="list the labels with the files, lines (and arcs) each ran; also puts each "
        "line's labels in coverage.json",
    )
    show = labels  # --show-contexts / --no-show-contexts: the last one given wins
    show.add_argument(
        "--show-contexts",
        dest="show_contexts",
        action="store_true",
        default=None,
        help="each line's labels in the HTML and JSON reports (default: in HTML when the "
        "data holds more than one label)",
    )
    show.add_argument(
        "--no-show-contexts",
        dest="show_contexts",
        action="store_false",
        help="no labels per line in the reports",
    )


def _add_unused_parser(commands: Any) -> None:
    unused = commands.add_parser(
        "unused",
        help="a verdict for every function, class and module of the checkout: never run, "
        "init only, low traffic, active, no data",
    )
    _add_selection_arguments(unused)
    unused.add_argument(
        "--data",
        metavar="DIR",
        help="use the merged data and evidence of an earlier report's output directory "
        "instead of reading S3",
    )
    out = _add_output_arguments(unused, "json, markdown, html; 'all' (default) or 'none'")
    out.add_argument(
        "--low-traffic",
        type=float,
        default=1.0,
        metavar="PERCENT",
        help="low_traffic below this share of the observed environments (default 1)",
    )
    out.add_argument(
        "--tests-data",
        metavar="FILE",
        help="the unit tests' coverage.py data file: adds untested_in_production and tested_only",
    )
    out.add_argument(
        "--no-static", action="store_true", help="no static check (vulture) for safe_to_delete"
    )
    out.add_argument(
        "--all", action="store_true", help="list every unit in the terminal, active ones too"
    )
    _add_checkout_arguments(unused, out)
    _add_label_arguments(unused)


def _add_diff_parser(commands: Any) -> None:
    diff = commands.add_parser(
        "diff",
        help="the lines a change touches, held against production: ran (how widely), "
        "never_ran or new, per function",
    )
    _add_selection_arguments(diff)
    change = diff.add_argument_group("the change")
    change.add_argument("--base", metavar="REF", help="compare the checkout to this git revision")
    change.add_argument("--diff-file", metavar="FILE", help="a unified diff instead of --base")
    change.add_argument(
        "--data", metavar="DIR", help="an earlier report's output directory instead of S3"
    )
    out = _add_output_arguments(diff, "json, markdown; 'all' (default) or 'none'")
    out.add_argument(
        "--fail-under",
        type=float,
        metavar="PERCENT",
        help="exit with status 2 when fewer than PERCENT of the changed lines production "
        "could run did run",
    )
    _add_checkout_arguments(diff, out)
    _add_label_arguments(diff)


def _add_history_parser(commands: Any) -> None:
    history = commands.add_parser(
        "history",
        help="one self-contained HTML page of charts: coverage per day and per version, "
        "environments and invocations, lines reached for the first time",
    )
    _add_selection_arguments(history)
    given = history.add_argument_group("what to chart")
    given.add_argument(
        "--runs",
        action="extend",
        nargs="+",
        metavar="PATH",
        help="local reports' output directories or summary.json files (one or more, "
        "repeatable); with --bucket, the combiner's history/ summaries are read too",
    )
    given.add_argument(
        "--data", metavar="DIR", help="a report's output directory: its evidence per init day"
    )
    given.add_argument(
        "--source-root", default=".", help="the checkout (default: current directory)"
    )
    given.add_argument("--rcfile", help="coverage.py configuration file")
    given.add_argument(
        "-o",
        "--output",
        default="coverage-report",
        help="output directory (default: coverage-report)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lambda-coverage",
        description="Coverage data of Lambda execution environments in S3: list it, report it.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="this tool's version"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    listing = commands.add_parser(
        "list", help="list the data objects, with count, size and invocation totals"
    )
    _add_selection_arguments(listing)
    listing.add_argument(
        "--objects", action="store_true", help="print every object, not just the totals"
    )
    listing.add_argument(
        "--no-metadata",
        action="store_true",
        help="do not read object metadata (no invocation totals; faster for huge listings)",
    )
    listing.add_argument("--workers", type=int, default=16, help="parallel metadata requests")
    listing.add_argument(
        "--cache-dir", help="report download cache: its metadata saves requests (default as report)"
    )

    report = commands.add_parser(
        "report",
        help="download, merge and remap the data; write HTML, XML, LCOV, JSON and a summary",
    )
    _add_selection_arguments(report)
    out = _add_output_arguments(
        report, "html, xml, lcov, json; 'all' (default) or 'none' (data only)"
    )
    out.add_argument(
        "--fail-under",
        type=float,
        metavar="PERCENT",
        help="exit with status 2 when the total coverage is below PERCENT",
    )
    _add_label_arguments(report, listing=True)
    out.add_argument("--rcfile", help="coverage.py configuration file for the reports")
    out.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="report only files matching these patterns (coverage.py's --include; repeatable)",
    )
    out.add_argument(
        "--omit",
        action="append",
        metavar="PATTERN",
        help="leave files matching these patterns out of the reports (repeatable)",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no terminal table")
    _add_path_arguments(report)
    _add_merge_arguments(report)
    _add_unused_parser(commands)
    _add_diff_parser(commands)
    _add_history_parser(commands)
    return parser


# -- list -----------------------------------------------------------------------


def _head_metadata(
    client: Any,
    selection: Selection,
    objects: list[DataObject],
    workers: int,
    cache_dir: str | None,
) -> list[DataObject]:
    from botocore.exceptions import BotoCoreError, ClientError

    from coverage_runtime.report.cache import ObjectCache, default_cache_dir

    cache = ObjectCache(cache_dir or default_cache_dir(), selection.bucket)
    extra = {"ExpectedBucketOwner": selection.expected_owner} if selection.expected_owner else {}

    def metadata_of(obj: DataObject, cached: bool = True) -> DataObject | None:
        """``obj`` with its metadata (cached or HEAD); None when it is gone."""
        try:
            entry = cache.lookup(obj.key, obj.etag, obj.size) if cached else None
        except ValueError:
            entry = None
        if entry is not None:
            return with_metadata(obj, entry.metadata)
        try:
            response = client.head_object(Bucket=selection.bucket, Key=obj.key, **extra)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None  # deleted since listed
            raise explain_s3_error(exc, selection.bucket, f"reading metadata of {obj.key}") from exc
        except BotoCoreError as exc:
            raise explain_s3_error(exc, selection.bucket, f"reading metadata of {obj.key}") from exc
        return with_metadata(obj, response.get("Metadata") or {})

    def head(obj: DataObject) -> DataObject | None:
        """The environment's metadata: its delta's first, then its base's (as `fetch`
        reads them), folded."""
        delta = metadata_of(obj.delta) if obj.delta is not None else None
        base = metadata_of(obj)
        if (
            base is not None
            and delta is not None
            and layout.base_outdated(base.metadata, delta.metadata)
        ):
            base = metadata_of(obj, cached=False)  # replaced since listed
        if base is None:
            return None
        return assembled(obj, base.metadata, delta)

    with cache, ThreadPoolExecutor(max(1, workers)) as pool:
        return [o for o in pool.map(head, objects) if o is not None]


def run_list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    selection = _selection(args)
    client = make_client(args.endpoint_url, args.region, max_connections=max(10, args.workers))
    objects = list(list_objects(client, selection))
    require_some(objects, selection)
    if not args.no_metadata or selection.revisions:
        objects = _head_metadata(client, selection, objects, args.workers, args.cache_dir)
        objects = [o for o in objects if selection.matches_metadata(o.metadata)]
        require_some(objects, selection)
    if args.objects:
        for obj in sorted(objects, key=lambda o: o.key):
            invocations = "-" if obj.invocations is None else str(obj.invocations)
            out.write(
                f"{obj.key}\t{obj.total_size}\t{invocations}\t{obj.revision or '-'}\t"
                f"{obj.last_modified.isoformat() if obj.last_modified else '-'}\n"
            )
    summary = ListingSummary.of(objects)
    out.write(f"{selection.describe()}\n")
    width = max([len("function/version")] + [len(f"{f}/{v}") for f, v in summary.by_scope])
    out.write(f"  {'function/version':<{width}}  objects\n")
    for (function, version), count in sorted(summary.by_scope.items()):
        out.write(f"  {function + '/' + version:<{width}}  {count:>7}\n")
    invocations = (
        "unknown (--no-metadata)"
        if args.no_metadata and not selection.revisions
        else f"{summary.invocations}"
        + (
            f" ({summary.without_invocations} objects without the count)"
            if summary.without_invocations
            else ""
        )
    )
    out.write(
        f"total: {summary.objects} objects, {human_size(summary.bytes)}, "
        f"invocations: {invocations}\n"
    )
    if summary.partial:
        out.write(
            f"partial: {summary.partial} objects hold only the source files their "
            "environment's shutdown could replay in time (each of those complete; "
            "its loss record names the rest)\n"
        )
    return EXIT_OK


# -- report ---------------------------------------------------------------------


def _pipeline_options(
    args: argparse.Namespace, selection: Selection, formats: tuple[str, ...], err: TextIO
) -> Any:
    """The report pipeline's options from the shared path and merging arguments."""
    from coverage_runtime.report.pipeline import ReportOptions

    for name, value in (("--jobs", args.jobs), ("--download-workers", args.download_workers)):
        if value is not None and value < (0 if name == "--jobs" else 1):
            raise ReportError(f"invalid {name} {value}")
    source_root = Path(args.source_root)
    if not args.no_remap and not source_root.is_dir():
        raise ReportError(f"--source-root {args.source_root!r} is not a directory")
    return ReportOptions(
        selection=selection,
        endpoint_url=args.endpoint_url,
        region=args.region,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        output_dir=Path(args.output),
        formats=formats,
        task_roots=tuple(args.task_root or (DEFAULT_TASK_ROOT,)),
        source_root=source_root,
        remap=not args.no_remap,
        ignore_missing_source=args.ignore_missing_source,
        measure=args.measure,
        jobs=args.jobs,
        download_workers=args.download_workers,
        downloader=args.downloader,
        progress=err.isatty() if args.progress is None else args.progress,
        **_label_options(args),
        terminal_table=not args.quiet,
        rcfile=args.rcfile,
        include=parse_list(args.include),
        omit=parse_list(args.omit),
        add_unexecuted=True,
        require_mapped=True,
        source=parse_list(args.source),
    )


def _label_selection(args: argparse.Namespace) -> Any:
    """The ``--context`` patterns (report, unused, diff), duplicates dropped."""
    from coverage_runtime.report.labels import LabelSelection

    return LabelSelection(tuple(dict.fromkeys(getattr(args, "context", None) or ())))


def _label_options(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline's label options; the labels per line for report only."""
    if not hasattr(args, "show_contexts"):
        return {}
    show = args.show_contexts
    return {
        "labels": _label_selection(args),
        "show_contexts": show,
        "json_contexts": bool(show) or (show is None and args.contexts),
    }


def _warn_other_revisions(args: argparse.Namespace, result: Any, err: TextIO) -> None:
    """Line numbers of other revisions are not the checkout's: say so (unused and diff
    map them through git; the report does not)."""
    from coverage_runtime.report.revisions import other_revisions

    if args.no_remap:
        return
    recorded = {o.revision for o in result.objects if o.revision}
    others = other_revisions(Path(args.source_root), recorded)
    if others:
        count = sum(1 for o in result.objects if o.revision in others)
        err.write(
            f"lambda-coverage: warning: {count} environment(s) ran revision(s) other than the "
            f"checkout's ({', '.join(r[:12] for r in others[:5])}): their lines are reported "
            "at the checkout's line numbers; --revision selects one revision, and "
            "lambda-coverage unused / diff carry them over through git\n"
        )


def run_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from coverage_runtime.report.labels import table
    from coverage_runtime.report.output import fails_under, parse_formats
    from coverage_runtime.report.pipeline import build_report

    selection = _selection(args)
    formats = parse_formats(args.format)
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:
        raise ReportError(f"invalid --fail-under {args.fail_under}: expected 0 to 100")
    options = _pipeline_options(args, selection, formats, err)
    result = build_report(options)
    for key, reason in result.skipped:
        err.write(f"lambda-coverage: skipped s3://{selection.bucket}/{key}: {reason}\n")
    for warning in result.warnings:
        err.write(f"lambda-coverage: warning: {warning}\n")
    if result.partial_uploads:
        err.write(
            f"lambda-coverage: warning: {result.partial_uploads} environment(s) uploaded "
            "partially at shutdown: each file they hold is complete, the files their "
            "shutdown could not replay in time are missing (see their loss records)\n"
        )
    _warn_other_revisions(args, result, err)
    assert result.outputs is not None
    totals = result.outputs.totals
    if not args.quiet:
        out.write(result.outputs.terminal)
    if args.contexts:
        out.write(table(result.labels))
    invocations = result.invocations
    out.write(
        f"\n{'branch' if result.branch else 'line'} coverage {totals.percent_display}% "
        f"from {result.partial.merged} environment(s), {invocations} invocation(s) "
        f"({result.fetch.downloaded} downloaded, {result.fetch.cached} from cache, "
        f"{len(result.skipped)} skipped, {result.timings.get('total', 0):.1f} s)\n"
    )
    for name, path in result.outputs.files.items():
        out.write(f"  {name:<8} {path}\n")
    if args.fail_under is not None and fails_under(totals, args.fail_under, args.rcfile):
        err.write(
            f"lambda-coverage: total coverage {totals.percent_display}% is below "
            f"--fail-under {args.fail_under:g}\n"
        )
        return EXIT_FAIL_UNDER
    return EXIT_OK


# -- unused ---------------------------------------------------------------------

UNUSED_FORMATS = ("json", "markdown", "html")


def _insights_input(args: argparse.Namespace, err: TextIO) -> tuple[Path, Any]:
    """The directory with the merged data and evidence, and the evidence when just merged."""
    if args.data:
        directory = Path(args.data)
        if not directory.is_dir():
            raise ReportError(f"--data {args.data!r} is not a directory")
        return directory, None
    from coverage_runtime.report.pipeline import collect

    options = _pipeline_options(args, _selection(args), (), err)
    if options.remap:
        options.ignore_missing_source = True  # files of other revisions: mapped through git
    options.output_dir.mkdir(parents=True, exist_ok=True)
    result = collect(options)
    for key, reason in result.skipped:
        err.write(f"lambda-coverage: skipped {key}: {reason}\n")
    for warning in result.warnings:
        if not warning.startswith("left out"):
            err.write(f"lambda-coverage: warning: {warning}\n")
    return options.output_dir, result.partial.evidence


def run_unused(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from coverage_runtime.report import tables
    from coverage_runtime.report.insights import Options, analyse, selected, write_json
    from coverage_runtime.report.output import parse_formats

    formats = parse_formats(args.format, UNUSED_FORMATS)
    if not 0 <= args.low_traffic <= 100:
        raise ReportError(f"invalid --low-traffic {args.low_traffic}: expected 0 to 100")
    directory, evidence = _insights_input(args, err)
    insights = analyse(
        directory,
        Options(
            source_root=Path(args.source_root),
            rcfile=args.rcfile,
            include=parse_list(args.include),
            omit=parse_list(args.omit),
            low_traffic=args.low_traffic / 100,
            tests_data=args.tests_data,
            static=not args.no_static,
            labels=_label_selection(args),
        ),
        evidence,
    )
    for warning in insights.warnings:
        err.write(f"lambda-coverage: warning: {warning}\n")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    shown = (
        insights.judged
        if args.all
        else selected(insights, [v for v in insights.counts() if v != "active"])
    )
    title = "What production runs"
    if insights.restriction:
        title += f", labels {_label_selection(args).describe()}"
    written: dict[str, Path] = {}
    if "json" in formats:
        written["json"] = write_json(insights, output)
    if "markdown" in formats:
        written["markdown"] = output / "unused.md"
        written["markdown"].write_text(tables.markdown(insights, shown, title), encoding="utf-8")
    if "html" in formats:
        written["html"] = output / "unused.html"
        written["html"].write_text(tables.page(insights, insights.judged, title), encoding="utf-8")
    if not args.quiet:
        out.write(tables.terminal(insights, shown))
    for name, path in written.items():
        out.write(f"  {name:<8} {path}\n")
    return EXIT_OK


# -- diff -----------------------------------------------------------------------

DIFF_FORMATS = ("json", "markdown")


def run_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import json

    from coverage_runtime.report import tables
    from coverage_runtime.report.changes import changed_lines, classify
    from coverage_runtime.report.insights import Options, prepare
    from coverage_runtime.report.output import parse_formats

    formats = parse_formats(args.format, DIFF_FORMATS)
    if bool(args.base) == bool(args.diff_file):
        raise ReportError("give the change as --base REF or --diff-file FILE (one of them)")
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:
        raise ReportError(f"invalid --fail-under {args.fail_under}: expected 0 to 100")
    source_root = Path(args.source_root)
    changed = changed_lines(source_root, args.base, args.diff_file)
    directory, evidence = _insights_input(args, err)
    options = Options(
        source_root=source_root,
        rcfile=args.rcfile,
        include=parse_list(args.include),
        omit=parse_list(args.omit),
        labels=_label_selection(args),
    )
    checkout = prepare(directory, options, evidence)
    for warning in checkout.warnings:
        err.write(f"lambda-coverage: warning: {warning}\n")
    classified = classify(checkout, changed)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if "json" in formats:
        written["json"] = output / "diff.json"
        written["json"].write_text(json.dumps(classified.as_dict(), indent=1) + "\n")
    if "markdown" in formats:
        title = f"This change in production (against {args.base or args.diff_file})"
        if classified.restriction:
            title += f", labels {options.labels.describe()}"
        written["markdown"] = output / "diff.md"
        written["markdown"].write_text(tables.diff_markdown(classified, title), encoding="utf-8")
    if not args.quiet:
        out.write(tables.diff_terminal(classified))
    for name, path in written.items():
        out.write(f"  {name:<8} {path}\n")
    if args.fail_under is not None and classified.ran_percent() < args.fail_under:
        err.write(
            f"lambda-coverage: {classified.ran_percent():.1f}% of the changed lines production "
            f"could run did run, below --fail-under {args.fail_under:g}\n"
        )
        return EXIT_FAIL_UNDER
    return EXIT_OK


# -- history ----------------------------------------------------------------------


def run_history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from coverage_runtime.report import history

    runs = history.local_summaries(parse_list(args.runs))
    notes: list[str] = []
    if args.bucket:
        selection = _selection(args)
        client = make_client(args.endpoint_url, args.region)
        found = history.s3_summaries(
            client, selection.bucket, selection.prefix, selection.functions
        )
        notes.append(
            f"{len(found)} combiner run(s) from s3://{selection.bucket}/{selection.prefix}"
        )
        runs += found
    if args.runs:
        notes.append(f"{len(args.runs)} local report run(s)")
    charts = history.summary_charts(runs)
    if args.data:
        charts += history.load_evidence_charts(Path(args.data), Path(args.source_root), args.rcfile)
        notes.append(f"evidence of {args.data}")
    path = history.write_page(charts, Path(args.output), "Coverage history", notes)
    out.write(f"{len(charts)} chart(s), {len(runs)} run(s)\n  html     {path}\n")
    return EXIT_OK


COMMANDS = {
    "list": run_list,
    "report": run_report,
    "unused": run_unused,
    "diff": run_diff,
    "history": run_history,
}


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, out, err)
    except ReportError as exc:
        err.write(f"lambda-coverage: error: {exc}\n")
        return EXIT_ERROR
    except OSError as exc:  # e.g. an output or cache directory that cannot be written
        err.write(f"lambda-coverage: error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write("lambda-coverage: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
