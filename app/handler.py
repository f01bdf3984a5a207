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


def _short(text: str, limit: int = 80) -> str:
    """Request text in a message, cut so that a huge path is not echoed back."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Request:
    """An event, read once: what it asks for, and its kind.

    The kind is the coverage context, the metric and the label of every
    record: ``health``, ``admin:<action>``, ``business:<operation>`` (an
    HTTP ``POST`` is named by its body), ``http:<method>`` or ``invalid``.
    """

    event: Any
    http: http_shape.HttpRequest | None  # None for a direct invocation
    kind: str
    document: Any  # the request document: the event itself, or a POST's JSON body
    entry: PayloadKind | None  # the document's line of PAYLOADS
    problem: Exception | None  # why there is nothing to serve (route, size, body)

    @classmethod
    def read(cls, event: Any, cfg: config.AppConfig) -> Request:
        """Never raises: it runs before anything can answer with an error document."""
        http = http_shape.parse(event)
        if http is None:
            kind, entry = classify(event)
            return cls(event, None, kind, event, entry, _event_problem(event, cfg))
        path = http.path.rstrip("/") or "/"
        if path == HEALTH_PATH:
            problem = None
            if http.method not in ("GET", "HEAD"):
                problem = RequestError(
                    405,
                    "method_not_allowed",
                    f"{_short(http.method)} {path} is not allowed",
                    details={"allowed_methods": ["GET", "HEAD"]},
                )
            return cls(event, http, "health", {"health": True}, HEALTH, problem)
        method = http.method if http.method in HTTP_METHODS else "OTHER"
        if http.method == "POST":
            try:
                body = http_shape.json_body(http, cfg.max_payload_bytes)
            except Exception as exc:  # answered by serve(), as every other problem
                return cls(event, http, f"http:{method}", None, None, exc)
            kind, entry = classify(body)
            return cls(event, http, kind, body, entry, None)
        problem = RequestError(
            404,
            "route_not_found",
            f"no route for {_short(http.method)} {_short(path)}",
            details={"routes": ROUTES},
        )
        return cls(event, http, f"http:{method}", None, None, problem)


def _event_problem(event: Any, cfg: config.AppConfig) -> Exception | None:
    """Why a direct invocation's event cannot be served (not JSON, too large), or None."""
    try:
        http_shape.check_value(event, "event")
        size = len(json.dumps(event, default=str))
    except Exception as exc:
        return exc
    return (
        http_shape.too_large(size, cfg.max_payload_bytes) if size > cfg.max_payload_bytes else None
    )


def request_kind(event: Any) -> str:
    """The request-kind label, cheap and never raising (also the coverage context)."""
    return Request.read(event, config.current()).kind


def answer(request: Request, cfg: config.AppConfig) -> tuple[int, dict[str, Any]]:
    """(status, document) for the request, or a `RequestError`."""
    if request.problem is not None:
        raise request.problem
    document = request.document
    if not isinstance(document, dict):
        raise bad_request(
            "the request must be a JSON object",
            FieldError(
                "event" if request.http is None else "body",
                f"expected an object, got {type_name(document)}",
            ),
            code="invalid_event",
        )
    if request.entry is None:
        raise RequestError(
            400,
            "unrecognized_event",
            "the event is not a health, admin or business request",
            details={"expected": EXPECTED_SHAPES},
        )
    return request.entry.serve(document, request.http, cfg)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Read the event once, then serve it, measured and counted as its kind."""
    return serve(Request.read(event, config.current()), context)


@coverage_handler(kind=lambda request: request.kind)
def serve(request: Request, context: Any) -> dict[str, Any]:
    """Answer the request, always with a document or an HTTP response."""
    started = time.perf_counter()
    kind = request.kind
    try:
        status, document = answer(request, config.current())
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
