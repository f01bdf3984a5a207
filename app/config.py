"""Settings of the example function, read once from the environment.

The admin limits exist so that one request cannot keep an execution
environment busy for minutes (``performance_test`` with a billion iterations)
or exhaust its memory.  Invalid values fall back to the default and are
reported, once, as a structured error and in the health document, so a typo
is visible without breaking the function.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlparse

from coverage_runtime.errors import redacted
from coverage_runtime.settings import FALSE_WORDS, TRUE_WORDS

T = TypeVar("T")

DEFAULT_SERVICE = "lambda-coverage-example"


@dataclass(frozen=True)
class InvalidVariable:
    """One environment variable whose value was refused."""

    variable: str
    value: str
    allowed: str

    def as_dict(self) -> dict[str, str]:
        return {"variable": self.variable, "value": self.value, "allowed": self.allowed}


@dataclass(frozen=True)
class AppConfig:
    """Everything the example function reads from its environment."""

    admin_token: str | None = None
    # Direct invocations may run admin actions without a token only when asked
    # for: an API Gateway REST integration without proxy passes client JSON as
    # the event, which looks like a direct invocation.
    admin_allow_direct: bool = False
    max_iterations: int = 20_000
    max_items: int = 1_000
    max_payload_bytes: int = 262_144
    max_aggregate_values: int = 10_000
    max_string_length: int = 10_000
    health_timeout_seconds: float = 2.0
    health_database_url: str | None = None
    health_external_api_url: str | None = None
    memory_degraded_percent: float = 90.0
    invalid: tuple[InvalidVariable, ...] = field(default_factory=tuple)


def _integer(low: int, high: int) -> Callable[[str], int | None]:
    def convert(value: str) -> int | None:
        try:
            number = int(value)
        except ValueError:
            return None
        return number if low <= number <= high else None

    return convert


def _number(low: float, high: float) -> Callable[[str], float | None]:
    def convert(value: str) -> float | None:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if low <= number <= high else None

    return convert


def _url(schemes: tuple[str, ...]) -> Callable[[str], str | None]:
    def convert(value: str) -> str | None:
        parsed = urlparse(value)
        if parsed.scheme not in schemes or not parsed.hostname:
            return None
        try:
            parsed.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            return None
        return value

    return convert


DATABASE_SCHEMES = ("postgres", "postgresql", "mysql", "redis", "tcp")
HTTP_SCHEMES = ("http", "https")


def _boolean(value: str) -> bool | None:
    """The runtime's own words (settings.TRUE_WORDS / FALSE_WORDS), so both agree."""
    word = value.lower()
    if word in TRUE_WORDS:
        return True
    return False if word in FALSE_WORDS else None


def load_config(environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read every setting; a refused value keeps its default and is listed."""
    env = os.environ if environ is None else environ
    invalid: list[InvalidVariable] = []

    def read(name: str, default: T, convert: Callable[[str], T | None], allowed: str) -> T:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        value = convert(raw)
        if value is None:
            shown = redacted(raw) if name != "ADMIN_TOKEN" else "***"
            invalid.append(InvalidVariable(name, shown, allowed))
            return default
        return value

    defaults = AppConfig()
    token = env.get("ADMIN_TOKEN", "").strip() or None
    return AppConfig(
        admin_token=token,
        admin_allow_direct=read(
            "ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN",
            defaults.admin_allow_direct,
            _boolean,
            "true or false",
        ),
        max_iterations=read(
            "ADMIN_MAX_ITERATIONS",
            defaults.max_iterations,
            _integer(1, 10_000_000),
            "an integer from 1 to 10000000",
        ),
        max_items=read(
            "ADMIN_MAX_ITEMS",
            defaults.max_items,
            _integer(1, 1_000_000),
            "an integer from 1 to 1000000",
        ),
        max_payload_bytes=read(
            "APP_MAX_PAYLOAD_BYTES",
            defaults.max_payload_bytes,
            _integer(64, 6 * 1024 * 1024),
            "an integer from 64 to 6291456 (Lambda's payload limit)",
        ),
        max_aggregate_values=read(
            "APP_MAX_AGGREGATE_VALUES",
            defaults.max_aggregate_values,
            _integer(1, 1_000_000),
            "an integer from 1 to 1000000",
        ),
        max_string_length=read(
            "APP_MAX_STRING_LENGTH",
            defaults.max_string_length,
            _integer(1, 1_000_000),
            "an integer from 1 to 1000000",
        ),
        health_timeout_seconds=read(
            "HEALTH_CHECK_TIMEOUT_SECONDS",
            defaults.health_timeout_seconds,
            _number(0.05, 30.0),
            "a number of seconds from 0.05 to 30",
        ),
        health_database_url=read(
            "HEALTH_DATABASE_URL",
            None,
            _url(DATABASE_SCHEMES),
            "a URL with host (and port) and one of the schemes " + ", ".join(DATABASE_SCHEMES),
        ),
        health_external_api_url=read(
            "HEALTH_EXTERNAL_API_URL",
            None,
            _url(HTTP_SCHEMES),
            "an http:// or https:// URL",
        ),
        memory_degraded_percent=read(
            "HEALTH_MEMORY_DEGRADED_PERCENT",
            defaults.memory_degraded_percent,
            _number(1.0, 100.0),
            "a percentage from 1 to 100",
        ),
        invalid=tuple(invalid),
    )


_config: AppConfig | None = None


def current() -> AppConfig:
    """The configuration of this execution environment (read on first use)."""
    global _config  # noqa: PLW0603 - one configuration per process
    if _config is None:
        _config = load_config()
    return _config


def reload(environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read the environment again (tests and local scripts change it)."""
    global _config  # noqa: PLW0603 - one configuration per process
    _config = load_config(environ)
    return _config
