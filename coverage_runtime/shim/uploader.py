"""Put coverage snapshots into S3, one object per execution environment.

The key is ``<prefix><function>/<version>/<init date>/<environment id>.coverage``
and every snapshot overwrites the previous one, so S3 always holds the latest
complete data of each environment and the report merges one file each.

One client is created per environment and reused: building a boto3 S3
client costs 70-90 ms, too much to pay per upload or, if avoidable, inside
the 500 ms shutdown window (`CoverageSession` builds it after the first
response).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coverage_runtime import layout, s3
from coverage_runtime.errors import UploadError
from coverage_runtime.layout import ObjectKey
from coverage_runtime.s3 import make_client
from coverage_runtime.settings import Settings
from coverage_runtime.shim.identity import EnvironmentIdentity

# Attempts in all, the first included (botocore's ``total_max_attempts``).
MAX_ATTEMPTS = 3
# Object metadata: the snapshot's generation, which only grows in an environment.
GENERATION_KEY = layout.GENERATION


class Superseded(Exception):
    """A newer snapshot's upload has started: this older one must not be sent."""


def object_key(settings: Settings, identity: EnvironmentIdentity) -> str:
    return ObjectKey(
        identity.function_name,
        identity.function_version,
        identity.init_date,
        identity.environment_id,
    ).format(settings.prefix)


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    key: str
    bytes: int
    seconds: float
    etag: str | None


class SnapshotUploader:
    """Uploads snapshots of one environment with SSE, owner check and bounded retries."""

    def __init__(self, settings: Settings, identity: EnvironmentIdentity) -> None:
        if settings.bucket is None:
            raise UploadError("COVERAGE_S3_BUCKET is not set")
        self.settings = settings
        self.bucket = settings.bucket
        self.key = object_key(settings, identity)
        self._client = make_client(
            purpose="uploader",
            region=settings.region,
            endpoint_url=settings.endpoint_url,
            attempts=MAX_ATTEMPTS,
            connect_timeout=2,
            read_timeout=5,
            untraced=True,
        )
        # Fencing: no attempt (first send or botocore's retry) of an older
        # snapshot may start once a newer one has started, so an abandoned
        # upload can never overwrite newer data.
        self._newest_started = 0
        self._fence = threading.Lock()
        self._client.meta.events.register("before-send.s3.PutObject", self._before_send)

    def _before_send(self, request: Any, **kwargs: Any) -> None:
        value = request.headers.get(f"x-amz-meta-{GENERATION_KEY}")
        generation = int(value.decode() if isinstance(value, bytes) else value or 0)
        with self._fence:
            if generation < self._newest_started:
                raise Superseded(f"snapshot {generation} superseded by {self._newest_started}")
            self._newest_started = generation

    @property
    def client(self) -> Any:
        return self._client

    def upload(
        self,
        body: bytes,
        metadata: Mapping[str, str],
        *,
        generation: int = 0,
        deadline: float | None = None,
    ) -> UploadResult:
        """Put snapshot ``generation``.  With a ``deadline`` (a `time.monotonic`
        value), give up when it passes, even in the middle of a request or a
        retry; a newer generation started meanwhile cancels the older one's
        further attempts."""
        args = s3.put_arguments(
            self.settings, self.key, body, {**metadata, GENERATION_KEY: str(generation)}
        )
        started = time.monotonic()
        response = self._put(args) if deadline is None else self._put_before(args, deadline)
        return UploadResult(
            bucket=self.bucket,
            key=self.key,
            bytes=len(body),
            seconds=time.monotonic() - started,
            etag=(response.get("ETag") or "").strip('"') or None,
        )

    def stored_generation(self, deadline: float) -> int | None:
        """The generation of the object in S3 now (None if unknown or absent)."""
        args = {"Bucket": self.bucket, "Key": self.key}
        if self.settings.expected_owner:
            args["ExpectedBucketOwner"] = self.settings.expected_owner
        try:
            head = call_before(lambda: self._client.head_object(**args), deadline)
        except Exception:  # a verification only: never the cause of a failure
            return None
        value = (head.get("Metadata") or {}).get(GENERATION_KEY)
        return int(value) if value and value.isdigit() else None

    def _put(self, args: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._client.put_object(**args)
        except Superseded as exc:
            raise UploadError(f"not sent: {exc}") from exc
        except ClientError as exc:
            found = s3.problem(exc)
            hint = ""
            if found.kind == "access_denied":
                hint = " (check the function role's s3:PutObject permission on the prefix" + (
                    ", and that COVERAGE_S3_EXPECTED_OWNER is the bucket owner's account)"
                    if self.settings.expected_owner
                    else ")"
                )
            raise UploadError(
                f"S3 refused s3://{self.bucket}/{self.key}: {found.answer()}{hint}"
            ) from exc
        except BotoCoreError as exc:
            raise UploadError(
                f"could not reach S3 for s3://{self.bucket}/{self.key}: {exc}"
            ) from exc

    def _put_before(self, args: dict[str, Any], deadline: float) -> dict[str, Any]:
        """The put, with a hard deadline.

        botocore's timeouts bound each attempt, not the whole call with its
        retries; only waiting from outside gives a hard deadline.  The
        abandoned attempt cannot land later over newer data: see the fence.
        """
        try:
            return call_before(lambda: self._put(args), deadline)
        except TimeoutError as exc:
            raise UploadError(
                f"upload to s3://{self.bucket}/{self.key} did not finish before the deadline"
            ) from exc


class DeadlinePassed(TimeoutError):
    """`call_before`'s deadline passed with the call still running."""


def call_before(call: Any, deadline: float, *, name: str = "coverage-upload") -> Any:
    """``call()`` on a helper thread, waited for until ``deadline`` (monotonic);
    `DeadlinePassed` then, and the call is left to end with the process.

    botocore's timeouts bound each attempt, and nothing bounds building a client
    or writing a data file: only waiting from outside gives a hard deadline (an
    upload, the whole shutdown before Lambda's SIGKILL).
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["response"] = call()
        except BaseException:  # handed to the waiting thread
            outcome["error"] = sys.exc_info()[1]

    worker = threading.Thread(target=run, name=name, daemon=True)
    try:
        worker.start()
    except RuntimeError:  # 3.12+: no new threads at interpreter shutdown (atexit)
        return call()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise DeadlinePassed
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]
