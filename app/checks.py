"""Dependency checks for the health document: real requests, bounded in time.

Each check makes one real request (S3 ``HeadBucket``, a TCP connect to the
database, an HTTP GET of the external API) with its own timeout, and all of
them run at the same time, so a health request answers within the slowest
single timeout rather than the sum.  A check that is not configured says so
(``not_configured``) instead of inventing a number.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from app import config
from coverage_runtime import env

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
TIMEOUT = "timeout"
NOT_CONFIGURED = "not_configured"

# Time allowed beyond a check's own timeout before its answer is given up:
# covers thread start-up and the S3 client's creation on the first check.
GRACE_SECONDS = 0.5
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "mysql": 3306, "redis": 6379}


@dataclass
class CheckResult:
    """The outcome of one dependency check, JSON-ready via `as_dict`."""

    status: str
    target: str | None = None
    latency_ms: float | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in (UNHEALTHY, TIMEOUT)

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"status": self.status}
        if self.target is not None:
            result["target"] = self.target
        if self.latency_ms is not None:
            result["latency_ms"] = self.latency_ms
        if self.error is not None:
            result["error"] = self.error
        result.update(self.details)
        return result


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _is_timeout(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", None)
    return isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError)


# -- S3 ------------------------------------------------------------------------

_s3_lock = threading.Lock()
_s3_clients: dict[tuple[Any, ...], Any] = {}


def _s3_client(region: str | None, endpoint_url: str | None, timeout: float) -> Any:
    """One client per configuration, created on first use (70-90 ms) and kept."""
    key = (region, endpoint_url, timeout)
    with _s3_lock:
        client = _s3_clients.get(key)
        if client is None:
            from coverage_runtime.s3 import make_client

            client = make_client(
                purpose="health",
                region=region,
                endpoint_url=endpoint_url,
                attempts=2,  # botocore's max_attempts=1 meant one retry: the same budget
                connect_timeout=timeout,
                read_timeout=timeout,
            )
            _s3_clients[key] = client
        return client


def s3_bucket(environ: Mapping[str, str], timeout: float) -> CheckResult:
    """``HeadBucket`` on the coverage bucket: can this function reach it?"""
    bucket = environ.get(env.S3_BUCKET, "").strip()
    if not bucket:
        return CheckResult(NOT_CONFIGURED, details={"variable": env.S3_BUCKET})
    target = f"s3://{bucket}"
    started = time.monotonic()
    try:
        from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

        client = _s3_client(
            env.region(environ),
            environ.get(env.S3_ENDPOINT_URL) or None,
            timeout,
        )
        args = {"Bucket": bucket}
        owner = environ.get(env.S3_EXPECTED_OWNER, "").strip()
        if owner:
            args["ExpectedBucketOwner"] = owner
        client.head_bucket(**args)
    except (ClientError, ConnectTimeoutError, ReadTimeoutError) as exc:
        from coverage_runtime.s3 import problem

        found = problem(exc)
        if found.kind == "timeout":
            return CheckResult(TIMEOUT, target, _elapsed_ms(started), found.message)
        meaning = {"no_bucket": "the bucket does not exist", "access_denied": "access denied"}
        error = f"HeadBucket: {meaning.get(found.kind, found.code)}"
        return CheckResult(UNHEALTHY, target, _elapsed_ms(started), error)
    except Exception as exc:
        return CheckResult(UNHEALTHY, target, _elapsed_ms(started), f"{type(exc).__name__}: {exc}")
    return CheckResult(HEALTHY, target, _elapsed_ms(started))


# -- database --------------------------------------------------------------------


def database(url: str | None, timeout: float) -> CheckResult:
    """A TCP connection to the database named by ``HEALTH_DATABASE_URL``.

    Only the host and port are used and shown: the credentials in the URL
    never reach the health document.
    """
    if not url:
        return CheckResult(NOT_CONFIGURED, details={"variable": config.HEALTH_DATABASE_URL})
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or DEFAULT_PORTS.get(parsed.scheme)
    if port is None:
        return CheckResult(UNHEALTHY, f"{parsed.scheme}://{host}", error="no port in the URL")
    target = f"{parsed.scheme}://{host}:{port}"
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        status = TIMEOUT if _is_timeout(exc) else UNHEALTHY
        return CheckResult(
            status,
            target,
            _elapsed_ms(started),
            f"{type(exc).__name__}: {exc}",
            details={"check": "tcp_connect"},
        )
    return CheckResult(HEALTHY, target, _elapsed_ms(started), details={"check": "tcp_connect"})


# -- external API ------------------------------------------------------------------


def external_api(url: str | None, timeout: float) -> CheckResult:
    """An HTTP GET of ``HEALTH_EXTERNAL_API_URL``: 2xx and 3xx count as healthy."""
    if not url:
        return CheckResult(NOT_CONFIGURED, details={"variable": config.HEALTH_EXTERNAL_API_URL})
    parsed = urlparse(url)
    target = f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}{parsed.path}"
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked in app.config
        url, method="GET", headers={"User-Agent": "lambda-coverage-health"}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status_code = response.status
    except urllib.error.HTTPError as exc:
        return CheckResult(
            UNHEALTHY,
            target,
            _elapsed_ms(started),
            f"HTTP {exc.code}",
            details={"status_code": exc.code},
        )
    except (OSError, ValueError) as exc:
        status = TIMEOUT if _is_timeout(exc) else UNHEALTHY
        reason = getattr(exc, "reason", exc)
        return CheckResult(
            status, target, _elapsed_ms(started), f"{type(reason).__name__}: {reason}"
        )
    return CheckResult(HEALTHY, target, _elapsed_ms(started), details={"status_code": status_code})


# -- running them together -------------------------------------------------------------


def run_concurrently(
    checks: Mapping[str, Callable[[], CheckResult]], timeout: float
) -> dict[str, CheckResult]:
    """Run every check at once; one that has not answered in time is a timeout.

    The pool is not waited for: a check stuck past its own timeout finishes
    (and is discarded) in the background instead of delaying the response.
    """
    if not checks:
        return {}
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health-check")
    try:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        wait(futures.values(), timeout=timeout + GRACE_SECONDS)
        results: dict[str, CheckResult] = {}
        for name, future in futures.items():
            if not future.done():
                results[name] = CheckResult(TIMEOUT, error=f"no answer within {timeout} s")
                continue
            try:
                results[name] = future.result()
            except Exception as exc:  # a check's own bug must not break health
                results[name] = CheckResult(UNHEALTHY, error=f"{type(exc).__name__}: {exc}")
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def environ_snapshot() -> dict[str, str]:
    """A copy of the environment, so checks on other threads read a stable view."""
    return dict(os.environ)
