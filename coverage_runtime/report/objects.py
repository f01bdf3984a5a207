"""Find the environment data objects under an S3 prefix, and filter them.

The runtime writes one object per execution environment at
``<prefix><function>/<version>/<YYYY-MM-DD>/<environment id>.coverage``
(see `coverage_runtime.shim.uploader.object_key`), so the function, version and
init date filters work on the key alone, and a listing narrowed to
``<prefix><function>/<version>/`` reads only what is asked for.  The code
revision lives in the object metadata and is filtered once that is known.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from coverage_runtime import layout, s3
from coverage_runtime.errors import CoverageError
from coverage_runtime.layout import DEFAULT_PREFIX, ObjectKey

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RELATIVE_RE = re.compile(r"^(\d+)d$")


class ReportError(CoverageError):
    """Bad input or an S3 problem that stops the report: one clear sentence for the user."""


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
        """The object of a listing entry: ``ListObjectsV2``'s ``Contents`` item, or
        Step Functions' ``ItemReader`` item (which spells it ``Etag``)."""
        return cls(
            key=str(item["Key"]),
            etag=str(item.get("ETag") or item.get("Etag") or "").strip('"'),
            size=int(item.get("Size") or 0),
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
    def revision(self) -> str | None:
        return (self.metadata or {}).get(layout.CODE_REVISION)


def parse_key(prefix: str, key: str) -> ObjectKey | None:
    """The parts of an environment's data object key (`layout.ObjectKey`), else None."""
    return ObjectKey.parse(prefix, key)


def _parse_day(value: str, option: str, today: date) -> date:
    text = value.strip().lower()
    if text == "today":
        return today
    relative = _RELATIVE_RE.match(text)
    if relative:
        return today - timedelta(days=int(relative.group(1)))
    if _DATE_RE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ReportError(
        f"invalid date for {option}: {value!r}; expected YYYY-MM-DD, 'today' or Nd (N days ago)"
    )


@dataclass(frozen=True)
class DateRange:
    """Inclusive range of environment init dates (UTC); either end may be open."""

    since: date | None = None
    until: date | None = None

    @classmethod
    def parse(
        cls,
        since: str | None,
        until: str | None,
        today: date | None = None,
        names: tuple[str, str] = ("--since", "--until"),
    ) -> DateRange:
        """``names``: what the user called the two ends (CLI options, event fields)."""
        today = today or datetime.now(UTC).date()
        start = _parse_day(str(since), names[0], today) if since else None
        end = _parse_day(str(until), names[1], today) if until else None
        if start and end and start > end:
            raise ReportError(
                f"invalid date range: {names[0]} {start.isoformat()} is after "
                f"{names[1]} {end.isoformat()}"
            )
        return cls(start, end)

    def __contains__(self, day: str) -> bool:
        value = date.fromisoformat(day)
        return (self.since is None or value >= self.since) and (
            self.until is None or value <= self.until
        )

    def describe(self) -> str:
        if self.since is None and self.until is None:
            return "any date"
        start = self.since.isoformat() if self.since else "..."
        end = self.until.isoformat() if self.until else "..."
        return f"{start} to {end}"


@dataclass(frozen=True)
class Selection:
    """What to report on: where the objects are and which of them."""

    bucket: str
    prefix: str = DEFAULT_PREFIX
    functions: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    dates: DateRange = field(default_factory=DateRange)
    revisions: tuple[str, ...] = ()
    expected_owner: str | None = None

    def list_prefixes(self) -> list[str]:
        """The narrowest S3 prefixes that hold every object the filters can match."""
        if not self.functions:
            return [self.prefix]
        if not self.versions:
            return [f"{self.prefix}{name}/" for name in self.functions]
        return [f"{self.prefix}{name}/{ver}/" for name in self.functions for ver in self.versions]

    def matches_key(self, parsed: ObjectKey) -> bool:
        return (
            (not self.functions or parsed.function in self.functions)
            and (not self.versions or parsed.version in self.versions)
            and parsed.date in self.dates
        )

    def matches_metadata(self, metadata: Mapping[str, str] | None) -> bool:
        if not self.revisions:
            return True
        return (metadata or {}).get(layout.CODE_REVISION) in self.revisions

    def describe(self) -> str:
        parts = [f"s3://{self.bucket}/{self.prefix}"]
        if self.functions:
            parts.append("function " + ",".join(self.functions))
        if self.versions:
            parts.append("version " + ",".join(self.versions))
        if self.dates.since or self.dates.until:
            parts.append("dates " + self.dates.describe())
        if self.revisions:
            parts.append("revision " + ",".join(self.revisions))
        return ", ".join(parts)


def make_client(
    endpoint_url: str | None = None, region: str | None = None, max_connections: int = 16
) -> Any:
    """An S3 client for listing and downloading, sized for the download pool."""
    return s3.make_client(
        purpose="report",
        region=region,
        endpoint_url=endpoint_url,
        attempts=6,
        connect_timeout=5,
        read_timeout=30,
        max_connections=max_connections,
    )


def explain_s3_error(exc: BaseException, bucket: str, what: str) -> ReportError:
    """Turn a boto3/botocore exception into one sentence a user can act on."""
    found = s3.problem(exc)
    if found.kind == "no_bucket" and (found.code == "NoSuchBucket" or "bucket" in what):
        message = f"bucket {bucket!r} does not exist (while {what})"
    elif found.kind == "access_denied":
        message = (
            f"access denied to s3://{bucket} while {what}: the credentials in use need "
            "s3:ListBucket on the bucket and s3:GetObject on the prefix "
            f"({found.code}: {found.message})"
        )
    elif found.kind == "invalid_bucket":
        message = f"invalid bucket name {bucket!r}"
    elif found.kind == "wrong_region":
        message = (
            f"bucket {bucket!r} is in another region than the client's: pass --region "
            f"(or set AWS_REGION) to the bucket's region ({found.code})"
        )
    elif found.kind in ("no_bucket", "refused"):
        message = f"S3 refused {what} in bucket {bucket!r}: {found.code}: {found.message or None}"
    elif found.kind == "no_credentials":
        message = (
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    elif found.kind == "invalid_request":
        message = f"invalid S3 request while {what}: {found.message}"
    elif found.kind == "unreachable" and type(exc).__name__ == "EndpointConnectionError":
        message = f"cannot reach S3 while {what}: {exc}"
    else:
        message = f"S3 error while {what}: {type(exc).__name__}: {exc}"
    return ReportError(message)


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


def _data_object(selection: Selection, item: Mapping[str, Any]) -> DataObject | None:
    """The listed item as a data object, or None when the key filters drop it."""
    parsed = parse_key(selection.prefix, str(item.get("Key") or ""))
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


@dataclass
class ListingSummary:
    """Count, size and invocation totals of a set of objects."""

    objects: int = 0
    bytes: int = 0
    invocations: int = 0
    without_invocations: int = 0
    by_scope: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def of(cls, objects: Iterable[DataObject]) -> ListingSummary:
        summary = cls()
        for obj in objects:
            summary.objects += 1
            summary.bytes += obj.size
            if obj.invocations is None:
                summary.without_invocations += 1
            else:
                summary.invocations += obj.invocations
            scope = (obj.function, obj.version)
            summary.by_scope[scope] = summary.by_scope.get(scope, 0) + 1
        return summary


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - the loop always returns


def require_some(objects: Sequence[DataObject], selection: Selection) -> None:
    if not objects:
        raise ReportError(f"no coverage data objects matched {selection.describe()}")
