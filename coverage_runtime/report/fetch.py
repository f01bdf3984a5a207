"""Download data objects in parallel, through the local cache, with a progress bar.

`fetch` yields each environment's bytes as soon as they are ready (from the
cache, or downloads in completion order), so the caller can merge while the
rest is still downloading.  A bounded thread pool does the GETs; the calling
thread keeps the cache (`report_cache`) up to date, one entry per object.
An environment that cannot be downloaded is reported with its key and the
reason, and the others carry on.

An environment with a delta object is read delta first, then base: the shim
uploads a delta only once the base it extends is in S3, so a base read after
the delta holds at least what the delta extends, whatever the shim did in
between.  A base listed or cached before the shim replaced it is older than
the delta says (`layout.base_outdated`) and is read again.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import sys
from collections.abc import Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from coverage_runtime import layout
from coverage_runtime.report.cache import ObjectCache
from coverage_runtime.report.client import explain_s3_error
from coverage_runtime.report.objects import DataObject, assembled, with_metadata

DEFAULT_DOWNLOAD_WORKERS = 16
_WHOLE_RUN_ERRORS = (
    "AccessDenied",
    "AllAccessDisabled",
    "NoSuchBucket",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
)


@dataclass(frozen=True)
class Part:
    """One object of an environment as read: ``obj`` with the ETag, size and
    metadata of these bytes, and whether they came from S3 (to be cached)."""

    obj: DataObject
    body: bytes
    downloaded: bool


@dataclass(frozen=True)
class Fetched:
    """An environment's bytes: its base's (``body``) and its delta's when the delta
    applies to it (``delta_body``), or why there are none (``problem``).  ``obj``
    carries the environment's metadata (`objects.assembled`); ``parts``, every
    object read, for the cache and the counts."""

    obj: DataObject
    body: bytes | None
    problem: str | None = None
    delta_body: bytes | None = None
    parts: tuple[Part, ...] = ()


@dataclass
class FetchStats:
    downloaded: int = 0
    downloaded_bytes: int = 0
    cached: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


class Progress:
    """tqdm when it is installed and wanted, else silent."""

    def __init__(self, total: int | None, enabled: bool, description: str) -> None:
        self._bar: Any = None
        if enabled and total != 0:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional: the report works without a bar
                return
            # No monitor thread: the bar updates often, and a thread would make the
            # HTML worker's fork unsafe.
            tqdm.monitor_interval = 0
            self._bar = tqdm(
                total=total, unit="file", desc=description, file=sys.stderr, leave=False
            )

    def update(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def grow(self, total: int) -> None:
        """A listing still under way: the total is what has been listed so far."""
        if self._bar is not None and total > (self._bar.total or 0):
            self._bar.total = total  # shown with the next update, at tqdm's own pace

    def close(self) -> None:
        if self._bar is not None:
            self._bar.refresh()  # the final count and total, whatever the refresh pace
            self._bar.close()


class Boto3Getter:
    """GET through boto3: the reference path (retries, proxies, every S3 feature)."""

    def __init__(self, client: Any, bucket: str, owner: str | None) -> None:
        self.client, self.bucket = client, bucket
        self.extra = {"ExpectedBucketOwner": owner} if owner else {}

    def get(self, key: str) -> tuple[bytes, str, dict[str, str]]:
        response = self.client.get_object(Bucket=self.bucket, Key=key, **self.extra)
        body = response["Body"].read()
        return body, str(response.get("ETag", "")), dict(response.get("Metadata") or {})


class PresignedGetter:
    """GET through a presigned URL on a shared urllib3 pool.

    The request is signed by botocore with the same credentials (SigV4), but
    the GET itself skips botocore's per-request machinery: about 0.33 ms of
    client CPU per object instead of 1.07 ms (docs/scaling.md), which matters
    when thousands of small objects are fetched by threads sharing one
    interpreter lock.
    """

    def __init__(self, client: Any, bucket: str, workers: int) -> None:
        import urllib3
        from botocore.httpsession import get_cert_path

        self.client, self.bucket = client, bucket
        self.pool = urllib3.PoolManager(
            maxsize=max(1, workers),
            ca_certs=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True),
            retries=urllib3.Retry(
                total=4,
                backoff_factor=0.2,
                status_forcelist=(500, 502, 503, 504),
                allowed_methods=("GET",),
                raise_on_status=False,
            ),
            timeout=urllib3.Timeout(connect=5, read=30),
        )

    def get(self, key: str) -> tuple[bytes, str, dict[str, str]]:
        import urllib3
        from botocore.exceptions import ClientError, HTTPClientError

        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=900
        )
        try:
            response = self.pool.request("GET", url, preload_content=True)
        except urllib3.exceptions.HTTPError as exc:
            raise HTTPClientError(error=exc) from exc
        if response.status != 200:
            code, message = _s3_error(response.data)
            raise ClientError(
                {
                    "Error": {"Code": code or str(response.status), "Message": message},
                    "ResponseMetadata": {"HTTPStatusCode": response.status},
                },
                "GetObject",
            )
        metadata = {
            name[len("x-amz-meta-") :]: value
            for name, value in response.headers.items()
            if name.lower().startswith("x-amz-meta-")
        }
        return response.data, str(response.headers.get("ETag", "")), metadata


def _s3_error(body: bytes) -> tuple[str, str]:
    """(Code, Message) of an S3 XML error body, empty when there is none."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(body)  # noqa: S314 - a response of the S3 endpoint the user chose
    except ET.ParseError:
        return "", body[:200].decode(errors="replace")
    return root.findtext("Code") or "", root.findtext("Message") or ""


