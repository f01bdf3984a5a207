"""The shipping thread's own CPU, per task and per step, for benchmarks.

Frozen between invocations, as Lambda freezes an environment once the runtime
asks for the next event, the shipping thread (`shipping.Shipper`) runs only
while a later invocation has thawed it, and whatever CPU it takes is billed
there.  REPORT Durations show the sum of that and each invocation's own first
hits; to tell them apart, with ``COVERAGE_BENCH_TASK_CPU`` set (benchmarks
only: ``bench/sizes.py --task-cpu``) each task the thread runs ends with one
DEBUG record: its kind, the thread's CPU time (``time.thread_time``: CPU,
not wall time, so it does not count the waits for the GIL, the network or a
frozen cgroup) and the wall time it took, split into the steps the code
marks with `step` (build coverage.py, replay, take, SQLite write, read,
PUT...), and how often it waited for an invocation to end (`pacing`).
Unset (always, in Lambda), `step` is one global lookup and the thread does
not look at the clock.
"""

from __future__ import annotations

import os
import threading
import time

from coverage_runtime import env
from coverage_runtime.shim import structured_log

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at init
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

ENABLED = env.parse_bool(os.environ.get(env.BENCH_TASK_CPU) or "") is True
RECORD = "coverage shipping task"  # the message of each record

_current = threading.local()


class Task:
    """One task of the shipping thread, timed on that thread (a context manager)."""

    __slots__ = (
        "_cpu", "_last", "_most", "_waits", "_waits_from", "_wall", "fields", "kind", "steps",
    )  # fmt: skip

    def __init__(
        self,
        kind: str,
        waits: Callable[[], int] | None = None,
        most: Callable[[], float] | None = None,
        **fields: Any,
    ) -> None:
        self.kind = kind
        self.fields = fields
        self.steps: dict[str, float] = {}
        self._cpu = self._last = 0.0
        self._wall = 0.0
        # How often the thread waited for an invocation to end so far (`pacing`).
        self._waits = waits
        self._waits_from = waits() if waits is not None else 0
        # The most of the thread's CPU one invocation saw during the task (`pacing`).
        self._most = most

    def __enter__(self) -> Task:
        if self._most is not None:
            self._most()  # (from the task's start)
        self._wall = time.perf_counter()
        self._cpu = self._last = time.thread_time()
        _current.task = self
        return self

    def mark(self, name: str) -> None:
        now = time.thread_time()
        self.steps[name] = self.steps.get(name, 0.0) + now - self._last
        self._last = now

    def __exit__(self, *exc: object) -> None:
        _current.task = None
        now = time.thread_time()
        if now - self._last > 0 and self.steps:
            self.steps["other"] = self.steps.get("other", 0.0) + now - self._last
        structured_log.log(
            "DEBUG",
            RECORD,
            task=self.kind,
            cpu_ms=round((now - self._cpu) * 1000, 3),
            wall_ms=round((time.perf_counter() - self._wall) * 1000, 3),
            steps={name: round(seconds * 1000, 3) for name, seconds in self.steps.items()},
            waits=self._waits() - self._waits_from if self._waits is not None else None,
            most_in_an_invocation_ms=(
                round(self._most() * 1000, 3) if self._most is not None else None
            ),
            **self.fields,
        )


def step(name: str) -> None:
    """The CPU this thread spent since the task began or its last step was
    ``name``'s (nothing outside a timed task, or when not ``ENABLED``)."""
    if not ENABLED:
        return
    task = getattr(_current, "task", None)
    if task is not None:
        task.mark(name)
