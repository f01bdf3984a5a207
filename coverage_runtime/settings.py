"""Configuration of the coverage runtime, read once from the environment.

Every variable is validated at init.  All problems are collected before
anything is reported, so a user who made two typos learns about both from one
cold start instead of two deployments.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import NamedTuple

from coverage_runtime import env
from coverage_runtime.env import EnvReader
from coverage_runtime.errors import ConfigurationError
from coverage_runtime.layout import DEFAULT_PREFIX, PREFIX_RULE, parse_prefix
from coverage_runtime.shim import labels as label_sources

MODES = ("full", "selective")
CORES = ("sysmon", "ctrace", "pytrace")
SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")

_BUCKET_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")

DEFAULT_FLUSH_INTERVAL_SECONDS = 60
DEFAULT_SHUTDOWN_BUDGET_MS = 400
# Lambda gives the runtime 500 ms after SIGTERM when an internal extension is
# registered; the RIE gives 600 ms.  A budget above that can never be met.
MAX_SHUTDOWN_BUDGET_MS = 2000
MIN_SHUTDOWN_BUDGET_MS = 10
DEFAULT_DATA_DIR = "/tmp/lambda-coverage"  # noqa: S108 - /tmp is the only writable path in Lambda


def _bucket_name(value: str) -> str | None:
    """S3 bucket naming rules (general purpose buckets): 3-63 characters, lower
    case letters, digits, dots and hyphens, starting and ending with a letter or
    digit.  (Not a regular expression: compiling one costs ~0.4 ms of the init.)"""
    fits = 3 <= len(value) <= 63 and _BUCKET_CHARACTERS.issuperset(value)
    return value if fits and value[0] not in ".-" and value[-1] not in ".-" else None


def _account_id(value: str) -> str | None:
    return value if len(value) == 12 and value.isascii() and value.isdigit() else None


def sysmon_supports(*, branch: bool, version: tuple[int, int] | None = None) -> bool:
    """Can coverage.py's ``sysmon`` core measure what was asked on this Python?

    ``sys.monitoring`` exists from 3.12; coverage.py measures branches with it
    only from 3.14.  (Labels work on every core: the gate records them, not
    coverage.py's dynamic contexts, which ``sysmon`` lacks.)
    """
    major_minor = version or sys.version_info[:2]
    if branch:
        return major_minor >= (3, 14)
    return major_minor >= (3, 12)


class Settings(NamedTuple):
    """Everything the runtime needs to know, typed and validated.

    (A `NamedTuple` because the init creates it: see `errors.ConfigProblem`.)
    """

    enabled: bool = True
    mode: str = "full"
    branch: bool = False
    contexts: bool = False
    # Where per-invocation labels come from (`shim.labels`); empty: no labels.
    labels: tuple[str, ...] = ()
    max_labels: int = label_sources.DEFAULT_MAX_LABELS
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

    @property
    def labelled(self) -> bool:
        """Are invocations labelled (and the init recorded as ``init``)?"""
        return bool(self.labels)


def _label_sources(read: EnvReader, contexts: bool) -> tuple[str, ...]:
    """`COVERAGE_LABELS`: the sources in the order they are asked (first match
    wins in `shim.labels`' fixed order anyway), ``none``, or the default."""
    names = read.list(env.LABELS)
    allowed = f"{label_sources.NONE}, or a comma-separated list of " + ", ".join(
        label_sources.SOURCES
    )
    if names == (label_sources.NONE,):
        chosen: tuple[str, ...] = ()
    elif not names:
        chosen = label_sources.DEFAULT_SOURCES
    else:
        chosen = tuple(n.lower() for n in names)
        bad = [n for n in chosen if n not in label_sources.SOURCES]
        if bad:
            read.refuse(env.LABELS, ",".join(names), allowed)
            chosen = label_sources.DEFAULT_SOURCES
    if contexts and label_sources.KIND not in chosen:
        chosen = (*chosen, label_sources.KIND)
    return tuple(s for s in label_sources.SOURCES if s in chosen)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration.

    Raises `ConfigurationError` listing every invalid variable.  A missing
    ``COVERAGE_S3_BUCKET`` is not an error here: coverage is still measured
    and the runtime reports that uploads are off.
    """
    read = EnvReader(environ)

    enabled = read.boolean(env.ENABLED, True)
    mode = read.choice(env.MODE, "full", MODES, fold=True)
    branch = read.boolean(env.BRANCH, False)
    contexts = read.boolean(env.CONTEXTS, False)

    task_root = read.raw(env.TASK_ROOT) or os.getcwd()
    source = read.list(env.SOURCE) or (task_root,)
    for path in source:
        if not os.path.isabs(path) or os.path.dirname(os.path.normpath(path)) == path:
            # coverage.py refuses a file system root as a source directory.
            read.refuse(
                env.SOURCE,
                path,
                "absolute directory paths other than '/', comma-separated "
                "(defaults to $LAMBDA_TASK_ROOT)",
            )

    core_value = read.raw(env.CORE)
    core_requested = core_value is not None
    core = read.choice(env.CORE, "", CORES, fold=True) or None
    if core is None and not core_requested:
        core = "sysmon" if sysmon_supports(branch=branch) else None
    labels = _label_sources(read, contexts)
    max_labels = read.integer(env.MAX_LABELS, label_sources.DEFAULT_MAX_LABELS, 1, 100_000)

    flush_interval = read.integer(
        env.FLUSH_INTERVAL_SECONDS, DEFAULT_FLUSH_INTERVAL_SECONDS, 0, None
    )
    budget = read.integer(
        env.SHUTDOWN_BUDGET_MS,
        DEFAULT_SHUTDOWN_BUDGET_MS,
        MIN_SHUTDOWN_BUDGET_MS,
        MAX_SHUTDOWN_BUDGET_MS,
    )

    bucket = read.parse(
        env.S3_BUCKET,
        None,
        _bucket_name,
        "an S3 bucket name: 3-63 lower-case letters, digits, dots or hyphens",
    )
    prefix = read.parse(env.S3_PREFIX, DEFAULT_PREFIX, parse_prefix, PREFIX_RULE)
    if env.S3_PREFIX in read.environ and read.environ[env.S3_PREFIX].strip() == "":
        prefix = ""  # explicitly empty: keys start at the function name
    sse = read.choice(env.S3_SSE, "AES256", SSE_ALGORITHMS, fold=False)
    kms_key_id = read.raw(env.S3_KMS_KEY_ID)
    if kms_key_id and not sse.startswith("aws:kms"):
        read.refuse(
            env.S3_KMS_KEY_ID,
            kms_key_id,
            "unset unless COVERAGE_S3_SSE is aws:kms or aws:kms:dsse",
        )
    expected_owner = read.parse(
        env.S3_EXPECTED_OWNER, None, _account_id, "a 12-digit AWS account id"
    )
    endpoint_url = read.url(
        env.S3_ENDPOINT_URL, ("http", "https"), "an http:// or https:// URL (local S3 only)"
    )
    data_dir = read.raw(env.DATA_DIR) or DEFAULT_DATA_DIR
    if not os.path.isabs(data_dir):
        read.refuse(env.DATA_DIR, data_dir, "an absolute path")

    if read.problems:
        raise ConfigurationError(read.problems)

    return Settings(
        enabled=enabled,
        mode=mode,
        branch=branch,
        contexts=contexts,
        labels=labels,
        max_labels=max_labels,
        source=tuple(os.path.normpath(p) for p in source),
        include=read.list(env.INCLUDE_PATTERNS),
        omit=read.list(env.EXCLUDE_PATTERNS),
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
        region=env.region(read.environ),
        data_dir=data_dir,
        code_revision=read.raw(env.CODE_REVISION),
    )
