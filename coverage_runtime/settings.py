"""Configuration of the coverage runtime, read once from the environment.

Every variable is validated at init.  All problems are collected before
anything is reported, so a user who made two typos learns about both from one
cold start instead of two deployments.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

from coverage_runtime.errors import ConfigProblem, ConfigurationError
from coverage_runtime.layout import DEFAULT_PREFIX

T = TypeVar("T")

MODES = ("full", "selective")
CORES = ("sysmon", "ctrace", "pytrace")
SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
BOOL_ALLOWED = "one of " + ", ".join(TRUE_WORDS + FALSE_WORDS)

# S3 bucket naming rules (general purpose buckets): 3-63 characters, lower
# case letters, digits, dots and hyphens, starting and ending with a letter or digit.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")

DEFAULT_FLUSH_INTERVAL_SECONDS = 60
DEFAULT_SHUTDOWN_BUDGET_MS = 400
# Lambda gives the runtime 500 ms after SIGTERM when an internal extension is
# registered; the RIE gives 600 ms.  A budget above that can never be met.
MAX_SHUTDOWN_BUDGET_MS = 2000
MIN_SHUTDOWN_BUDGET_MS = 10
DEFAULT_DATA_DIR = "/tmp/lambda-coverage"  # noqa: S108 - /tmp is the only writable path in Lambda


def sysmon_supports(
    *, branch: bool, contexts: bool, version: tuple[int, int] | None = None
) -> bool:
    """Can coverage.py's ``sysmon`` core measure what was asked on this Python?

    ``sys.monitoring`` exists from 3.12; coverage.py measures branches with it
    only from 3.14, and never records dynamic contexts with it.
    """
    major_minor = version or sys.version_info[:2]
    if contexts:
        return False
    if branch:
        return major_minor >= (3, 14)
    return major_minor >= (3, 12)


@dataclass(frozen=True)
class Settings:
    """Everything the runtime needs to know, typed and validated."""

    enabled: bool = True
    mode: str = "full"
    branch: bool = False
    contexts: bool = False
    source: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    omit: tuple[str, ...] = ()
    core: str | None = None
    core_requested: bool = False
    flush_interval_seconds: int = DEFAULT_FLUSH_INTERVAL_SECONDS
    shutdown_budget_ms: int = DEFAULT_SHUTDOWN_BUDGET_MS
    bucket: str | None = None
    prefix: str = DEFAULT_PREFIX
    sse: str = "AES256"
    kms_key_id: str | None = None
    expected_owner: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    data_dir: str = DEFAULT_DATA_DIR
    code_revision: str | None = None

    @property
    def uploads_enabled(self) -> bool:
        return self.bucket is not None

    @property
    def selective(self) -> bool:
        return self.mode == "selective"


class _Reader:
    """Reads variables from one environment mapping, collecting problems."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[ConfigProblem] = []

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def parse(self, name: str, default: T, convert: Callable[[str], T | None], allowed: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        result = convert(value)
        if result is None:
            self.problems.append(ConfigProblem(name, value, allowed))
            return default
        return result

    def boolean(self, name: str, default: bool) -> bool:
        def convert(value: str) -> bool | None:
            word = value.lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            return None

        return self.parse(name, default, convert, BOOL_ALLOWED)

    def choice(self, name: str, default: str, choices: tuple[str, ...], *, fold: bool) -> str:
        def convert(value: str) -> str | None:
            for choice in choices:
                if value == choice or (fold and value.lower() == choice.lower()):
                    return choice
            return None

        return self.parse(name, default, convert, "one of " + ", ".join(choices))

    def integer(self, name: str, default: int, low: int, high: int | None) -> int:
        def convert(value: str) -> int | None:
            try:
                number = int(value)
            except ValueError:
                return None
            if number < low or (high is not None and number > high):
                return None
            return number

        bounds = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        return self.parse(name, default, convert, bounds)

    def pattern(self, name: str, regex: re.Pattern[str], allowed: str) -> str | None:
        return self.parse(name, None, lambda v: v if regex.match(v) else None, allowed)

    def csv(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        return tuple(part.strip() for part in value.split(",") if part.strip())


def _url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return value
    return None


def _prefix(value: str) -> str | None:
    if value.startswith("/") or "//" in value:
        return None
    return value if value.endswith("/") else value + "/"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration.

    Raises `ConfigurationError` listing every invalid variable.  A missing
    ``COVERAGE_S3_BUCKET`` is not an error here: coverage is still measured
    and the runtime reports that uploads are off.
    """
    env = os.environ if environ is None else environ
    read = _Reader(env)

    enabled = read.boolean("COVERAGE_ENABLED", True)
    mode = read.choice("COVERAGE_MODE", "full", MODES, fold=True)
    branch = read.boolean("COVERAGE_BRANCH", False)
    contexts = read.boolean("COVERAGE_CONTEXTS", False)

    task_root = read.raw("LAMBDA_TASK_ROOT") or os.getcwd()
    source = read.csv("COVERAGE_SOURCE") or (task_root,)
    for path in source:
        if not os.path.isabs(path) or os.path.dirname(os.path.normpath(path)) == path:
            # coverage.py refuses a file system root as a source directory.
            read.problems.append(
                ConfigProblem(
                    "COVERAGE_SOURCE",
                    path,
                    "absolute directory paths other than '/', comma-separated "
                    "(defaults to $LAMBDA_TASK_ROOT)",
                )
            )

    core_value = read.raw("COVERAGE_CORE")
    core_requested = core_value is not None
    core = read.choice("COVERAGE_CORE", "", CORES, fold=True) or None
    if core is None and not core_requested:
        core = "sysmon" if sysmon_supports(branch=branch, contexts=contexts) else None

    flush_interval = read.integer(
        "COVERAGE_FLUSH_INTERVAL_SECONDS", DEFAULT_FLUSH_INTERVAL_SECONDS, 0, None
    )
    budget = read.integer(
        "COVERAGE_SHUTDOWN_BUDGET_MS",
        DEFAULT_SHUTDOWN_BUDGET_MS,
        MIN_SHUTDOWN_BUDGET_MS,
        MAX_SHUTDOWN_BUDGET_MS,
    )

    bucket = read.pattern(
        "COVERAGE_S3_BUCKET",
        _BUCKET_RE,
        "an S3 bucket name: 3-63 lower-case letters, digits, dots or hyphens",
    )
    prefix = read.parse(
        "COVERAGE_S3_PREFIX",
        DEFAULT_PREFIX,
        _prefix,
        "a key prefix without a leading '/' or '//' (a trailing '/' is added)",
    )
    if "COVERAGE_S3_PREFIX" in env and env["COVERAGE_S3_PREFIX"].strip() == "":
        prefix = ""  # explicitly empty: keys start at the function name
    sse = read.choice("COVERAGE_S3_SSE", "AES256", SSE_ALGORITHMS, fold=False)
    kms_key_id = read.raw("COVERAGE_S3_KMS_KEY_ID")
    if kms_key_id and not sse.startswith("aws:kms"):
        read.problems.append(
            ConfigProblem(
                "COVERAGE_S3_KMS_KEY_ID",
                kms_key_id,
                "unset unless COVERAGE_S3_SSE is aws:kms or aws:kms:dsse",
            )
        )
    expected_owner = read.pattern(
        "COVERAGE_S3_EXPECTED_OWNER", _ACCOUNT_RE, "a 12-digit AWS account id"
    )
    endpoint_url = read.parse(
        "COVERAGE_S3_ENDPOINT_URL", None, _url, "an http:// or https:// URL (local S3 only)"
    )
    data_dir = read.raw("COVERAGE_DATA_DIR") or DEFAULT_DATA_DIR
    if not os.path.isabs(data_dir):
        read.problems.append(ConfigProblem("COVERAGE_DATA_DIR", data_dir, "an absolute path"))

    if read.problems:
        raise ConfigurationError(read.problems)

    return Settings(
        enabled=enabled,
        mode=mode,
        branch=branch,
        contexts=contexts,
        source=tuple(os.path.normpath(p) for p in source),
        include=read.csv("COVERAGE_INCLUDE_PATTERNS"),
        omit=read.csv("COVERAGE_EXCLUDE_PATTERNS"),
        core=core,
        core_requested=core_requested,
        flush_interval_seconds=flush_interval,
        shutdown_budget_ms=budget,
        bucket=bucket,
        prefix=prefix,
        sse=sse,
        kms_key_id=kms_key_id,
        expected_owner=expected_owner,
        endpoint_url=endpoint_url,
        region=read.raw("AWS_REGION") or read.raw("AWS_DEFAULT_REGION"),
        data_dir=data_dir,
        code_revision=read.raw("CODE_REVISION"),
    )


def coverage_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """The master switch alone, read without validating anything else.

    The entry point calls this first so that ``COVERAGE_ENABLED=false`` hands
    over to awslambdaric before anything else is imported.  An unreadable
    value counts as enabled, so the full validation reports it.
    """
    env = os.environ if environ is None else environ
    return env.get("COVERAGE_ENABLED", "true").strip().lower() not in FALSE_WORDS
