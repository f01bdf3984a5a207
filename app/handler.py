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
from collections.abc import Callable, Collection
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


def _health(
    payload: dict[str, Any], request: http_shape.HttpRequest | None, cfg: config.AppConfig
) -> tuple[int, dict[str, Any]]:
    document = health.document(cfg)
    return health.http_status(document), document


def _admin(
    payload: dict[str, Any], request: http_shape.HttpRequest | None, cfg: config.AppConfig
) -> tuple[int, dict[str, Any]]:
    return 200, admin.handle(payload, request, cfg)


def _business(
    payload: dict[str, Any], request: http_shape.HttpRequest | None, cfg: config.AppConfig
) -> tuple[int, dict[str, Any]]:
    return 200, business.handle(payload, cfg)


@dataclass(frozen=True)
class PayloadKind:
    """One kind of request document: how to recognise it, name it and serve it."""

    family: str  # the metric dimension and the kind's first part
    matches: Callable[[dict[str, Any]], bool]
    field: str | None  # the field naming what to run, e.g. admin_action
    known: Collection[str]  # its values that are named in the kind
    serve: Callable[
        [dict[str, Any], http_shape.HttpRequest | None, config.AppConfig],
        tuple[int, dict[str, Any]],
    ]

    def kind(self, payload: dict[str, Any]) -> str:
        """``family`` or ``family:<what>`` when the field names something known."""
        value = payload.get(self.field) if self.field else None
        return (
            f"{self.family}:{value}"
            if isinstance(value, str) and value in self.known
            else self.family
        )


# The one table of request documents, tried in order.
HEALTH = PayloadKind("health", lambda p: p.get("health") is True, None, (), _health)
PAYLOADS = (
    HEALTH,
    PayloadKind("admin", lambda p: "admin" in p, "admin_action", admin.ACTIONS, _admin),
    PayloadKind(
        "business", lambda p: "operation" in p, "operation", business.OPERATIONS, _business
    ),
)


def classify(payload: Any) -> tuple[str, PayloadKind | None]:
    """The payload's kind (``health``, ``admin:<action>``, ``business:<operation>``,
    ``invalid``) and its table entry (None when it is none of them)."""
    if isinstance(payload, dict):
        for entry in PAYLOADS:
            if entry.matches(payload):
                return entry.kind(payload), entry
    return "invalid", None


@dataclass(frozen=True)
class Request:
    """An event, read once: its HTTP shape (None for a direct invocation) and its kind,
    which is the coverage context, the metric and the label of every record."""

    event: Any
    http: http_shape.HttpRequest | None
    kind: str
    payload: PayloadKind | None  # a direct invocation's table entry

    @classmethod
    def read(cls, event: Any) -> Request:
        """Never raises: it runs before anything can answer with an error document."""
        http = http_shape.parse(event)
        if http is None:
            kind, entry = classify(event)
            return cls(event, None, kind, entry)
        if http.path.rstrip("/") == HEALTH_PATH:
            return cls(event, http, "health", None)
        method = http.method if http.method in HTTP_METHODS else "OTHER"
        return cls(event, http, f"http:{method}", None)


def request_kind(event: Any) -> str:
    """The request-kind label, cheap and never raising (also the coverage context)."""
    return Request.read(event).kind


def _short(text: str, limit: int = 80) -> str:
    """Request text in a message, cut so that a huge path is not echoed back."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def document_of(request: Request, cfg: config.AppConfig) -> tuple[str, Any, PayloadKind | None]:
    """(kind, request document, its table entry), or a `RequestError` for a request that
    carries none: a bad route or method, too large, a body that is not JSON.

    The kind is the request's own, or for a ``POST``, its body's (known only here).
    """
    http = request.http
    if http is None:
        http_shape.check_value(request.event, "event")
        size = len(json.dumps(request.event, default=str))
        if size > cfg.max_payload_bytes:
            raise http_shape.too_large(size, cfg.max_payload_bytes)
        return request.kind, request.event, request.payload
    path = http.path.rstrip("/") or "/"
    if path == HEALTH_PATH:
        if http.method not in ("GET", "HEAD"):
            raise RequestError(
                405,
                "method_not_allowed",
                f"{_short(http.method)} {path} is not allowed",
                details={"allowed_methods": ["GET", "HEAD"]},
            )
        return request.kind, {"health": True}, HEALTH
    if http.method == "POST":
        payload = http_shape.json_body(http, cfg.max_payload_bytes)
        kind, entry = classify(payload)
        return kind, payload, entry
    raise RequestError(
        404,
        "route_not_found",
        f"no route for {_short(http.method)} {_short(path)}",
        details={"routes": ROUTES},
    )


def answer(
    payload: Any, entry: PayloadKind | None, request: Request, cfg: config.AppConfig
) -> tuple[int, dict[str, Any]]:
    """(status, document) for a request document, or a `RequestError`."""
    if not isinstance(payload, dict):
        raise bad_request(
            "the request must be a JSON object",
            FieldError(
                "event" if request.http is None else "body",
                f"expected an object, got {type_name(payload)}",
            ),
            code="invalid_event",
        )
    if entry is None:
        raise RequestError(
            400,
            "unrecognized_event",
            "the event is not a health, admin or business request",
            details={"expected": EXPECTED_SHAPES},
        )
    return entry.serve(payload, request.http, cfg)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Read the event once, then serve it, measured and counted as its kind."""
    return serve(Request.read(event), context)


@coverage_handler(kind=lambda request: request.kind)
def serve(request: Request, context: Any) -> dict[str, Any]:
    """Answer the request, always with a document or an HTTP response."""
    started = time.perf_counter()
    cfg = config.current()
    kind = request.kind
    try:
        kind, payload, entry = document_of(request, cfg)
        status, document = answer(payload, entry, request, cfg)
    except RequestError as exc:
        status, document = exc.status, exc.document(kind)
        log_request_error(status=exc.status, code=exc.code, message=exc.message, request_kind=kind)
    except Exception as exc:
        status = 500
        document = RequestError(
            500, "internal_error", "the function failed unexpectedly; see its logs"
        ).document(kind)
        log_unexpected(exc, kind)
    else:
        logger.info(
            "request handled",
            extra={
                "request_kind": kind,
                "status_code": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
    publish_invocation(kind.split(":", 1)[0], status, (time.perf_counter() - started) * 1000)
    return document if request.http is None else http_shape.response(status, document)
