"""Put coverage snapshots into S3, one object per execution environment.

The key is ``<prefix><function>/<version>/<init date>/<environment id>.coverage``
and every snapshot overwrites the previous one, so S3 always holds the latest
complete data of each environment and the report merges one file each.

One client is created per environment and reused: building a boto3 S3
client costs 70-90 ms, too much to pay per upload or, if avoidable, inside
the 500 ms shutdown window (`CoverageRuntime` builds it after the first
response).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coverage_runtime.environment import EnvironmentIdentity
from coverage_runtime.errors import UploadError
from coverage_runtime.settings import Settings

CONTENT_TYPE = "application/vnd.sqlite3"
MAX_ATTEMPTS = 3


def object_key(settings: Settings, identity: EnvironmentIdentity) -> str:
    return (
        f"{settings.prefix}{identity.function_name}/{identity.function_version}/"
        f"{identity.init_date}/{identity.environment_id}.coverage"
    )


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
        import boto3
        from botocore.config import Config

        self.settings = settings
        self.bucket = settings.bucket
        self.key = object_key(settings, identity)
        config = Config(
            retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            connect_timeout=2,
            read_timeout=5,
            user_agent_extra="lambda-coverage",
        )
        self._client = boto3.session.Session().client(
            "s3",
            region_name=settings.region or "us-east-1",
            endpoint_url=settings.endpoint_url,
            config=config,
        )

    @property
    def client(self) -> Any:
        return self._client

    def _put_arguments(self, body: bytes, metadata: Mapping[str, str]) -> dict[str, Any]:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Body": body,
            "ContentType": CONTENT_TYPE,
            "Metadata": dict(metadata),
            "ServerSideEncryption": self.settings.sse,
        }
        if self.settings.kms_key_id:
            args["SSEKMSKeyId"] = self.settings.kms_key_id
        if self.settings.expected_owner:
            args["ExpectedBucketOwner"] = self.settings.expected_owner
        return args

    def upload(
        self, body: bytes, metadata: Mapping[str, str], *, deadline: float | None = None
    ) -> UploadResult:
        """Put one snapshot.  With a ``deadline`` (a `time.monotonic` value),
        give up when it passes, even in the middle of a request or a retry."""
        args = self._put_arguments(body, metadata)
        started = time.monotonic()
        response = self._put(args) if deadline is None else self._put_before(args, deadline)
        return UploadResult(
            bucket=self.bucket,
            key=self.key,
            bytes=len(body),
            seconds=time.monotonic() - started,
            etag=(response.get("ETag") or "").strip('"') or None,
        )

    def _put(self, args: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._client.put_object(**args)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "unknown")
            hint = ""
            if code == "AccessDenied":
                hint = " (check the function role's s3:PutObject permission on the prefix" + (
                    ", and that COVERAGE_S3_EXPECTED_OWNER is the bucket owner's account)"
                    if self.settings.expected_owner
                    else ")"
                )
            raise UploadError(
                f"S3 refused s3://{self.bucket}/{self.key}: "
                f"{code}: {error.get('Message', exc)}{hint}"
            ) from exc
        except BotoCoreError as exc:
            raise UploadError(
                f"could not reach S3 for s3://{self.bucket}/{self.key}: {exc}"
            ) from exc

    def _put_before(self, args: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Run the put in a daemon thread and stop waiting at the deadline.

        botocore's timeouts bound each attempt, not the whole call with its
        retries; only waiting from outside gives a hard deadline.
        """
        outcome: dict[str, Any] = {}

        def put() -> None:
            try:
                outcome["response"] = self._put(args)
            except BaseException:  # handed to the waiting thread
                outcome["error"] = sys.exc_info()[1]

        worker = threading.Thread(target=put, name="coverage-upload", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # 3.12+: no new threads at interpreter shutdown (atexit)
            return self._put(args)
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            raise UploadError(
                f"upload to s3://{self.bucket}/{self.key} did not finish before the deadline"
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["response"]
