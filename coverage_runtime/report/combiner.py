"""The merge as a Lambda handler of the same image: combine where the data is.

Deploy the image a second time with the command
``coverage_runtime.report.combiner.lambda_handler`` (and ``COVERAGE_ENABLED=false``:
the combiner need not measure itself), then invoke it on a schedule or by hand.
It reads ``COVERAGE_S3_BUCKET``, ``COVERAGE_S3_PREFIX`` and the other
``COVERAGE_S3_*`` settings, and writes under ``${COVERAGE_S3_PREFIX}combined/``:

    combined/<function|all>/<version|all>/latest/merged.coverage   the merged data file
    combined/<function|all>/<version|all>/latest/summary.json      percent, lines, branches,
                                                                   files, environments merged
    combined/<function|all>/<version|all>/latest/coverage.{json,xml,lcov}
    combined/<function|all>/<version|all>/history/<UTC time>.json  the summary, kept for trends

Events (every field optional):

- ``{"function": "orders", "version": "$LATEST", "since": "7d", "until": "today",
  "revision": "abc123", "measure": "auto"}``: merge everything that matches, in
  this invocation.  /tmp keeps the download cache between warm invocations,
  so a scheduled run downloads only the environments that changed.
- A Step Functions distributed map batch, ``{"Items": [{"Key": ...}, ...],
  "BatchInput": {"run_id": ..., ...filters}}``: merge just these objects into
  one shard data file under ``combined/_runs/<run_id>/``.
- ``{"action": "reduce", "run_id": ..., ...filters}``: merge the shard files
  of a run into the final outputs above.  See docs/scaling.md.

Recorded paths under ``/var/task`` map to this function's ``LAMBDA_TASK_ROOT``,
which in the image is the same directory, so the reports read the source
shipped in the image.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coverage_runtime import layout
from coverage_runtime.layout import DEFAULT_TASK_ROOT
from coverage_runtime.report.cache import ObjectCache
from coverage_runtime.report.fetch import FetchStats, fetch
from coverage_runtime.report.merge import (
    MEASURES,
    Merger,
    PathMap,
    choose_measure,
    drop_paths,
    remap,
    write_data,
)
from coverage_runtime.report.objects import (
    DataObject,
    DateRange,
    ReportError,
    Selection,
    make_client,
)
from coverage_runtime.report.output import Outputs, write_reports
from coverage_runtime.report.pipeline import ReportOptions, ReportResult, collect
from coverage_runtime.settings import Settings, load_settings

CACHE_DIR = os.path.join(tempfile.gettempdir(), "lambda-coverage-combiner", "cache")
WORK_DIR = os.path.join(tempfile.gettempdir(), "lambda-coverage-combiner", "work")
REPORT_FORMATS = ("json", "xml", "lcov")


def _words(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(i).strip() for i in items if str(i).strip())


def _selection(settings: Settings, event: dict[str, Any]) -> Selection:
    if settings.bucket is None:
        raise ReportError("COVERAGE_S3_BUCKET is not set")
    measure = event.get("measure")
    if measure is not None and measure not in MEASURES:
        raise ReportError(
            f'invalid event field "measure" {measure!r}: expected one of {", ".join(MEASURES)}'
        )
    return Selection(
        bucket=settings.bucket,
        prefix=settings.prefix,
        functions=_words(event.get("function")),
        versions=_words(event.get("version")),
        dates=DateRange.parse(
            event.get("since"), event.get("until"), names=('event field "since"', '"until"')
        ),
        revisions=_words(event.get("revision")),
        expected_owner=settings.expected_owner,
    )


def _scope(selection: Selection) -> str:
    function = "+".join(selection.functions) or "all"
    version = "+".join(selection.versions) or "all"
    return layout.combined_scope(selection.prefix, function, version)


def _put(client: Any, settings: Settings, key: str, body: bytes, **metadata: str) -> None:
    args: dict[str, Any] = {
        "Bucket": settings.bucket,
        "Key": key,
        "Body": body,
        "ContentType": layout.CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream"),
        "ServerSideEncryption": settings.sse,
        "Metadata": metadata,
    }
    if settings.kms_key_id:
        args["SSEKMSKeyId"] = settings.kms_key_id
    if settings.expected_owner:
        args["ExpectedBucketOwner"] = settings.expected_owner
    client.put_object(**args)


def _options(
    selection: Selection, event: dict[str, Any], settings: Settings, work: Path
) -> ReportOptions:
    return ReportOptions(
        selection=selection,
        endpoint_url=settings.endpoint_url,
        region=settings.region,
        cache_dir=Path(CACHE_DIR),
        output_dir=work,
        task_roots=(DEFAULT_TASK_ROOT,),
        source_root=Path(os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()),
        ignore_missing_source=True,
        measure=str(event.get("measure") or "auto"),
        measure_name='event field "measure"',
        jobs=0,  # Lambda has no /dev/shm for process pools; the merge is cheap anyway
    )


def _work_dir() -> str:
    os.makedirs(WORK_DIR, exist_ok=True)
    return WORK_DIR


def _publish(
    client: Any,
    settings: Settings,
    selection: Selection,
    result: ReportResult,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Reports (when the source is here), then everything to S3."""
    outputs: Outputs | None = None
    if result.partial.paths():
        try:
            outputs = write_reports(
                result.data_file,
                result.data_file.parent,
                REPORT_FORMATS,
                branch=result.branch,
                terminal=False,
            )
        except ReportError as exc:
            summary.setdefault("warnings", []).append(str(exc))
    if outputs is not None:
        summary.update(outputs.totals.as_dict())
    scope = _scope(selection)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    summary["generated_at"] = now
    body = (json.dumps(summary, indent=2) + "\n").encode()
    written = {}
    data_key = f"{scope}latest/{layout.MERGED_DATA_NAME}"
    _put(client, settings, data_key, result.data_file.read_bytes())
    written["data"] = data_key
    for name, path in outputs.files.items() if outputs else ():
        key = f"{scope}latest/{path.name}"
        _put(client, settings, key, path.read_bytes())
        written[name] = key
    _put(client, settings, f"{scope}latest/summary.json", body)
    _put(client, settings, f"{scope}history/{now}.json", body)
    written["summary"] = f"{scope}latest/summary.json"
    summary["s3"] = {name: f"s3://{settings.bucket}/{key}" for name, key in written.items()}
    return summary


