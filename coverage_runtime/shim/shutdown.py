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

The wakeup fd is a datagram socket pair rather than a pipe, so that the
kernel stamps the signal's byte with its arrival (``SO_TIMESTAMPNS``, Linux):
the watcher needs the GIL back to run, and a C step of another thread (a
checkpoint's SQLite write, a garbage collection: up to ~190 ms at 8,000
modules) may keep it past the signal; the shutdown's budget counts from the
arrival (`signalled`), not from the moment the watcher got to run.  So does it
when the Python handler runs the shutdown on the main thread, which may be
long after the arrival too (a C call of the function's own holding the GIL):
the handler lets the watcher read the stamp first.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import _socket

from coverage_runtime.shim import structured_log

# Longer than any shutdown budget; the watcher's os._exit ends the wait.
WAIT_FOR_WATCHER_SECONDS = 5.0
# How long the Python handler waits for the watcher to read SIGTERM's arrival
# stamp.  The wait releases the GIL, and the watcher needs only the GIL (its
# byte is already read, in C): what keeps the watcher waiting keeps the
# handler's own shutdown waiting as much.  Not waited when the byte went
# elsewhere; and if it runs out, the window still counts from the handler's
# start, not from the end of the wait.
WAIT_FOR_ARRIVAL_SECONDS = 0.1
# Linux's SO_TIMESTAMPNS (asm-generic; the socket module does not name it):
# each datagram carries its arrival time, a struct timespec (two 64-bit fields).
_SO_TIMESTAMPNS = 35
_TIMESPEC = "@qq"
_TIMESPEC_SIZE = 16

# Code that may hold a lock the shutdown needs: the runtime, coverage.py, the
# S3 client's stack, logging, and the import system.
_HOLDS_LOCKS = tuple(
    f"{os.sep}{package}{os.sep}"
    for package in (
        "coverage_runtime",
        "coverage",
        "botocore",
        "boto3",
        "urllib3",
        "s3transfer",
        "logging",
        "importlib",
    )
)


# The standard library's directory (sysconfig would say the same, for ~1.5 ms of init).
_STDLIB = os.path.dirname(os.__file__) + os.sep


def _interrupted_critical_code(frame: FrameType | None) -> bool:
    """Did the signal interrupt code that may hold a lock the shutdown needs?

    Walks out from the interrupted frame through the standard library (which
    such code calls) and stops at the first frame of the function's own code
    or of awslambdaric's loop: the shim's frames further out (the entry
    point, the decorator around the handler) hold no lock.
    """
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith("<frozen importlib") or any(m in filename for m in _HOLDS_LOCKS):
            return True
        if "awslambdaric" in filename:
            return False
        library = filename.startswith((_STDLIB, "<")) or (
            "site-packages" in filename or "dist-packages" in filename
        )
        if not library:
            return False  # the function's own code
        frame = frame.f_back
    return False


def _arrival(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel's stamp of a datagram's arrival, on the `time.monotonic` clock."""
    import _socket
    import struct  # (not on the init path)

    for level, kind, data in ancillary:
        if (level, kind) == (_socket.SOL_SOCKET, _SO_TIMESTAMPNS) and len(data) >= _TIMESPEC_SIZE:
            seconds, nanoseconds = struct.unpack_from(_TIMESPEC, data)
            ago = time.time() - (seconds + nanoseconds / 1e9)
            return time.monotonic() - max(0.0, ago)
    return None


class ShutdownWatcher:
    """Run ``on_shutdown`` once on SIGTERM, then exit the process with 0."""

    def __init__(self, on_shutdown: Callable[[str], object]) -> None:
        self._on_shutdown = on_shutdown
        self._once = threading.Lock()
        self._reader: _socket.socket | None = None
        self._writer: _socket.socket | None = None
        self._write_fd = -1
        # When SIGTERM arrived (time.monotonic()), as the kernel stamped it (or
        # the Python handler's start, if that was earlier known); None until then.
        self.signalled: float | None = None
        self._arrival_read = threading.Event()  # the watcher has read SIGTERM's byte
        self._thread: threading.Thread | None = None
        # Wakeup fds that other code had set (an asyncio loop's self-pipe),
        # with their identity: signal bytes are passed on while they live.
        self._forward: dict[int, tuple[int, int]] = {}

    def install(self) -> None:
        """Install from the main thread, before handing over to awslambdaric."""
        import _socket  # the C module alone: `socket` would cost ~1.6 ms of the init
        import contextlib

        reader, writer = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        if sys.platform == "linux":  # elsewhere no stamps: the budget counts from the wake-up
            with contextlib.suppress(OSError):
                reader.setsockopt(_socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        writer.setblocking(False)
        # An AF_UNIX datagram is charged a whole buffer: at the default send buffer
        # ~280 signal bytes fill it, and a full wakeup fd drops SIGTERM's byte
        # silently.  As much room as the system allows (~10,000 at 4 MiB).
        with contextlib.suppress(OSError):
            writer.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, 1 << 22)
        self._reader, self._writer, self._write_fd = reader, writer, writer.fileno()
        signal.signal(signal.SIGTERM, self._handle_signal)
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="coverage-sigterm", daemon=True)
        self._thread.start()

    def reassert(self) -> None:
        """Take SIGTERM back if the function's code took it (main thread, between
        invocations).

        ``asyncio.run()`` with ``loop.add_signal_handler(SIGTERM, ...)`` moves the
        wakeup fd to the loop's self-pipe and, when the loop closes, leaves
        SIGTERM at its default action, which would kill the process before any
        upload.  A handler of the function's own stays (it is called after the
        upload); a wakeup fd of its own keeps receiving the signal bytes.
        """
        if self._write_fd < 0:
            return
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.signal(signal.SIGTERM, self._handle_signal)
        self._take_wakeup_fd()

    def _take_wakeup_fd(self) -> bool:
        """(Main thread.)  Make the wakeup fd ours again; True if it already was."""
        previous = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        if previous == self._write_fd:
            return True
        if previous != -1:
            try:
                status = os.fstat(previous)
            except OSError:
                return False
            self._forward[previous] = (status.st_dev, status.st_ino)
            structured_log.warning(
                "the function's code took the SIGTERM wakeup fd: taken back, signals are "
                "passed on to it",
                fd=previous,
            )
        return False

    def _pass_on(self, received: bytes) -> None:
        for fd, identity in list(self._forward.items()):
            try:
                status = os.fstat(fd)
                if (status.st_dev, status.st_ino) != identity:
                    raise OSError("reused")
                os.write(fd, received)
            except OSError:
                self._forward.pop(fd, None)

    def _watch(self) -> None:
        import _socket

        reader = self._reader
        assert reader is not None
        room = _socket.CMSG_SPACE(_TIMESPEC_SIZE)
        while True:
            try:
                received, ancillary, _, _ = reader.recvmsg(64, room)
            except OSError:
                return
            if not received:
                return
            if self._forward:
                self._pass_on(received)
            if signal.SIGTERM in received:
                self._arrived(_arrival(ancillary))
                self._arrival_read.set()
                self._shut_down("SIGTERM")

    def _arrived(self, moment: float | None) -> None:
        """Note when SIGTERM arrived: the earliest moment known."""
        if moment is not None:
            known = self.signalled
            self.signalled = moment if known is None else min(known, moment)

    def _call_user_handler(self) -> None:
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler) and handler != self._handle_signal:
            try:
                handler(signal.SIGTERM, None)
            except SystemExit:
                pass
            except BaseException as exc:
                structured_log.error(
                    "the function's own SIGTERM handler failed", error_message=str(exc)
                )

    def _handle_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs on the main thread when it executes Python code.  Interrupting
        # the runtime, coverage.py or the S3 client (a checkpoint's snapshot,
        # a flush), it returns at once: they may hold locks the shutdown
        # needs, and the watcher thread does the work once they let go.  In
        # the function's own code (a handler that hit its timeout) it does
        # the work itself, or waits instead of competing for the GIL.  Either
        # way the window counts from the signal's arrival: the watcher reads
        # its stamp first (or runs the shutdown itself), unless the byte went
        # elsewhere (another wakeup fd) and will not come.
        entered = time.monotonic()
        if _interrupted_critical_code(frame):
            return
        watched = self._thread is not None and self._thread.is_alive()
        if self._take_wakeup_fd() and watched:
            self._arrival_read.wait(WAIT_FOR_ARRIVAL_SECONDS)
        self._arrived(entered)
        if not self._shut_down("SIGTERM"):
            threading.Event().wait(WAIT_FOR_WATCHER_SECONDS)

    def _shut_down(self, reason: str) -> bool:
        """Shut down and exit; False at once if another thread is already doing it."""
        if not self._once.acquire(blocking=False):
            return False
        try:
            self._on_shutdown(reason)
        except BaseException as exc:  # exit 0 regardless: the data is what could be saved
            structured_log.error("shutdown handler failed", error_message=str(exc))
        try:
            self._call_user_handler()
        finally:
            structured_log.info("coverage runtime exiting", reason=reason)
            os._exit(0)
