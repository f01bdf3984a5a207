"""The one way this project talks to S3.

The uploader (in Lambda), the report and the combiner, and the example
function's health check all talk to S3.  They differ only in their budgets
(attempts, timeouts, connection pool) and their user agent, so their clients
are built here, with the region resolved the same way everywhere, and
``PutObject``'s arguments are made in one place (`put_arguments`).

One factory, `make_client`, two kinds of client, one set of arguments:

* boto3's, for the report, the combiner and the health check, which need its
  whole API;
* ``light=True``: `ObjectClient`, ``PutObject`` and ``HeadObject`` only,
  for the uploader in Lambda, which runs next to the function.  boto3's
  import and client build cost the function 180-250 ms of CPU and ~25 MB of
  RSS, and botocore's own signer, credentials and HTTP session alone still
  60-100 ms and 6-7 MB (bench/upload_paths.py); this one signs with
  ``hmac``/``hashlib`` and sends with ``http.client``, which the shim has
  loaded already: ready in ~0.1 ms, with no memory to speak of.  It takes
  the same `put_arguments` and raises what `problem` reads.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import posixpath
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

from coverage_runtime import __version__, env, layout

if TYPE_CHECKING:
    import http.client

    from coverage_runtime.settings import Settings

DEFAULT_REGION = "us-east-1"


def region_or_default(region: str | None = None) -> str:
    """The region asked for, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else us-east-1."""
    return region or env.region() or DEFAULT_REGION


def _agent(purpose: str) -> str:
    return f"lambda-coverage-{purpose}"


def make_client(
    *,
    purpose: str,
    region: str | None = None,
    endpoint_url: str | None = None,
    attempts: int = 3,
    connect_timeout: float = 5,
    read_timeout: float = 30,
    max_connections: int = 10,
    light: bool = False,
) -> Any:
    """A boto3 S3 client; ``attempts`` counts every attempt, the first included.

    ``purpose`` (``uploader``, ``report``, ``health``) goes into the user agent,
    so the S3 access logs say which part of lambda-coverage made a request.
    ``light``: an `ObjectClient` instead (``PutObject`` and ``HeadObject``
    only, one connection per concurrent request), built in microseconds; like
    boto3, it honours the SDKs' configured endpoint (`env.configured_s3_endpoint`)
    when ``endpoint_url`` is not given.
    """
    if light:
        return ObjectClient(
            agent=_agent(purpose),
            region=region_or_default(region),
            endpoint_url=endpoint_url or env.configured_s3_endpoint(),
            attempts=attempts,
            timeouts=(connect_timeout, read_timeout),
        )
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_connections,
        user_agent_extra=_agent(purpose),
    )
    return boto3.session.Session().client(
        "s3", region_name=region_or_default(region), endpoint_url=endpoint_url, config=config
    )


def original(cls: type, name: str) -> Any:
    """``cls.name`` as its library defines it: every wrapper that says what it
    wraps (``__wrapped__``: wrapt's, hence X-Ray's and OpenTelemetry's, and
    ``functools.wraps``) peeled off, down to the first function written in the
    class's own package."""
    package = cls.__module__.partition(".")[0]

    def own(candidate: Any) -> bool:
        # type(), not isinstance(): a wrapt proxy passes for what it wraps.
        if type(candidate) is not types.FunctionType:
            return False
        return str(candidate.__globals__.get("__name__")).partition(".")[0] == package

    return inspect.unwrap(vars(cls)[name], stop=own)


def _opentelemetry_suppressed() -> AbstractContextManager[None]:
    """OpenTelemetry's own off switch, if the function loaded its instrumentation:
    its HTTP instrumentations honour it, whatever they patch."""
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


class S3Problem(NamedTuple):
    """What went wrong with an S3 call, read out of botocore's exception once.

    (This module's types are `NamedTuple`s: the shutdown window may import it, and
    a dataclass costs 0.5-1 ms to create: see `errors.ConfigProblem`.)

    ``kind`` is one of ``no_bucket``, ``access_denied``, ``invalid_bucket``,
    ``wrong_region``, ``no_credentials``, ``invalid_request``, ``timeout``,
    ``unreachable``, ``refused`` (any other error answer) or, from an
    `ObjectClient` given a ``deadline``, ``deadline`` (it stopped the call: an
    attempt, or the pause before a retry, would have ended after it); each
    caller turns it into a sentence about what it was doing.
    """

    kind: str
    code: str = ""
    status: int | None = None
    message: str = ""

    def answer(self) -> str:
        """``HTTP 503 SlowDown: message``: the answer as S3 gave it."""
        return f"HTTP {self.status} {self.code}: {self.message}".strip()


