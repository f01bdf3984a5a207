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
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
from pathlib import Path


def main(workdir: str, hold: bool) -> None:
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
    budget = settings.shutdown_budget_ms / 1000
    margin = sessions.RECORD_MARGIN_SECONDS
    called = time.monotonic()
    shutting = threading.Thread(target=session.shutdown, args=("SIGTERM",))
    shutting.start()
    while not (pauses / "shutdown.reached").exists():
        time.sleep(0.001)
    held = None
    if hold:
        usleep = ctypes.PyDLL(None).usleep
        usleep.argtypes = [ctypes.c_uint]
        began = time.monotonic()
        usleep(int((called + budget - margin * 0.75 - began) * 1e6))
        held = [began - called, time.monotonic() - called]
    shutting.join()
    summary = {"budget": budget, "margin": margin, "held": held}
    print(json.dumps({**summary, "returned": time.monotonic() - called}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], "--hold" in sys.argv[2:])
