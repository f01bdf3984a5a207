"""The shipping thread: builds coverage.py and the S3 client when they are
needed, and writes and uploads checkpoints off the invocation path.

Lambda counts an invocation until the runtime asks for the next event, so
writing a snapshot or uploading it there would be billed, and a slow S3
could turn a successful invocation into a timeout.  Here the session only
asks for a checkpoint when something new was measured; this thread writes
the snapshot and uploads it while the runtime waits for the next event (in
Lambda, until the environment is frozen; it goes on when the environment
thaws).  Requests made while one is under way are one; snapshots are
numbered, so an older one never replaces a newer one in S3.

On ``sysmon`` coverage.py is built and takes the recorded events over
(`Measurement.materialize`) at the first checkpoint, not after the first
response: on a small function at a third of a CPU, the build and the replay
(~35 ms) would otherwise overlap the next invocations (in Lambda they run
after the thaw).  A long stream is handed over at once (`request_hand_over`).
The S3 client is built by the first upload too (`CoverageSession.uploader`).

Frozen between invocations, as Lambda freezes an idle environment, this
thread runs only while a later invocation has thawed it, beside it: so it
works in steps and yields to a running invocation beyond a small share of
its CPU (`pacing`), and never to the shutdown.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from coverage_runtime.errors import UploadError
from coverage_runtime.shim import pacing, pause_points, structured_log, task_cpu

if TYPE_CHECKING:
    from coverage_runtime.shim.session import CoverageSession

_UNTIMED = contextlib.nullcontext()


class Shipper:
    """One daemon thread per environment, started after the first response."""

    def __init__(self, session: CoverageSession) -> None:
        self._session = session
        self._wake = threading.Condition()
        self._requested = False
        self._maintain = False
        self._hand_over = False
        self._prearm: tuple[int, str] | None = None  # after which invocation, from which label
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="coverage-shipper", daemon=True)
        try:
            self._thread.start()
        except RuntimeError:  # at interpreter shutdown: the exit path uploads itself
            self._thread = None

    def request_checkpoint(self) -> None:
        """Take a snapshot and upload it soon; requests made meanwhile are one."""
        with self._wake:
            self._requested = True
            self._wake.notify()

    def request_maintenance(self) -> None:
        """Let fully recorded code run free (`Measurement.maintain`), off the invocation path."""
        with self._wake:
            self._maintain = True
            self._wake.notify()

    def _more_urgent(self) -> bool:
        """Was other work asked since this round began (a maintenance pass stops)?"""
        return self._requested or self._hand_over or self._prearm is not None

    def request_hand_over(self) -> None:
        """Build coverage.py and let it take the recorded events over soon
        (`Measurement.hand_over_due`), before any data is needed."""
        with self._wake:
            self._hand_over = True
            self._wake.notify()

    def request_prearm(self, invocation: int, label: str) -> None:
        """Ready the next label switch, from ``label``, after invocation number
        ``invocation`` (`CoverageSession.prearm`): first, before anything else asked, so it is
        done before the environment is frozen (a pre-arm that thaws with the next
        event is skipped, or finishes while the switch waits on the lock)."""
        with self._wake:
            self._prearm = (invocation, label)
            self._wake.notify()

    def _task(self, kind: str) -> contextlib.AbstractContextManager[object]:
        """Times the task on this thread when benchmarks ask (`task_cpu`)."""
        if task_cpu.ENABLED:
            pacer = self._session.pacer
            return task_cpu.Task(
                kind, lambda: pacer.waits, pacer.take_most, invocation=self._session.invocations
            )
        return _UNTIMED

    def _materialize(self) -> None:
        try:
            self._session.measurement.materialize()
        except Exception as exc:  # the next snapshot tries again, and says why
            structured_log.error("coverage.py could not be built", error_message=str(exc))

    def _build_uploader(self) -> bool:
        """Build the S3 client now; False (logged once, reported by status()) if it
        cannot be."""
        try:
            self._session.uploader()
        except UploadError:
            return False
        except Exception as exc:
            structured_log.error("the S3 client could not be built", error_message=str(exc))
            return False
        return True

    def _run(self) -> None:
        # Started by the runtime's thread on its way to ask for the next event: a new
        # thread holds the GIL first, and without this the runtime would wait for
        # the switch interval (5 ms) of our work before it asks (a Managed Instances
        # worker's init: bench/bench_workers.py).  A sleep releases the GIL now.
        time.sleep(0)
        session = self._session
        session.pacer.attach()  # this thread's work yields to invocations (`pacing`)
        if session.BUILD_AT_START or session.measurement.hand_over_due():
            with self._task("hand-over"):
                self._materialize()
        uploads = session.uploads_enabled
        if uploads and session.BUILD_AT_START:
            with self._task("client"):
                uploads = self._build_uploader()
        pause_points.reach("shipper-idle")  # (tests: what follows the first response is done)
        while True:
            with self._wake:
                while not (self._requested or self._maintain or self._hand_over or self._prearm):
                    self._wake.wait()
                prearm, self._prearm = self._prearm, None
                checkpoint, self._requested = self._requested, False
                maintain, self._maintain = self._maintain, False
                hand_over, self._hand_over = self._hand_over, False
            pacing.turn()
            if prearm is not None:
                with self._task("prearm"):
                    try:
                        session.prearm(*prearm)
                    except Exception as exc:  # the switch re-arms what this did not
                        structured_log.error(
                            "coverage label pre-arm failed", error_message=str(exc)
                        )
            if hand_over:
                with self._task("hand-over"):
                    self._materialize()
            if checkpoint and uploads and session.uploads_enabled:
                pacing.turn()
                with self._task("checkpoint"):
                    # The bulk of the replay first, outside the snapshot's locks, in
                    # paced slices (`pacing`); the snapshot replays what came since.
                    self._materialize()
                    try:
                        session.checkpoint()
                    except Exception as exc:  # UploadError, or any: the thread lives
                        session.checkpoint_failed(exc)
            if maintain:
                # In steps, at a smaller share (`pacing.MAINTENANCE_SHARE_SECONDS`), and
                # cut when other work is asked meanwhile: frozen, at 8,000 modules a pass
                # spans hundreds of invocations, and a checkpoint must not wait for it.
                with pacing.sharing(pacing.MAINTENANCE_SHARE_SECONDS), self._task("maintenance"):
                    pacing.turn()
                    try:
                        session.measurement.maintain(stop=self._more_urgent)
                    except Exception as exc:  # measuring goes on; the next pass tries again
                        structured_log.error("coverage maintenance failed", error_message=str(exc))
                if self._more_urgent():
                    self.request_maintenance()  # (the rest after it: where the pass stopped)
