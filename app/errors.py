"""The one error type of the example function: a refused request.

Every problem with the input becomes a `RequestError` carrying an HTTP-like
status, a stable machine-readable code and the fields that were wrong, so
callers can fix their request without reading the function's logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One wrong field: where it is (``data.aggregate[3]``) and what is wrong."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class RequestError(Exception):
    """A 4xx-style answer (or 5xx when a dependency failed), never a crash."""

    status: int
    code: str
    message: str
    field_errors: list[FieldError] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def document(self, request_kind: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "request_kind": request_kind,
        }
        if self.field_errors:
            error["field_errors"] = [f.as_dict() for f in self.field_errors]
        if self.details:
            error.update(self.details)
        return {"error": error}


def bad_request(message: str, *errors: FieldError, code: str = "invalid_request") -> RequestError:
    return RequestError(400, code, message, list(errors))


def limit_exceeded(field: str, found: str, limit: int, unit: str, variable: str) -> RequestError:
    """A 400 for a request above one of the function's limits, naming the variable that
    sets it: ``{field} {found}; the limit is {limit} (set by {variable})``."""
    return RequestError(
        400,
        "limit_exceeded",
        f"{field} {found}; the limit is {limit} (set by {variable})",
        [FieldError(field, f"at most {limit}{unit}")],
        {"limit": limit, "limit_variable": variable},
    )


_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: bool is a subclass of int
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages a caller understands."""
    if value is None:
        return "null"
    for python_type, name in _JSON_TYPES:
        if isinstance(value, python_type):
            return name
    return type(value).__name__


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages never echo a huge input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
