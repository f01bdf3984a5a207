"""A shutdown held past its budget, in a fresh interpreter, while another thread
holds the GIL in one C call across the moment the shutdown stops waiting.

``python -m tests.shutdown_probe WORKDIR [--hold]`` starts a session (nothing
reaches S3: the shutdown is held at the ``shutdown`` pause point, never
released), calls ``shutdown("SIGTERM")`` on a thread and, with ``--hold``,
calls libc's ``usleep`` through `ctypes.PyDLL` (which keeps the GIL, as
SQLite's or the tokenizer's C steps do) from the moment the shutdown is held
until a quarter of `RECORD_MARGIN_SECONDS` after its work's deadline.  The
records are on stdout; the last line is a JSON summary (seconds after the call).
A process of its own: the shutdown turns the garbage collector off and leaves
its held work thread behind.

``python -m tests.shutdown_probe WORKDIR --watch`` installs the SIGTERM watcher
alone (its ``on_shutdown`` prints a JSON line), has a shell send SIGTERM while
the main thread holds the GIL in ``usleep`` for `HOLD_SECONDS`, and prints
when the signal was asked for, when the kernel stamped its arrival, and when
the watcher ran (seconds after the request).

``python -m tests.shutdown_probe WORKDIR --late-handler`` starts a session whose
shutdown is held (as above) with the watcher installed for it, and has SIGTERM
sent while the main thread holds the GIL in ``usleep`` for `HOLD_SECONDS`
inside code of its own, so that the Python handler runs first, on the main
thread, as soon as the call returns.  The first line says when the signal was
asked for (`time.time()`); the loss record follows.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HOLD_SECONDS = 0.3


def usleep() -> Callable[[int], int]:
    """libc's usleep, called with the GIL held (`ctypes.PyDLL`), as a C step is."""
    function = ctypes.PyDLL(None).usleep
    function.argtypes = [ctypes.c_uint]
    return function


def watch(flood: int = 0) -> None:
    """``flood``: that many real-time signals with a Python handler first (each
    writes a byte to the wakeup fd while the GIL is held), then SIGTERM."""
    from coverage_runtime.shim.shutdown import ShutdownWatcher

    asked = 0.0

    def on_shutdown(reason: str) -> None:
        ran = time.monotonic()
        signalled = watcher.signalled
        stamped = None if signalled is None else signalled - asked
        print(json.dumps({"signalled": stamped, "ran": ran - asked}), flush=True)

    watcher = ShutdownWatcher(on_shutdown)
    watcher.install()
    # The main thread's Python handler does nothing (awslambdaric's main thread
    # sits in C between invocations): the watcher alone reacts.
    signal.signal(signal.SIGTERM, lambda *_: None)
    other = signal.SIGRTMIN
    signal.signal(other, lambda *_: None)
    sleep = usleep()
    pid = os.getpid()
    floods = f"i=0; while [ $i -lt {flood} ]; do kill -{int(other)} {pid}; i=$((i+1)); done; "
    killer = subprocess.Popen(
        ["/bin/sh", "-c", f"read go; {floods}kill -TERM {pid}"], stdin=subprocess.PIPE
    )
    assert killer.stdin is not None
    # Delivered to another thread, so that they do not cut the sleep short (EINTR).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, other})
    asked = time.monotonic()
    killer.stdin.write(b"go\n")
    killer.stdin.flush()
    # The signals arrive meanwhile; the watcher waits for the GIL.
    sleep(int((HOLD_SECONDS if not flood else 1.5) * 1e6))
    killer.wait()
    time.sleep(10)  # the watcher exits the process


def send_sigterm_while_held() -> None:
    """SIGTERM from a shell while this (main) thread holds the GIL in C for
    `HOLD_SECONDS`; its Python handler runs when the call returns."""
    sleep = usleep()
    pid = os.getpid()
    killer = subprocess.Popen(
        ["/bin/sh", "-c", f"read go; kill -TERM {pid}"], stdin=subprocess.PIPE
    )
    assert killer.stdin is not None
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # no EINTR for the sleep
    # The worst case, every time: the handler's thread keeps the GIL from the end
    # of the call until it gives it up of its own accord (a wait), not handing it
    # to the watcher at a switch interval's end in between.
    sys.setswitchinterval(10 * HOLD_SECONDS)
    print(json.dumps({"asked": time.time()}), flush=True)
    killer.stdin.write(b"go\n")
    killer.stdin.flush()
    sleep(int(HOLD_SECONDS * 1e6))
    killer.wait()  # (Python code: the pending handler runs here)
    time.sleep(10)  # the shutdown exits the process


def main(workdir: str, hold: bool, late_handler: bool = False) -> None:
    pauses = Path(workdir, "pauses")
    pauses.mkdir(parents=True)
    source = Path(workdir, "src")
    source.mkdir()
    os.environ["COVERAGE_TEST_PAUSE_DIR"] = str(pauses)  # read when pause_points is imported
    os.environ["COVERAGE_TEST_PAUSE_AT"] = "shutdown"

    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import session as sessions
    from coverage_runtime.shim.identity import EnvironmentIdentity

    settings = load_settings(
        {
            "COVERAGE_SOURCE": str(source),
            "COVERAGE_DATA_DIR": str(Path(workdir, "data")),
            "COVERAGE_S3_BUCKET": "never-reached",
            "COVERAGE_S3_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_REGION": "us-east-1",
        }
    )
    session = sessions.CoverageSession.start(settings, EnvironmentIdentity.detect({}))
    if late_handler:
        from coverage_runtime.shim.shutdown import ShutdownWatcher

        session.watcher = ShutdownWatcher(session.shutdown)
        session.watcher.install()
        send_sigterm_while_held()
    budget = settings.shutdown_budget_ms / 1000
    margin = sessions.RECORD_MARGIN_SECONDS
    called, called_at = time.monotonic(), time.time()
    shutting = threading.Thread(target=session.shutdown, args=("SIGTERM",))
    shutting.start()
    while not (pauses / "shutdown.reached").exists():
        time.sleep(0.001)
    held = None
    if hold:
        sleep = usleep()
        began = time.monotonic()
        sleep(int((called + budget - margin * 0.75 - began) * 1e6))
        held = [began - called, time.monotonic() - called]
    shutting.join()
    summary = {"budget": budget, "margin": margin, "held": held, "called_at": called_at}
    print(json.dumps({**summary, "returned": time.monotonic() - called}), flush=True)


if __name__ == "__main__":
    if "--watch" in sys.argv[2:]:
        watch(int(sys.argv[sys.argv.index("--flood") + 1]) if "--flood" in sys.argv else 0)
    else:
        main(sys.argv[1], "--hold" in sys.argv[2:], "--late-handler" in sys.argv[2:])
