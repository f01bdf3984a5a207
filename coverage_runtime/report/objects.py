"""The environments' data objects in S3: list them, page by page, and filter them by key.

The shim writes one base object per execution environment, at the key
`coverage_runtime.layout.ObjectKey` formats, and beside it, at times, a delta
object (what the environment measured since the base).  The listing folds
them here into one `DataObject` per environment (the delta as its `delta`),
so everything downstream counts environments, not objects.  ListObjectsV2
returns keys in order and a delta's key extends its base's, so a base is
held back only until the listing passes the key its delta would have (across
a page break too); a delta whose base is not listed is ignored.  The
combiner's shard files of a distributed-map run are listed here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coverage_runtime import layout
from coverage_runtime.errors import ReportError
from coverage_runtime.layout import ObjectKey
from coverage_runtime.report.client import explain_s3_error
from coverage_runtime.report.selection import Selection


@dataclass(frozen=True)
class DataObject:
    """One environment's data object, as listed."""

    key: str
    etag: str
    size: int
    last_modified: datetime | None
    function: str
    version: str
    date: str
    environment_id: str
    metadata: Mapping[str, str] | None = None
    # The environment's delta object, as listed (its own key, ETag, size and, once
    # read, metadata); this object's metadata is then the environment's, folded.
    delta: DataObject | None = None

    @classmethod
    def listed(cls, item: Mapping[str, Any], where: ObjectKey) -> DataObject:
        """The object of a listing entry: ``ListObjectsV2``'s ``Contents`` item, or an
        item of a Step Functions ``ItemReader`` (which spells it ``Etag``, or ``key`` and
        ``size`` when the items come from a JSON file of the user's)."""
        return cls(
            key=_key_of(item),
            etag=str(item.get("ETag") or item.get("Etag") or item.get("etag") or "").strip('"'),
            size=int(item.get("Size") or item.get("size") or 0),
            last_modified=item.get("LastModified")
            if isinstance(item.get("LastModified"), datetime)
            else None,
            function=where.function,
            version=where.version,
            date=where.date,
            environment_id=where.environment_id,
        )

    @property
    def where(self) -> ObjectKey:
        return ObjectKey(self.function, self.version, self.date, self.environment_id)

    @property
    def total_size(self) -> int:
        """Bytes of the environment's objects: its base and its delta."""
        return self.size + (self.delta.size if self.delta is not None else 0)

    def delta_key(self, prefix: str) -> str:
        return self.where.format_delta(prefix)

    @property
    def invocations(self) -> int | None:
        return layout.metadata_int(self.metadata, layout.INVOCATIONS)

    @property
    def partial(self) -> bool:
        """Uploaded by a shutdown that could replay only some files in time: each file
        it holds is complete, others are missing (their loss record says how many)."""
        return (self.metadata or {}).get(layout.PARTIAL) == "true"

    @property
    def revision(self) -> str | None:
        return (self.metadata or {}).get(layout.CODE_REVISION)


LIST_PAGE_SIZE = 1000  # S3's maximum keys per ListObjectsV2 response
FIRST_PAGE_SIZE = 100  # a short first page, so downloads start sooner


