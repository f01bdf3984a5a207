"""The one way this project builds an S3 client.

The uploader (in Lambda), the report and the combiner, and the example
function's health check all talk to S3.  They differ only in their budgets
(attempts, timeouts, connection pool) and their user agent, so the client is
built here, with the region resolved the same way everywhere.
"""

from __future__ import annotations

import contextlib
import inspect
import posixpath
import sys
import types
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
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
    untraced: bool = False,
) -> Any:
    """A boto3 S3 client; ``attempts`` counts every attempt, the first included.

    ``purpose`` (``uploader``, ``report``, ``health``) goes into the user agent,
    so the S3 access logs say which part of lambda-coverage made a request.
    ``untraced`` hides the client's calls from the function's tracers
    (`bypass_instrumentation`).
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
    client = boto3.session.Session().client(
        "s3", region_name=region_or_default(region), endpoint_url=endpoint_url, config=config
    )
    if untraced:
        bypass_instrumentation(client)
    return client


# What tracers patch in botocore (the X-Ray SDK's ``patch_all()``, OpenTelemetry's
# botocore instrumentation, Powertools' Tracer through X-Ray): the call, which
# records a subsegment or span, and the request's preparation, which injects a
# trace header (and looks for a current segment, warning when there is none).
TRACED_METHODS = (
    ("botocore.client", "BaseClient", "_make_api_call"),
    ("botocore.endpoint", "Endpoint", "prepare_request"),
)


def original(cls: type, name: str) -> Any:
    """``cls.name`` as its library defines it: every wrapper that says what it
    wraps (``__wrapped__``: wrapt's, hence X-Ray's and OpenTelemetry's, and
    ``functools.wraps``) peeled off, down to the first function written in the
    class's own package (botocore decorates ``_make_api_call`` itself)."""
    package = cls.__module__.partition(".")[0]

    def own(candidate: Any) -> bool:
        # type(), not isinstance(): a wrapt proxy passes for what it wraps.
        if type(candidate) is not types.FunctionType:
            return False
        return str(candidate.__globals__.get("__name__")).partition(".")[0] == package

    return inspect.unwrap(vars(cls)[name], stop=own)


def bypass_instrumentation(client: Any) -> None:
    """Make ``client`` call botocore's own `TRACED_METHODS`, whatever patched them.

    The shim's uploads are not the function's work: traced, they would add
    subsegments or spans to the function's traces, and X-Ray warnings
    (``Subsegment ... discarded``) to its logs.  Instance attributes shadow the
    class's (botocore calls ``self._make_api_call`` and
    ``self.prepare_request``), and each call looks the original up again, so a
    patch made after the client was built is bypassed too.  The function's own
    clients keep the patched methods.  A botocore without one of them (none
    known) keeps that one as it is: uploads never depend on this.
    """
    import importlib

    for module, class_name, name in TRACED_METHODS:
        cls = getattr(importlib.import_module(module), class_name, None)
        target = client if class_name == "BaseClient" else getattr(client, "_endpoint", None)
        if cls is not None and target is not None and name in vars(cls):
            setattr(target, name, _calling_original(cls, name, target))


def _calling_original(cls: type, name: str, target: Any) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with _opentelemetry_suppressed():
            return original(cls, name)(target, *args, **kwargs)

    return call


def _opentelemetry_suppressed() -> AbstractContextManager[None]:
    """OpenTelemetry's own off switch, if the function loaded its instrumentation:
    its HTTP instrumentations (urllib3, which botocore sends through, http.client)
    patch below botocore, where unwrapping cannot reach, and honour it."""
    utils = sys.modules.get("opentelemetry.instrumentation.utils")
    suppress = getattr(utils, "suppress_instrumentation", None)
    return suppress() if suppress is not None else contextlib.nullcontext()


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