def classify(code: str, status: int | None, message: str = "") -> S3Problem:
    """An error answer of S3 (its code, HTTP status and message) as an `S3Problem`."""
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


def problem(exc: BaseException) -> S3Problem:
    """What went wrong, from `ObjectClient`'s `S3RequestError` or botocore's exceptions."""
    if isinstance(exc, S3RequestError):
        return exc.problem
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        NoCredentialsError,
        ParamValidationError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return classify(
            str(error.get("Code", "") or "unknown"),
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            str(error.get("Message", "") or ""),
        )
    if isinstance(exc, NoCredentialsError):
        return S3Problem("no_credentials", message=str(exc))
    if isinstance(exc, ParamValidationError):
        return S3Problem("invalid_request", message=str(exc))
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return S3Problem("timeout", message=str(exc))
    return S3Problem("unreachable", message=f"{exc}")


# -- the uploader's client: PutObject and HeadObject, light -------------------------

# `put_arguments`' names as S3's REST API sends them (``Metadata`` is ``x-amz-meta-*``).
WIRE_HEADERS = {
    "ContentType": "Content-Type",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
    "ExpectedBucketOwner": "x-amz-expected-bucket-owner",
}
METADATA_PREFIX = "x-amz-meta-"
# Answers worth another attempt, as botocore's standard retry mode has them:
# throttling and transient errors by code, and every 5xx and 429 by status.
RETRYABLE_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
        "InternalError",
    }
)
MAX_BACKOFF_SECONDS = 20.0
# DNS suffixes of the partitions whose regions do not end in amazonaws.com.
PARTITION_SUFFIXES = (
    ("cn-", "amazonaws.com.cn"),
    ("us-isob-", "sc2s.sgov.gov"),
    ("us-isof-", "csp.hci.ic.gov"),
    ("us-iso-", "c2s.ic.gov"),
    ("eu-isoe-", "cloud.adc-e.uk"),
)
# A bucket name reachable as ``<bucket>.s3.<region>...`` under TLS (no dots).
_VIRTUAL_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


class S3RequestError(Exception):
    """An `ObjectClient` request that failed, with its `S3Problem` read once."""

    def __init__(self, found: S3Problem) -> None:
        super().__init__(found.answer() if found.status is not None else found.message)
        self.problem = found


class _NoAnswer(S3RequestError):
    """No answer came: the connection failed, was reset or timed out."""


class Attempts:
    """What the attempts of one `ObjectClient` call came to, filled in as each
    ends, so that its caller can read it after the call, or while the call
    still runs (one that stopped waiting for it at its deadline).

    ``refusal``: S3's last error answer, if an attempt was answered with one.
    A retry then cut by the deadline fails with a ``deadline`` problem, which
    alone would hide that S3 refused the request (an operator reading the
    shutdown's loss record could not tell a refusal from a slow S3).
    ``unanswered``: the last attempt that got no answer (reset, unreachable,
    timed out before the deadline), for the same reason.

    ``seconds``: how long the attempt that succeeded took, from its request
    built to its answer read.  The call's own time adds the failed attempts
    and the pauses before retries (up to a second after the first), which
    say nothing of what a request of this size takes: the uploader's rate
    estimates use this one.

    ``made``: the attempts begun (a redirect to the bucket's region not
    counted): a call that succeeded after a retry says so in its record.
    """

    __slots__ = ("made", "refusal", "seconds", "unanswered")

    def __init__(self) -> None:
        self.refusal: S3Problem | None = None
        self.unanswered: S3Problem | None = None
        self.seconds: float | None = None
        self.made = 0


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None


