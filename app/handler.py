"""Entry point of the example function: ``app.handler.lambda_handler``.

Requests are routed by the shape of the event:

- health: ``{"path": "/health", "httpMethod": "GET"}`` (API Gateway REST),
  ``rawPath`` + ``requestContext.http.method`` (HTTP API v2, function URL),
  or ``{"health": true}`` invoked directly;
- admin: ``{"admin": true, "admin_action": ...}`` (`app.admin`);
- business: ``{"operation": "process_data", "data": {...}}`` (`app.business`).

Over HTTP, ``GET /health`` is the health check and a ``POST`` to any path
carries one of the documents above as its JSON body.  HTTP-shaped events get
HTTP-shaped responses; direct invocations get the document itself.  Anything
wrong with a request becomes a structured error (``{"error": {"status",
"code", "message", "field_errors"...}}``), logged as an ``ERROR`` record, and
never an unhandled exception.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from app import admin, business, config, health
from app import http as http_shape
from app.errors import FieldError, RequestError, bad_request, type_name
from app.observability import (
    log_request_error,
    log_unexpected,
    logger,
    publish_invocation,
)
from coverage_runtime import coverage_handler

HEALTH_PATH = "/health"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ROUTES = ["GET /health", "POST /<any path> with a JSON body: health, admin or business document"]
EXPECTED_SHAPES = [
    '{"health": true}',
    '{"admin": true, "admin_action": "..."}',
    '{"operation": "process_data", "data": {...}}',
    "an API Gateway or function URL event (GET /health, POST with a JSON body)",
]


def report_configuration(cfg: config.AppConfig) -> None:
    """One ``ERROR`` record per refused setting, once per environment (at init)."""
    for problem in cfg.invalid:
        logger.error(
            f"invalid configuration: {problem.variable}; the default is used",
            extra={"error_type": "invalid_configuration", **problem.as_dict()},
        )


report_configuration(config.current())


def payload_kind(payload: Any) -> str:
    """``health``, ``admin:<action>``, ``business:<operation>`` or ``invalid``."""
    if not isinstance(payload, dict):
        return "invalid"
    if payload.get("health") is True:
        return "health"
    if "admin" in payload:
        action = payload.get("admin_action")
        return f"admin:{action}" if isinstance(action, str) and action in admin.ACTIONS else "admin"
    if "operation" in payload:
        operation = payload.get("operation")
        known = isinstance(operation, str) and operation in business.OPERATIONS
        return f"business:{operation}" if known else "business"
    return "invalid"


def request_kind(event: Any) -> str:
    """The request-kind label, cheap and never raising (also the coverage context)."""
    request = http_shape.parse(event)
    if request is None:
        return payload_kind(event)
    if request.path.rstrip("/") == HEALTH_PATH:
        return "health"
    return f"http:{request.method if request.method in HTTP_METHODS else 'OTHER'}"


def _short(text: str, limit: int = 80) -> str:
    """Request text in a message, cut so that a huge path is not echoed back."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Trace:
    """What is known about the request so far, for the error record and metrics."""

    kind: str


def _dispatch(
    payload: Any, request: http_shape.HttpRequest | None, cfg: config.AppConfig
) -> tuple[int, dict[str, Any]]:
    if not isinstance(payload, dict):
        raise bad_request(
            "the request must be a JSON object",
            FieldError(
                "event" if request is None else "body",
                f"expected an object, got {type_name(payload)}",
            ),
            code="invalid_event",
        )
    if payload.get("health") is True:
        document = health.document(cfg)
        return health.http_status(document), document
    if "admin" in payload:
        return 200, admin.handle(payload, request, cfg)
    if "operation" in payload:
        return 200, business.handle(payload, cfg)
    raise RequestError(
        400,
        "unrecognized_event",
        "the event is not a health, admin or business request",
        details={"expected": EXPECTED_SHAPES},
    )


def route(
    event: Any, request: http_shape.HttpRequest | None, cfg: config.AppConfig, trace: _Trace
) -> tuple[int, dict[str, Any]]:
    """(status, document) for the event, or a `RequestError`."""
    if request is None:
        http_shape.check_value(event, "event")
        size = len(json.dumps(event, default=str))
        if size > cfg.max_payload_bytes:
            raise http_shape.too_large(size, cfg.max_payload_bytes)
        return _dispatch(event, None, cfg)
    path = request.path.rstrip("/") or "/"
    if path == HEALTH_PATH:
        if request.method not in ("GET", "HEAD"):
            raise RequestError(
                405,
                "method_not_allowed",
                f"{_short(request.method)} {path} is not allowed",
                details={"allowed_methods": ["GET", "HEAD"]},
            )
        document = health.document(cfg)
        return health.http_status(document), document
    if request.method == "POST":
        payload = http_shape.json_body(request, cfg.max_payload_bytes)
        trace.kind = payload_kind(payload)
        return _dispatch(payload, request, cfg)
    raise RequestError(
        404,
        "route_not_found",
        f"no route for {_short(request.method)} {_short(path)}",
        details={"routes": ROUTES},
    )


@coverage_handler(kind=request_kind)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Route the event; always answer with a document or an HTTP response."""
    started = time.perf_counter()
    trace = _Trace(kind="invalid")
    status = 500
    request: http_shape.HttpRequest | None = None
    try:
        try:
            request = http_shape.parse(event)
            trace.kind = request_kind(event)
            status, document = route(event, request, config.current(), trace)
        except RequestError as exc:
            status, document = exc.status, exc.document(trace.kind)
            log_request_error(
                status=exc.status, code=exc.code, message=exc.message, request_kind=trace.kind
            )
        except Exception as exc:
            status = 500
            document = RequestError(
                500, "internal_error", "the function failed unexpectedly; see its logs"
            ).document(trace.kind)
            log_unexpected(exc, trace.kind)
        else:
            logger.info(
                "request handled",
                extra={
                    "request_kind": trace.kind,
                    "status_code": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )
        return document if request is None else http_shape.response(status, document)
    finally:
        family = trace.kind.split(":", 1)[0]
        publish_invocation(family, status, (time.perf_counter() - started) * 1000)
