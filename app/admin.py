"""Admin requests: look at and steer the coverage runtime, and show its cost.

``performance_test`` and ``batch_process`` are the selective-coverage
patterns users copy: a block kept out of the data with `without_coverage`,
and sampling (every 10th batch item measured with `CoverageContext`).

Who may ask (DESIGN §4): with ``ADMIN_TOKEN`` set, every admin request must
carry it (``admin_token`` in a direct event, the ``x-admin-token`` header or
``Authorization: Bearer`` over HTTP), compared in constant time.  Without
it, admin requests are refused, unless ``ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN``
is true, which lets direct invocations (they need IAM
``lambda:InvokeFunction``) through; anything over HTTP is refused then too.
The safe choice is the default: an API Gateway REST integration without
proxy passes client JSON as the event, which looks like a direct invocation.
"""

from __future__ import annotations

import hmac
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from app import config as names
from app.config import AppConfig
from app.errors import FieldError, RequestError, bad_request, limit_exceeded, shown, type_name
from app.http import HttpRequest
from app.observability import add_overhead_metric
from app.workloads import WORKLOADS, process_item
from coverage_runtime import (
    CoverageContext,
    CoverageError,
    CoverageStatus,
    flush,
    pause,
    reset,
    resume,
    status,
    without_coverage,
)

SAMPLE_EVERY = 10
DEFAULT_ITERATIONS = 1_000
DEFAULT_ITEMS = 100


# -- who may ask -------------------------------------------------------------------


def _presented_token(payload: Mapping[str, Any], request: HttpRequest | None) -> Any:
    if request is None:
        return payload.get("admin_token")
    header = request.header("x-admin-token")
    if header:
        return header
    authorization = request.header("authorization") or ""
    scheme, _, credentials = authorization.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def authorize(payload: Mapping[str, Any], request: HttpRequest | None, config: AppConfig) -> None:
    """Raise 401/403 unless this admin request is allowed (rules in the docstring)."""
    expected = config.admin_token
    if expected is None:
        if request is None and config.admin_allow_direct:
            return
        if request is None:
            raise RequestError(
                403,
                "admin_forbidden",
                "admin requests are refused while ADMIN_TOKEN is not configured; set "
                "ADMIN_TOKEN (and send it as admin_token), or allow direct invocations with "
                "ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN=true",
            )
        raise RequestError(
            403,
            "admin_forbidden",
            "admin requests over HTTP are refused while ADMIN_TOKEN is not configured; "
            "invoke the function directly, or set ADMIN_TOKEN and send it as x-admin-token",
        )
    given = _presented_token(payload, request)
    if not isinstance(given, str) or not given:
        where = "the x-admin-token header" if request else "the admin_token field"
        raise RequestError(401, "admin_token_required", f"admin requests need {where}")
    # surrogatepass: a lone surrogate in a token is a wrong token, not a crash.
    if not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    ):
        raise RequestError(403, "admin_token_invalid", "the admin token is not valid")


# -- parameters ----------------------------------------------------------------------


def bounded_int(
    payload: Mapping[str, Any], name: str, default: int, maximum: int, variable: str
) -> int:
    """An integer parameter from 1 to ``maximum``, or a 400 naming the limit."""
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(
            f"{name} must be an integer",
            FieldError(name, f"expected an integer, got {type_name(value)}"),
            code="invalid_type",
        )
    if value < 1:
        raise bad_request(
            f"{name} must be at least 1", FieldError(name, "must be >= 1"), code="out_of_range"
        )
    if value > maximum:
        raise limit_exceeded(name, f"is {value}", maximum, "", variable)
    return value


def _boolean(payload: Mapping[str, Any], name: str, default: bool) -> bool:
    value = payload.get(name, default)
    if not isinstance(value, bool):
        raise bad_request(
            f"{name} must be true or false",
            FieldError(name, f"expected a boolean, got {type_name(value)}"),
            code="invalid_type",
        )
    return value


# -- actions -----------------------------------------------------------------------------


def coverage_status(payload: Mapping[str, Any], config: AppConfig) -> dict[str, Any]:
    """What is measured so far and what reached S3."""
    return {"admin_action": "coverage_status", "coverage": status()}


def performance_test(payload: Mapping[str, Any], config: AppConfig) -> dict[str, Any]:
    """Run a workload unmeasured, then measured, and report the overhead ratio."""
    iterations = bounded_int(
        payload, "iterations", DEFAULT_ITERATIONS, config.max_iterations, names.ADMIN_MAX_ITERATIONS
    )
    test_type = payload.get("test_type", "cpu")
    if not isinstance(test_type, str) or test_type not in WORKLOADS:
        raise bad_request(
            "test_type must be one of: " + ", ".join(WORKLOADS),
            FieldError(
                "test_type",
                f"got {shown(test_type)}"
                if isinstance(test_type, str)
                else f"expected a string, got {type_name(test_type)}",
            ),
            code="invalid_test_type",
        )
    workload = WORKLOADS[test_type]
    with without_coverage():
        started = time.perf_counter()
        unmeasured_checksum = workload(iterations)
        unmeasured = time.perf_counter() - started
    with CoverageContext(label=f"performance_test:{test_type}"):
        started = time.perf_counter()
        measured_checksum = workload(iterations)
        measured = time.perf_counter() - started
    ratio = round(measured / unmeasured, 3) if unmeasured > 0 else None
    if ratio is not None:
        add_overhead_metric(test_type, ratio)
    coverage = status()
    result = {
        "admin_action": "performance_test",
        "test_type": test_type,
        "iterations": iterations,
        "unmeasured_ms": round(unmeasured * 1000, 3),
        "measured_ms": round(measured * 1000, 3),
        "overhead_ratio": ratio,
        "same_result": unmeasured_checksum == measured_checksum,
        "coverage": {k: coverage.get(k) for k in ("enabled", "mode", "core", "branch")},
    }
    if not coverage["enabled"]:
        result["note"] = "coverage is not active here, so both runs are unmeasured"
    return result


