"""The one way this project builds an S3 client.

The uploader (in Lambda), the report and the combiner, and the example
function's health check all talk to S3.  They differ only in their budgets
(attempts, timeouts, connection pool) and their user agent, so the client is
built here, with the region resolved the same way everywhere.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coverage_runtime import env, layout

if TYPE_CHECKING:
    from coverage_runtime.settings import Settings

DEFAULT_REGION = "us-east-1"


def region_or_default(region: str | None = None) -> str:
    """The region asked for, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else us-east-1."""
    return region or env.region() or DEFAULT_REGION


def make_client(
    *,
    purpose: str,
    region: str | None = None,
    endpoint_url: str | None = None,
    attempts: int = 3,
    connect_timeout: float = 5,
    read_timeout: float = 30,
    max_connections: int = 10,
) -> Any:
    """A boto3 S3 client; ``attempts`` counts every attempt, the first included.

    ``purpose`` (``uploader``, ``report``, ``health``) goes into the user agent,
    so the S3 access logs say which part of lambda-coverage made a request.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_connections,
        user_agent_extra=f"lambda-coverage-{purpose}",
    )
    return boto3.session.Session().client(
        "s3", region_name=region_or_default(region), endpoint_url=endpoint_url, config=config
    )


def put_arguments(
    settings: Settings, key: str, body: bytes, metadata: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``PutObject``'s arguments for ``key`` in the configured bucket, the same for
    the uploader and the combiner: the encryption asked for, the owner check, and
    the content type of the key's suffix (`layout.CONTENT_TYPES`)."""
    suffix = posixpath.splitext(key)[1]
    args: dict[str, Any] = {
        "Bucket": settings.bucket,
        "Key": key,
        "Body": body,
        "ContentType": layout.CONTENT_TYPES.get(suffix, "application/octet-stream"),
        "Metadata": dict(metadata or {}),
        "ServerSideEncryption": settings.sse,
    }
    if settings.kms_key_id:
        args["SSEKMSKeyId"] = settings.kms_key_id
    if settings.expected_owner:
        args["ExpectedBucketOwner"] = settings.expected_owner
    return args


@dataclass(frozen=True)
class S3Problem:
    """What went wrong with an S3 call, read out of botocore's exception once.

    ``kind`` is one of ``no_bucket``, ``access_denied``, ``invalid_bucket``,
    ``wrong_region``, ``no_credentials``, ``invalid_request``, ``timeout``,
    ``unreachable`` or ``refused`` (any other error answer); each caller turns
    it into a sentence about what it was doing.
    """

    kind: str
    code: str = ""
    status: int | None = None
    message: str = ""

    def answer(self) -> str:
        """``HTTP 503 SlowDown: message``: the answer as S3 gave it."""
        return f"HTTP {self.status} {self.code}: {self.message}".strip()


def problem(exc: BaseException) -> S3Problem:
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        NoCredentialsError,
        ParamValidationError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "") or "unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(error.get("Message", "") or "")
        if code in ("NoSuchBucket", "404"):
            kind = "no_bucket"
        elif code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
            kind = "access_denied"
        elif code == "InvalidBucketName":
            kind = "invalid_bucket"
        elif code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
            kind = "wrong_region"
        else:
            kind = "refused"
        return S3Problem(kind, code, status, message)
    if isinstance(exc, NoCredentialsError):
        return S3Problem("no_credentials", message=str(exc))
    if isinstance(exc, ParamValidationError):
        return S3Problem("invalid_request", message=str(exc))
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return S3Problem("timeout", message=str(exc))
    return S3Problem("unreachable", message=f"{exc}")
