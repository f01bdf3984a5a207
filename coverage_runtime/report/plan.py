"""The merge state machine's plan: a selection split into batches, written to S3.

Step Functions' distributed map would batch an S3 listing itself
(``ItemReader`` over ``listObjectsV2`` plus ``ItemBatcher``), but the listing
then knows no filters (date, revision), every batch travels in the child's
256 KiB input, and the one interpreter that runs the state machine locally
(moto's) supports neither ``ItemBatcher`` nor a listing longer than one page.
So the first state lists and filters the selection here, writes each batch to
S3 and a manifest naming them; the map reads the manifest (a JSON
``ItemReader``), each child merges one batch into one shard named after it,
and the reduce step knows from the manifest which batches left no shard.

    combined/_runs/<run id>/batches.json           [{"batch": <key>, "name", "environments"}]
    combined/_runs/<run id>/batches/<name>.json    [{"Key", "Etag", "Size"[, "Delta"]}, ...]

An environment is one entry, its delta object (if listed) inside it as
``"Delta": {"Key", "Etag", "Size"}``: a batch merges whole environments, and
counts them once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from coverage_runtime import layout, s3
from coverage_runtime.errors import ReportError
from coverage_runtime.report.client import explain_s3_error
from coverage_runtime.report.objects import list_objects
from coverage_runtime.report.selection import Selection
from coverage_runtime.settings import Settings

# name -> (default, lowest, highest, type): the run's knobs, from the state
# machine's definition (template parameters) or the execution's input.
BATCH_SIZE = "batch_size"
MAX_CONCURRENCY = "max_concurrency"
TOLERATED_FAILURE_PERCENTAGE = "tolerated_failure_percentage"
RUN_OPTIONS: dict[str, tuple[float, float, float, type]] = {
    # 1,000 environments merge in seconds (docs/scaling.md): a retry repeats little.
    BATCH_SIZE: (1000, 1, 100_000, int),
    # A distributed map runs at most 10,000 children at once.
    MAX_CONCURRENCY: (100, 1, 10_000, int),
    TOLERATED_FAILURE_PERCENTAGE: (0, 0, 100, float),
}


@dataclass(frozen=True)
class RunOptions:
    """How a run is cut and how much of it may fail."""

    batch_size: int
    max_concurrency: int
    tolerated_failure_percentage: float

    @classmethod
    def parse(cls, fields: Mapping[str, Any], defaults: Mapping[str, Any]) -> RunOptions:
        """``fields`` (the execution's input) override ``defaults`` (the definition's)."""
        values: dict[str, Any] = {}
        for name, (default, *_) in RUN_OPTIONS.items():
            where = "event field" if name in fields else "state machine default"
            values[name] = parse_option(name, fields.get(name, defaults.get(name, default)), where)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {
            BATCH_SIZE: self.batch_size,
            MAX_CONCURRENCY: self.max_concurrency,
            TOLERATED_FAILURE_PERCENTAGE: self.tolerated_failure_percentage,
        }


def parse_option(name: str, raw: Any, where: str = "event field") -> Any:
    """One of `RUN_OPTIONS`, from a number or its text (a template parameter)."""
    _, low, high, kind = RUN_OPTIONS[name]
    try:
        if isinstance(raw, bool) or raw is None or raw == "":
            raise ValueError
        number = float(raw)
        if kind is int and not number.is_integer():
            raise ValueError
        value = kind(number)
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        raise ReportError(
            f"invalid {where} {name!r}: {raw!r}; expected {what} from {low:g} to {high:g}"
        )
    return value


@dataclass(frozen=True)
class Batch:
    """One batch of a run, as the manifest names it (the map's item)."""

    name: str
    key: str
    environments: int

    def as_item(self) -> dict[str, Any]:
        return {"batch": self.key, "name": self.name, "environments": self.environments}


def _batches(selection: Selection, client: Any, size: int) -> Iterator[list[dict[str, Any]]]:
    """The selection's environments in listing order, ``size`` at a time."""
    pending: list[dict[str, Any]] = []
    for obj in list_objects(client, selection):
        entry: dict[str, Any] = {"Key": obj.key, "Etag": obj.etag, "Size": obj.size}
        if obj.delta is not None:
            delta = obj.delta
            entry["Delta"] = {"Key": delta.key, "Etag": delta.etag, "Size": delta.size}
        pending.append(entry)
        if len(pending) == size:
            yield pending
            pending = []
    if pending:
        yield pending


def write_plan(
    client: Any, settings: Settings, selection: Selection, run_id: str, batch_size: int
) -> list[Batch]:
    """List and filter the selection, write its batches and then the manifest.

    A selection that matches nothing is an error here, before the map starts:
    an empty run would end in a reduce with nothing to merge.
    """
    batches: list[Batch] = []
    for number, items in enumerate(_batches(selection, client, batch_size)):
        name = f"{number:06d}"
        key = layout.batch_key(selection.prefix, run_id, name)
        _put(client, settings, key, items)
        batches.append(Batch(name, key, len(items)))
    if not batches:
        raise ReportError(f"no coverage data objects matched {selection.describe()}")
    _put(
        client,
        settings,
        layout.manifest_key(selection.prefix, run_id),
        [b.as_item() for b in batches],
    )
    return batches


def _put(client: Any, settings: Settings, key: str, document: Any) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    body = json.dumps(document, separators=(",", ":")).encode()
    try:
        client.put_object(**s3.put_arguments(settings, key, body))
    except (ClientError, BotoCoreError) as exc:
        where = f"writing s3://{settings.bucket}/{key}"
        raise explain_s3_error(exc, str(settings.bucket), where) from exc


def _get(client: Any, selection: Selection, key: str) -> Any | None:
    """The JSON document at ``key``; None when there is none."""
    from botocore.exceptions import BotoCoreError, ClientError

    extra = {"ExpectedBucketOwner": selection.expected_owner} if selection.expected_owner else {}
    try:
        body = client.get_object(Bucket=selection.bucket, Key=key, **extra)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        if isinstance(exc, ClientError) and s3.problem(exc).code in ("NoSuchKey", "404"):
            return None
        where = f"reading s3://{selection.bucket}/{key}"
        raise explain_s3_error(exc, selection.bucket, where) from exc
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ReportError(f"s3://{selection.bucket}/{key} is not JSON: {exc}") from None


def read_batch(client: Any, selection: Selection, run_id: str, key: str) -> list[dict[str, Any]]:
    """The listing entries of one batch of ``run_id`` (a map child's event names it)."""
    batches = layout.batch_key(selection.prefix, run_id, "")[: -len(".json")]
    name = key.removeprefix(batches).removesuffix(".json")
    if not key.startswith(batches) or not name or "/" in name:
        raise ReportError(f'event field "batch" {key!r} is not a batch of run {run_id!r}')
    items = _get(client, selection, key)
    if items is None:
        raise ReportError(f"batch s3://{selection.bucket}/{key} does not exist")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ReportError(f"batch s3://{selection.bucket}/{key} is not a list of objects")
    return items


def batch_name(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def read_manifest(client: Any, selection: Selection, run_id: str) -> list[Batch] | None:
    """The batches planned for ``run_id``; None for a run that had no plan (a map
    that batched a listing itself)."""
    key = layout.manifest_key(selection.prefix, run_id)
    items = _get(client, selection, key)
    if items is None:
        return None
    try:
        return [Batch(str(i["name"]), str(i["batch"]), int(i["environments"])) for i in items]
    except (TypeError, KeyError, ValueError):
        raise ReportError(f"s3://{selection.bucket}/{key} is not a plan of batches") from None
