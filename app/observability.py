"""Logs and metrics of the example function, with Powertools for AWS Lambda.

Logs are one JSON object per line (level, message, timestamp, request id,
function name, cold start flag: Powertools' ``inject_lambda_context`` keys).
Metrics are CloudWatch Embedded Metric Format records on stdout, which
CloudWatch turns into metrics without any API call from the function.

Powertools costs about 20-35 ms of cold start (measured: see README); the
function already pays ~150 ms for boto3, so it is the better trade than a
hand-written formatter of the same shape.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from app.config import DEFAULT_SERVICE

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "LambdaCoverageExample"

# ISO 8601 in UTC with milliseconds, as Lambda's own JSON log format writes it.
logger = Logger(service=SERVICE, datefmt="%Y-%m-%dT%H:%M:%S.%FZ", utc=True)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

_process: Any = None


def rss_mb() -> float:
    """Resident memory of this process in MiB (psutil, cached process handle)."""
    global _process  # noqa: PLW0603 - one handle per process
    import psutil

    if _process is None:
        _process = psutil.Process()
    return round(_process.memory_info().rss / (1024 * 1024), 1)


def log_request_error(
    *, status: int, code: str, message: str, request_kind: str, **fields: Any
) -> None:
    """A refused request as an ``ERROR`` record: type, message and request kind."""
    logger.error(
        message,
        stacklevel=3,  # the caller of this helper, not the helper
        extra={
            "error_type": code,
            "error_message": message,
            "status_code": status,
            "request_kind": request_kind,
            **fields,
        },
    )


def log_unexpected(exc: BaseException, request_kind: str) -> None:
    """A bug in the function: ``ERROR`` with the stack trace, never re-raised."""
    logger.exception(
        "unexpected error while handling the request",
        extra={
            "error_type": type(exc).__name__,
            "error_message": str(exc),
            "status_code": 500,
            "request_kind": request_kind,
        },
    )


def add_overhead_metric(test_type: str, ratio: float) -> None:
    """The coverage overhead measured by ``performance_test``, as a metric."""
    metrics.add_metric(name="CoverageOverheadRatio", unit=MetricUnit.NoUnit, value=ratio)
    metrics.add_metadata(key="performance_test_type", value=test_type)


def publish_invocation(request_kind: str, status: int, duration_ms: float) -> None:
    """Duration and memory of this invocation as one EMF record (then cleared)."""
    try:
        metrics.add_dimension(name="RequestKind", value=request_kind)
        metrics.add_metric(name="Duration", unit=MetricUnit.Milliseconds, value=duration_ms)
        metrics.add_metric(name="MemoryRss", unit=MetricUnit.Megabytes, value=rss_mb())
        metrics.add_metric(
            name="ErrorResponses", unit=MetricUnit.Count, value=1 if status >= 400 else 0
        )
        metrics.flush_metrics()
    except Exception as exc:  # metrics must never fail a request
        logger.warning("metrics not published", extra={"error_message": str(exc)})
        metrics.clear_metrics()
