"""One JSON object per line for the runtime's own log records.

The shim logs before awslambdaric has configured logging and from threads that
run while the handler is idle, so it writes its own records instead of going
through the root logger that awslambdaric owns.  The keys follow Lambda's JSON
log format (``timestamp``, ``level``, ``message``, ``logger``), so CloudWatch
Logs Insights queries work the same on both.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, TextIO

LOGGER_NAME = "coverage_runtime"
_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    """A thread of the parent may have held the lock when it forked (Managed
    Instances workers are forked): the child's copy would never be released."""
    global _lock  # noqa: PLW0603 - one lock per process
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def log(level: str, message: str, stream: TextIO | None = None, **fields: Any) -> None:
    """Write one record; never raises, since logging must not break the function
    (nor the exit path's upload: a closed stdout, exhausted memory, a field
    that cannot be turned into text)."""
    try:
        record = {
            "timestamp": _timestamp(),
            "level": level,
            "logger": LOGGER_NAME,
            "message": message,
        }
        record.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(record, default=str)
        with _lock:
            out = stream or sys.stdout
            out.write(line + "\n")
            out.flush()
    except Exception:  # noqa: S110 - see the docstring (MemoryError is an Exception)
        pass


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARN", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)