def make_getter(
    client: Any, bucket: str, owner: str | None, workers: int, downloader: str = "auto"
) -> Boto3Getter | PresignedGetter:
    """Presigned GETs unless a feature needs boto3 (bucket owner check, a proxy)."""
    proxied = any(
        os.environ.get(n) for n in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
    )
    if downloader == "boto3" or (downloader == "auto" and (owner or proxied)):
        return Boto3Getter(client, bucket, owner)
    return PresignedGetter(client, bucket, workers)


class _Unread(Exception):
    """One object could not be read; the message says why (the others carry on)."""


def _get(
    getter: Boto3Getter | PresignedGetter, obj: DataObject, unlisted: bool = False
) -> Part | None:
    """``obj`` read from S3; None when it is gone (deleted since it was listed).

    ``unlisted``: a key no listing showed (`objects.unlisted_delta`).  S3 answers a
    GET of a missing key with 403 AccessDenied when the caller may not list it
    (``s3:ListBucket``), so for such a key a refusal is absence too: the base's
    GET, next, still says whether the role can read there at all."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = getter.bucket
    try:
        body, etag, metadata = getter.get(obj.key)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "404") or (unlisted and (status == 403 or code == "AccessDenied")):
            return None
        if status == 403 or code in _WHOLE_RUN_ERRORS:
            # Credentials, permissions or region: every other object fails the same way.
            raise explain_s3_error(exc, bucket, f"downloading s3://{bucket}/{obj.key}") from exc
        raise _Unread(f"download failed: {code}: {error.get('Message', '')}") from exc
    except BotoCoreError as exc:
        raise _Unread(f"download failed: {exc}") from exc
    downloaded = dataclasses.replace(obj, etag=etag.strip('"') or obj.etag, size=len(body))
    return Part(with_metadata(downloaded, metadata), body, downloaded=True)


def _assemble(obj: DataObject, base: Part, delta: Part | None) -> Fetched:
    """The environment of ``base`` and ``delta`` (kept only if it applies to the base)."""
    read = dataclasses.replace(obj, etag=base.obj.etag, size=base.obj.size)
    environment = assembled(read, base.obj.metadata, delta.obj if delta is not None else None)
    return Fetched(
        environment,
        base.body,
        delta_body=delta.body if delta is not None and environment.delta is not None else None,
        parts=tuple(p for p in (delta, base) if p is not None),
    )


def _download(
    getter: Boto3Getter | PresignedGetter,
    obj: DataObject,
    base: Part | None = None,
    delta: Part | None = None,
) -> Fetched:
    """Read what the cache lacked of ``obj``'s environment (``base``, ``delta``: what
    it had): the delta first, then the base (see the module's docstring)."""
    read: list[Part] = []
    try:
        if obj.delta is not None and delta is None:
            try:
                delta = _get(getter, obj.delta, unlisted=not obj.delta.etag)  # None: none
            except _Unread as exc:
                raise _Unread(f"its delta {obj.delta.key}: {exc}") from exc
            read += [delta] if delta is not None else []
        if base is None or (
            delta is not None and layout.base_outdated(base.obj.metadata, delta.obj.metadata)
        ):
            base = _get(getter, obj)
            if base is None:
                return Fetched(obj, None, "deleted since it was listed", parts=tuple(read))
    except _Unread as exc:
        return Fetched(obj, None, str(exc), parts=tuple(read))
    return _assemble(obj, base, delta)


class _Downloads:
    """GETs on a thread pool; finished ones come back on one queue, in completion order.

    (``concurrent.futures.wait`` locks every pending future on each call; with
    a dozen threads finishing GETs, that lock traffic cost more system CPU
    than the downloads themselves.)
    """

    def __init__(self, getter: Boto3Getter | PresignedGetter, workers: int) -> None:
        self.getter = getter
        self.limit = 2 * max(1, workers)  # queued requests: enough to keep every thread busy
        self.in_flight = 0
        self._finished: queue.SimpleQueue[Future[Fetched]] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="s3-get")

    def submit(self, obj: DataObject, base: Part | None, delta: Part | None) -> None:
        future = self._pool.submit(_download, self.getter, obj, base, delta)
        future.add_done_callback(self._finished.put)
        self.in_flight += 1

    def wait_one(self) -> Fetched:
        """The next finished download, waiting for one."""
        future = self._finished.get()
        self.in_flight -= 1
        return future.result()

    def finished_now(self) -> Iterator[Fetched]:
        """The downloads that have finished already, without waiting."""
        while True:
            try:
                future = self._finished.get_nowait()
            except queue.Empty:
                return
            self.in_flight -= 1
            yield future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def fetch(
    client: Any,
    bucket: str,
    objects: Iterable[DataObject],
    cache: ObjectCache,
    *,
    workers: int = DEFAULT_DOWNLOAD_WORKERS,
    progress: bool = False,
    stats: FetchStats | None = None,
    expected_owner: str | None = None,
    downloader: str = "auto",
) -> Iterator[Fetched]:
    """Yield every environment's bytes, downloading only what the cache lacks.

    ``objects`` may be a listing still under way (`BackgroundListing`): each
    object is looked up or queued for download as it arrives, and finished
    downloads are handed over between arrivals.

    An S3 error that concerns the whole bucket (access denied) raises
    `ReportError`; a problem with one object is yielded with its reason.
    """
    stats = stats if stats is not None else FetchStats()
    sized = isinstance(objects, Sized)
    bar = Progress(len(objects) if isinstance(objects, Sized) else None, progress, "download")
    downloads: _Downloads | None = None

    def account(result: Fetched) -> Fetched:
        bar.update()
        if result.body is None:
            stats.failed.append((result.obj.key, result.problem or "unknown"))
        for part in result.parts:
            if part.downloaded:
                obj = part.obj  # cached from this thread: SQLite stays on one thread
                cache.store(obj.key, obj.etag, part.body, obj.metadata or {})
                stats.downloaded += 1
                stats.downloaded_bytes += obj.size
            else:
                stats.cached += 1
        return result

    try:
        for listed, obj in enumerate(objects, 1):
            if not sized:
                bar.grow(listed)
            base = _cached(cache, obj)
            delta = _cached(cache, obj.delta) if obj.delta is not None else None
            if base is not None and (
                obj.delta is None
                or (
                    delta is not None
                    and not layout.base_outdated(base.obj.metadata, delta.obj.metadata)
                )
            ):
                yield account(_assemble(obj, base, delta))
                continue
            if downloads is None:
                getter = make_getter(client, bucket, expected_owner, workers, downloader)
                downloads = _Downloads(getter, workers)
            downloads.submit(obj, base, delta)
            while downloads.in_flight >= downloads.limit:
                yield account(downloads.wait_one())
            for done in downloads.finished_now():
                yield account(done)
        while downloads is not None and downloads.in_flight:
            yield account(downloads.wait_one())
    finally:
        if downloads is not None:
            downloads.close()
        bar.close()
        cache.flush()


def _cached(cache: ObjectCache, obj: DataObject) -> Part | None:
    """The cached copy of this version of ``obj`` (its listed ETag and size), if any."""
    entry = cache.lookup(obj.key, obj.etag, obj.size)
    body = cache.read(obj.key, obj.etag, obj.size) if entry is not None else None
    if entry is None or body is None:
        return None
    return Part(with_metadata(obj, entry.metadata), body, downloaded=False)
