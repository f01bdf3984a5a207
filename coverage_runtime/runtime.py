"""The coverage runtime of one execution environment: measure, checkpoint, ship.

`CoverageRuntime` ties the coverage.py session (`Measurement`) to the S3
object of this environment (`SnapshotUploader`) and to the lifecycle events
the shim sees: an invocation arrives, the runtime is about to wait for the
next one (the checkpoint moment: the response is already sent, so an upload
here adds nothing to its latency), and shutdown.

The S3 client is built at that same moment after the first response, not
during init: importing boto3 and building a client costs 100-200 ms, which
would otherwise lengthen every cold start.  Only an environment shut down
before its first response pays for it inside the shutdown window.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from coverage_runtime import structured_log
from coverage_runtime.environment import EnvironmentIdentity
from coverage_runtime.errors import CoverageError, UploadError
from coverage_runtime.measurement import Measurement, Snapshot
from coverage_runtime.s3_upload import SnapshotUploader, UploadResult, object_key
from coverage_runtime.settings import Settings

RUNTIME_VERSION = "0.1.0"
CHECKPOINT_DEADLINE_SECONDS = 5.0
EXIT_BUDGET_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 900


def maintenance_due(invocations: int) -> bool:
    """After invocations 1, 2, 4, ... 64, then every 64th: hot code is let go
    early, and the pass over the data costs nothing per invocation."""
    if invocations <= 0:
        return False
    return invocations & (invocations - 1) == 0 or invocations % 64 == 0


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


@functools.cache
def _package_version(name: str) -> str | None:
    """Read once: parsing a distribution's METADATA costs ~150 µs a call."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class UploadRecord:
    key: str
    bucket: str
    bytes: int
    seconds: float
    etag: str | None
    at: datetime
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "bytes": self.bytes,
            "ms": round(self.seconds * 1000, 1),
            "etag": self.etag,
            "time": _iso(self.at),
            "reason": self.reason,
        }


@dataclass
class InvocationStats:
    count: int = 0
    measured_ms: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)


