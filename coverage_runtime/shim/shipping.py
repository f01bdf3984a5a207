"""The shipping thread: builds coverage.py and the S3 client, and writes and
uploads checkpoints off the invocation path.

Lambda counts an invocation until the runtime asks for the next event, so
writing a snapshot or uploading it there would be billed, and a slow S3
could turn a successful invocation into a timeout.  Here the session only
asks for a checkpoint when something new was measured; this thread writes
the snapshot and uploads it while the runtime waits for the next event (in
Lambda, until the environment is frozen; it goes on when the environment
thaws).  Requests made while one is under way are one; snapshots are
numbered, so an older one never replaces a newer one in S3.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from coverage_runtime.errors import UploadError
from coverage_runtime.shim import structured_log

if TYPE_CHECKING:
    from coverage_runtime.shim.session import CoverageSession


class Shipper:
    """One daemon thread per environment, started after the first response."""

    def __init__(self, session: CoverageSession) -> None:
        self._session = session
        self._wake = threading.Condition()
        self._requested = False
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
                while not self._requested:
                    self._wake.wait()
                self._requested = False
            try:
                self._session.checkpoint()
            except Exception as exc:  # UploadError, or any: the thread lives, the next retries
                self._session.checkpoint_failed(exc)
