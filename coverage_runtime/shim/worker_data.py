"""Managed Instances: the workers' data in the shared ``/tmp``, and its union.

Each worker of a multi-concurrent environment measures on its own and
*publishes* its snapshots into one directory of the data directory; the
environment's main process merges what they published into the
environment's one data file and uploads that (`coverage_runtime.layout`:
one object per environment, whatever the number of workers).  The directory
is local to the environment, not part of the S3 contract::

    <data dir>/<environment id>.workers/
        <worker>.data       the worker's live coverage.py data file
        <worker>.coverage   its newest snapshot: replaced by rename, never written in place
        <worker>.json       its state: pid, invocations, generation, final, and what
                            its shutdown's replay left out if that snapshot is partial

Every file has one writer (its worker) and is read by one process (the
main one), and a new version is renamed over the old: no lock is ever held
across processes, and a reader never sees half a file.  A worker that dies
leaves its last snapshot for the merge; the main process removes the
directory when the environment shuts down.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from coverage_runtime import layout
from coverage_runtime.errors import UploadError
from coverage_runtime.settings import Settings
from coverage_runtime.shim import coverage_adapter, structured_log
from coverage_runtime.shim.identity import EnvironmentIdentity
from coverage_runtime.shim.measurement import Measurement, Snapshot
from coverage_runtime.shim.uploader import SnapshotUploader, Superseded, UploadResult

if TYPE_CHECKING:  # (imported by the shutdown that needs it: not at a worker's start)
    from coverage_runtime.shim.partial_replay import Outcome

WORKERS_SUFFIX = ".workers"
LIVE_SUFFIX = ".data"
STATE_SUFFIX = ".json"
# At shutdown the main process waits for the workers' last snapshots this
# share of the budget at most; the rest is for the merge and the upload (its
# S3 client is built already, and only the snapshots replaced are merged).
WORKERS_SHARE_OF_BUDGET = 0.7
_POLL_SECONDS = 0.005


def workers_dir(settings: Settings, identity: EnvironmentIdentity) -> str:
    return os.path.join(settings.data_dir, f"{identity.environment_id}{WORKERS_SUFFIX}")


def _replace(path: str, body: bytes) -> None:
    """Write ``path`` whole or not at all: a reader sees the old or the new file."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(body)
    os.replace(temporary, path)


@dataclass
class WorkerState:
    """What a worker says about itself beside its snapshot."""

    pid: int
    invocations: int = 0
    generation: int = 0
    final: bool = False
    core: str | None = None
    # The snapshot in place is partial (`layout.PARTIAL`): its shutdown's replay
    # outcome (`partial_replay.Outcome` fields), so the union says so too.
    replay: dict[str, int] | None = None

    @classmethod
    def read(cls, path: str) -> WorkerState | None:
        try:
            with open(path, "rb") as handle:
                values = json.loads(handle.read())
            return cls(**values)
        except (OSError, ValueError, TypeError):
            return None  # (removed meanwhile, or not ours)