def combine_all(event: dict[str, Any], settings: Settings, work: Path) -> dict[str, Any]:
    selection = _selection(settings, event)
    client = make_client(settings.endpoint_url, settings.region)
    result = collect(_options(selection, event, settings, work), client)
    return _publish(client, settings, selection, result, result.summary(selection))


def _shard_objects(selection: Selection, items: list[dict[str, Any]]) -> list[DataObject]:
    from coverage_runtime.report.objects import parse_key

    objects = []
    for item in items:
        key = str(item.get("Key") or item.get("key") or "")
        parsed = parse_key(selection.prefix, key)
        if parsed is None or not selection.matches_key(parsed):
            continue
        objects.append(
            DataObject(
                key=key,
                etag=str(item.get("Etag") or item.get("ETag") or "").strip('"'),
                size=int(item.get("Size") or item.get("size") or -1),
                last_modified=None,
                function=parsed.function,
                version=parsed.version,
                date=parsed.date,
                environment_id=parsed.environment_id,
            )
        )
    return objects


def combine_shard(event: dict[str, Any], settings: Settings, work: Path) -> dict[str, Any]:
    """One batch of a distributed map: merge its objects into one shard data file."""
    batch_input = dict(event.get("BatchInput") or {})
    run_id = str(batch_input.get("run_id") or "").strip()
    if not run_id or "/" in run_id:
        raise ReportError("a distributed map batch needs BatchInput.run_id (no '/')")
    selection = _selection(settings, batch_input)
    objects = _shard_objects(selection, list(event.get("Items") or []))
    client = make_client(settings.endpoint_url, settings.region)
    stats = FetchStats()
    invocations = 0
    with Merger(jobs=0) as merger, ObjectCache(CACHE_DIR, selection.bucket) as cache:
        for item in fetch(client, selection.bucket, objects, cache, stats=stats):
            if item.body is not None and selection.matches_metadata(item.obj.metadata):
                merger.add(item.obj.key, item.body)
                invocations += item.obj.invocations or 0
        partial = merger.finish()
    branch, _ = choose_measure(
        partial, str(batch_input.get("measure") or "auto"), 'event field "measure"'
    )
    shard_id = hashlib.sha256("\n".join(o.key for o in objects).encode()).hexdigest()[:16]
    path = write_data(partial, work / "shard.coverage", branch)
    key = layout.shard_key(selection.prefix, run_id, shard_id)
    skipped = stats.failed + partial.skipped
    _put(
        client,
        settings,
        key,
        path.read_bytes(),
        environments=str(partial.merged),
        invocations=str(invocations),
        skipped=str(len(skipped)),
    )
    return {
        "shard": f"s3://{settings.bucket}/{key}",
        "environments": partial.merged,
        "invocations": invocations,
        "skipped": [{"key": k, "reason": r} for k, r in skipped],
    }


