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
  one shard data file under ``combined/_runs/<run_id>/`` (an environment's
  delta object listed in the next batch is read with its base, here).
- ``{"action": "reduce", "run_id": ..., ...filters}``: merge the shard files
  of a run into the final outputs above.  See docs/scaling.md.

The merge state machine (``statemachine/merge.asl.json``) sends three more,
with the filters in ``"selection"`` (its execution's input):

- ``{"action": "plan", "run_id": ..., "selection": {...filters, "batch_size",
  "max_concurrency", "tolerated_failure_percentage"}, "defaults": {...}}``:
  list and filter once, write the batches and their manifest
  (`coverage_runtime.report.plan`), and answer where they are.
- ``{"action": "batch", "run_id": ..., "batch": <key>, "selection": {...}}``:
  one map child: merge that batch into the shard of the same name.
- ``{"action": "reduce", "run_id": ..., "selection": {...}}``: as above, and
  it reports the planned batches that left no shard (failed, tolerated).

Recorded paths under ``/var/task`` map to this function's ``LAMBDA_TASK_ROOT``,
which in the image is the same directory, so the reports read the source
shipped in the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coverage_runtime import env, layout, s3
from coverage_runtime.env import parse_list
from coverage_runtime.errors import ReportError
from coverage_runtime.layout import DEFAULT_TASK_ROOT
from coverage_runtime.report import plan
from coverage_runtime.report.client import make_client
from coverage_runtime.report.evidence import EVIDENCE_NAME
from coverage_runtime.report.merge import MEASURES
from coverage_runtime.report.objects import DataObject, list_shards, matching_objects
from coverage_runtime.report.pipeline import ReportOptions, ReportResult, collect, report
from coverage_runtime.report.selection import DateRange, Selection
from coverage_runtime.settings import Settings, load_settings

CACHE_DIR = os.path.join(tempfile.gettempdir(), "lambda-coverage-combiner", "cache")
WORK_DIR = os.path.join(tempfile.gettempdir(), "lambda-coverage-combiner", "work")
REPORT_FORMATS = ("json", "xml", "lcov")
# Labels in the handler's answer at most (most lines first): a Step Functions state's
# output is limited to 256 KiB, and a test suite's labels are one per test.
RETURNED_LABELS = 100
MEASURE_FIELD = 'event field "measure"'
FILTER_FIELDS = ("function", "version", "since", "until", "revision", "measure")
STATE_MACHINE_ACTIONS = ("plan", "batch", "reduce")


@dataclass(frozen=True)
class CombineRequest:
    """One event, read once: what to merge and how (the forms in the module docstring)."""

    action: str  # "all", "shard", "plan", "batch" or "reduce"
    selection: Selection
    measure: str = "auto"
    run_id: str = ""
    items: tuple[dict[str, Any], ...] = ()
    batch: str = ""  # the key of a planned batch
    options: plan.RunOptions | None = None  # a plan's
    tolerated: float | None = None  # a reduce's: the share of batches that may fail

    @classmethod
    def parse(cls, event: Any, settings: Settings) -> CombineRequest:
        event = event if isinstance(event, dict) else {}
        if "Items" in event:
            fields = event.get("BatchInput") or {}
            if not isinstance(fields, dict):
                raise ReportError('event field "BatchInput" must be an object')
            action, run_id, run_id_field = "shard", fields.get("run_id"), "BatchInput.run_id"
        elif event.get("action") in STATE_MACHINE_ACTIONS:
            action, run_id, run_id_field = event["action"], event.get("run_id"), "run_id"
            # Older reduce events carry the filters beside "action".
            fields = event.get("selection", {} if action == "plan" else event)
            if not isinstance(fields, dict):
                raise ReportError('event field "selection" must be an object')
        else:
            action, fields, run_id, run_id_field = "all", event, "", ""
        run_id = str(run_id or "").strip()
        if run_id_field and (not run_id or "/" in run_id):
            what = "a distributed map batch" if action in ("shard", "batch") else action
            raise ReportError(f"{what} needs event field {run_id_field} (no '/')")
        items = event.get("Items") or []
        if not isinstance(items, list):
            raise ReportError('event field "Items" must be a list of {"Key": ...} objects')
        batch = event.get("batch") if action == "batch" else ""
        if not isinstance(batch, str) or (action == "batch" and not batch):
            raise ReportError('a batch needs event field "batch": the key of a planned batch')
        options = None
        if action == "plan":
            unknown = sorted(set(fields) - set(FILTER_FIELDS) - set(plan.RUN_OPTIONS))
            if unknown:
                raise ReportError(
                    f"unknown field(s) in the state machine's input: {', '.join(unknown)}; "
                    f"expected {', '.join((*FILTER_FIELDS, *plan.RUN_OPTIONS))}"
                )
            defaults = event.get("defaults") or {}
            if not isinstance(defaults, dict):
                raise ReportError('event field "defaults" must be an object')
            options = plan.RunOptions.parse(fields, defaults)
        tolerated = event.get(plan.TOLERATED_FAILURE_PERCENTAGE)
        if action == "reduce" and tolerated is not None:
            tolerated = plan.parse_option(plan.TOLERATED_FAILURE_PERCENTAGE, tolerated)
        return cls(
            action=action,
            selection=_selection(settings, fields),
            measure=_measure(fields),
            run_id=run_id,
            items=tuple(i for i in items if isinstance(i, dict)),
            batch=batch,
            options=options,
            tolerated=tolerated if action == "reduce" else None,
        )

    def selection_fields(self) -> dict[str, Any]:
        """The filters as the batches and the reduce get them from a plan: dates
        made absolute (a run may cross midnight), lists as lists."""
        selection = self.selection
        fields: dict[str, Any] = {
            "function": list(selection.functions),
            "version": list(selection.versions),
            "since": selection.dates.since.isoformat() if selection.dates.since else None,
            "until": selection.dates.until.isoformat() if selection.dates.until else None,
            "revision": list(selection.revisions),
        }
        return {"measure": self.measure, **{k: v for k, v in fields.items() if v}}


def _measure(fields: dict[str, Any]) -> str:
    measure = str(fields.get("measure") or "auto")
    if measure not in MEASURES:
        raise ReportError(
            f"invalid {MEASURE_FIELD} {measure!r}: expected one of {', '.join(MEASURES)}"
        )
    return measure


def _names(fields: dict[str, Any], name: str) -> tuple[str, ...]:
    """A filter field: a comma list, or a list of names (numbers taken as written)."""
    value = fields.get(name)
    values = value if isinstance(value, list) else [] if value is None else [value]
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
        raise ReportError(f'event field "{name}" must be a string or a list of strings')
    return parse_list([str(v) for v in values])  # a number is a function version, e.g. 7


def _selection(settings: Settings, fields: dict[str, Any]) -> Selection:
    if settings.bucket is None:
        raise ReportError(f"{env.S3_BUCKET} is not set")
    return Selection(
        bucket=settings.bucket,
        prefix=settings.prefix,
        functions=_names(fields, "function"),
        versions=_names(fields, "version"),
        dates=DateRange.parse(
            fields.get("since"), fields.get("until"), names=('event field "since"', '"until"')
        ),
        revisions=_names(fields, "revision"),
        expected_owner=settings.expected_owner,
    )


def _options(request: CombineRequest, settings: Settings, work: Path) -> ReportOptions:
    """The report pipeline's options in Lambda: the source is this function's own."""
    return ReportOptions(
        selection=request.selection,
        endpoint_url=settings.endpoint_url,
        region=settings.region,
        cache_dir=Path(CACHE_DIR),
        output_dir=work,
        formats=REPORT_FORMATS,
        task_roots=(DEFAULT_TASK_ROOT,),
        source_root=Path(os.environ.get(env.TASK_ROOT) or os.getcwd()),
        ignore_missing_source=True,
        measure=request.measure,
        measure_name=MEASURE_FIELD,
        jobs=0,  # Lambda has no /dev/shm for process pools; the merge is cheap anyway
        terminal_table=False,
    )


def _publish(
    client: Any,
    settings: Settings,
    request: CombineRequest,
    options: ReportOptions,
    result: ReportResult,
    **overrides: Any,
) -> dict[str, Any]:
    """The reports (when the source is here), then the data, reports and summary to S3."""
    try:
        report(options, result)
    except ReportError as exc:  # the merged data still goes out
        result.warnings.append(str(exc))
    summary = {**result.summary(request.selection), **overrides}
    selection = request.selection
    scope = layout.combined_scope(
        selection.prefix,
        "+".join(selection.functions) or "all",
        "+".join(selection.versions) or "all",
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    summary["generated_at"] = now
    body = (json.dumps(summary, indent=2) + "\n").encode()
    files = {"data": result.data_file, **(result.outputs.files if result.outputs else {})}
    if (evidence := options.output_dir / EVIDENCE_NAME).is_file():
        files["evidence"] = evidence  # per-line evidence, for unused/diff/history --data
    written = {}
    for name, path in files.items():
        written[name] = f"{scope}latest/{path.name}"
        client.put_object(**s3.put_arguments(settings, written[name], path.read_bytes()))
    written["summary"] = f"{scope}latest/summary.json"
    client.put_object(**s3.put_arguments(settings, written["summary"], body))
    client.put_object(**s3.put_arguments(settings, f"{scope}history/{now}.json", body))
    summary["s3"] = {name: f"s3://{settings.bucket}/{key}" for name, key in written.items()}
    labels = summary.get("labels") or []
    if len(labels) > RETURNED_LABELS:  # summary.json in S3 has them all
        summary["labels"] = labels[:RETURNED_LABELS]
        summary["labels_left_out"] = len(labels) - RETURNED_LABELS
    return summary


def combine_all(request: CombineRequest, settings: Settings, work: Path) -> dict[str, Any]:
    """Everything the filters match, in this invocation."""
    client = make_client(settings.endpoint_url, settings.region)
    options = _options(request, settings, work)
    return _publish(client, settings, request, options, collect(options, client))


def combine_plan(request: CombineRequest, settings: Settings, work: Path) -> dict[str, Any]:
    """The state machine's first step: the batches and where their manifest is."""
    assert request.options is not None  # parse() gives a plan its options
    client = make_client(settings.endpoint_url, settings.region)
    selection = request.selection
    batches = plan.write_plan(
        client, settings, selection, request.run_id, request.options.batch_size
    )
    return {
        "run_id": request.run_id,
        "bucket": selection.bucket,
        "manifest": layout.manifest_key(selection.prefix, request.run_id),
        "batches": len(batches),
        "environments": sum(b.environments for b in batches),
        "selection": request.selection_fields(),
        **request.options.as_dict(),
    }


def combine_batch(request: CombineRequest, settings: Settings, work: Path) -> dict[str, Any]:
    """One child of the state machine's map: the planned batch into its shard."""
    client = make_client(settings.endpoint_url, settings.region)
    items = plan.read_batch(client, request.selection, request.run_id, request.batch)
    objects = matching_objects(request.selection, items)
    return _merge_shard(request, settings, work, objects, plan.batch_name(request.batch))


def combine_shard(request: CombineRequest, settings: Settings, work: Path) -> dict[str, Any]:
    """One batch of a distributed map's own batching (``ItemBatcher``)."""
    shard_id = hashlib.sha256(
        "\n".join(str(i.get("Key") or i.get("key")) for i in request.items).encode()
    ).hexdigest()[:16]
    objects = matching_objects(request.selection, request.items, probe_last=True)
    return _merge_shard(request, settings, work, objects, shard_id)


def _merge_shard(
    request: CombineRequest,
    settings: Settings,
    work: Path,
    objects: list[DataObject],
    shard_id: str,
) -> dict[str, Any]:
    """Merge a batch's environments into one shard data file.

    Paths stay as recorded (the reduce step maps them), and a batch that matches
    nothing gives an empty shard: filters may leave whole batches out.
    """
    client = make_client(settings.endpoint_url, settings.region)
    options = dataclasses.replace(
        _options(request, settings, work),
        remap=False,
        require_data=False,
        cache_dir=work / "cache",  # read once per run: /tmp need not keep them
    )
    result = collect(options, client, objects=objects)
    key = layout.shard_key(request.selection.prefix, request.run_id, shard_id)
    metadata = {
        layout.SHARD_ENVIRONMENTS: str(result.partial.merged),
        layout.INVOCATIONS: str(result.invocations),
        layout.SHARD_SKIPPED: str(len(result.skipped)),
    }
    client.put_object(**s3.put_arguments(settings, key, result.data_file.read_bytes(), metadata))
    return {
        "shard": f"s3://{settings.bucket}/{key}",
        "environments": result.partial.merged,
        "invocations": result.invocations,
        "skipped": [{"key": k, "reason": r} for k, r in result.skipped],
        "warnings": result.warnings,
    }


def combine_shards(request: CombineRequest, settings: Settings, work: Path) -> dict[str, Any]:
    """The reduce step: merge the shard files of one run into the final outputs."""
    client = make_client(settings.endpoint_url, settings.region)
    shards = list_shards(client, request.selection, request.run_id)
    # The batches applied the revision filter; shards carry no revision of their own.
    unfiltered = dataclasses.replace(request.selection, revisions=())
    options = dataclasses.replace(
        _options(request, settings, work), selection=unfiltered, cache_dir=work / "cache"
    )
    result = collect(options, client, objects=shards)
    metadata = [o.metadata or {} for o in result.objects]
    batches = _batch_report(client, request, shards)
    if batches and batches["failed"]:
        _check_tolerated(request, batches)
        result.warnings.append(
            f"{len(batches['failed'])} of {batches['planned']} batches failed and are not "
            f"in the merge ({batches['environments_not_merged']} environments): "
            + ", ".join(batches["failed"])
        )
    return _publish(
        client,
        settings,
        request,
        options,
        result,
        environments={
            "merged": sum(layout.metadata_int(m, layout.SHARD_ENVIRONMENTS) or 0 for m in metadata),
            "skipped": sum(layout.metadata_int(m, layout.SHARD_SKIPPED) or 0 for m in metadata)
            + len(result.skipped),
            "invocations": result.invocations,
            "shards": len(shards),
            **({"not_merged": batches["environments_not_merged"]} if batches else {}),
        },
        run_id=request.run_id,
        **({"batches": batches, "complete": not batches["failed"]} if batches else {}),
    )


def _check_tolerated(request: CombineRequest, batches: dict[str, Any]) -> None:
    """Refuse a run that lost more batches than it tolerates.

    The map fails first on AWS (its ToleratedFailurePercentage); this keeps the
    promise where nothing enforced it (an interpreter that ignores it, a child
    that ended without its shard) rather than publish a partial merge."""
    if request.tolerated is None:
        return
    failed = len(batches["failed"])
    share = 100 * failed / batches["planned"]
    if share > request.tolerated:
        raise ReportError(
            f"{failed} of {batches['planned']} batches failed ({share:.3g}%), more than the "
            f"{request.tolerated:g}% tolerated: {', '.join(batches['failed'])}; "
            "nothing was published"
        )


def _batch_report(client: Any, request: CombineRequest, shards: list[Any]) -> dict[str, Any] | None:
    """The planned batches against the shards found: which failed (a map that
    tolerates failures goes on without them). None for a run without a plan."""
    planned = plan.read_manifest(client, request.selection, request.run_id)
    if planned is None:
        return None
    names = {shard.environment_id.removesuffix(layout.DATA_SUFFIX) for shard in shards}
    failed = [batch for batch in planned if batch.name not in names]
    return {
        "planned": len(planned),
        "merged": len(planned) - len(failed),
        "failed": [batch.name for batch in failed],
        "environments_not_merged": sum(batch.environments for batch in failed),
    }


COMBINE = {
    "all": combine_all,
    "shard": combine_shard,
    "plan": combine_plan,
    "batch": combine_batch,
    "reduce": combine_shards,
}


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Entry point: a full merge, a plan, one distributed-map batch, or the reduce."""
    settings = load_settings()
    # A ReportError propagates: Lambda reports it as errorType "ReportError" with
    # its one-sentence message, which Step Functions' Retry/Catch can match.
    request = CombineRequest.parse(event, settings)
    os.makedirs(WORK_DIR, exist_ok=True)
    # Every file of an invocation lives in one directory that goes with it: a warm
    # combiner must not fill /tmp.
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as work:
        return COMBINE[request.action](request, settings, Path(work))
