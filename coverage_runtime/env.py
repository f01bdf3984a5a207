"""Reading the environment: the variable names, and the one way each kind of value is parsed.

The shim, the combiner, the report CLI and the example function all read
environment variables.  Their names are constants here, a yes/no value and a
comma-separated list mean the same everywhere, and `EnvReader` collects every
refused value instead of stopping at the first, so one cold start reports
every typo.

This module imports only ``os`` at load, which Python has imported already:
the entry point reads ``COVERAGE_ENABLED`` through it before handing a
disabled function over to awslambdaric, and that path must cost nothing.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import TypeVar

    from coverage_runtime.errors import ConfigProblem

    T = TypeVar("T")

# The shim's variables.
ENABLED = "COVERAGE_ENABLED"
MODE = "COVERAGE_MODE"
BRANCH = "COVERAGE_BRANCH"
CONTEXTS = "COVERAGE_CONTEXTS"  # the decorator's kind as a label (same as LABELS=...,kind)
LABELS = "COVERAGE_LABELS"
MAX_LABELS = "COVERAGE_MAX_LABELS"
SOURCE = "COVERAGE_SOURCE"
INCLUDE_PATTERNS = "COVERAGE_INCLUDE_PATTERNS"
EXCLUDE_PATTERNS = "COVERAGE_EXCLUDE_PATTERNS"
CORE = "COVERAGE_CORE"
FLUSH_INTERVAL_SECONDS = "COVERAGE_FLUSH_INTERVAL_SECONDS"
SHUTDOWN_BUDGET_MS = "COVERAGE_SHUTDOWN_BUDGET_MS"
DATA_DIR = "COVERAGE_DATA_DIR"
CODE_REVISION = "CODE_REVISION"
S3_BUCKET = "COVERAGE_S3_BUCKET"
S3_PREFIX = "COVERAGE_S3_PREFIX"
S3_SSE = "COVERAGE_S3_SSE"
S3_KMS_KEY_ID = "COVERAGE_S3_KMS_KEY_ID"
S3_EXPECTED_OWNER = "COVERAGE_S3_EXPECTED_OWNER"
S3_ENDPOINT_URL = "COVERAGE_S3_ENDPOINT_URL"  # a local S3 only (tests, demo)
TEST_PAUSE_DIR = "COVERAGE_TEST_PAUSE_DIR"  # tests only: see shim.pause_points
TEST_PAUSE_AT = "COVERAGE_TEST_PAUSE_AT"
TEST_REPLAY_DELAY_MS = "COVERAGE_TEST_REPLAY_DELAY_MS"  # tests only: see shim.partial_replay
BENCH_TASK_CPU = "COVERAGE_BENCH_TASK_CPU"  # benchmarks only: see shim.task_cpu
BENCH_DELTA_SHARE = "COVERAGE_BENCH_DELTA_SHARE"  # benchmarks only: see shim.session
# Set by the shim's main process for its Managed Instances workers (whatever the
# start method): the environment they all measure for.  Not for users.
WORKERS_ENVIRONMENT = "_COVERAGE_WORKERS_ENVIRONMENT"

# Lambda's own variables.
AWS_REGION = "AWS_REGION"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
RUNTIME_API = "AWS_LAMBDA_RUNTIME_API"
TASK_ROOT = "LAMBDA_TASK_ROOT"
FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
FUNCTION_VERSION = "AWS_LAMBDA_FUNCTION_VERSION"
FUNCTION_MEMORY_SIZE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
LOG_STREAM_NAME = "AWS_LAMBDA_LOG_STREAM_NAME"
MAX_CONCURRENCY = "AWS_LAMBDA_MAX_CONCURRENCY"  # Lambda Managed Instances
# The function role's credentials, as Lambda sets them (botocore's EnvProvider names).
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a name
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"  # noqa: S105 - a name
AWS_SECURITY_TOKEN = "AWS_SECURITY_TOKEN"  # noqa: S105 - the older name botocore reads
AWS_CA_BUNDLE = "AWS_CA_BUNDLE"
AWS_USE_FIPS_ENDPOINT = "AWS_USE_FIPS_ENDPOINT"
AWS_USE_DUALSTACK_ENDPOINT = "AWS_USE_DUALSTACK_ENDPOINT"
# The AWS SDKs' configured endpoints (LocalStack, a VPC endpoint): boto3 honours them.
AWS_ENDPOINT_URL_S3 = "AWS_ENDPOINT_URL_S3"
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
BOOL_ALLOWED = "one of " + ", ".join(TRUE_WORDS + FALSE_WORDS)


def parse_bool(value: str) -> bool | None:
    """``True`` or ``False`` for the words above (any case), None for anything else."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    return False if word in FALSE_WORDS else None


