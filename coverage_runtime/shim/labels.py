"""Per-invocation labels: where they come from, and what is admitted.

A label names who ran an invocation (an integration test's node id, a
request kind) and becomes the coverage.py dynamic context of every line and
arc that invocation runs, so ``coverage report --contexts`` and
``lambda-coverage report --context`` answer "which test ran this line".

The first source that gives one wins: the caller's ``ClientContext``
(``custom["coverage-label"]``), the ``x-coverage-label`` HTTP header of an
API Gateway or function URL event, the ``@coverage_handler`` decorator's
``kind(event)``.  The environment's init is ``init``; an invocation without
a label records under coverage.py's empty context, as without labels.

Labels are anyone's input (a header is), so they are bounded: a length,
printable characters only, and a number of distinct labels per environment
after which one overflow label stands for the rest (logged once).  Nothing
here raises into the invocation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from coverage_runtime.shim import structured_log

# The sources `COVERAGE_LABELS` can name.
CLIENT_CONTEXT = "client-context"
HEADER = "header"
KIND = "kind"
SOURCES = (CLIENT_CONTEXT, HEADER, KIND)
NONE = "none"  # `COVERAGE_LABELS=none`: no labels at all, as before labels existed
DEFAULT_SOURCES = (CLIENT_CONTEXT,)

INIT = "init"  # what the environment's init runs under
UNLABELLED = ""  # coverage.py's empty context
OVERFLOW = "(other)"  # every label past the limit
CUSTOM_KEY = "coverage-label"  # in ClientContext.custom
HEADER_NAME = "x-coverage-label"

MAX_LENGTH = 200
DEFAULT_MAX_LABELS = 1000

# A label header somewhere in an event's JSON, any case: only then is the body parsed.
_HEADER_IN_BODY = rb'"x-coverage-label"\s*:'  # compiled on first use: see `errors`


def clean(value: object) -> str | None:
    """``value`` as a label: a non-empty string, at most `MAX_LENGTH` characters,
    with anything unprintable (control characters, bidi overrides) replaced by
    ``?``; None when there is none."""
    if not isinstance(value, str):
        return None
    text = value.strip()[:MAX_LENGTH]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    return text or None


def from_client_context(raw: str | None) -> str | None:
    """The label in the ``Lambda-Runtime-Client-Context`` header (JSON), if any."""
    if not raw or CUSTOM_KEY not in raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None  # awslambdaric reports a malformed header itself
    custom = found.get("custom") if isinstance(found, dict) else None
    return clean(custom.get(CUSTOM_KEY)) if isinstance(custom, dict) else None


def from_event(body: bytes | str | None) -> str | None:
    """The ``x-coverage-label`` header of an API Gateway (REST, HTTP API) or
    function URL event, if any.  The body is parsed only when it names the header."""
    if not body:
        return None
    raw = body.encode() if isinstance(body, str) else body
    if not re.search(_HEADER_IN_BODY, raw, re.IGNORECASE):
        return None
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("requestContext"), dict):
        return None  # only HTTP events carry headers that mean this
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field)
        if isinstance(headers, Mapping):
            for name, value in headers.items():
                if isinstance(name, str) and name.lower() == HEADER_NAME:
                    first = (value[0] if value else None) if isinstance(value, list) else value
                    return clean(first)
    return None


class LabelBook:
    """The distinct labels of one environment, at most ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = {INIT, UNLABELLED}
        self.overflowed = 0  # invocations whose label became `OVERFLOW`

    def admit(self, label: str) -> str:
        """``label``, or `OVERFLOW` once ``limit`` others were seen (logged once)."""
        seen = self.seen
        if label in seen:
            return label
        if self.distinct < self.limit:
            seen.add(label)
            return label
        if not self.overflowed:
            structured_log.warning(
                "too many distinct coverage labels in this environment: the next ones are "
                f"recorded as {OVERFLOW!r}",
                limit=self.limit,
                label=label,  # (JSON-escaped by the log record)
            )
        self.overflowed += 1
        return OVERFLOW

    @property
    def distinct(self) -> int:
        """Labels seen (``init`` and the empty context not counted)."""
        return len(self.seen) - 2
