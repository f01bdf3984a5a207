"""The coverage session of one execution environment: measure, checkpoint, ship.

`CoverageSession` ties coverage.py, started once (`Measurement`), to the S3
object of this environment (`SnapshotUploader`) and to the lifecycle events
the shim sees: an invocation arrives, the runtime is about to wait for the
next one (the checkpoint moment: the response is already sent, so an upload
here adds nothing to its latency), and shutdown.

The S3 client (`s3.ObjectClient`, the standard library's, built in
microseconds) is built on first use: on the shipping thread after the first
response, or inside the shutdown window of an environment shut down before.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from coverage_runtime import __version__, env, layout
from coverage_runtime.errors import StorageError, UploadError
from coverage_runtime.settings import Settings
from coverage_runtime.shim import labels, pacing, pause_points, structured_log, task_cpu
from coverage_runtime.shim.identity import EnvironmentIdentity
from coverage_runtime.shim.measurement import Measurement, Snapshot
from coverage_runtime.shim.shipping import Shipper
from coverage_runtime.shim.shutdown import ShutdownWatcher
from coverage_runtime.shim.uploader import (
    DeadlinePassed,
    RunningUploads,
    SnapshotUploader,
    UploadResult,
    call_before,
    object_key,
)

if TYPE_CHECKING:  # TypedDicts: annotations only, not worth their import at init
    from coverage_runtime.shim.status import ActiveStatus, LastUpload

RUNTIME_VERSION = __version__
# Leave this much of an invocation's time unused by coverage work.
CHECKPOINT_MARGIN_SECONDS = 0.25
FLUSH_MAX_SECONDS = 10.0
EXIT_BUDGET_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 900
# The shutdown's own work (snapshot, upload) ends this much before its budget,
# so that the loss record, if one is due, is written inside the budget.  The
# thread that waits for the deadline needs the GIL back to write it, and a C
# step holding the GIL (SQLite, tokenizing, a set of a million arcs, a garbage
# collection) does not let go until it ends, whatever `sys.setswitchinterval`
# says.  Measured (`bench/shutdown_profile.py --gil`, 8,000 modules, lines and
# branches, host 3.11 and 3.13; 2,000 modules with branches in the image's
# 3.14; a loaded machine): a timed wait woke up to 88-190 ms late, in full
# garbage collections, which the shutdown turns off; without them up to
# 28-40 ms late (p99 8-23 ms), the 5 ms switch interval and the machine's
# scheduling included.
RECORD_MARGIN_SECONDS = 0.05
# Never more than this share of a (short) budget.
RECORD_MARGIN_SHARE = 0.25
# At most this share of the window left is spent waiting for a checkpoint's
# upload on the wire when the shutdown's snapshot is taken (see
# `uploader.RunningUploads`); past it, the two run side by side.  (One not yet
# on the wire never gets there: the shutdown closed the gate as it began.)
OLDER_UPLOAD_SHARE = 0.5
# At most this share of the window left is spent, before the replay, waiting for
# the S3 client's build under way on another thread (`_client_first`).
CLIENT_WAIT_SHARE = 0.25
# Distinct request kinds an environment keeps apart, in status() and as coverage.py
# contexts; later new ones are counted as OTHER_KIND.  A kind made of request data
# (a raw URL path) must not grow memory, status() or the data file without bound.
MAX_KINDS = 100
OTHER_KIND = "(other)"
# A checkpoint uploads a delta (what was measured since the confirmed base, alone:
# `layout.DELTA_SUFFIX`) until its file is larger than this share of the base's,
# then a new base: a checkpoint writes what is new and sends the delta, and the
# shutdown's delta (always sent when it can be: never larger than the whole file)
# stays a PUT that fits its window.
DEFAULT_DELTA_SHARE = 0.25
# ... or once the delta's PUT, at the rate of the base's own, would take more than this
# share of the shutdown budget: the shutdown's delta holds at least what the file
# holds.  A share of the base alone let deltas grow to 20 MB at 8,000 modules with
# branches (an 81 MB base): a 63 ms PUT to a local S3 at ~130 MB/s, several times
# that at a slower S3's rate, against a 400 ms window.
DELTA_PUT_SHARE = 0.25


def _bench_delta_share(raw: str | None) -> float:
    """Benchmarks only (``COVERAGE_BENCH_DELTA_SHARE``: `bench/sizes.py` weighs other
    shares); unset (always, in Lambda) or malformed: `DEFAULT_DELTA_SHARE`."""
    try:
        share = float(raw or DEFAULT_DELTA_SHARE)
    except ValueError:
        return DEFAULT_DELTA_SHARE
    return share if 0 < share < 100 else DEFAULT_DELTA_SHARE  # (not NaN, not infinite)


DELTA_SHARE = _bench_delta_share(os.environ.get(env.BENCH_DELTA_SHARE))
# Below this size of the confirmed base, every upload is a whole base: one object
# per environment, as small functions always had (a PUT of it costs little).
DELTA_MIN_BASE_BYTES = 256 << 10


# The first maintenance pass follows this invocation: the pass runs on the
# shipping thread, and on a third of a CPU the ones after invocations 1 and 2
# took 0.2-0.6 ms of the next invocation each, for code that runs only a little
# slower meanwhile (disabled events).
FIRST_MAINTENANCE = 4


def maintenance_due(invocations: int) -> bool:
    """After invocations 4, 8, ... 64, then every 64th: hot code is let go
    early, and the pass over the data costs nothing per invocation."""
    if invocations < FIRST_MAINTENANCE:
        return False
    return invocations & (invocations - 1) == 0 or invocations % 64 == 0


def _file_size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _least_put_seconds(size: int, rate: tuple[int, float]) -> float:
    """The least a PUT of ``size`` bytes takes at ``rate`` (``bytes`` in ``seconds``,
    a past PUT's): a PUT costs a fixed part plus one that grows with its size, in
    unknown shares, so a larger body takes at least the whole of that time, and a
    smaller one at least its share of it."""
    sent, seconds = rate
    return seconds * min(size, sent) / max(1, sent)


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


class UploadRecord(NamedTuple):
    """(A `NamedTuple` because the init imports this module: see `errors.ConfigProblem`.)"""

    key: str
    bucket: str
    bytes: int
    seconds: float
    etag: str | None
    at: datetime
    reason: str

    def as_dict(self) -> LastUpload:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "bytes": self.bytes,
            "ms": round(self.seconds * 1000, 1),
            "etag": self.etag,
            "time": _iso(self.at),
            "reason": self.reason,
        }


class ConfirmedBase(NamedTuple):
    """The newest base snapshot S3 confirmed with no older upload on the wire (none
    can land after it): what a delta extends."""

    generation: int
    mark: int  # `Snapshot.mark`
    epoch: int
    bytes: int
    # Its PUT's (the attempt that succeeded: see `_put_rate`), the rate a delta's PUT is
    # reckoned at (`DELTA_PUT_SHARE`); None when an invocation overlapped it: it may
    # have spanned a freeze (see `_put_rate`).
    seconds: float | None


class InvocationStats:
    """What the handled invocations cost, counted as they end."""

    __slots__ = ("by_kind", "count", "measured_ms")

    def __init__(self) -> None:
        self.count = 0
        self.measured_ms = 0.0
        self.by_kind: dict[str, int] = {}


class CoverageSession:
    """Everything the shim does for one execution environment."""

    # Build coverage.py and the S3 client as soon as the shipping thread starts,
    # not when data is first needed (a Managed Instances process: see
    # `workers.WorkerSession`).
    BUILD_AT_START = False
    # Deltas (`layout.DELTA_SUFFIX`): not where the environment's object is merged
    # from whole files (Lambda Managed Instances: `workers`).
    DELTAS = True

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
        self._delta_uploader: SnapshotUploader | None = None
        self._base: ConfirmedBase | None = None
        # The shutdown found S3 holding an older base than the one its delta extends
        # (`_make_sure_base_is_stored`): its generation, until a whole base is
        # confirmed.  A confirmed delta then says nothing of what S3 holds.
        self._stale_base: int | None = None
        self._uploader_lock = threading.Lock()
        self.invocations = 0
        self.handled = InvocationStats()
        self.last_upload: UploadRecord | None = None
        self.last_error: str | None = None
        # Snapshots are numbered; S3 holds the newest confirmed one.
        self._state = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._generation = 0
        self._confirmed = 0
        self._confirmed_size = 0
        # The confirmed snapshot's recorded lines (its size is in entries with labels,
        # arcs with branches): what the loss record says S3 holds, beside what is lost.
        self._confirmed_lines = 0
        self._confirmed_invocations = 0
        # (bytes, seconds) of the last confirmed PUT that no invocation overlapped:
        # the shutdown's estimate of what a PUT takes.  One that spanned an
        # invocation may have spanned a freeze too (Lambda freezes after /next and
        # the clock runs on), and its seconds would say nothing of S3's rate.  The
        # seconds are its successful attempt's (`UploadResult.attempt_seconds`): a
        # refused attempt and the pause before the retry (up to a second) are not
        # S3's rate either, and made a body that fits look as if it would not.
        self._put_rate: tuple[int, float] | None = None
        # What the shutdown counted before any snapshot (`_check_growth_fits`): the
        # loss record's recorded lines when it gave up before taking one.
        self._shutdown_counts: Snapshot | None = None
        self._deadline_ms: float | None = None
        self._uploads = RunningUploads()
        # When the shipping thread may work: between invocations, and a small share
        # of one (frozen, as in Lambda, it runs only beside an invocation).
        self.pacer = pacing.Pacer()
        self._shipper = Shipper(self)
        self.watcher: ShutdownWatcher | None = None  # set by the shim
        self._interval = float(settings.flush_interval_seconds)
        self._last_checkpoint = time.monotonic()
        self._shutdown_started = threading.Event()
        self._shutdown_done = threading.Event()
        self.labels = labels.LabelBook(settings.max_labels)
        sources = settings.labels
        self._label_from_context = labels.CLIENT_CONTEXT in sources
        self._label_from_header = labels.HEADER in sources
        self.labels_from_kind = labels.KIND in sources
        # The label the current invocation's request carried (ClientContext, header).
        self.request_label: str | None = None
        self._labels_changing = False  # did the last arrival switch labels (`prearm`)?

    # -- construction --------------------------------------------------------

    @classmethod
    def start(
        cls,
        settings: Settings,
        identity: EnvironmentIdentity | None = None,
        data_file: str | None = None,
    ) -> CoverageSession:
        """Start measuring now, before the handler module is imported.

        ``data_file``: where this process keeps its data (a Managed Instances
        worker has its own); the environment's file by default.
        """
        identity = identity or EnvironmentIdentity.detect()
        problem: str | None = None
        if settings.bucket is None:
            problem = "COVERAGE_S3_BUCKET is not set: coverage is measured but never uploaded"
            structured_log.error(problem, variable="COVERAGE_S3_BUCKET")
        if data_file is None:
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

    def uploader(self, timeout: float | None = None) -> SnapshotUploader:
        """The S3 uploader, built on first use; `UploadError` if it cannot be.

        Built when the first upload needs it: on the shipping thread at the
        first checkpoint, or in the shutdown window (or by an explicit
        `flush`), never on the main thread by the runtime itself, so no signal
        handler can find its lock held by the thread it interrupted.  Not
        after the first response: importing `coverage_runtime.s3` there took
        ~3.4 ms of the second invocation on a third of a CPU, and the build
        costs ~0.1 ms (`s3.ObjectClient`: no boto3), so no deadline waits on
        it; ``timeout`` still bounds the wait for a build under way elsewhere.
        (A setup that cannot work, such as no bucket, is found at init by the
        settings.)
        """
        if self._uploader is not None:
            return self._uploader
        if self.upload_problem is not None:
            raise UploadError(self.upload_problem)
        if not self._uploader_lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise UploadError("the S3 client was still being built when the deadline came")
        try:
            if self._uploader is None:
                started = time.monotonic()
                pause_points.reach("client-build")
                try:
                    self._uploader = SnapshotUploader(self.settings, self.identity)
                except Exception as exc:  # a broken setup must not break the function
                    self.upload_problem = f"cannot create the S3 client: {exc}"
                    structured_log.error(self.upload_problem, error_type=type(exc).__name__)
                    raise UploadError(self.upload_problem) from exc
                structured_log.info(
                    "S3 client ready", ms=round((time.monotonic() - started) * 1000, 1)
                )
                task_cpu.step("client")
            return self._uploader
        finally:
            self._uploader_lock.release()

    def _uploader_of(self, snapshot: Snapshot, timeout: float | None) -> SnapshotUploader:
        """The uploader of the snapshot's object: the base's, or the delta's."""
        uploader = self.uploader(timeout)
        if not snapshot.delta:
            return uploader
        with self._uploader_lock:
            if self._delta_uploader is None:
                self._delta_uploader = uploader.for_delta()
            return self._delta_uploader

    @property
    def delta_file(self) -> str:
        return self.measurement.data_file + layout.DELTA_EXTENSION

    def _delta_bytes(self, base: ConfirmedBase) -> int:
        """The delta file as last written if it extends ``base`` (the next delta of
        ``base`` grows it), else 0: the next delta is written afresh, with what
        was written since ``base``'s snapshot.  (Read as of an older base, its
        size made every checkpoint after a re-base re-base again until the base
        was four times that file: on the host's C tracer at 8,000 modules with
        branches, eight whole bases of 20-50 MB in a row.)"""
        if self.measurement.delta_extends != base.mark:
            return 0
        return _file_size(self.delta_file) or 0

    def _delta_base(self, *, final: bool) -> ConfirmedBase | None:
        """The confirmed base the next snapshot extends as a delta, or None for a
        base snapshot: when none of this epoch is confirmed, or it is small
        (`DELTA_MIN_BASE_BYTES`), when a base upload
        was ever left running at a deadline (it may land after a newer base, and
        only a base upload reads the stored generation back), or (not at the
        shutdown) when the delta is too large for it (`_delta_outgrew`)."""
        if not self.DELTAS or not self.measurement.deltas:
            return None
        with self._state:
            base = self._base
        uploader = self._uploader
        if base is None or base.epoch != self.measurement.epoch:
            return None
        if base.bytes < DELTA_MIN_BASE_BYTES:
            return None
        if uploader is None or uploader.abandoned:
            return None
        if not final and self._delta_outgrew(base):
            return None
        return base

    def _delta_outgrew(self, base: ConfirmedBase) -> bool:
        """Is the delta file past `DELTA_SHARE` of ``base``, or its PUT, at the rate
        ``base`` went at, past `DELTA_PUT_SHARE` of the shutdown budget?  When an
        invocation overlapped ``base``'s PUT (in Lambda it may have spanned a freeze,
        minutes of "PUT" for a few ms of S3: every later delta looked too slow, and
        in a frozen environment nearly every checkpoint sent a whole base), at the
        last PUT that none overlapped instead, the least it says this one takes
        (`_check_upload_fits`, whose estimate the shutdown's delta then faces); with
        no such PUT, the share alone decides."""
        size = self._delta_bytes(base)
        if size > DELTA_SHARE * base.bytes:
            return True
        rate = (base.bytes, base.seconds) if base.seconds is not None else self._put_rate
        if rate is None:
            return False
        put_seconds = _least_put_seconds(size, rate)
        return put_seconds > DELTA_PUT_SHARE * self.settings.shutdown_budget_ms / 1000

    # -- lifecycle hooks -----------------------------------------------------

    def invocation_arrived(
        self,
        deadline_ms: str | int | None = None,
        *,
        client_context: str | None = None,
        event_body: bytes | str | None = None,
    ) -> None:
        """An event arrived; ``deadline_ms`` is its Lambda-Runtime-Deadline-Ms.

        From here on, what runs is the invocation's: under the label its
        request carries (``client_context``: the Lambda-Runtime-Client-Context
        header; ``event_body``: an HTTP event's ``x-coverage-label`` header),
        when those sources are on, else unlabelled until the decorator's kind.
        """
        self.invocations += 1
        self.pacer.invocation_started()
        try:
            self._deadline_ms = float(deadline_ms) if deadline_ms is not None else None
        except (TypeError, ValueError):
            self._deadline_ms = None
        if self.settings.labelled:
            found = None
            try:
                if self._label_from_context:
                    found = labels.from_client_context(client_context)
                if found is None and self._label_from_header:
                    found = labels.from_event(event_body)
            except Exception as exc:  # a label is never a problem for the invocation
                structured_log.error("coverage label not read", error_message=str(exc))
            self.request_label = found
            before = self.measurement.label
            self.label(found)
            # Labels are changing (an integration-test run): the next switch is
            # readied after the response (`prearm`).  Not after the first
            # invocation's switch from the init's label, which every run makes.
            self._labels_changing = before not in (self.measurement.label, labels.INIT)

    def label(self, label: str | None) -> None:
        """Record what runs from now on under ``label`` (bounded: `labels.LabelBook`),
        or unlabelled (None)."""
        admitted = self.labels.admit(label) if label else labels.UNLABELLED
        self.measurement.switch_label(admitted)

    def remaining_seconds(self) -> float | None:
        """Time left in the current (or last) invocation, or None if unknown."""
        if self._deadline_ms is None:
            return None
        return self._deadline_ms / 1000 - time.time()

    def admit_kind(self, kind: str) -> str:
        """``kind`` itself, or `OTHER_KIND` once `MAX_KINDS` others have been seen."""
        by_kind = self.handled.by_kind
        return kind if kind in by_kind or len(by_kind) < MAX_KINDS else OTHER_KIND

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
        """Called after a response is posted, before waiting for the next event.

        Until the runtime asks for the next event Lambda still counts the
        invocation (billed, and under its timeout), so only what is quick
        happens here: bookkeeping and, when a checkpoint is due, a request to
        the shipping thread, which counts what is new, writes the snapshot and
        uploads it while the runtime waits for the next event.
        """
        self.pacer.invocation_ended()  # (the shipping thread works freely until the next)
        if self._shutdown_started.is_set():
            return
        if self.watcher is not None:
            self.watcher.reassert()
        self.measurement.compact()
        if self.invocations:
            self._shipper.start()
            if self._labels_changing:
                self._shipper.request_prearm(self.invocations, self.measurement.label)
            if self.measurement.hand_over_due():
                self._shipper.request_hand_over()
            if maintenance_due(self.invocations):
                self._shipper.request_maintenance()
        if not self.checkpoint_due():
            return
        remaining = self.remaining_seconds()
        if remaining is not None and remaining < CHECKPOINT_MARGIN_SECONDS:
            return  # too close to the timeout: the next invocation checkpoints
        self._last_checkpoint = time.monotonic()
        # Whether anything is new is counted by the checkpoint, on the shipping
        # thread: the count takes what the gate holds, and on the C tracer that is
        # everything the invocation ran again (it re-adds each arc it runs), which
        # billed here 10-95 ms at 2,000-8,000 modules with branches.
        self._shipper.request_checkpoint()  # (on sysmon the first one builds coverage.py)

    def prearm(self, invocation: int, label: str) -> None:
        """From the shipping thread: ready the switch from ``label``
        (`Measurement.prearm`), unless invocation number ``invocation`` is over
        already (the next one arrived: its switch did the work) or the
        environment is shutting down."""
        if self.invocations == invocation and not self._shutdown_started.is_set():
            self.measurement.prearm(label)

    def _measured_more(self, counts: Snapshot | None = None) -> bool:
        """Anything measured that S3 has not confirmed (in ``counts``, else counted
        now)?  Counted without building coverage.py: events the init recorder
        holds are new (S3 has nothing of them: nothing is uploaded before the
        hand-over)."""
        if counts is None:
            counts = self.measurement.counts()
        return bool(counts.waiting) or counts.size > self._confirmed_size

    def periodic_checkpoint(self) -> None:
        """From a timer: a checkpoint when one is due and something new was measured.

        An environment that is never frozen (Lambda Managed Instances) may
        serve nothing for hours after its last response, or be so busy that a
        worker is rarely between invocations: what it measured must still
        ship.  (A frozen standard environment never runs a timer.)
        """
        if self._shutdown_started.is_set() or not self.checkpoint_due():
            return
        self._last_checkpoint = time.monotonic()
        self._shipper.start()
        if not self._measured_more():
            return
        self._shipper.request_checkpoint()

    def checkpoint(self) -> None:
        """On the shipping thread: a snapshot, uploaded if the measured set grew.

        Writing the data file costs what is new since the last snapshot, and
        happens here rather than before the runtime asks for the next event,
        where Lambda would bill it to the invocation that just ended.
        Not once the shutdown has begun: it takes the newest snapshot itself,
        and a checkpoint's PUT would only race its own.  Begun at any moment
        before the PUT's first attempt (this thread may wait for the GIL or
        the snapshot lock for long), the shutdown closes `RunningUploads`'
        gate and the checkpoint sends nothing.
        """
        if self._shutdown_started.is_set() or not self._measured_more():
            return  # (nothing new since the last upload: nothing to write)
        try:
            taken = self._checkpoint_snapshot()
        except StorageError as exc:
            self.checkpoint_failed(exc)
            return
        if taken is None or not self._grew(taken[1]):
            return
        pause_points.reach("checkpoint-upload")
        try:
            self.ship(*taken, "checkpoint", deadline=None)
        except UploadError as exc:
            if not self._shutdown_started.is_set():
                raise
            # Refused at the gate, or failed on the wire while the shutdown waited
            # for it: either way the shutdown's own upload (or loss record) says
            # what reaches S3.
            structured_log.info(self.CHECKPOINT_NOT_SENT, error_message=str(exc))

    CHECKPOINT_NOT_SENT = "coverage checkpoint not sent: the shutdown uploads the newest snapshot"

    def checkpoint_failed(self, error: Exception) -> None:
        """From the shipping thread: back off, so an unreachable bucket costs little."""
        self._interval = min(max(self._interval, 1.0) * 2, MAX_BACKOFF_SECONDS)
        structured_log.error(
            "coverage checkpoint failed", error_message=str(error), next_attempt_in_s=self._interval
        )

    # -- data ----------------------------------------------------------------

    def metadata(self, snapshot: Snapshot) -> dict[str, str]:
        """S3 object metadata: enough to filter and trust a file without opening it."""
        values = {
            # The imported module's (it wrote the data file): reading the
            # distribution's metadata first imports importlib.metadata, 14-40 ms
            # of a shutdown window.
            "coverage-version": getattr(sys.modules.get("coverage"), "__version__", None)
            or _package_version("coverage"),
            "python-version": ".".join(str(p) for p in sys.version_info[:3]),
            "runtime-version": RUNTIME_VERSION,
            "mode": self.settings.mode,
            "branch": str(self.settings.branch).lower(),
            "core": self.measurement.core_name(),
            layout.INVOCATIONS: str(self.invocations),
            "init-time": _iso(self.identity.init_time),
            "snapshot-time": _iso(datetime.now(UTC)),
            "function-name": self.identity.function_name,
            "function-version": self.identity.function_version,
            "environment-id": self.identity.environment_id,
            # Line numbers coverage.py recorded, not statements: see README, "What the
            # numbers mean"; reports count statements.
            "files": str(snapshot.files),
            layout.RECORDED_LINES: str(snapshot.lines),
            layout.RECORDED_ARCS: str(snapshot.arcs),
            layout.CODE_REVISION: self.settings.code_revision,
            layout.EPOCH: str(snapshot.epoch),
            layout.BASE_GENERATION: str(snapshot.extends) if snapshot.delta else None,
        }
        partial = self.measurement.partial
        if partial is not None:  # the shutdown's replay left files out: see `_log_partial`
            values[layout.PARTIAL] = "true"
            values[layout.FILES_NOT_REPLAYED] = str(partial.files_left)
        return {k: v for k, v in values.items() if v is not None}

    def _snapshot(self, *, final: bool = False) -> tuple[int, Snapshot]:
        """A numbered snapshot: a later one always holds at least as much (with the
        base it extends, for a delta).  ``final``: the shutdown's (`_delta_base`)."""
        with self._snapshot_lock:
            return self._numbered_snapshot(final=final)

    def _checkpoint_snapshot(self) -> tuple[int, Snapshot] | None:
        """`_snapshot`, or None if the shutdown began before the lock was ours: a
        checkpoint that waited for the shutdown's snapshot must not write the
        data file again (at 8,000 modules, hundreds of ms of GIL) beside the
        shutdown's upload, only to be refused at the gate."""
        with self._snapshot_lock:
            if self._shutdown_started.is_set():
                return None
            return self._numbered_snapshot()

    def _numbered_snapshot(
        self, *, final: bool = False, whole: bool = False
    ) -> tuple[int, Snapshot]:
        pause_points.reach("snapshot")
        base = None if whole else self._delta_base(final=final)
        if base is None:
            snapshot = self.measurement.snapshot()
        else:
            snapshot = self.measurement.delta_snapshot(base.mark, self.delta_file)
            snapshot = snapshot._replace(extends=base.generation)
        with self._state:
            self._generation += 1
            return self._generation, snapshot

    def _grew(self, snapshot: Snapshot) -> bool:
        with self._state:
            return bool(snapshot.body) and snapshot.size > self._confirmed_size

    def ship(
        self,
        generation: int,
        snapshot: Snapshot,
        reason: str,
        deadline: float | None,
        *,
        final: bool = False,
    ) -> UploadRecord:
        """Upload one snapshot and record it if it is the newest confirmed.

        ``final``: the shutdown's own upload, the only one that may start once
        the shutdown has begun (`RunningUploads.close`).
        """
        uploader = self._uploader_of(
            snapshot, None if deadline is None else deadline - time.monotonic()
        )
        invocations = self.invocations
        # Until its answer is recorded (the shutdown waits for one on the wire).
        with self._uploads.of(generation, final=final, delta=snapshot.delta) as gate:
            try:
                result: UploadResult = uploader.upload(
                    snapshot.body,
                    self.metadata(snapshot),
                    generation=generation,
                    deadline=deadline,
                    before_attempt=gate,
                )
            except UploadError as exc:
                self.last_error = str(exc)
                raise
            finally:
                task_cpu.step("put")
            record = UploadRecord(
                key=result.key,
                bucket=result.bucket,
                bytes=result.bytes,
                seconds=result.seconds,
                etag=result.etag,
                at=datetime.now(UTC),
                reason=reason,
            )
            with self._state:
                if generation > self._confirmed:
                    self._confirmed = generation
                    # A snapshot from before a `reset` (confirmed after it) holds none
                    # of the new epoch's data: S3 holds nothing of it yet, and what
                    # runs now must ship however small (`_grew`, `_measured_more`).
                    if snapshot.epoch == self.measurement.epoch:
                        self._confirmed_size = snapshot.size
                        self._confirmed_lines = snapshot.lines
                    self._confirmed_invocations = invocations
                    self.last_upload = record
                    self.last_error = None
                    if self.invocations == invocations:
                        self._put_rate = (result.bytes, result.attempt_seconds)
                base = self._base
                # What a delta may extend: not a base confirmed while an older upload
                # was on the wire, which may land after it (a checkpoint's PUT beside a
                # flush's): a delta would extend a base S3 no longer holds, and their
                # union lack what it added over the older one.  (That older one, once
                # confirmed with nothing older on the wire, is a base to extend: S3
                # holds it or a newer one.)
                if (
                    not snapshot.delta
                    and (base is None or generation > base.generation)
                    and not self._uploads.older(generation)
                ):
                    self._base = ConfirmedBase(
                        generation,
                        snapshot.mark,
                        snapshot.epoch,
                        result.bytes,
                        result.attempt_seconds if self.invocations == invocations else None,
                    )
                    self.measurement.base_confirmed(snapshot.mark)
        if reason == "checkpoint":
            self._interval = float(self.settings.flush_interval_seconds)
        self._log_shipped(result, snapshot, reason, generation)
        return record

    SHIPPED = "coverage uploaded"  # the log record of each shipped snapshot

    def _shipped_to(self, result: UploadResult) -> dict[str, str]:
        return {"s3_uri": f"s3://{result.bucket}/{result.key}"}

    def _log_shipped(
        self, result: UploadResult, snapshot: Snapshot, reason: str, generation: int
    ) -> None:
        structured_log.info(
            self.SHIPPED,
            reason=reason,
            **self._shipped_to(result),
            bytes=result.bytes,
            recorded_lines=snapshot.lines,
            recorded_arcs=snapshot.arcs or None,
            generation=generation,
            delta=snapshot.delta or None,
            upload_ms=round(result.seconds * 1000, 1),
            # (A retry that succeeded: S3 throttling, or a flaky path.)
            attempts=result.attempts if result.attempts > 1 else None,
            retried_after=result.retried_after,
        )

    def flush(self, *, reason: str = "flush", force: bool = False) -> UploadRecord | None:
        """Upload a snapshot now if the measured set grew (or ``force``); None if not needed.

        Bounded: inside an invocation by its remaining time (less a margin),
        else by `FLUSH_MAX_SECONDS`, so an unreachable S3 never turns an
        invocation into a timeout.
        """
        remaining = self.remaining_seconds()
        budget = FLUSH_MAX_SECONDS
        if remaining is not None:
            budget = min(budget, remaining - CHECKPOINT_MARGIN_SECONDS)
        if budget <= 0:
            raise UploadError("no time left in this invocation to upload coverage")
        deadline = time.monotonic() + budget
        with self.pacer.urgent():  # (the shipping thread may hold the snapshot's locks)
            self.uploader(budget)
            generation, snapshot = self._snapshot()
        if not snapshot.body or (not force and not self._grew(snapshot)):
            return None
        return self.ship(generation, snapshot, reason, deadline)

    def reset(self) -> None:
        """Drop what was measured; the next upload starts from nothing."""
        with self.pacer.urgent(), self._snapshot_lock:
            self.measurement.reset()
            with self._state:
                self._confirmed_size = 0
                self._confirmed_lines = 0

    # -- shutdown ------------------------------------------------------------

    def shutdown(self, reason: str) -> bool:
        """Stop, save and upload within the budget.  True if this call did it.

        Runs once: from the SIGTERM watcher, the SIGTERM handler or atexit,
        whichever comes first; a later caller waits for that one to finish.
        The newest data reaches S3, or one record says what was lost and why,
        inside the budget: the work's deadline is `RECORD_MARGIN_SECONDS`
        earlier, since the record needs the GIL back from whatever C step of
        the work holds it at that moment.
        """
        if self._shutdown_started.is_set():
            self._shutdown_done.wait(self.settings.shutdown_budget_ms / 1000)
            return False
        self._shutdown_started.set()
        self.pacer.close()  # the shipping thread never waits for an invocation again
        self._uploads.close()  # a checkpoint not yet on the wire never gets there
        started, deadline = self._window(reason)
        if reason != "exit":
            # The process ends in a moment: a full collection of a large
            # function's heap (120-190 ms of GIL at 8,000 modules) is only delay.
            gc.disable()
        taken: list[tuple[int, Snapshot]] = []
        try:
            work = functools.partial(self._save_and_ship, reason, deadline, taken)
            if reason == "exit":
                work()  # no new thread at interpreter exit, and no SIGKILL coming
            else:
                # A step that outgrows the window (building coverage.py or the S3
                # client on a third of a CPU, a large data file) must not keep the
                # loss record from being written before Lambda's SIGKILL.
                try:
                    call_before(work, deadline, name="coverage-shutdown")
                except DeadlinePassed as exc:
                    raise UploadError(self._cut_short(taken)) from exc
            if self.measurement.partial is not None and self.uploads_enabled:
                # (Uploads off: "coverage not uploaded at shutdown" said it all.)
                with self._state:
                    sent = self._stored(taken)
                self._log_partial(reason, taken[-1][1] if sent else None, started)
        except Exception as exc:
            self._shutdown_failed(reason, exc, taken, started, deadline)
        finally:
            self._shutdown_done.set()
        return True

    def _stored(self, taken: list[tuple[int, Snapshot]]) -> bool:
        """Did S3 confirm the shutdown's last snapshot (or a newer one)?  (``_state``
        is held.)"""
        return bool(taken) and self._confirmed >= taken[-1][0]

    def _cut_short(self, taken: list[tuple[int, Snapshot]]) -> str:
        """The error of a shutdown its deadline ended, S3's last refusal of its upload
        first if there was one: that upload runs to the same deadline, and its own
        error, which says so (a 5xx whose retry the deadline cut), comes at the
        same moment as this one, which may be the one the loss record reads."""
        cut = "the shutdown did not finish before the deadline"
        if not taken:
            return cut
        with self._state:
            newest = self._generation  # (the shutdown's: no checkpoint numbers one now)
        for uploader in (self._uploader, self._delta_uploader):
            refused = uploader.refused(newest) if uploader is not None else None
            if refused is not None:
                return f"{refused}; {cut}"
        return cut

    def _shutdown_failed(
        self,
        reason: str,
        exc: Exception,
        taken: list[tuple[int, Snapshot]],
        started: float,
        deadline: float,
    ) -> None:
        """Say what the failed shutdown left in S3: nothing lost, the count
        behind, or the loss record."""
        if taken:  # a checkpoint's upload still running may hold it all: its answer decides
            self._wait_for_older_upload(taken[-1][0], deadline, 1.0, delta=None)
        if self._stale_base is not None:  # S3's base is older than its delta's
            self._log_loss(reason, exc, taken[-1][1] if taken else None, started)
            return
        with self._state:
            stored = self._stored(taken)
            # A checkpoint confirmed meanwhile holds all the failed snapshot held
            # (a later snapshot only grows: the same size is the same data).
            complete = bool(taken) and self._confirmed_size >= taken[-1][1].size
            held = complete and self._confirmed_invocations >= self.invocations
        if stored:  # only the read-back after the upload ran out of time
            structured_log.warning(
                "coverage uploaded at shutdown; checking that no older snapshot landed "
                "after it did not finish",
                reason=reason,
                error_message=str(exc),
            )
        elif held:
            structured_log.warning(
                "coverage upload at shutdown failed, but a checkpoint confirmed meanwhile "
                "holds everything it held: nothing is lost",
                reason=reason,
                error_message=str(exc),
            )
        elif complete and self.measurement.partial is None:
            # Only the re-upload for the count failed (`_count_upload_fits`
            # misjudged, or S3 refused it): no coverage data is lost.
            self._log_count_behind(reason, str(exc))
        else:
            self._log_loss(reason, exc, taken[-1][1] if taken else None, started)

    def _window(self, reason: str) -> tuple[float, float]:
        """When the shutdown's window opened, and the deadline of its work
        (`RECORD_MARGIN_SECONDS` before the budget's end, for the record)."""
        started = time.monotonic()
        budget = self.settings.shutdown_budget_ms / 1000
        if reason == "exit":
            # A normal exit (e.g. after an init error) has no SIGKILL coming.
            return started, started + max(budget, EXIT_BUDGET_SECONDS)
        signalled = self.watcher.signalled if self.watcher is not None else None
        if reason == "SIGTERM" and signalled is not None:
            started = min(started, signalled)  # the window opened when the signal arrived
        return started, started + budget - min(RECORD_MARGIN_SECONDS, budget * RECORD_MARGIN_SHARE)

    def _save_and_ship(
        self, reason: str, deadline: float, taken: list[tuple[int, Snapshot]]
    ) -> None:
        pause_points.reach("shutdown")
        self._client_first(deadline)
        self._check_growth_fits(deadline)
        # On sysmon, a replay of the recorded stream only as far as it fits before the
        # deadline, whole files (`Measurement.finish`); at a normal exit no SIGKILL
        # comes: everything.
        self.measurement.finish(None if reason == "exit" else deadline)
        if not self.uploads_enabled:
            structured_log.error(
                "coverage not uploaded at shutdown",
                reason=reason,
                error_message=self.upload_problem,
            )
            return
        # Decided from the counts, before the data file is written and read: at
        # 8,000 modules with branches the file is 60-80 MB, its read ~60-100 ms.
        if self._unchanged_since_upload():
            self._make_sure_confirmed_base_is_stored(reason, deadline)
            if self._nothing_to_ship(reason, deadline):
                return
        generation, snapshot = self._snapshot(final=True)
        taken.append((generation, snapshot))
        pause_points.reach("shutdown-snapshot")
        if not snapshot.body:
            partial = self.measurement.partial
            if partial is not None and partial.files_left:
                # Events were recorded, but the replay completed no file in time: not
                # "nothing measured", and nothing uploaded partially either.
                raise UploadError(
                    "the shutdown replayed no whole file before the deadline: the recorded "
                    f"events of {partial.files_left} files are not shipped"
                )
            structured_log.info("nothing was measured", reason=reason)
            return
        if not self._wait_for_older_upload(
            generation, deadline, OLDER_UPLOAD_SHARE, delta=snapshot.delta
        ):
            structured_log.info(
                "a checkpoint's upload is still running: uploading alongside it", reason=reason
            )
        if not self._grew(snapshot):
            if self._nothing_to_ship(reason, deadline):
                return
            # Nothing new measured, but invocations served since: the object's count
            # must be brought up to date.  A re-put of the body just read costs only
            # its transfer; CopyObject onto itself would also need s3:GetObject,
            # which the function's role does not have (PutObject on its prefix only).
            structured_log.info(
                "coverage unchanged since last upload: uploading it again for the invocation count",
                reason=reason,
                invocations=self.invocations,
            )
        else:
            self._check_upload_fits(len(snapshot.body), deadline)
        pause_points.reach("shutdown-upload")  # (tests: no older upload was on the wire)
        self.ship(generation, snapshot, reason, deadline, final=True)
        self._make_sure_newest_is_stored(generation, snapshot, reason, deadline)
        self._remove_data_file()

    def _wait_for_older_upload(
        self, generation: int, deadline: float, share: float, *, delta: bool | None
    ) -> bool:
        """Wait, for ``share`` of the time left before ``deadline``, for an older
        snapshot's upload of the same object on the wire (a checkpoint's; the
        delta's if ``delta``, the base's if False, either if None): its PUT and
        ours of the same key must not race (which lands last would be S3's
        choice), and once it is confirmed ours may be needless.  True if none is
        on the wire.  Not for the other object's: a base PUT on the wire (81 MB
        at 8,000 modules with branches, 550-840 ms) held the shutdown's delta
        back for half the window, to spare a PUT a fraction of its size."""
        if not self._uploads.older(generation, delta=delta):
            return True
        pause_points.reach("older-upload")  # (tests: the checkpoint's PUT is on the wire)
        now = time.monotonic()
        return self._uploads.wait_for_older(
            generation, now + max(0.0, deadline - now) * share, delta=delta
        )

    def _nothing_to_ship(self, reason: str, deadline: float) -> bool:
        """S3 holds everything measured: True if nothing is to be sent, its
        invocation count up to date, or a re-upload for the count alone that
        would not end in time (`_count_upload_fits`), said as such."""
        if not self._count_behind():
            structured_log.info("coverage unchanged since last upload", reason=reason)
        elif not self._count_upload_fits(deadline):
            self._log_count_behind(reason, "its upload would not fit the shutdown budget")
        else:
            return False
        self._remove_data_file()
        return True

    def _client_first(self, deadline: float) -> None:
        """Build the S3 client (if no upload did yet) before the replay, whose
        budget then counts only the time left after it: in a frozen environment
        shut down before its first checkpoint, the build (its imports: 13-30 ms on
        a loaded machine) came after a replay sized for the write and the PUT
        alone, and the PUT ran out of time.  Waits for a build under way
        elsewhere at most `CLIENT_WAIT_SHARE` of the window: `ship` waits again."""
        if not self.uploads_enabled or self._uploader is not None:
            return
        with contextlib.suppress(UploadError):  # (said by `ship`, which tries again)
            self.uploader(max(0.0, deadline - time.monotonic()) * CLIENT_WAIT_SHARE)

    def _unchanged_since_upload(self) -> bool:
        """Does S3 hold everything measured (the shutdown's replay done)?  From the
        counts alone: the same test as `_grew`'s on a snapshot, without taking one.
        After a partial replay too (labels: a confirmed upload, then events of files
        S3 holds and of files the replay left out): what it left out is never
        shipped, and `_log_partial` says so.  (Before, that case and any replay of
        recorded events, which still counted as waiting, wrote and read the data
        file to find nothing new, and skipped the base's read-back.)"""
        counts = self.measurement.counts()
        with self._state:
            return self._confirmed > 0 and not self._measured_more(counts)

    def _count_upload_fits(self, deadline: float) -> bool:
        """Would a PUT of the data file again (for the invocation count alone) end
        before ``deadline``?  Estimated from the last confirmed upload of this
        object, at its rate: the whole file goes again (the function's role has no
        s3:GetObject, so no CopyObject onto itself), and at 8,000 modules with
        branches that is ~80 MB, 0.4-0.95 s to a local S3.  A PUT that cannot end in
        time only delays the exit to the deadline, and its failure would read as a
        loss of data when only the count is behind.  With a confirmed base, what
        goes is a delta (`_shutdown_put_size`), a few kB when nothing is new."""
        rate = self._put_rate
        if rate is None:
            return True
        sent, seconds = rate
        size = self._shutdown_put_size()
        needed = seconds * (sent if size is None else size) / max(1, sent)
        return time.monotonic() + needed < deadline

    def _check_upload_fits(self, size: int, deadline: float) -> None:
        """Before the shutdown's PUT of new data (``size`` bytes): `UploadError` (so
        the loss record is written now) if it cannot end before ``deadline``.  Sent
        anyway it could only run into the deadline, and the same record would come
        at the end of the window instead of its start, nearer Lambda's SIGKILL: at
        8,000 modules with branches, after growth, the shutdown spent all of its
        350 ms on a PUT of the whole ~80 MB data file (one object per environment:
        S3 has no append) that needed 440-510 ms, and exited at the deadline with
        the loss record (bench/README.md, "Exit after growth since pacing").

        What it cannot take, from the last confirmed upload of this object
        (``bytes`` in ``seconds``): a PUT costs a fixed part plus one that grows
        with its size, in unknown shares; assuming the least for this body, all
        of the last one's time was the fixed part when this body is larger (it
        then takes at least as long), none when it is smaller (its share of that
        time).  So a body is never given up on because the last upload was
        small and slow on its round trip; only when even that least is more
        than the time left (or S3 got faster since)."""
        rate = self._put_rate
        if rate is None:  # no PUT measured without an invocation beside it: send it
            return
        sent, seconds = rate
        least = _least_put_seconds(size, rate)
        left = deadline - time.monotonic()
        if least < left:
            return
        raise UploadError(
            f"its upload would not fit the shutdown budget: {size} bytes need at least "
            f"~{least * 1000:.0f} ms at the last upload's rate ({sent} bytes in "
            f"{seconds * 1000:.0f} ms), {max(0.0, left) * 1000:.0f} ms were left"
        )

    def _shutdown_put_size(self) -> int | None:
        """The least the shutdown's PUT will send, before any snapshot: the delta
        file as a checkpoint last wrote it when the shutdown sends a delta (a later
        delta of the same base only holds more; none yet: unknown), else the data
        file (a snapshot only adds to it).  None when unknown."""
        base = self._delta_base(final=True)
        if base is None:
            return _file_size(self.measurement.data_file)
        return self._delta_bytes(base) or None

    def _check_growth_fits(self, deadline: float) -> None:
        """At the shutdown's start: `UploadError` at once when the counts already
        say S3 lacks data (a drain or a snapshot since the confirmed upload took
        it) and no upload of the data file, as large as it is now (a snapshot
        only adds to it), could end before ``deadline`` (`_check_upload_fits`):
        the replay, the write and the read would only spend the window first.
        At 8,000 modules with branches, an environment whose shipping thread had
        fallen behind (7 invocations since its last confirmed upload, 68 MB in
        776 ms) ran into the deadline that way.  Not while an upload is on the
        wire (it may hold everything: the usual path waits for its answer), and
        not when only the recorder's events are new (they may hold nothing new:
        the usual path replays them and decides)."""
        if self._put_rate is None or self._uploads.older(self._generation + 1):
            return
        size = self._shutdown_put_size()
        if size is None:
            return
        counts = self.measurement.counts()
        with self._state:
            grew = counts.size > self._confirmed_size
        if grew:
            try:
                self._check_upload_fits(size, deadline)
            except UploadError:
                self._shutdown_counts = counts  # the loss record's recorded lines
                raise

    COUNT_BEHIND = (
        "coverage unchanged since last upload, not uploaded again: S3 holds all of "
        "its data, but its invocation count is behind"
    )

    def _log_count_behind(self, reason: str, why: str) -> None:
        """What a shutdown with nothing new to ship leaves behind: the object's count
        (`layout.INVOCATIONS`), not its coverage data."""
        with self._state:
            in_s3 = self._confirmed_invocations
        structured_log.warning(
            self.COUNT_BEHIND,
            reason=reason,
            error_message=why,
            s3_uri=self.s3_uri,
            invocations=self.invocations,
            invocations_in_s3=in_s3,
            last_upload=self.last_upload.as_dict() if self.last_upload else None,
        )

    def _count_behind(self) -> bool:
        """An object exists whose invocation count is older than this environment's."""
        with self._state:
            return self._confirmed > 0 and self.invocations > self._confirmed_invocations

    def _remove_data_file(self) -> None:
        """Everything the data file holds is in S3 now: it leaves the data directory,
        so a host's COVERAGE_DATA_DIR does not fill up (in Lambda /tmp goes with the
        environment anyway).  Only called once the newest snapshot is confirmed: a
        failed upload keeps the file, and the loss record names it."""
        data_file, delta_file = self.measurement.data_file, self.delta_file
        for path in (data_file, data_file + "-journal", delta_file, delta_file + "-journal"):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                structured_log.warning(
                    "the uploaded data file could not be removed", path=path, error_message=str(exc)
                )

    def _make_sure_newest_is_stored(
        self, generation: int, snapshot: Snapshot, reason: str, deadline: float
    ) -> None:
        """An older attempt that got past the fence a moment before may land after
        ours: read the stored generation back once no older upload is on the wire
        (read at once, the read would miss one that lands later), and upload
        again if it is older.
        Not when no older snapshot's upload was ever attempted (an environment
        shut down before its first checkpoint): the read would cost a request
        of the window for nothing."""
        if snapshot.delta:
            self._make_sure_base_is_stored(snapshot.extends, reason, deadline)
        stored = self._stored_older(
            self._uploader_of(snapshot, 0), generation, deadline, delta=snapshot.delta
        )
        if stored is not None and time.monotonic() < deadline:
            structured_log.warning(
                "an older snapshot landed after the newest: uploading it again",
                stored_generation=stored,
                generation=generation,
            )
            self.ship(generation, snapshot, reason, deadline, final=True)

    def _stored_older(
        self, uploader: SnapshotUploader, generation: int, deadline: float, *, delta: bool
    ) -> int | None:
        """The generation of ``uploader``'s object (the delta if ``delta``, else the
        base) in S3 when it is older than ``generation``, else None; not read
        when no older attempt of that object was ever made.  Read once no upload
        of that object older than ``generation`` is on the wire (read at once,
        it would miss one that lands later; a newer one landing later only
        makes it newer): `UploadError` if one still is at ``deadline``."""
        if not uploader.older_attempted(generation):
            return None
        if not self._uploads.wait_for_older(generation, deadline, delta=delta):
            raise UploadError(
                "an older snapshot's upload was still on the wire at the deadline: "
                "it may land after the newest"
            )
        stored = uploader.stored_generation(deadline)
        return stored if stored is not None and stored < generation else None

    def _make_sure_confirmed_base_is_stored(self, reason: str, deadline: float) -> None:
        """A shutdown with nothing new sends no delta, so `_make_sure_base_is_stored`
        never runs from its upload: when a base attempt ever went unanswered (S3 may
        have completed it after the confirmed base, which checkpoints' deltas then
        extended), read the base back all the same (one HEAD, only then)."""
        uploader = self._uploader
        with self._state:
            base = self._base
        if base is None or uploader is None or not uploader.unanswered:
            return
        if not self._wait_for_older_upload(
            self._generation + 1, deadline, OLDER_UPLOAD_SHARE, delta=False
        ):
            return  # (a base's PUT still on the wire: no read-back can be sure)
        self._make_sure_base_is_stored(base.generation, reason, deadline)

    def _make_sure_base_is_stored(self, base: int, reason: str, deadline: float) -> None:
        """The shutdown sent a delta of base generation ``base``: S3 must hold that
        base, or the data between an older one and it is missing.  An older base's
        attempt may land after it (one retried or abandoned beside a newer
        upload), so when one was ever attempted the stored generation is read
        back, and if older, a whole base goes now."""
        stored = self._stored_older(self.uploader(0), base, deadline, delta=False)
        if stored is None:
            return
        # What the base added over the stored one is in S3 only once a whole base is:
        # if it cannot go, the shutdown's failure is a loss (`_shutdown_failed`), not a
        # read-back that ran late after the delta was confirmed.
        self._stale_base = stored
        structured_log.warning(
            "an older base landed after the one the delta extends: uploading a whole base",
            stored_generation=stored,
            generation=base,
        )
        if time.monotonic() >= deadline:
            raise UploadError(
                f"S3 holds base {stored}, older than base {base} the delta extends, and "
                "no time was left to upload a whole base"
            )
        with self._snapshot_lock:
            generation, whole = self._numbered_snapshot(whole=True)
        self._check_upload_fits(len(whole.body), deadline)
        self.ship(generation, whole, reason, deadline, final=True)
        self._stale_base = None

    PARTIAL = "coverage uploaded partially at shutdown"
    PARTIAL_UNSENT = "coverage replayed partially at shutdown, nothing new to upload"

    def _log_partial(self, reason: str, sent: Snapshot | None, started: float) -> None:
        """The loss record of a shutdown that replayed only the files whose recorded
        events it could replay in time (`Measurement.finish`): the object it sent
        (``sent``) holds exactly their data, or S3 already held all of it
        (``None``: the replayed files held nothing new, and nothing was sent);
        the other files' data since the last upload is lost."""
        partial = self.measurement.partial
        assert partial is not None
        said = self.PARTIAL if sent is not None else self.PARTIAL_UNSENT
        structured_log.error(
            f"{said}: the data of the files it could not replay in time since the last "
            "upload is lost",
            reason=reason,
            partial=True,
            **partial.as_fields(),
            s3_uri=self.s3_uri,
            shipped_bytes=len(sent.body) if sent else 0,
            recorded_lines=sent.lines if sent else None,
            shutdown_budget_ms=self.settings.shutdown_budget_ms,
            last_upload=self.last_upload.as_dict() if self.last_upload else None,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _log_loss(
        self, reason: str, exc: Exception, snapshot: Snapshot | None, started: float
    ) -> None:
        with self._state:
            confirmed_lines = self._confirmed_lines
            confirmed_invocations = self._confirmed_invocations
        counted = self._shutdown_counts.lines if self._shutdown_counts is not None else None
        partial = self.measurement.partial
        structured_log.error(
            "coverage upload at shutdown failed: data of this environment since the "
            "last upload is lost",
            reason=reason,
            error_message=str(exc),
            error_type=type(exc).__name__,
            s3_uri=self.s3_uri,
            lost_bytes=len(snapshot.body) if snapshot else None,
            recorded_lines=snapshot.lines if snapshot else counted,
            # (Unknown when S3's base is older than the one its delta extends.)
            recorded_lines_in_s3=(
                (confirmed_lines if self.last_upload else 0) if self._stale_base is None else None
            ),
            stored_base_generation=self._stale_base,
            invocations_since_last_upload=self.invocations - confirmed_invocations,
            data_file=self.measurement.data_file,
            last_upload=self.last_upload.as_dict() if self.last_upload else None,
            elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            **({"partial": True, **partial.as_fields()} if partial is not None else {}),
        )

    # -- reporting -----------------------------------------------------------

    def status(self) -> ActiveStatus:
        counts = self.measurement.counts()
        return {
            "enabled": True,
            "mode": self.settings.mode,
            "core": self.measurement.core_name(),
            "branch": self.settings.branch,
            "contexts": self.settings.contexts,
            "labels": {
                "sources": list(self.settings.labels),
                "current": self.measurement.label if self.settings.labelled else None,
                "distinct": self.labels.distinct,
                "limit": self.labels.limit,
                "overflowed": self.labels.overflowed,
            },
            "source": list(self.settings.source),
            "versions": {
                "coverage_runtime": RUNTIME_VERSION,
                "coverage": _package_version("coverage"),
                "awslambdaric": _package_version("awslambdaric"),
                "python": ".".join(str(p) for p in sys.version_info[:3]),
            },
            "collecting": self.measurement.collecting,
            "paused": self.measurement.paused,
            "files_measured": counts.files,
            "recorded_lines": counts.lines,
            "recorded_arcs": counts.arcs,
            "recorded_events_waiting": counts.waiting,
            "invocations": self.invocations,
            "handled_invocations": self.handled.count,
            "handled_ms": round(self.handled.measured_ms, 1),
            "handled_by_kind": dict(self.handled.by_kind),
            "uploads_enabled": self.uploads_enabled,
            "upload_problem": self.upload_problem,
            "s3_uri": self.s3_uri,
            "last_upload": self.last_upload.as_dict() if self.last_upload else None,
            "last_error": self.last_error,
            "pending_checkpoint": self._measured_more(counts),
            "storage_problem": self.measurement.storage_problem,
            "flush_interval_seconds": self.settings.flush_interval_seconds,
            "environment_id": self.identity.environment_id,
            "init_time": _iso(self.identity.init_time),
        }