def _batch_items(payload: Mapping[str, Any], config: AppConfig) -> list[Any]:
    """``items`` as a list of values, or a count of generated items."""
    items = payload.get("items", DEFAULT_ITEMS)
    if isinstance(items, list):
        if len(items) > config.max_items:
            raise limit_exceeded(
                "items",
                f"has {len(items)} entries",
                config.max_items,
                " entries",
                names.ADMIN_MAX_ITEMS,
            )
        return items
    count = bounded_int(payload, "items", DEFAULT_ITEMS, config.max_items, names.ADMIN_MAX_ITEMS)
    # Even positions are numbers, odd ones text: with sampling, only numbers are measured.
    return [i if i % 2 == 0 else f"  Item {i} " for i in range(count)]


def batch_process(payload: Mapping[str, Any], config: AppConfig) -> dict[str, Any]:
    """Process items; with ``track_coverage`` measure only every 10th one.

    Measuring a sample keeps the batch fast while still recording which code
    paths real items take.  Without ``track_coverage`` the batch is not
    measured at all.
    """
    items = _batch_items(payload, config)
    track = _boolean(payload, "track_coverage", True)
    started = time.perf_counter()
    kinds: Counter[str] = Counter()
    sample: list[dict[str, Any]] = []
    measured = 0
    for index, item in enumerate(items):
        sampled = track and index % SAMPLE_EVERY == 0
        block = CoverageContext(label="batch_process:sampled") if sampled else without_coverage()
        with block:
            result = process_item(item)
        measured += sampled
        kinds[result["kind"]] += 1
        if len(sample) < 5:
            sample.append(result)
    return {
        "admin_action": "batch_process",
        "processed": len(items),
        "track_coverage": track,
        "sample_every": SAMPLE_EVERY if track else None,
        "measured_items": measured,
        "unmeasured_items": len(items) - measured,
        "kinds": dict(kinds),
        "first_results": sample,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }


def coverage_flush(payload: Mapping[str, Any], config: AppConfig) -> dict[str, Any]:
    """Upload a snapshot now (only if coverage grew since the last upload)."""
    try:
        record = flush()
    except CoverageError as exc:
        raise RequestError(503, "coverage_upload_failed", str(exc)) from exc
    coverage = status()
    return {
        "admin_action": "coverage_flush",
        "uploaded": record is not None,
        "upload": record,
        "reason": None
        if record
        else (
            "coverage is not active"
            if not coverage["enabled"]
            else "nothing new was measured since the last upload"
        ),
        "coverage": coverage,
    }


def coverage_reset(payload: Mapping[str, Any], config: AppConfig) -> dict[str, Any]:
    """Drop what was measured so far in this environment (not what is in S3)."""
    try:
        reset()
    except CoverageError as exc:
        raise RequestError(500, "coverage_reset_failed", str(exc)) from exc
    coverage = status()
    return {"admin_action": "coverage_reset", "reset": coverage["enabled"], "coverage": coverage}


def coverage_pause(payload: Mapping[str, Any], config: AppConfig) -> dict[str, Any]:
    """Measure nothing in this environment until `coverage_resume` (what ran stays)."""
    pause()
    coverage = status()
    return {"admin_action": "coverage_pause", "paused": _paused(coverage), "coverage": coverage}


def coverage_resume(payload: Mapping[str, Any], config: AppConfig) -> dict[str, Any]:
    """Measure again after `coverage_pause`."""
    resume()
    coverage = status()
    return {"admin_action": "coverage_resume", "paused": _paused(coverage), "coverage": coverage}


def _paused(coverage: CoverageStatus) -> bool | None:
    """None when coverage is not active: there is nothing to pause."""
    return coverage["paused"] if coverage["enabled"] else None


ACTIONS: dict[str, Callable[[Mapping[str, Any], AppConfig], dict[str, Any]]] = {
    "coverage_status": coverage_status,
    "performance_test": performance_test,
    "batch_process": batch_process,
    "coverage_flush": coverage_flush,
    "coverage_reset": coverage_reset,
    "coverage_pause": coverage_pause,
    "coverage_resume": coverage_resume,
}


def handle(
    payload: Mapping[str, Any], request: HttpRequest | None, config: AppConfig
) -> dict[str, Any]:
    """Check the caller, then run the named admin action."""
    if payload.get("admin") is not True:
        raise bad_request(
            '"admin" must be true for an admin request',
            FieldError("admin", f"expected true, got {shown(payload.get('admin'))}"),
            code="invalid_type",
        )
    authorize(payload, request, config)
    action = payload.get("admin_action")
    if action is None:
        raise bad_request(
            "admin requests need admin_action",
            FieldError("admin_action", "missing; one of " + ", ".join(ACTIONS)),
            code="missing_field",
        )
    if not isinstance(action, str) or action not in ACTIONS:
        raise RequestError(
            400,
            "unknown_admin_action",
            f"unknown admin_action {shown(action)}",
            [FieldError("admin_action", "one of " + ", ".join(ACTIONS))],
            {"allowed": list(ACTIONS)},
        )
    return ACTIONS[action](payload, config)