def combine_shards(event: dict[str, Any], settings: Settings, work: Path) -> dict[str, Any]:
    """The reduce step: merge the shard files of one run into the final outputs."""
    run_id = str(event.get("run_id") or "").strip()
    if not run_id or "/" in run_id:
        raise ReportError("reduce needs run_id (no '/')")
    selection = _selection(settings, event)
    client = make_client(settings.endpoint_url, settings.region)
    shard_prefix = layout.runs_prefix(selection.prefix, run_id)
    shards = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=selection.bucket, Prefix=shard_prefix):
        for item in page.get("Contents", ()):
            shards.append(
                DataObject(
                    key=item["Key"],
                    etag=str(item.get("ETag", "")).strip('"'),
                    size=int(item.get("Size", 0)),
                    last_modified=item.get("LastModified"),
                    function="_shard",
                    version=run_id,
                    date="",
                    environment_id=item["Key"].rsplit("/", 1)[-1],
                )
            )
    if not shards:
        raise ReportError(f"no shard files under s3://{selection.bucket}/{shard_prefix}")
    stats = FetchStats()
    environments = invocations = skipped = 0
    with Merger(jobs=0) as merger, ObjectCache(CACHE_DIR, selection.bucket) as cache:
        for item in fetch(client, selection.bucket, shards, cache, stats=stats):
            if item.body is None:
                continue
            merger.add(item.obj.key, item.body)
            meta = item.obj.metadata or {}
            environments += int(meta.get("environments", 0))
            invocations += layout.metadata_int(meta, layout.INVOCATIONS) or 0
            skipped += int(meta.get("skipped", 0))
        partial = merger.finish()
    branch, warning = choose_measure(
        partial, str(event.get("measure") or "auto"), 'event field "measure"'
    )
    options = _options(selection, event, settings, work)
    partial, missing = remap(partial, PathMap.parse(options.task_roots, options.source_root))
    drop_paths(partial, {m.local for m in missing})
    data_file = write_data(partial, options.output_dir / layout.MERGED_DATA_NAME, branch)
    result = ReportResult(
        objects=[], fetch=stats, partial=partial, branch=branch, data_file=data_file, outputs=None
    )
    summary = {
        "measure": "branch" if branch else "line",
        "environments": {
            "merged": environments,
            "skipped": skipped + len(stats.failed) + len(partial.skipped),
            "invocations": invocations,
            "shards": len(shards),
        },
        "selection": selection.describe(),
        "run_id": run_id,
        "missing_source": [str(m) for m in missing],
        "warnings": [warning] if warning else [],
    }
    return _publish(client, settings, selection, result, summary)


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Entry point: a full merge, one distributed-map batch, or the reduce step."""
    event = event if isinstance(event, dict) else {}
    settings = load_settings()
    # A ReportError propagates: Lambda reports it as errorType "ReportError" with
    # its one-sentence message, which Step Functions' Retry/Catch can match.
    # Every file of an invocation lives in one directory that goes with it: a warm
    # combiner must not fill /tmp.
    with tempfile.TemporaryDirectory(dir=_work_dir()) as work:
        if "Items" in event:
            return combine_shard(event, settings, Path(work))
        if event.get("action") == "reduce":
            return combine_shards(event, settings, Path(work))
        return combine_all(event, settings, Path(work))