def parse_list(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """A comma-separated list (or a list of such strings): items stripped, empty ones
    and repeats dropped, order kept."""
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    items = (part.strip() for text in values for part in str(text).split(","))
    return tuple(dict.fromkeys(item for item in items if item))


def coverage_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """The master switch alone, read without validating anything else.

    An unreadable value counts as enabled, so that the full validation
    (`coverage_runtime.settings`) reports it.
    """
    value = (os.environ if environ is None else environ).get(ENABLED, "")
    return parse_bool(value) is not False


def region(environ: Mapping[str, str] | None = None) -> str | None:
    """The region Lambda (or the user) set, if any."""
    env = os.environ if environ is None else environ
    return (
        (env.get(AWS_REGION) or "").strip() or (env.get(AWS_DEFAULT_REGION) or "").strip() or None
    )


def configured_s3_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint the AWS SDKs' configuration names, as boto3 reads it:
    ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, unless
    ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` is true.  ValueError if it is not an
    http(s) URL (boto3 refuses it too)."""
    env = os.environ if environ is None else environ
    if parse_bool(env.get(AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, "")) is True:
        return None
    for name in (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL):
        value = (env.get(name) or "").strip()
        if value:
            if parse_url(value) is None:
                raise ValueError(f"{name}={value!r} is not an http:// or https:// URL")
            return value
    return None


def parse_url(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """``value`` when it is a URL of one of ``schemes`` with a host (and a valid port)."""
    from urllib.parse import urlparse

    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.hostname:
        return None
    try:
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    return value


class EnvReader:
    """Reads variables from one environment mapping, collecting what it refuses.

    A refused value gives the default back and is listed in `problems`; the
    caller decides whether that stops it (the shim's settings) or is only
    reported (the example function's limits).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.problems: list[ConfigProblem] = []

    def raw(self, name: str) -> str | None:
        """The value stripped, or None when unset or blank."""
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def refuse(self, name: str, value: str, allowed: str) -> None:
        from coverage_runtime.errors import ConfigProblem

        self.problems.append(ConfigProblem.found(name, value, allowed))

    def parse(self, name: str, default: T, convert: Callable[[str], T | None], allowed: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        result = convert(value)
        if result is None:
            self.refuse(name, value, allowed)
            return default
        return result

    def boolean(self, name: str, default: bool) -> bool:
        return self.parse(name, default, parse_bool, BOOL_ALLOWED)

    def choice(self, name: str, default: str, choices: tuple[str, ...], *, fold: bool) -> str:
        def convert(value: str) -> str | None:
            for choice in choices:
                if value == choice or (fold and value.lower() == choice.lower()):
                    return choice
            return None

        return self.parse(name, default, convert, "one of " + ", ".join(choices))

    def integer(
        self, name: str, default: int, low: int, high: int | None, allowed: str | None = None
    ) -> int:
        def convert(value: str) -> int | None:
            try:
                number = int(value)
            except ValueError:
                return None
            if number < low or (high is not None and number > high):
                return None
            return number

        bounds = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        return self.parse(name, default, convert, allowed or bounds)

    def number(self, name: str, default: float, low: float, high: float, allowed: str) -> float:
        def convert(value: str) -> float | None:
            try:
                number = float(value)
            except ValueError:
                return None
            return number if low <= number <= high else None  # NaN is refused too

        return self.parse(name, default, convert, allowed)

    def url(self, name: str, schemes: tuple[str, ...], allowed: str) -> str | None:
        return self.parse(name, None, lambda v: parse_url(v, schemes), allowed)

    def list(self, name: str) -> tuple[str, ...]:
        return parse_list(self.raw(name))
