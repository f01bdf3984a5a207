"""The environments' data objects in S3: list them, page by page, and filter them by key.

The shim writes one object per execution environment, at the key
`coverage_runtime.layout.ObjectKey` formats; the combiner's shard files of a
distributed-map run are listed here too.
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
                found = [
                    obj
                    for item in page.get("Contents", ())
                    if (obj := _data_object(selection, item)) is not None
                ]
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
    return DataObject.listed(item, parsed)


def matching_objects(selection: Selection, items: Iterable[Mapping[str, Any]]) -> list[DataObject]:
    """The data objects among listing entries given by someone else (a distributed
    map's batch) that the key filters match."""
    return [obj for item in items if (obj := _data_object(selection, item)) is not None]


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
    """Every data object under the selection's prefixes that its key filters match."""
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


def require_some(objects: Sequence[DataObject], selection: Selection) -> None:
    if not objects:
        raise ReportError(f"no coverage data objects matched {selection.describe()}")
