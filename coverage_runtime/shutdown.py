"""React to SIGTERM even while awslambdaric blocks the main thread.

Between invocations awslambdaric's main thread sits inside a C call waiting
for the next event, and CPython runs ``signal.signal`` handlers only on the
main thread between bytecodes: such a handler would not run before Lambda's
SIGKILL.  The C-level handler still writes the signal number to the
``set_wakeup_fd`` pipe, so a watcher thread reading that pipe wakes within a
millisecond and does the work.  The Python handler stays as a fallback for
the case where other code takes the wakeup fd over.

The shim owns SIGTERM.  If handler code installs its own SIGTERM handler, it
is called after the coverage upload (from the watcher thread), then the
process exits 0 as Lambda expects.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from coverage_runtime import structured_log

# Longer than any shutdown budget; the watcher's os._exit ends the wait.
WAIT_FOR_WATCHER_SECONDS = 5.0


class ShutdownWatcher:
    """Run ``on_shutdown`` once on SIGTERM, then exit the process with 0."""

    def __init__(self, on_shutdown: Callable[[str], object]) -> None:
        self._on_shutdown = on_shutdown
        self._once = threading.Lock()
        self._read_fd = -1

    def install(self) -> None:
        """Install from the main thread, before handing over to awslambdaric."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._read_fd = read_fd
        signal.signal(signal.SIGTERM, self._handle_signal)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="coverage-sigterm", daemon=True).start()

    def _watch(self) -> None:
        while True:
            try:
                received = os.read(self._read_fd, 64)
            except OSError:
                return
            if not received:
                return
            if signal.SIGTERM in received:
                self._shut_down("SIGTERM")

    def _call_user_handler(self) -> None:
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler) and handler != self._handle_signal:
            try:
                handler(signal.SIGTERM, None)
            except SystemExit:
                pass
            except BaseException as exc:
                structured_log.error("the function's own SIGTERM handler failed", error=str(exc))

    def _handle_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs on the main thread when it executes Python code (e.g. in a
        # handler that hit its timeout): it does the work itself, or, if the
        # watcher is already on it, waits instead of competing for the GIL.
        if not self._shut_down("SIGTERM"):
            threading.Event().wait(WAIT_FOR_WATCHER_SECONDS)

    def _shut_down(self, reason: str) -> bool:
        """Shut down and exit; False at once if another thread is already doing it."""
        if not self._once.acquire(blocking=False):
            return False
        try:
            self._on_shutdown(reason)
        except BaseException as exc:  # exit 0 regardless: the data is what could be saved
            structured_log.error("shutdown handler failed", error=str(exc))
        try:
            self._call_user_handler()
        finally:
            structured_log.info("coverage runtime exiting", reason=reason)
            os._exit(0)