class WorkerPublisher(SnapshotUploader):
    """A worker's "uploader": its snapshots go to the shared directory, for the merge.

    The worker's session ships through it exactly as a standard environment
    ships to S3 (numbered snapshots, checkpoints, the bounded shutdown), so
    only the destination differs.  It builds no S3 client: one per
    environment, in the main process, instead of one per worker.
    """

    def __init__(self, directory: str, worker: str) -> None:  # no S3 client: see above
        self.directory = directory
        self.worker = worker
        self.bucket = ""
        self.key = os.path.join(directory, f"{worker}{layout.DATA_SUFFIX}")
        self.state_path = os.path.join(directory, f"{worker}{STATE_SUFFIX}")
        self.live_path = os.path.join(directory, f"{worker}{LIVE_SUFFIX}")
        self.state = WorkerState(pid=os.getpid())
        self._lock = threading.Lock()
        self.abandoned = False
        self.unanswered = False  # (a file is replaced whole: never completed late)
        # The worker's measurement's partial replay, if any (`Measurement.partial`):
        # set by the worker once its session exists.
        self.partial: Callable[[], Outcome | None] = lambda: None

    def register(self) -> None:
        """Say this worker exists (before it measures anything), so the main
        process waits for its last data at shutdown."""
        os.makedirs(self.directory, exist_ok=True)
        self._write_state()

    def _write_state(self) -> None:
        _replace(self.state_path, json.dumps(asdict(self.state)).encode())

    def upload(
        self,
        body: bytes,
        metadata: Mapping[str, str],
        *,
        generation: int = 0,
        deadline: float | None = None,
        before_attempt: Callable[[], None] | None = None,
    ) -> UploadResult:
        started = time.monotonic()
        with self._lock:
            if before_attempt is not None:  # the shutdown's gate, as before an S3 attempt
                try:
                    before_attempt()
                except Superseded as exc:
                    raise UploadError(f"not written: {exc}") from exc
            if generation < self.state.generation:
                return UploadResult("", self.key, 0, 0.0, 0.0, None)  # a newer one is there
            self.state.generation = generation
            self.state.invocations = layout.metadata_int(metadata, layout.INVOCATIONS) or 0
            self.state.core = metadata.get("core")
            partial = self.partial() if metadata.get(layout.PARTIAL) == "true" else None
            self.state.replay = partial._asdict() if partial is not None else None
            # The state first: the main process merges a snapshot as soon as it is in
            # place (by the file's version), and one merged before its state said
            # `partial` would leave the environment's object without it.  A state
            # seen early is still true of the snapshot before (it lacks that data too).
            self._write_state()
            _replace(self.key, body)
        seconds = time.monotonic() - started
        return UploadResult("", self.key, len(body), seconds, seconds, None)  # (one attempt)

    def stored_generation(self, deadline: float) -> int | None:
        return self.state.generation

    def older_attempted(self, generation: int) -> bool:
        """Nothing to read back: a write here is done when `upload` returns."""
        return False

    def finish(self, invocations: int) -> None:
        """The worker ends: its last snapshot is in place (or it had nothing new)."""
        with self._lock:
            self.state.invocations = invocations
            self.state.final = True
            with contextlib.suppress(OSError):
                self._write_state()
        for path in (self.live_path, f"{self.live_path}-journal"):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _alive(pid: int) -> bool:
    """Is process ``pid`` still running (a zombie child is not)?"""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:  # not our child (or reaped): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class WorkersUnion(Measurement):
    """The main process's "measurement": the union of what the workers published.

    It measures nothing itself (the main process runs no function code); its
    snapshot is the environment's data file with every worker's newest
    snapshot merged in, so `CoverageSession` checkpoints and ships it as it
    would a single process's data.  Merging is incremental: a worker's
    snapshot only grows, so only the ones replaced since the last merge are
    read again.
    """

    def __init__(self, settings: Settings, directory: str, data_file: str) -> None:
        # Not Measurement.__init__: no coverage.py session, no gate, no recorder here.
        self.settings = settings
        self.directory = directory
        self.data_file = data_file
        self.storage_problem: str | None = None
        # Each worker replays its own stream; the union replays nothing (a
        # worker's partial snapshot makes it partial: `partial`).
        self.replay_outcome = None
        self._union_lock = threading.Lock()
        self._merged: dict[str, tuple[int, int, int]] = {}  # worker -> (inode, mtime, size)
        self._states: dict[str, WorkerState] = {}
        self._counts = Snapshot(body=b"", files=0, lines=0, arcs=0)
        self._collecting = False
        self._paused = False
        self._finished = False
        self.epoch = 0

    # -- what the session asks of a measurement --------------------------------

    @property
    def deltas(self) -> bool:
        """The union is merged from whole worker files: it always ships whole."""
        return False

    def base_confirmed(self, mark: int) -> None:
        """(No deltas: nothing kept for them.)"""

    @property
    def ready(self) -> bool:
        return True

    def hand_over_due(self) -> bool:
        return False

    @property
    def gate_kind(self) -> str | None:
        return None

    def core_name(self) -> str | None:
        cores = {state.core for state in self._states.values() if state.core}
        return cores.pop() if len(cores) == 1 else self.settings.core

    @property
    def invocations(self) -> int:
        return sum(state.invocations for state in self._states.values())

    @property
    def partial(self) -> Outcome | None:
        """The union is partial if any worker's merged snapshot is: it then lacks
        what that worker's shutdown could not replay.  The workers' outcomes
        summed (a file left out by two workers counts twice)."""
        with self._union_lock:
            replays = [state.replay for state in self._states.values() if state.replay]
        if not replays:
            return None
        from coverage_runtime.shim.partial_replay import Outcome

        outcomes = [Outcome(**replay) for replay in replays]
        return Outcome(*(sum(values) for values in zip(*outcomes, strict=True)))

    def begin(self) -> None:
        """Nothing to start: the workers measure."""

    def materialize(self) -> bool:
        """Import coverage.py's data layer now (the shipping thread, off the
        shutdown window)."""
        from coverage import CoverageData  # noqa: F401

        return False

    def compact(self) -> None:
        """No tracers here."""

    def maintain(self, stop: Callable[[], bool] = lambda: False) -> int:
        return 0

    def reset(self) -> None:
        """Each worker resets its own data; the environment keeps what it merged."""

    def counts(self) -> Snapshot:
        with self._union_lock:
            self._merge_new()
            return self._counts

    def snapshot(self) -> Snapshot:
        with self._union_lock:
            self._merge_new()
            counts = self._counts
            if not os.path.exists(self.data_file):
                return counts
            with open(self.data_file, "rb") as handle:
                body = handle.read()
        return counts._replace(body=body)

    def finish(self, deadline: float | None = None) -> None:
        """Shutdown: let the workers (signalled too) publish their last data.
        (Within its own share of the budget: ``deadline`` is the main process's.)

        SIGTERM reaches every worker with the main process in Lambda and the
        RIE; it is passed on anyway, should a platform signal the main
        process alone.  Waits until every worker that registered has
        published its last snapshot or is gone, within its share of the budget,
        merging each last snapshot as it lands.
        """
        if self._finished:
            return
        self._finished = True
        deadline = time.monotonic() + (
            self.settings.shutdown_budget_ms / 1000 * WORKERS_SHARE_OF_BUDGET
        )
        waiting = self._running_workers()
        for pid in waiting.values():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        while waiting and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            with self._union_lock:
                self._merge_new()  # each last snapshot as it lands: the last merge is small
            waiting = self._running_workers()
        with self._union_lock:
            self._merge_new()  # what landed last, and the states that say what it is
        if waiting:
            structured_log.warning(
                "workers did not publish their last coverage in time: their last "
                "checkpoint is merged instead",
                workers=sorted(waiting),
            )

    def _running_workers(self) -> dict[str, int]:
        running = {}
        for name in self._listing():
            if not name.endswith(STATE_SUFFIX):
                continue
            state = WorkerState.read(os.path.join(self.directory, name))
            if state is not None and not state.final and _alive(state.pid):
                running[name[: -len(STATE_SUFFIX)]] = state.pid
        return running

    def end(self) -> None:
        """After the last upload: stop workers that outlived the shutdown (the
        platform's SIGKILL may miss them once this process is gone) and
        remove the shared directory."""
        import multiprocessing  # (imported by awslambdaric's runner already)

        pids = set(self._running_workers().values())
        pids |= {child.pid for child in multiprocessing.active_children() if child.pid}
        for pid in pids:  # (also one forked but not yet registered)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)
        for path in (self.data_file, f"{self.data_file}-journal"):
            with contextlib.suppress(OSError):
                os.unlink(path)

    # -- the union ---------------------------------------------------------------

    def _listing(self) -> list[str]:
        try:
            return sorted(os.listdir(self.directory))
        except OSError:
            return []

    def _merge_new(self) -> None:
        """Merge every snapshot replaced since the last merge (the lock is held)."""
        fresh: list[tuple[str, str, tuple[int, int, int]]] = []
        for name in self._listing():
            path = os.path.join(self.directory, name)
            if name.endswith(STATE_SUFFIX):
                state = WorkerState.read(path)
                if state is not None:
                    self._states[name[: -len(STATE_SUFFIX)]] = state
            elif name.endswith(layout.DATA_SUFFIX):
                try:
                    status = os.stat(path)
                except OSError:
                    continue
                version = (status.st_ino, status.st_mtime_ns, status.st_size)
                worker = name[: -len(layout.DATA_SUFFIX)]
                if self._merged.get(worker) != version:
                    fresh.append((worker, path, version))
        if not fresh:
            return
        from coverage import CoverageData

        os.makedirs(os.path.dirname(self.data_file) or ".", exist_ok=True)
        union = CoverageData(basename=self.data_file)
        union.read()
        for worker, path, version in fresh:
            self._merged[worker] = version  # (an unreadable one is tried again when replaced)
            published = CoverageData(basename=path)
            try:
                published.read()
                union.update(published)
            except Exception as exc:  # one unreadable snapshot must not stop the others
                structured_log.error(
                    "a worker's coverage snapshot could not be merged",
                    worker=worker,
                    error_message=str(exc),
                )
            finally:
                published.close()
        union.close()
        files, lines, arcs, entries = coverage_adapter.count_data_file(self.data_file)
        # Growth is what was merged, labels included: a known line under a new label.
        self._counts = Snapshot(body=b"", files=files, lines=lines, arcs=arcs, entries=entries)