def list_pages(client: Any, selection: Selection) -> Iterator[tuple[list[DataObject], bool]]:
    """The data objects that the key filters match, one listing page at a time.

    Each page comes with whether more may follow, so a caller can start on
    the first page of a long listing instead of waiting for the last. The
    very first page is short: its objects download while the next ones are
    listed.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    extra: dict[str, Any] = {}
    if selection.expected_owner:
        extra["ExpectedBucketOwner"] = selection.expected_owner
    prefixes = list(selection.list_prefixes())
    page_size = min(FIRST_PAGE_SIZE, LIST_PAGE_SIZE)
    for number, list_prefix in enumerate(prefixes, 1):
        token: dict[str, str] = {}
        waiting: dict[str, DataObject] = {}  # delta key -> its base, until passed
        try:
            while True:
                page = client.list_objects_v2(
                    Bucket=selection.bucket,
                    Prefix=list_prefix,
                    MaxKeys=page_size,
                    **token,
                    **extra,
                )
                page_size = LIST_PAGE_SIZE
                truncated = bool(page.get("IsTruncated")) and bool(
                    page.get("NextContinuationToken")
                )
                found = _fold(selection, page.get("Contents", ()), waiting)
                if not truncated:
                    found.extend(waiting.values())  # no delta follows in this listing
                    waiting.clear()
                yield found, truncated or number < len(prefixes)
                if not truncated:
                    break
                token = {"ContinuationToken": page["NextContinuationToken"]}
        except (ClientError, BotoCoreError) as exc:
            raise explain_s3_error(
                exc, selection.bucket, f"listing s3://{selection.bucket}/{list_prefix}"
            ) from exc


def _key_of(item: Mapping[str, Any]) -> str:
    return str(item.get("Key") or item.get("key") or "")


def _data_object(selection: Selection, item: Mapping[str, Any]) -> DataObject | None:
    """The listed item as a data object, or None when the key filters drop it."""
    parsed = ObjectKey.parse(selection.prefix, _key_of(item))
    if parsed is None or not selection.matches_key(parsed):
        return None
    obj = DataObject.listed(item, parsed)
    delta = item.get("Delta")  # a plan's batch entry carries its delta so
    if isinstance(delta, Mapping) and _key_of(delta) == obj.delta_key(selection.prefix):
        return dataclasses.replace(obj, delta=DataObject.listed(delta, parsed))
    return obj


def _fold(
    selection: Selection, items: Iterable[Mapping[str, Any]], waiting: dict[str, DataObject]
) -> list[DataObject]:
    """The environments that listing entries ``items`` (in key order) complete.

    A matching base waits in ``waiting`` (by its delta's key) until an entry
    at or past that key shows whether its delta is listed; the caller carries
    ``waiting`` to the next page and releases what is left at the listing's end.
    """
    done: list[DataObject] = []
    for item in items:
        key = _key_of(item)
        while waiting and (first := next(iter(waiting))) < key:
            done.append(waiting.pop(first))  # passed: it has no delta here
        base = waiting.pop(key, None)
        if base is not None:
            parsed = ObjectKey.parse_delta(selection.prefix, key)
            assert parsed is not None  # its own delta key
            done.append(dataclasses.replace(base, delta=DataObject.listed(item, parsed)))
            continue
        obj = _data_object(selection, item)
        if obj is not None:
            waiting[obj.delta_key(selection.prefix)] = obj
    return done


def matching_objects(
    selection: Selection, items: Iterable[Mapping[str, Any]], *, probe_last: bool = False
) -> list[DataObject]:
    """The environments among listing entries given by someone else (a distributed
    map's batch) that the key filters match.

    An entry may carry its delta (``"Delta"``: the plan writes it so), or the
    delta may be an entry of its own (a map's own batching of a listing): it is
    folded as in a listing.  There, a base and its delta may fall into two
    batches: ``probe_last`` reads the delta of the batch's last base whatever
    the entries say (a GET of its key, none if absent), and a delta whose base
    is in another batch is left to that batch.
    """
    waiting: dict[str, DataObject] = {}
    found = _fold(selection, sorted(items, key=_key_of), waiting)
    last = next(reversed(waiting), None)
    if probe_last and last is not None and waiting[last].delta is None:
        waiting[last] = dataclasses.replace(
            waiting[last], delta=unlisted_delta(selection.prefix, waiting[last])
        )
    return found + list(waiting.values())


def unlisted_delta(prefix: str, obj: DataObject) -> DataObject:
    """``obj``'s delta, not listed: no ETag, so no cached copy matches and it is read
    (a missing delta, as one deleted since listed, is no delta)."""
    return DataObject.listed({"Key": obj.delta_key(prefix)}, obj.where)


def list_shards(client: Any, selection: Selection, run_id: str) -> list[DataObject]:
    """The shard files a distributed map's batches wrote for ``run_id``."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = layout.runs_prefix(selection.prefix, run_id)
    extra = {"ExpectedBucketOwner": selection.expected_owner} if selection.expected_owner else {}
    shards = []
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=selection.bucket, Prefix=prefix, **extra):
            for item in page.get("Contents", ()):
                if not layout.is_shard_key(selection.prefix, run_id, str(item["Key"])):
                    continue  # the run's plan and batches
                name = str(item["Key"]).rsplit("/", 1)[-1]
                shards.append(DataObject.listed(item, ObjectKey("_shard", run_id, "", name)))
    except (ClientError, BotoCoreError) as exc:
        where = f"listing s3://{selection.bucket}/{prefix}"
        raise explain_s3_error(exc, selection.bucket, where) from exc
    if not shards:
        raise ReportError(f"no shard files under s3://{selection.bucket}/{prefix}")
    return shards


def list_objects(client: Any, selection: Selection) -> Iterator[DataObject]:
    """Every environment under the selection's prefixes that its key filters match
    (its delta folded in)."""
    for page, _ in list_pages(client, selection):
        yield from page


def with_metadata(obj: DataObject, metadata: Mapping[str, str] | None) -> DataObject:
    """``obj`` with its user metadata, keys lower-cased.

    S3 stores metadata keys in lower case, but S3-compatible servers (MinIO,
    waitress-served moto) send ``X-Amz-Meta-Invocations``, which boto3 passes
    on as ``Invocations``. Header names are case-insensitive, so are these.
    """
    return dataclasses.replace(
        obj, metadata={name.lower(): value for name, value in (metadata or {}).items()}
    )


def assembled(
    obj: DataObject, base_metadata: Mapping[str, str] | None, delta: DataObject | None
) -> DataObject:
    """The environment ``obj`` as read: with ``delta`` (read, with its metadata) when
    it applies to the base (`layout.delta_applies`), else without one; its metadata
    folded from both, or the base's alone when the base is the newer
    (`layout.delta_newer`)."""
    base = with_metadata(obj, base_metadata)
    if delta is None or not layout.delta_applies(base.metadata, delta.metadata):
        return dataclasses.replace(base, delta=None)
    metadata = base.metadata or {}
    if layout.delta_newer(metadata, delta.metadata):
        metadata = layout.folded_metadata(metadata, delta.metadata or {})
    return dataclasses.replace(base, metadata=metadata, delta=delta)


def require_some(objects: Sequence[DataObject], selection: Selection) -> None:
    if not objects:
        raise ReportError(f"no coverage data objects matched {selection.describe()}")
