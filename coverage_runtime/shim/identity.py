"""Who this execution environment is: function, version, environment id, init time.

These name the S3 object that holds the environment's coverage, so they must
be stable for the life of the environment and safe inside an S3 key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from coverage_runtime import env as names

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._$-")
_UNSAFE = r"[^A-Za-z0-9._$-]+"  # compiled only for a name that needs it: see `errors`


def _safe(value: str) -> str:
    if not _SAFE.issuperset(value):
        value = re.sub(_UNSAFE, "-", value)
    return value.strip("-") or "unknown"


def environment_id_from(log_stream: str | None) -> str | None:
    """The id in a Lambda log stream name, e.g. ``2026/11/25/[$LATEST]0a1b2c``.

    Lambda gives each execution environment its own log stream, and the hex
    after the bracket is unique to it.  The RIE sets the stream to plain
    ``$LATEST``, which is shared by every run, so it does not count.
    """
    if not log_stream or "]" not in log_stream:
        return None
    tail = log_stream.rsplit("]", 1)[1]
    return _safe(tail) if len(tail) >= 8 and tail.isascii() and tail.isalnum() else None


class EnvironmentIdentity(NamedTuple):
    """(A `NamedTuple` because the init creates it: see `errors.ConfigProblem`.)"""

    function_name: str
    function_version: str
    environment_id: str
    init_time: datetime

    @property
    def init_date(self) -> str:
        return self.init_time.strftime("%Y-%m-%d")

    @classmethod
    def detect(cls, environ: Mapping[str, str] | None = None) -> EnvironmentIdentity:
        env = os.environ if environ is None else environ
        return cls(
            function_name=_safe(env.get(names.FUNCTION_NAME) or "local"),
            function_version=_safe(env.get(names.FUNCTION_VERSION) or "$LATEST"),
            environment_id=environment_id_from(env.get(names.LOG_STREAM_NAME)) or _random_id(),
            init_time=datetime.now(UTC),
        )

    def exported(self) -> str:
        """This identity as one string, for processes started later (`imported`)."""
        return "\t".join(
            (
                self.function_name,
                self.function_version,
                self.environment_id,
                self.init_time.isoformat(),
            )
        )

    @classmethod
    def imported(cls, value: str) -> EnvironmentIdentity | None:
        """The identity `exported` wrote, or None if ``value`` is not one."""
        parts = value.split("\t")
        if len(parts) != 4 or not all(parts):
            return None
        try:
            init_time = datetime.fromisoformat(parts[3])
        except ValueError:
            return None
        return cls(_safe(parts[0]), _safe(parts[1]), _safe(parts[2]), init_time)


def _random_id() -> str:
    """An environment id where Lambda's log stream name gives none (a host, the RIE):
    `uuid` imported here, not at every cold start (with `_uuid`, ~0.7 ms)."""
    import uuid

    return uuid.uuid4().hex
