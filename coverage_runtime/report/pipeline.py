"""One report of many environments: list, fetch, merge, remap, write.

This is the whole pipeline behind ``lambda-coverage report`` and the
combiner handler (`collect`, then `report`); each step lives in its own module:

- `selection`, `objects` + `listing`: list the data objects under a prefix and filter them;
- `fetch` + `cache`: parallel download into an ETag-keyed cache;
- `merge`: parallel merge while downloading, and the merged data file;
- `evidence`: per line, which environments ran it, how often, when, where;
- `paths`: recorded paths to the local checkout's;
- `sources`: the checkout's files that never ran, and a task root that maps nothing;
- `labels`: which labels (dynamic contexts) to report, and what each one ran;
- `output`: coverage.py's HTML, XML, LCOV, JSON and terminal reports.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coverage_runtime import layout
from coverage_runtime.errors import ReportError
from coverage_runtime.layout import DEFAULT_TASK_ROOT, MERGED_DATA_NAME
from coverage_runtime.report.cache import ObjectCache, default_cache_dir
from coverage_runtime.report.client import make_client
from coverage_runtime.report.evidence import EVIDENCE_NAME, Cohort
from coverage_runtime.report.fetch import DEFAULT_DOWNLOAD_WORKERS, FetchStats, fetch
from coverage_runtime.report.labels import LabelCount, LabelSelection, count_labels
from coverage_runtime.report.listing import BackgroundListing, GivenObjects
from coverage_runtime.report.merge import Merger, Partial, choose_measure, write_data
from coverage_runtime.report.objects import DataObject, require_some
from coverage_runtime.report.output import FORMATS, Outputs, write_reports
from coverage_runtime.report.paths import MissingSource, PathMap, drop_paths, remap
from coverage_runtime.report.selection import Selection
from coverage_runtime.report.sources import (
    check_mapped,
    measured_source,
    source_files,
    unexecuted,
)

SUMMARY_NAME = "summary.json"
GENERATED_AT = "%Y-%m-%dT%H-%M-%SZ"  # a summary's time, also its history key's name
SMALL_RUN = 32  # below this many objects, worker processes cost more than they save
MAX_BATCH = 64  # files per merge batch at most


@dataclass
class ReportOptions:
    selection: Selection
    endpoint_url: str | None = None
    region: str | None = None
    cache_dir: Path | None = None
    output_dir: Path = Path("coverage-report")
    formats: tuple[str, ...] = FORMATS
    task_roots: tuple[str, ...] = (DEFAULT_TASK_ROOT,)
    source_root: Path = Path()
    remap: bool = True
    ignore_missing_source: bool = False
    # False for a distributed map's batch: all of it may be filtered out or
    # unreadable, and its shard is then empty rather than an error.
    require_data: bool = True
    measure: str = "auto"
    measure_name: str = "--measure"  # what the user called it, for messages
    jobs: int | None = None
    download_workers: int = DEFAULT_DOWNLOAD_WORKERS
    downloader: str = "auto"
    batch_size: int | None = None
    progress: bool = False
    # Labels: report only what these shell patterns select (empty: all), and show
    # each line's labels in HTML (None: when the data holds more than one) and JSON.
    labels: LabelSelection = field(default_factory=LabelSelection)
    show_contexts: bool | None = None
    json_contexts: bool = False
    terminal_table: bool = True
    rcfile: str | None = None
    include: tuple[str, ...] = ()
    omit: tuple[str, ...] = ()
    # The command line's checks of the checkout (the combiner reads its own image):
    # every file of the measured source in the reports, and a task root that maps.
    add_unexecuted: bool = False
    require_mapped: bool = False
    source: tuple[str, ...] = ()  # the measured source in the checkout (sources.measured_source)


@dataclass
class ReportResult:
    objects: list[DataObject]  # merged or skipped as unreadable, with their metadata
    fetch: FetchStats
    partial: Partial
    branch: bool
    data_file: Path
    outputs: Outputs | None
    listed: int = 0
    filtered_out: int = 0
    missing_source: list[MissingSource] = field(default_factory=list)
    unexecuted: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    labels: list[LabelCount] = field(default_factory=list)  # set by `report`
    label_patterns: tuple[str, ...] = ()

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return list(self.fetch.failed) + list(self.partial.skipped)

    @property
    def merged_objects(self) -> list[DataObject]:
        """The objects whose data is in the report (not skipped by the merge)."""
        skipped = {key for key, _ in self.partial.skipped}
        return [o for o in self.objects if o.key not in skipped]

    @property
    def invocations(self) -> int:
        """Invocations served by the merged environments (from object metadata)."""
        return sum(o.invocations or 0 for o in self.merged_objects)

    @property
    def partial_uploads(self) -> int:
        """Merged environments whose shutdown uploaded only the files it could
        replay in time (`DataObject.partial`): their other files' data is missing."""
        return sum(o.partial for o in self.merged_objects)

    def summary(self, selection: Selection) -> dict[str, Any]:
        totals = self.outputs.totals.as_dict() if self.outputs else {}
        return {
            **totals,
            "measure": "branch" if self.branch else "line",
            "environments": {
                "listed": self.listed,
                "merged": self.partial.merged,
                "skipped": [{"key": k, "reason": r} for k, r in self.skipped],
                "filtered_out_by_revision": self.filtered_out,
                "invocations": self.invocations,
                "partial_uploads": self.partial_uploads,
            },
            "selection": selection.describe(),
            "downloaded": self.fetch.downloaded,
            "from_cache": self.fetch.cached,
            "missing_source": [str(m) for m in self.missing_source],
            "never_imported": len(self.unexecuted),
            "labels": [c.as_dict() for c in self.labels],
            "label_patterns": list(self.label_patterns),
            "warnings": self.warnings,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def default_jobs(count: int | None) -> int:
    """Worker processes for the merge: one per core (up to 8), none for small runs.

    Merging happens while the rest downloads; workers take the reading of
    the data files off the process that drives the downloads.  Measured on
    2 cores (docs/scaling.md) they are a gain for branch data and neutral to
    a small gain for line data; below `SMALL_RUN` files forking them costs
    more than it saves.
    """
    if count is not None and count <= SMALL_RUN:
        return 0
    return min(os.cpu_count() or 1, 8)


def _batch_size(count: int | None, jobs: int) -> int:
    """Files per merge batch; ``count`` is None while the listing goes on (a big run).

    Enough batches to keep every worker busy while downloads arrive, big
    enough that the per-batch cost (a pickle each way) stays small, and
    small enough that the last batch, merged after the last download, is
    short.  In process, small batches, so merging never stalls the downloads.
    """
    if jobs == 0:
        return 16
    if count is None:
        return MAX_BATCH
    return max(8, min(MAX_BATCH, count // (jobs * 8)))


@dataclass
class _Merged:
    partial: Partial
    stats: FetchStats
    objects: list[DataObject]
    filtered_out: int
    cache_error: str | None


def _whose(obj: DataObject) -> tuple[Cohort | None, int]:
    """The evidence's cohort of an environment's object (None for a merged shard)."""
    if layout.SHARD_ENVIRONMENTS in (obj.metadata or {}):
        return None, 0
    return Cohort(obj.function, obj.version, obj.date, obj.revision or ""), obj.invocations or 0


def _fetch_and_merge(
    options: ReportOptions,
    client: Any,
    listing: BackgroundListing | GivenObjects,
    jobs: int,
    batch: int,
) -> _Merged:
    """Fetch every listed object (cache or S3) and merge it as it arrives."""
    selection = options.selection
    stats = FetchStats()
    fetched: list[DataObject] = []
    filtered_out = 0
    with (
        Merger(jobs=jobs, batch_size=batch) as merger,  # forks first: no threads, no SQLite yet
        ObjectCache(options.cache_dir or default_cache_dir(), selection.bucket) as cache,
    ):
        listing.start()
        for item in fetch(
            client,
            selection.bucket,
            listing,
            cache,
            workers=options.download_workers,
            progress=options.progress,
            stats=stats,
            expected_owner=selection.expected_owner,
            downloader=options.downloader,
        ):
            if item.body is None:
                continue
            if not selection.matches_metadata(item.obj.metadata):
                filtered_out += 1
                continue
            fetched.append(item.obj)
            merger.add(item.obj.key, item.body, *_whose(item.obj), delta=item.delta_body)
        partial = merger.finish()
    return _Merged(partial, stats, fetched, filtered_out, cache.write_error)


def _require_data(options: ReportOptions, count: int, merged: _Merged) -> None:
    """Stop with one sentence when nothing matched, or nothing of it could be read."""
    if not options.require_data:
        return
    if not count or (options.selection.revisions and not merged.objects):
        require_some([], options.selection)
    if merged.partial.merged == 0:
        failed = merged.stats.failed + merged.partial.skipped
        reasons = "; ".join(f"{k}: {r}" for k, r in failed[:5])
        raise ReportError(f"none of the {count} matched objects could be read ({reasons})")


def collect(
    options: ReportOptions, client: Any = None, objects: Sequence[DataObject] | None = None
) -> ReportResult:
    """List, fetch and merge; remap and write the merged data file (no reports).

    ``objects``: merge these instead of listing the selection's prefixes.
    """
    selection = options.selection
    timings: dict[str, float] = {}
    started = time.perf_counter()
    client = client or make_client(
        options.endpoint_url, options.region, max_connections=max(10, options.download_workers)
    )
    listing = BackgroundListing(client, selection) if objects is None else GivenObjects(objects)
    if options.require_data and not listing.first and not listing.more:
        require_some([], selection)  # before any worker is forked
    timings["list_first_page"] = time.perf_counter() - started

    # Sized on the first page: a listing that goes on is a big run.
    expected = None if listing.more else len(listing.first)
    jobs = options.jobs if options.jobs is not None else default_jobs(expected)
    phase = time.perf_counter()
    merged = _fetch_and_merge(
        options, client, listing, jobs, options.batch_size or _batch_size(expected, jobs)
    )
    partial, stats, fetched_objects = merged.partial, merged.stats, merged.objects
    timings["list"] = listing.seconds or 0.0
    timings["fetch_and_merge"] = time.perf_counter() - phase
    _require_data(options, listing.count, merged)

    branch, warning = choose_measure(partial, options.measure, options.measure_name)
    warnings = [warning] if warning else []
    if merged.cache_error:
        warnings.append(
            f"the download cache could not be written ({merged.cache_error}): "
            "the next report downloads these objects again"
        )
    missing: list[MissingSource] = []
    touched: list[str] = []
    phase = time.perf_counter()
    if options.remap:
        path_map = PathMap.parse(options.task_roots, options.source_root)
        recorded = partial.paths()
        if options.require_mapped:
            check_mapped(recorded, path_map, options.source_root)
        partial, missing = remap(partial, path_map)
        if missing and not options.ignore_missing_source:
            shown = "\n  ".join(str(m) for m in missing[:20])
            more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise ReportError(
                f"local source missing for {len(missing)} measured file(s) "
                f"(recorded -> local):\n  {shown}{more}\n"
                "Run from the checkout of the deployed code, point --source-root at it, "
                "map other image paths with --task-root /image/path=local/path, or pass "
                "--ignore-missing-source to report the other files."
            )
        if missing:
            drop_paths(partial, {m.local for m in missing})
            warnings.append(
                f"left out {len(missing)} measured file(s) with no local source: "
                + ", ".join(str(m) for m in missing[:5])
            )
        if options.add_unexecuted:
            source = measured_source(
                recorded, path_map, options.source, options.source_root, options.rcfile
            )
            files = source_files(source, options.rcfile, options.omit)
            touched = unexecuted(partial.paths(), files)
    data_file = write_data(partial, options.output_dir / MERGED_DATA_NAME, branch, touched)
    evidence_file = options.output_dir / EVIDENCE_NAME
    if partial.evidence.cohorts:
        partial.evidence.save(evidence_file, options.source_root if options.remap else None)
    else:  # merged shards only (a distributed map's reduce): their evidence is not kept yet
        evidence_file.unlink(missing_ok=True)
    timings["remap_and_write"] = time.perf_counter() - phase
    return ReportResult(
        objects=fetched_objects,
        fetch=stats,
        partial=partial,
        branch=branch,
        data_file=data_file,
        outputs=None,
        listed=listing.count,
        filtered_out=merged.filtered_out,
        missing_source=missing,
        unexecuted=touched,
        warnings=warnings,
        timings=timings,
    )


def report(options: ReportOptions, result: ReportResult) -> Outputs:
    """coverage.py's reports of the merged data (`ReportOptions.formats`) into
    ``options.output_dir``; a `ReportError` when they cannot be made."""
    if not result.partial.paths():
        raise ReportError(
            f"the {result.partial.merged} merged environment(s) hold no measured lines"
        )
    phase = time.perf_counter()
    labels = result.partial.contexts()
    result.warnings.extend(options.labels.check(labels))
    result.labels = count_labels(result.partial, result.branch, options.labels)
    result.label_patterns = options.labels.patterns
    title = f"Coverage of {options.selection.describe()}"
    if options.labels.patterns:
        title += f", labels {options.labels.describe()}"
    show = options.show_contexts
    result.outputs = write_reports(
        result.data_file,
        options.output_dir,
        options.formats,
        branch=result.branch,
        contexts=options.labels.regexes,
        show_contexts=(len(labels) > 1 if show is None else show) and any(labels),
        json_contexts=options.json_contexts,
        rcfile=options.rcfile,
        include=options.include,
        omit=options.omit,
        title=title,
        terminal=options.terminal_table,
    )
    result.timings["reports"] = time.perf_counter() - phase
    return result.outputs


def build_report(options: ReportOptions, client: Any = None) -> ReportResult:
    """The whole report: merged data file, reports and ``summary.json``."""
    started = time.perf_counter()
    options.output_dir.mkdir(parents=True, exist_ok=True)
    result = collect(options, client)
    outputs = report(options, result)
    result.timings["total"] = time.perf_counter() - started
    summary_path = options.output_dir / SUMMARY_NAME
    summary = result.summary(options.selection)
    summary["generated_at"] = datetime.now(UTC).strftime(GENERATED_AT)  # as the combiner's
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    outputs.files["summary"] = summary_path
    outputs.files["data"] = result.data_file
    return result
