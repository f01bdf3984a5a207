"""What ``coverage_runtime.status()`` returns, typed.

The status crosses the API boundary as a plain dict, ready for ``json.dumps``
(handler code puts it into responses and logs), so its types are
`TypedDict`s: handler code reads ``status["recorded_lines"]`` with its keys
checked by a type checker, and embeds the dict as it is, without copying it
field by field into a shape of its own.

``enabled`` tells the two shapes apart: ``if status["enabled"]:`` narrows
a `CoverageStatus` to `ActiveStatus`.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class Versions(TypedDict):
    coverage_runtime: str
    coverage: str | None
    awslambdaric: str | None
    python: str


class LastUpload(TypedDict):
    """The last snapshot S3 confirmed."""

    bucket: str
    key: str
    bytes: int
    ms: float
    etag: str | None
    time: str | None
    reason: str  # what asked for it: checkpoint, flush, shutdown, ...


class LabelsStatus(TypedDict):
    """Per-invocation labels (`coverage_runtime.shim.labels`)."""

    sources: list[str]  # where labels come from (COVERAGE_LABELS); empty: no labels
    current: str | None  # what runs now is recorded under ("init" during init)
    distinct: int  # labels seen in this environment (init and unlabelled not counted)
    limit: int  # COVERAGE_MAX_LABELS
    overflowed: int  # invocations recorded as "(other)" past the limit


class InactiveStatus(TypedDict):
    """Not measuring: not started by the shim, disabled, or misconfigured."""

    enabled: Literal[False]
    reason: str


class ActiveStatus(TypedDict):
    """Measuring in this execution environment."""

    enabled: Literal[True]
    mode: str
    core: str | None  # None when coverage.py names none (it then uses its default)
    branch: bool
    contexts: bool
    labels: LabelsStatus
    source: list[str]
    versions: Versions
    collecting: bool  # measuring at this moment (selective mode: inside a block)
    paused: bool  # switched off at run time (`coverage_runtime.pause()`) until resumed
    files_measured: int
    # Line numbers coverage.py recorded (not statements: see the README), the
    # same count as the objects' ``recorded-lines`` metadata.
    recorded_lines: int
    recorded_arcs: int
    # On sysmon, until data is first needed (a checkpoint, flush, reset, shutdown),
    # the init recorder holds first hits that coverage.py has not counted yet:
    # how many events.  The counts above are then partial; 0 once coverage.py
    # took them over (status() never builds coverage.py to count them).
    recorded_events_waiting: int
    invocations: int
    handled_invocations: int
    handled_ms: float
    handled_by_kind: dict[str, int]
    uploads_enabled: bool
    upload_problem: str | None
    s3_uri: str | None
    last_upload: LastUpload | None
    last_error: str | None
    pending_checkpoint: bool  # measured data that S3 has not confirmed yet
    storage_problem: str | None
    flush_interval_seconds: int
    environment_id: str
    init_time: str | None


CoverageStatus = ActiveStatus | InactiveStatus
