"""HTTP-shaped events in, HTTP-shaped responses out.

The same function is reached directly (``aws lambda invoke``, another
service) and through API Gateway (REST API v1, HTTP API v2) or a function URL.
This module recognises the three HTTP shapes and normalises them, so routing
does not care which front door a request came through.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from app import config
from app.errors import RequestError, bad_request

JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class HttpRequest:
    """What routing needs from an HTTP-shaped event, whatever its version."""

    shape: str  # "rest_v1", "http_api_v2" or "function_url"
    method: str
    path: str
    headers: dict[str, str]
    body: str | None
    is_base64: bool

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def _headers(raw: Any) -> dict[str, str]:
    """Header names are case-insensitive: keep them lower-cased, strings only."""
    if not isinstance(raw, dict):
        return {}
    return {k.lower(): v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def _body(event: dict[str, Any]) -> tuple[str | None, bool]:
    body = event.get("body")
    return (body if isinstance(body, str) else None), event.get("isBase64Encoded") is True


def parse(event: Any) -> HttpRequest | None:
    """The HTTP request in ``event``, or None when it is a direct invocation."""
    if not isinstance(event, dict):
        return None
    method, path = event.get("httpMethod"), event.get("path")
    if isinstance(method, str) and isinstance(path, str):
        body, encoded = _body(event)
        return HttpRequest(
            "rest_v1", method.upper(), path, _headers(event.get("headers")), body, encoded
        )
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    raw_path = event.get("rawPath")
    if isinstance(raw_path, str) and isinstance(http, dict) and isinstance(http.get("method"), str):
        domain = context.get("domainName") if isinstance(context, dict) else None
        shape = (
            "function_url"
            if isinstance(domain, str) and ".lambda-url." in domain
            else "http_api_v2"
        )
        body, encoded = _body(event)
        return HttpRequest(
            shape, http["method"].upper(), raw_path, _headers(event.get("headers")), body, encoded
        )
    return None


def json_body(request: HttpRequest, max_bytes: int) -> Any:
    """The request body parsed as JSON, or a 4xx `RequestError` saying why not."""
    if request.body is None or request.body.strip() == "":
        raise bad_request(
            f"{request.method[:10]} {request.path[:80]} needs a JSON body", code="missing_body"
        )
    raw: bytes | str = request.body
    if request.is_base64:
        try:
            raw = base64.b64decode(request.body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request(
                f"the body is marked isBase64Encoded but is not base64: {exc}",
                code="malformed_body",
            ) from exc
    # surrogatepass: a lone surrogate in a str body is counted, not a crash.
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise too_large(size, max_bytes)
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise bad_request(
            f"the body is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    check_value(value, "body")
    return value


# Deeper documents are refused: the handlers' own code walks them recursively.
MAX_JSON_DEPTH = 64


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is outside float range")
    return number


def check_value(value: Any, where: str) -> None:
    """A 400 for what strict JSON cannot carry back: non-finite numbers (a direct
    event's ``1e999`` arrives as ``inf``), and nesting deeper than `MAX_JSON_DEPTH`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise bad_request(
                f"the {where} is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_data"
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise bad_request(
                f"the {where} holds a number outside float range ({item})", code="invalid_data"
            )
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def too_large(size: int, max_bytes: int) -> RequestError:
    return RequestError(
        413,
        "payload_too_large",
        f"the request is {size} bytes; at most {max_bytes} are accepted "
        f"({config.MAX_PAYLOAD_BYTES})",
        details={"size_bytes": size, "max_bytes": max_bytes},
    )


def response(status: int, document: dict[str, Any]) -> dict[str, Any]:
    """The API Gateway / function URL proxy response for ``document``."""
    return {
        "statusCode": status,
        "headers": dict(JSON_HEADERS),
        "body": json.dumps(document, default=str, allow_nan=False),
        "isBase64Encoded": False,
    }