def environment_credentials(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials Lambda gives every function (its role's) in the environment."""
    values = os.environ if environ is None else environ
    access_key = values.get(env.AWS_ACCESS_KEY_ID, "")
    secret_key = values.get(env.AWS_SECRET_ACCESS_KEY, "")
    if not (access_key and secret_key):
        return None
    token = values.get(env.AWS_SESSION_TOKEN) or values.get(env.AWS_SECURITY_TOKEN) or None
    return Credentials(access_key, secret_key, token)


def sign(
    method: str,
    host: str,
    path: str,
    headers: Mapping[str, str],
    *,
    payload_hash: str,
    credentials: Credentials,
    region: str,
    timestamp: str,
) -> dict[str, str]:
    """``headers`` with Signature Version 4's for S3 added (``timestamp`` is
    ``YYYYMMDDTHHMMSSZ``): every header given is signed, with the host, the
    date, the payload's SHA-256 and the session token.  ``path`` is sent as
    is: S3 signs the path it receives, unnormalized."""
    import hashlib
    import hmac

    signed = {
        **headers,
        "host": host,
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": timestamp,
    }
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    canonical = {name.lower(): " ".join(value.split()) for name, value in signed.items()}
    names = ";".join(sorted(canonical))
    request = "\n".join(
        (
            method,
            path,
            "",  # no query string
            "".join(f"{name}:{canonical[name]}\n" for name in sorted(canonical)),
            names,
            payload_hash,
        )
    )
    scope = f"{timestamp[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", timestamp, scope, hashlib.sha256(request.encode()).hexdigest())
    )
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (timestamp[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return signed


def wire_headers(args: Mapping[str, Any]) -> dict[str, str]:
    """`put_arguments` (or ``HeadObject``'s) as S3's request headers; an argument
    this client does not know is an error, never silently dropped."""
    unknown = set(args) - {"Bucket", "Key", "Body", "Metadata", *WIRE_HEADERS}
    if unknown:
        raise ValueError(f"ObjectClient cannot send {', '.join(sorted(unknown))}")
    headers = {WIRE_HEADERS[name]: str(args[name]) for name in WIRE_HEADERS if args.get(name)}
    for name, value in (args.get("Metadata") or {}).items():
        headers[METADATA_PREFIX + name] = _ascii(str(value))
    return headers


def _ascii(value: str) -> str:
    """A header value as S3 takes it: US-ASCII, else RFC 2047's encoded word
    (what S3 answers back for metadata it cannot show)."""
    if value.isascii():
        return value
    import base64

    return f"=?UTF-8?B?{base64.b64encode(value.encode()).decode()}?="


class _Request(NamedTuple):
    method: str
    bucket: str
    key: str
    headers: dict[str, str]
    body: bytes
    payload_hash: str


class _Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class ObjectClient:
    """``PutObject`` and ``HeadObject``, signed with SigV4 and sent with ``http.client``.

    Built in microseconds (nothing is imported before the first request), so
    it can be built anywhere, the shutdown window included.  What the
    uploader relied on boto3 for is here: the region's endpoint (path-style
    for an endpoint override or a bucket name with dots, virtual-hosted
    otherwise), the bucket's region when S3 answers that it lives in another
    (signed again for it, once, and kept), ``attempts`` in all with
    jittered exponential backoff on 5xx, throttling, resets and timeouts,
    connect and read timeouts, kept-alive connections, and credentials from
    the environment (Lambda's, read at each request), else botocore's chain
    (container credentials, profiles ...), imported only then.  A
    ``deadline`` (monotonic) caps each attempt's timeouts and starts no
    attempt or wait that would end after it.  ``before_attempt`` runs before
    each attempt, and before the pause ahead of a retry, and may raise to
    cancel it (the uploader's generation fence, the shutdown's gate): a retry
    no longer wanted ends when its attempt fails, not after its pause.
    ``attempts`` (`Attempts`) is filled in with S3's last refusal and the
    time of the attempt that succeeded.

    Invisible to the function's tracers: ``http.client``'s methods are called
    as the standard library defines them (`original`), with OpenTelemetry
    suppressed; no ``_send_request`` (which X-Ray traces), no urllib3.
    """

    def __init__(
        self,
        *,
        agent: str,
        region: str,
        endpoint_url: str | None,
        attempts: int,
        timeouts: tuple[float, float],
    ) -> None:
        """Built by `make_client` (``light=True``); ``timeouts``: connect, read."""
        from urllib.parse import urlsplit

        self.region = region
        self.attempts = max(1, attempts)
        self.connect_timeout, self.read_timeout = timeouts
        override = urlsplit(endpoint_url) if endpoint_url else None
        self._override = override
        self._base_path = override.path.rstrip("/") if override else ""
        self._chain: Any = None
        # FIPS and dual-stack endpoints, as botocore reads the switches.
        fips = env.parse_bool(os.environ.get(env.AWS_USE_FIPS_ENDPOINT, "")) is True
        dualstack = env.parse_bool(os.environ.get(env.AWS_USE_DUALSTACK_ENDPOINT, "")) is True
        self._service_host = ("s3-fips" if fips else "s3") + (".dualstack" if dualstack else "")
        self._agent = (
            f"{agent}/{__version__} python/{'.'.join(str(part) for part in sys.version_info[:3])}"
        )
        self._idle: list[tuple[tuple[str, str], http.client.HTTPConnection]] = []
        self._idle_lock = threading.Lock()
        self._tls: Any = None

    # -- requests ----------------------------------------------------------------

    def put_object(
        self,
        args: Mapping[str, Any],
        *,
        deadline: float | None = None,
        before_attempt: Callable[[], None] | None = None,
        attempts: Attempts | None = None,
    ) -> dict[str, Any]:
        """`put_arguments` in S3; ``{"ETag": ...}`` as boto3 answers."""
        import hashlib

        body: bytes = args["Body"]
        headers = wire_headers(args)
        request = _Request(
            "PUT", args["Bucket"], args["Key"], headers, body, hashlib.sha256(body).hexdigest()
        )
        answer = self._call(
            request, deadline, before_attempt, attempts if attempts is not None else Attempts()
        )
        return {"ETag": answer.headers.get("etag")}

    def head_object(
        self, args: Mapping[str, Any], *, deadline: float | None = None
    ) -> dict[str, Any]:
        """``HeadObject``: ``Metadata``, ``ContentLength``, ``ETag`` as boto3 answers."""
        headers = wire_headers({k: v for k, v in args.items() if k not in ("Bucket", "Key")})
        request = _Request("HEAD", args["Bucket"], args["Key"], headers, b"", _EMPTY_SHA256)
        answer = self._call(request, deadline, None, Attempts())
        return {
            "Metadata": {
                name[len(METADATA_PREFIX) :]: value
                for name, value in answer.headers.items()
                if name.startswith(METADATA_PREFIX)
            },
            "ContentLength": int(answer.headers.get("content-length") or 0),
            "ETag": answer.headers.get("etag"),
        }

    # -- one call, its attempts --------------------------------------------------

    def _call(
        self,
        request: _Request,
        deadline: float | None,
        before_attempt: Callable[[], None] | None,
        attempts: Attempts,
    ) -> _Answer:
        import random

        attempt = 0
        redirected = False
        while True:
            attempt += 1
            if before_attempt is not None:
                before_attempt()
            if deadline is not None and time.monotonic() >= deadline:
                raise S3RequestError(S3Problem("deadline", message="the deadline passed"))
            began = time.monotonic()
            attempts.made = attempt
            try:
                answer = self._attempt(request, deadline)
            except _NoAnswer as exc:
                failure: S3RequestError = exc
                if exc.problem.kind == "deadline":
                    raise
                attempts.unanswered = exc.problem
            else:
                if answer.status < 300:
                    attempts.seconds = time.monotonic() - began
                    return answer
                found, region = _answer_problem(answer)
                if region and region != self.region and not redirected:
                    self.region, redirected = region, True  # the bucket lives elsewhere
                    attempt -= 1
                    continue
                attempts.refusal = found
                failure = S3RequestError(found)
                if not _retryable(found):
                    raise failure
            if attempt >= self.attempts:
                raise failure
            pause = random.uniform(0, min(MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1)))  # noqa: S311
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise S3RequestError(
                    S3Problem("deadline", message=f"no time left for a retry after: {failure}")
                ) from failure
            if before_attempt is not None:
                before_attempt()
            time.sleep(pause)

    def _attempt(self, request: _Request, deadline: float | None) -> _Answer:
        import http.client
        from urllib.parse import quote

        method, body = request.method, request.body
        scheme, host, path = self._location(request.bucket, quote(request.key, safe="/~"))
        signed = sign(
            method,
            host,
            path,
            request.headers,
            payload_hash=request.payload_hash,
            credentials=self._current(),
            region=self.region,
            timestamp=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        )
        connection_class = http.client.HTTPConnection
        response_class = http.client.HTTPResponse
        connection = None
        try:
            with _opentelemetry_suppressed():
                connection = self._connection(scheme, host, deadline)
                original(connection_class, "putrequest")(
                    connection, method, path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in signed.items():
                    original(connection_class, "putheader")(connection, name, value)
                original(connection_class, "putheader")(connection, "User-Agent", self._agent)
                if method != "HEAD" or body:
                    original(connection_class, "putheader")(
                        connection, "Content-Length", str(len(body))
                    )
                original(connection_class, "endheaders")(connection, body or None)
                response = original(connection_class, "getresponse")(connection)
                data = original(response_class, "read")(response)
        except (OSError, http.client.HTTPException) as exc:
            if connection is not None:
                connection.close()
            kind = "unreachable"
            if isinstance(exc, TimeoutError):  # (its timeout ends at the deadline at the latest)
                late = deadline is not None and time.monotonic() >= deadline
                kind = "deadline" if late else "timeout"
            detail = str(exc) or type(exc).__name__
            raise _NoAnswer(
                S3Problem(kind, message=f"{method} {scheme}://{host}{path}: {detail}")
            ) from exc
        if response.will_close:
            connection.close()
        else:
            with self._idle_lock:
                self._idle.append(((scheme, host), connection))
        return _Answer(
            response.status, {name.lower(): value for name, value in response.getheaders()}, data
        )

    # -- where, who, how ---------------------------------------------------------

    def _location(self, bucket: str, quoted_key: str) -> tuple[str, str, str]:
        """``(scheme, host, path)`` of an object: path-style under an endpoint
        override (a local S3) or for a bucket name TLS cannot put in a host name."""
        if self._override is not None:
            netloc = _without_default_port(self._override.scheme, self._override.netloc)
            return self._override.scheme, netloc, f"{self._base_path}/{bucket}/{quoted_key}"
        host = f"{self._service_host}.{self.region}.{partition_suffix(self.region)}"
        if 3 <= len(bucket) <= 63 and set(bucket) <= _VIRTUAL_HOST_CHARS:
            return "https", f"{bucket}.{host}", f"/{quoted_key}"
        return "https", host, f"/{bucket}/{quoted_key}"

    def _current(self) -> Credentials:
        """The environment's credentials, read at each request as botocore's
        environment provider refreshes them (an environment restored from a
        snapshot gets new ones), else botocore's chain (refreshed as it does)."""
        found = environment_credentials()
        if found is not None:
            return found
        if self._chain is None:
            import botocore.session

            self._chain = botocore.session.get_session().get_credentials() or False
        if not self._chain:
            raise S3RequestError(
                S3Problem("no_credentials", message="Unable to locate credentials")
            )
        frozen = self._chain.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def _connection(
        self, scheme: str, host: str, deadline: float | None
    ) -> http.client.HTTPConnection:
        """A kept-alive connection to ``host`` that the server has not closed
        meanwhile (S3 drops idle ones; a frozen environment thaws much later),
        else a new one.  Its socket times out at ``read_timeout`` or the deadline."""
        import http.client

        timeout = self.read_timeout
        if deadline is not None:
            timeout = max(0.001, min(timeout, deadline - time.monotonic()))
        with self._idle_lock:
            while self._idle:
                where, connection = self._idle.pop()
                sock = connection.sock
                if where != (scheme, host) or sock is None or _readable(sock):
                    connection.close()  # another host, or closed (readable at rest = EOF)
                    continue
                sock.settimeout(timeout)
                return connection
        connect_timeout = min(self.connect_timeout, timeout)
        if scheme == "https":
            fresh: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, timeout=connect_timeout, context=self._tls_context()
            )
        else:
            fresh = http.client.HTTPConnection(host, timeout=connect_timeout)
        fresh.connect()
        if fresh.sock is not None:
            fresh.sock.settimeout(timeout)
        return fresh

    def _tls_context(self) -> Any:
        """The system's trust store, or ``AWS_CA_BUNDLE``'s, as botocore honours it."""
        if self._tls is None:
            import ssl

            self._tls = ssl.create_default_context(cafile=os.environ.get(env.AWS_CA_BUNDLE))
        return self._tls


_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def partition_suffix(region: str) -> str:
    """The DNS suffix of ``region``'s partition (amazonaws.com but in China and
    the isolated partitions)."""
    for prefix, suffix in PARTITION_SUFFIXES:
        if region.startswith(prefix):
            return suffix
    return "amazonaws.com"


def _readable(sock: Any) -> bool:
    """Whether ``sock`` has something to read now (poll, not select: any fd number)."""
    import select

    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _without_default_port(scheme: str, netloc: str) -> str:
    default = {"http": ":80", "https": ":443"}.get(scheme)
    return netloc[: -len(default)] if default and netloc.endswith(default) else netloc


def _answer_problem(answer: _Answer) -> tuple[S3Problem, str | None]:
    """S3's error document (``<Error><Code>...``; a HEAD's answer has none, so
    its code is the status, as botocore reports it), and the bucket's region if
    the answer names it (a request sent to another region's endpoint)."""
    code, message = str(answer.status), ""
    region = answer.headers.get("x-amz-bucket-region")
    if answer.body:
        from xml.etree import ElementTree

        try:
            root = ElementTree.fromstring(answer.body)  # noqa: S314 - S3's own answer
        except ElementTree.ParseError:
            message = answer.body[:200].decode("utf-8", "replace")
        else:
            code = root.findtext("Code") or code
            message = root.findtext("Message") or ""
            region = region or root.findtext("Region")
    return classify(code, answer.status, message), region


def _retryable(found: S3Problem) -> bool:
    status = found.status or 0
    return status >= 500 or status == 429 or found.code in RETRYABLE_CODES
