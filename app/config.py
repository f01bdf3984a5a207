"""Settings of the example function, read once from the environment.

The admin limits exist so that one request cannot keep an execution
environment busy for minutes (``performance_test`` with a billion iterations)
or exhaust its memory.  Invalid values fall back to the default and are
reported, once, as a structured error and in the health document, so a typo
is visible without breaking the function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from coverage_runtime.env import EnvReader
from coverage_runtime.errors import ConfigProblem

DEFAULT_SERVICE = "lambda-coverage-example"

# The example function's variables.
ADMIN_TOKEN = "ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
ADMIN_ALLOW_DIRECT = "ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN"
ADMIN_MAX_ITERATIONS = "ADMIN_MAX_ITERATIONS"
ADMIN_MAX_ITEMS = "ADMIN_MAX_ITEMS"
MAX_PAYLOAD_BYTES = "APP_MAX_PAYLOAD_BYTES"
MAX_AGGREGATE_VALUES = "APP_MAX_AGGREGATE_VALUES"
MAX_STRING_LENGTH = "APP_MAX_STRING_LENGTH"
HEALTH_TIMEOUT_SECONDS = "HEALTH_CHECK_TIMEOUT_SECONDS"
HEALTH_DATABASE_URL = "HEALTH_DATABASE_URL"
HEALTH_EXTERNAL_API_URL = "HEALTH_EXTERNAL_API_URL"
HEALTH_MEMORY_DEGRADED_PERCENT = "HEALTH_MEMORY_DEGRADED_PERCENT"

DATABASE_SCHEMES = ("postgres", "postgresql", "mysql", "redis", "tcp")
HTTP_SCHEMES = ("http", "https")


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
    invalid: tuple[ConfigProblem, ...] = field(default_factory=tuple)


def load_config(environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read every setting; a refused value keeps its default and is listed."""
    read = EnvReader(environ)
    defaults = AppConfig()
    return AppConfig(
        admin_token=read.raw(ADMIN_TOKEN),  # never shown, never validated
        admin_allow_direct=read.boolean(ADMIN_ALLOW_DIRECT, defaults.admin_allow_direct),
        max_iterations=read.integer(ADMIN_MAX_ITERATIONS, defaults.max_iterations, 1, 10_000_000),
        max_items=read.integer(ADMIN_MAX_ITEMS, defaults.max_items, 1, 1_000_000),
        max_payload_bytes=read.integer(
            MAX_PAYLOAD_BYTES,
            defaults.max_payload_bytes,
            64,
            6 * 1024 * 1024,
            "an integer from 64 to 6291456 (Lambda's payload limit)",
        ),
        max_aggregate_values=read.integer(
            MAX_AGGREGATE_VALUES, defaults.max_aggregate_values, 1, 1_000_000
        ),
        max_string_length=read.integer(MAX_STRING_LENGTH, defaults.max_string_length, 1, 1_000_000),
        health_timeout_seconds=read.number(
            HEALTH_TIMEOUT_SECONDS,
            defaults.health_timeout_seconds,
            0.05,
            30.0,
            "a number of seconds from 0.05 to 30",
        ),
        health_database_url=read.url(
            HEALTH_DATABASE_URL,
            DATABASE_SCHEMES,
            "a URL with host (and port) and one of the schemes " + ", ".join(DATABASE_SCHEMES),
        ),
        health_external_api_url=read.url(
            HEALTH_EXTERNAL_API_URL, HTTP_SCHEMES, "an http:// or https:// URL"
        ),
        memory_degraded_percent=read.number(
            HEALTH_MEMORY_DEGRADED_PERCENT,
            defaults.memory_degraded_percent,
            1.0,
            100.0,
            "a percentage from 1 to 100",
        ),
        invalid=tuple(read.problems),
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
