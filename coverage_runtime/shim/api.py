"""The public API: what handler code imports from ``coverage_runtime``.

Everything here is a safe no-op when the process was not started by the shim
(unit tests, local scripts) or when coverage is disabled, so handler code can
use it unconditionally.  The decorator, the context manager, `pause` and
`resume` never let a coverage problem reach the handler; `flush` and `reset`
raise `CoverageError`
subclasses, because code that calls them explicitly wants to know.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from coverage_runtime.errors import CoverageError, NotActiveError
from coverage_runtime.shim import structured_log
from coverage_runtime.shim.measurement import Measurement
from coverage_runtime.shim.session import CoverageSession

if TYPE_CHECKING:  # TypedDicts: annotations only
    from coverage_runtime.shim.status import CoverageStatus, LastUpload

F = TypeVar("F", bound=Callable[..., Any])

_session: CoverageSession | None = None
# The session's Measurement, looked up once: every block of every invocation uses it.
_measurement: Measurement | None = None
_inactive_reason = "not started by the coverage_runtime entry point"


def install(session: CoverageSession | None, reason: str | None = None) -> None:
    """Called by the shim: make this session the one the API talks to."""
    global _session, _measurement, _inactive_reason  # noqa: PLW0603 - one session per process
    _session = session
    _measurement = session.measurement if session is not None else None
    if reason:
        _inactive_reason = reason


def current_session() -> CoverageSession | None:
    return _session


def default_kind(event: Any) -> str:
    """A coarse request-kind label from the event's shape, for dynamic contexts.

    API Gateway's route template (``routeKey``, ``resource``: ``/users/{id}``) is
    preferred to the request's own path, so that one route is one kind.
    """
    if isinstance(event, dict):
        route = event.get("routeKey")
        if isinstance(route, str) and route.strip() and route != "$default":
            return f"http {route}"
        method = event.get("httpMethod") or (
            event.get("requestContext", {}).get("http", {}).get("method")
            if isinstance(event.get("requestContext"), dict)
            else None
        )
        path = event.get("resource") or event.get("path") or event.get("rawPath")
        if method and path:
            return f"http {method} {path}"
        for key in ("operation", "action", "admin_action", "type"):
            if isinstance(event.get(key), str):
                return f"{key}={event[key]}"
    return "invoke"


class CoverageContext(contextlib.ContextDecorator):
    """Measure a block (``enabled=True``) or keep it out of the data (``enabled=False``).

    In selective mode a measuring block turns collection on; in full mode it
    is already on.  An excluding block turns collection off in either mode,
    e.g. around a performance test.  Blocks nest, and work as decorators too.

    ``label`` records what runs from the block on under that label, as the
    decorator's ``kind`` does (when ``COVERAGE_LABELS`` names ``kind`` and the
    request carried no label of its own).

    Collection is process-wide, so a block affects every thread while it is
    open, threads started before it included.  Opening or closing a block
    never restarts coverage.py (see `coverage_adapter`), so it costs about a
    microsecond, and the rest of the function that opens it is measured.
    """

    def __init__(self, enabled: bool = True, label: str | None = None) -> None:
        self.enabled = enabled
        self.label = label

    def __enter__(self) -> CoverageContext:
        measurement = _measurement
        if measurement is not None:
            try:
                measurement.enter(self.enabled)
                if self.label and self.enabled:
                    _label_from_code(self.label)
            except Exception as exc:
                structured_log.error("coverage block could not start", error_message=str(exc))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        measurement = _measurement
        if measurement is not None:
            try:
                measurement.exit(self.enabled)
            except Exception as error:
                structured_log.error("coverage block could not end", error_message=str(error))


def without_coverage() -> CoverageContext:
    """Keep a block out of the coverage data: ``with without_coverage(): ...``.

    Always the same block: it holds no state of its own (the open blocks are
    counted by the measurement), so it nests and is shared between threads,
    and a loop that opens one per item does not build one per item (a
    quarter of a block's cost on 3.14).
    """
    return _WITHOUT


_WITHOUT = CoverageContext(enabled=False)
_MEASURED = CoverageContext(enabled=True)


@overload
def coverage_handler(func: F) -> F: ...
@overload
def coverage_handler(*, kind: Callable[[Any], str] | None = None) -> Callable[[F], F]: ...


def coverage_handler(
    func: F | None = None, *, kind: Callable[[Any], str] | None = None
) -> F | Callable[[F], F]:
    """Wrap a Lambda handler: per-invocation bookkeeping and, in selective
    mode, measurement of the whole invocation.

    ``kind(event)`` names the request kind (`default_kind` without one);
    when ``COVERAGE_LABELS`` names ``kind``, it labels an invocation whose
    request carried no label (see `coverage_runtime.shim.labels`).  The
    handler's result and exceptions pass through untouched.
    """

    def decorate(handler: F) -> F:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            session = _session
            if session is None:
                return handler(event, context)
            label = session.admit_kind(_label(kind, event))
            _label_from_code(label)
            started = time.perf_counter()
            with _MEASURED:
                try:
                    return handler(event, context)
                finally:
                    try:
                        session.invocation_handled(label, time.perf_counter() - started)
                    except Exception as exc:
                        structured_log.error("coverage bookkeeping failed", error_message=str(exc))

        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate


def _label_from_code(label: str) -> None:
    """A label the function's code gives (the decorator's kind, a block's
    label): used when ``COVERAGE_LABELS`` names ``kind`` and the request
    carried none (`coverage_runtime.shim.labels`: the request's label wins)."""
    session = _session
    if session is None or not session.labels_from_kind or session.request_label is not None:
        return
    try:
        session.label(label)
    except Exception as exc:
        structured_log.error("coverage label not set", error_message=str(exc))


def _label(kind: Callable[[Any], str] | None, event: Any) -> str:
    try:
        return str((kind or default_kind)(event))
    except Exception:
        return "invoke"


def status() -> CoverageStatus:
    """What is measured and shipped, as a JSON-ready dict (typed: `CoverageStatus`)."""
    session = _session
    if session is None:
        return {"enabled": False, "reason": _inactive_reason}
    return session.status()


def flush() -> LastUpload | None:
    """Upload a snapshot now if coverage grew.  Returns the upload, or None.

    Raises `UploadError` when the upload fails or uploads are not configured,
    `StorageError` when the data directory cannot be written (both are
    `CoverageError`s).  Returns None outside the shim.
    """
    session = _session
    if session is None:
        return None
    try:
        record = session.flush(reason="flush")
    except CoverageError:
        raise
    except Exception as exc:
        raise CoverageError(f"coverage flush failed: {exc}") from exc
    return record.as_dict() if record else None


def reset() -> None:
    """Drop what was measured so far; no-op outside the shim."""
    session = _session
    if session is None:
        return
    try:
        session.reset()
    except CoverageError:
        raise
    except Exception as exc:
        raise CoverageError(f"coverage reset failed: {exc}") from exc


def pause() -> None:
    """Switch measuring off in this environment until `resume` (no-op outside the shim).

    O(1), whatever is measured: nothing is recorded meanwhile, whatever blocks
    open, and what was measured before stays and is still uploaded
    (checkpoints, shutdown).  For debugging, or to keep a load test out.
    """
    _switch(paused=True)


def resume() -> None:
    """Switch measuring back on after `pause` (no-op outside the shim)."""
    _switch(paused=False)


def _switch(*, paused: bool) -> None:
    measurement = _measurement
    if measurement is None:
        return
    try:
        if paused:
            measurement.pause()
        else:
            measurement.resume()
    except Exception as exc:  # like a block: never a problem for the handler
        structured_log.error("coverage could not switch", paused=paused, error_message=str(exc))


def require_session() -> CoverageSession:
    """The active session, or `NotActiveError` with the reason there is none."""
    if _session is None:
        raise NotActiveError(_inactive_reason)
    return _session