class CoverageRuntime:
    """Everything the shim does for one execution environment."""

    def __init__(
        self,
        settings: Settings,
        identity: EnvironmentIdentity,
        measurement: Measurement,
        upload_problem: str | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.measurement = measurement
        self.upload_problem = upload_problem
        self._uploader: SnapshotUploader | None = None
        self._uploader_lock = threading.Lock()
        self.invocations = 0
        self.handled = InvocationStats()
        self.last_upload: UploadRecord | None = None
        self.last_error: str | None = None
        self._uploaded_size = 0
        self._flush_lock = threading.Lock()
        self._interval = float(settings.flush_interval_seconds)
        self._last_checkpoint = time.monotonic()
        self._shutdown_started = threading.Event()
        self._shutdown_done = threading.Event()

    # -- construction --------------------------------------------------------

    @classmethod
    def start(
        cls, settings: Settings, identity: EnvironmentIdentity | None = None
    ) -> CoverageRuntime:
        """Start measuring now, before the handler module is imported."""
        identity = identity or EnvironmentIdentity.detect()
        problem: str | None = None
        if settings.bucket is None:
            problem = "COVERAGE_S3_BUCKET is not set: coverage is measured but never uploaded"
            structured_log.error(problem, variable="COVERAGE_S3_BUCKET")
        # boto3 may first be imported at interpreter exit (after an init error);
        # its import of concurrent.futures registers with threading's atexit,
        # which is refused by then.  Importing that small stdlib module now avoids it.
        import concurrent.futures.thread  # noqa: F401

        data_file = os.path.join(settings.data_dir, f"{identity.environment_id}.coverage")
        measurement = Measurement(settings, data_file)
        measurement.begin()
        return cls(settings, identity, measurement, problem)

    # -- S3 ------------------------------------------------------------------

    @property
    def s3_uri(self) -> str | None:
        if self.settings.bucket is None:
            return None
        return f"s3://{self.settings.bucket}/{object_key(self.settings, self.identity)}"

    @property
    def uploads_enabled(self) -> bool:
        return self.upload_problem is None

    def uploader(self) -> SnapshotUploader:
        """The S3 uploader, built on first use; `UploadError` if it cannot be."""
        if self._uploader is not None:
            return self._uploader
        if self.upload_problem is not None:
            raise UploadError(self.upload_problem)
        with self._uploader_lock:
            if self._uploader is None:
                started = time.monotonic()
                try:
                    self._uploader = SnapshotUploader(self.settings, self.identity)
                except Exception as exc:  # a broken boto3 setup must not break the function
                    self.upload_problem = f"cannot create the S3 client: {exc}"
                    structured_log.error(self.upload_problem, errorType=type(exc).__name__)
                    raise UploadError(self.upload_problem) from exc
                structured_log.info(
                    "S3 client ready", ms=round((time.monotonic() - started) * 1000, 1)
                )
            return self._uploader

    # -- lifecycle hooks -----------------------------------------------------

    def invocation_arrived(self) -> None:
        self.invocations += 1

    def invocation_handled(self, kind: str | None, seconds: float) -> None:
        """Bookkeeping from ``@coverage_handler``."""
        self.handled.count += 1
        self.handled.measured_ms += seconds * 1000
        if kind:
            self.handled.by_kind[kind] = self.handled.by_kind.get(kind, 0) + 1

    def checkpoint_due(self) -> bool:
        if self._interval <= 0 or not self.uploads_enabled:
            return False
        return time.monotonic() - self._last_checkpoint >= self._interval

    def between_invocations(self) -> None:
        """Called after a response is posted, before waiting for the next event."""
        if self._shutdown_started.is_set():
            return
        self.measurement.compact()
        if maintenance_due(self.invocations):
            self.measurement.maintain()
        if self.invocations and self._uploader is None and self.uploads_enabled:
            with contextlib.suppress(UploadError):  # logged; status() reports it
                self.uploader()
        if not self.checkpoint_due():
            return
        self._last_checkpoint = time.monotonic()
        try:
            self.flush(reason="checkpoint", deadline=time.monotonic() + CHECKPOINT_DEADLINE_SECONDS)
        except CoverageError as exc:
            # Back off so an unreachable bucket does not delay every invocation.
            self._interval = min(self._interval * 2, MAX_BACKOFF_SECONDS)
            structured_log.error(
                "coverage checkpoint failed", error=str(exc), next_attempt_in_s=self._interval
            )
        else:
            self._interval = float(self.settings.flush_interval_seconds)

    # -- data ----------------------------------------------------------------

    def metadata(self, snapshot: Snapshot) -> dict[str, str]:
        """S3 object metadata: enough to filter and trust a file without opening it."""
        values = {
            "coverage-version": _package_version("coverage"),
            "python-version": ".".join(str(p) for p in sys.version_info[:3]),
            "runtime-version": RUNTIME_VERSION,
            "mode": self.settings.mode,
            "branch": str(self.settings.branch).lower(),
            "core": self.measurement.core_name(),
            "invocations": str(self.invocations),
            "init-time": _iso(self.identity.init_time),
            "snapshot-time": _iso(datetime.now(UTC)),
            "function-name": self.identity.function_name,
            "function-version": self.identity.function_version,
            "environment-id": self.identity.environment_id,
            # Line numbers coverage.py recorded, not statements: see README, "What the
            # numbers mean"; reports count statements.
            "files": str(snapshot.files),
            "recorded-lines": str(snapshot.lines),
            "recorded-arcs": str(snapshot.arcs),
            "code-revision": self.settings.code_revision,
        }
        return {k: v for k, v in values.items() if v is not None}

    def flush(
        self, *, reason: str = "flush", force: bool = False, deadline: float | None = None
    ) -> UploadRecord | None:
        """Upload a snapshot if the measured set grew (or ``force``); None if not needed."""
        uploader = self.uploader()
        timeout = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._flush_lock.acquire(timeout=timeout):
            raise UploadError("another upload is still running")
        try:
            snapshot = self.measurement.snapshot()
            if not snapshot.body or (snapshot.size <= self._uploaded_size and not force):
                return None
            try:
                result: UploadResult = uploader.upload(
                    snapshot.body, self.metadata(snapshot), deadline=deadline
                )
            except UploadError as exc:
                self.last_error = str(exc)
                raise
            self._uploaded_size = snapshot.size
            self.last_error = None
            self.last_upload = UploadRecord(
                key=result.key,
                bucket=result.bucket,
                bytes=result.bytes,
                seconds=result.seconds,
                etag=result.etag,
                at=datetime.now(UTC),
                reason=reason,
            )
            structured_log.info(
                "coverage uploaded",
                reason=reason,
                s3_uri=f"s3://{result.bucket}/{result.key}",
                bytes=result.bytes,
                recorded_lines=snapshot.lines,
                recorded_arcs=snapshot.arcs or None,
                upload_ms=round(result.seconds * 1000, 1),
            )
            return self.last_upload
        finally:
            self._flush_lock.release()

    def reset(self) -> None:
        """Drop what was measured; the next upload starts from nothing."""
        with self._flush_lock:
            self.measurement.reset()
            self._uploaded_size = 0

    # -- shutdown ------------------------------------------------------------

    def shutdown(self, reason: str) -> bool:
        """Stop, save and upload within the budget.  True if this call did it.

        Runs once: from the SIGTERM watcher, the SIGTERM handler or atexit,
        whichever comes first; a later caller waits for that one to finish.
        """
        if self._shutdown_started.is_set():
            self._shutdown_done.wait(self.settings.shutdown_budget_ms / 1000)
            return False
        self._shutdown_started.set()
        started = time.monotonic()
        budget = self.settings.shutdown_budget_ms / 1000
        if reason == "exit":
            # A normal exit (e.g. after an init error) has no SIGKILL coming.
            budget = max(budget, EXIT_BUDGET_SECONDS)
        deadline = started + budget
        try:
            self.measurement.finish()
            if not self.uploads_enabled:
                structured_log.error(
                    "coverage not uploaded at shutdown", reason=reason, error=self.upload_problem
                )
                return True
            record = self.flush(reason=reason, deadline=deadline)
            if record is None:
                structured_log.info("coverage unchanged since last upload", reason=reason)
        except Exception as exc:
            structured_log.error(
                "coverage upload at shutdown failed: data of this environment since the "
                "last upload is lost",
                reason=reason,
                error=str(exc),
                errorType=type(exc).__name__,
                elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            )
        finally:
            self._shutdown_done.set()
        return True

    # -- reporting -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        counts = self.measurement.counts()
        return {
            "enabled": True,
            "mode": self.settings.mode,
            "core": self.measurement.core_name(),
            "branch": self.settings.branch,
            "contexts": self.settings.contexts,
            "source": list(self.settings.source),
            "versions": {
                "coverage_runtime": RUNTIME_VERSION,
                "coverage": _package_version("coverage"),
                "awslambdaric": _package_version("awslambdaric"),
                "python": ".".join(str(p) for p in sys.version_info[:3]),
            },
            "collecting": self.measurement.collecting,
            "files_measured": counts.files,
            "lines_measured": counts.lines,
            "arcs_measured": counts.arcs,
            "invocations": self.invocations,
            "handled_invocations": self.handled.count,
            "handled_ms": round(self.handled.measured_ms, 1),
            "handled_by_kind": dict(self.handled.by_kind),
            "uploads_enabled": self.uploads_enabled,
            "upload_problem": self.upload_problem,
            "s3_uri": self.s3_uri,
            "last_upload": self.last_upload.as_dict() if self.last_upload else None,
            "last_error": self.last_error,
            "pending_checkpoint": counts.size > self._uploaded_size,
            "flush_interval_seconds": self.settings.flush_interval_seconds,
            "environment_id": self.identity.environment_id,
            "init_time": _iso(self.identity.init_time),
        }
