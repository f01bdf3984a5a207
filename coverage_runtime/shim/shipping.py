"""The shipping thread: builds coverage.py and the S3 client, and uploads
checkpoints off the invocation path.

Lambda counts an invocation until the runtime asks for the next event, so
uploading a checkpoint there would be billed and could turn a successful
invocation into a timeout when S3 is slow.  Here the session only takes the
snapshot and hands it over; this thread uploads it while the runtime waits
for the next event (in Lambda, until the environment is frozen; it goes on
when the environment thaws).  Only the newest pending snapshot is kept: an
older one waiting here is replaced, never uploaded after a newer one.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from coverage_runtime.errors import UploadError
from coverage_runtime.shim import structured_log

if TYPE_CHECKING:
    from coverage_runtime.shim.measurement import Snapshot
    from coverage_runtime.shim.session import CoverageSession


class Shipper:
    """One daemon thread per environment, started after the first response."""

    def __init__(self, session: CoverageSession) -> None:
        self._session = session
        self._wake = threading.Condition()
        self._job: tuple[int, Snapshot, str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="coverage-shipper", daemon=True)
        try:
            self._thread.start()
        except RuntimeError:  # at interpreter shutdown: the exit path uploads itself
            self._thread = None

    def submit(self, generation: int, snapshot: Snapshot, reason: str) -> None:
        with self._wake:
            if self._job is None or self._job[0] < generation:
                self._job = (generation, snapshot, reason)
            self._wake.notify()

    def _run(self) -> None:
        try:
            self._session.measurement.materialize()
        except Exception as exc:  # the next snapshot tries again, and says why
            structured_log.error("coverage.py could not be built", error_message=str(exc))
        if not self._session.uploads_enabled:
            return
        try:
            self._session.uploader()
        except UploadError:
            return  # logged once; status() reports it
        except Exception as exc:
            structured_log.error("the shipping thread could not start", error_message=str(exc))
            return
        while True:
            with self._wake:
                while self._job is None:
                    self._wake.wait()
                generation, snapshot, reason = self._job
                self._job = None
            try:
                self._session.ship(generation, snapshot, reason, deadline=None)
            except Exception as exc:  # UploadError, or any: the thread lives, the next retries
                self._session.checkpoint_failed(exc)
