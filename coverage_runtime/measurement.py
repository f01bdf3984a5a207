"""The coverage.py session of one execution environment.

`Measurement` owns the `coverage.Coverage` object and decides when it
collects.  Collection is on when the mode is ``full`` or a measured block is
open, and no excluding block is open.  coverage.py's collector is
process-wide, so the block counts are too; a lock keeps them consistent when
threads open blocks concurrently.

Data goes to one coverage.py SQLite data file under the data directory.
coverage.py writes it as it flushes, so a snapshot is just the bytes of that
file after a flush.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from coverage_runtime import structured_log
from coverage_runtime.settings import Settings

# Never measure the runtime itself, nor installed packages, even when a
# source directory happens to contain them (a local checkout with a venv).
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))
ALWAYS_OMIT = (
    os.path.join(_RUNTIME_DIR, "*"),
    "*/site-packages/*",
    "*/dist-packages/*",
)


# More per-thread tracers than this are compacted between invocations.
MAX_TRACERS = 32


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of the data file, and how much it holds."""

    body: bytes
    files: int
    lines: int
    arcs: int

    @property
    def size(self) -> int:
        """What growth is measured in: arcs when measuring branches, else lines."""
        return self.arcs or self.lines


class Measurement:
    """Start, pause, resume, snapshot and reset coverage.py for this process."""

    def __init__(self, settings: Settings, data_file: str) -> None:
        self.settings = settings
        self.data_file = data_file
        self._lock = threading.RLock()
        self._measure_depth = 0
        self._exclude_depth = 0
        self._collecting = False
        self._finished = False
        self._context: str | None = None
        self.cov = self._new_coverage()

    # -- coverage.py ---------------------------------------------------------

    def _new_coverage(self) -> Any:
        import coverage

        os.makedirs(os.path.dirname(self.data_file), exist_ok=True)
        cov = coverage.Coverage(
            data_file=self.data_file,
            source=list(self.settings.source),
            include=list(self.settings.include) or None,
            omit=list(ALWAYS_OMIT + self.settings.omit),
            branch=self.settings.branch,
            config_file=False,
            auto_data=False,
            messages=False,
        )
        if self.settings.core:
            cov.set_option("run:core", self.settings.core)
        # A warning from coverage.py (e.g. "module never imported") must not
        # end up as noise in every function's log.
        cov.set_option("run:disable_warnings", ["no-data-collected", "module-not-imported"])
        return cov

    def core_name(self) -> str | None:
        """The core coverage.py really uses (it may fall back from sysmon)."""
        collector = getattr(self.cov, "_collector", None)
        core = getattr(collector, "core", None)
        tracer = getattr(core, "tracer_class", None)
        names = {"CTracer": "ctrace", "PyTracer": "pytrace", "SysMonitor": "sysmon"}
        return names.get(getattr(tracer, "__name__", ""), self.settings.core)

    # -- collection state ----------------------------------------------------

    @property
    def collecting(self) -> bool:
        return self._collecting

    def begin(self) -> None:
        """Start measuring per the mode: now (full) or only in blocks (selective)."""
        with self._lock:
            if not self.settings.selective:
                self._apply()
            else:
                # Initialise coverage.py now, not inside the first measured
                # block, so the first block does not pay for it.
                self.cov.start()
                self.cov.stop()

    def enter(self, *, measure: bool) -> None:
        """Open a block that measures (``measure=True``) or excludes its code."""
        with self._lock:
            if measure:
                self._measure_depth += 1
            else:
                self._exclude_depth += 1
            self._apply()

    def exit(self, *, measure: bool) -> None:
        """Close a block opened by `enter` with the same ``measure``."""
        with self._lock:
            if measure:
                self._measure_depth = max(0, self._measure_depth - 1)
            else:
                self._exclude_depth = max(0, self._exclude_depth - 1)
            self._apply()

    def _wanted(self) -> bool:
        if self._finished or self._exclude_depth:
            return False
        return not self.settings.selective or self._measure_depth > 0

    def _apply(self) -> None:
        wanted = self._wanted()
        if wanted and not self._collecting:
            self.cov.start()
            self._collecting = True
            self._adopt_running_frames()
            if self._context is not None:
                self.cov.switch_context(self._context)
        elif not wanted and self._collecting:
            self._silence_sysmon()
            self.cov.stop()
            self._collecting = False

    def _silence_sysmon(self) -> None:
        """Turn off the per-function events of coverage.py's sysmon core.

        Before 3.14, freeing a ``sys.monitoring`` tool id (what coverage.py's
        ``stop()`` does) leaves the per-code LINE events and callbacks
        active, so lines would go on being recorded while paused.  The next
        ``start()`` makes a fresh monitor that sets them again.
        """
        if sys.version_info >= (3, 14):
            return
        try:
            for tracer in self.cov._collector.tracers:
                code_objects = getattr(tracer, "code_objects", None)
                if code_objects is None:
                    continue
                for code in code_objects:
                    sys.monitoring.set_local_events(tracer.myid, code, 0)
        except Exception as exc:
            structured_log.warning("could not pause sys.monitoring events", error=str(exc))

    def _adopt_running_frames(self) -> None:
        """Measure the rest of the functions already running on this thread.

        coverage.py starts tracing frames as they are entered, so after a
        (re)start mid-function the lines left in the functions on the stack
        would be missed: the lines of a ``with CoverageContext():`` block
        itself, or the rest of a handler after an excluding block.  Replaying
        the "call" event for each frame, outermost first, is what coverage.py
        does for a resumed generator, and keeps its frame stack in step with
        the returns it will see.  This uses coverage.py internals, so any
        failure just leaves coverage.py's own behaviour.
        """
        try:
            tracers = self.cov._collector.tracers
            tracer = tracers[-1] if tracers else None
            frames = []
            frame = sys._getframe(0)
            while frame is not None:
                frames.append(frame)
                frame = frame.f_back
            if hasattr(tracer, "sysmon_py_start"):
                for running in frames:
                    tracer.sysmon_py_start(running.f_code, running.f_lasti)
            elif callable(tracer):
                # One C-level loop: a Python loop's own line events would be
                # recorded against the adopted frames' files.
                collections.deque(
                    map(tracer, reversed(frames), repeat("call"), repeat(None)), maxlen=0
                )
        except Exception as exc:
            structured_log.warning("could not measure functions already running", error=str(exc))

    def switch_context(self, label: str) -> None:
        """Label what runs from now on (needs ``COVERAGE_CONTEXTS``)."""
        if not self.settings.contexts:
            return
        with self._lock:
            self._context = label
            if self._collecting:
                self.cov.switch_context(label)

    def compact(self) -> None:
        """Let go of the tracers of threads that have ended.

        coverage.py's ``ctrace`` core starts one tracer per thread it sees and
        keeps it for good, so a function that starts threads per request
        (a thread pool per health check, say) grows that list for the life of
        the environment.  Between invocations, with no block open, a stop and
        start replaces them with one; the data collected so far is kept.
        """
        with self._lock:
            if not self._collecting or self._measure_depth or self._exclude_depth:
                return
            tracers = getattr(getattr(self.cov, "_collector", None), "tracers", None)
            if tracers is None or len(tracers) <= MAX_TRACERS:
                return
            self.cov.stop()
            self.cov.start()

    def finish(self) -> None:
        """Stop for good: the environment is shutting down."""
        with self._lock:
            self._finished = True
            self._apply()

    # -- data ----------------------------------------------------------------

    def counts(self) -> Snapshot:
        """Flush what was collected to the data file and count it (no bytes)."""
        with self._lock:
            data = self.cov.get_data()
            per_file = {f: len(data.lines(f) or ()) for f in data.measured_files()}
            lines = sum(per_file.values())
            arcs = sum(len(data.arcs(f) or ()) for f in per_file) if data.has_arcs() else 0
            executed = sum(1 for count in per_file.values() if count)
            return Snapshot(body=b"", files=executed, lines=lines, arcs=arcs)

    def snapshot(self) -> Snapshot:
        """Flush what was collected to the data file and return its bytes."""
        with self._lock:
            counts = self.counts()
            if not os.path.exists(self.data_file):
                # coverage.py creates the file on first write: nothing measured yet.
                return counts
            with open(self.data_file, "rb") as handle:
                body = handle.read()
            return Snapshot(body=body, files=counts.files, lines=counts.lines, arcs=counts.arcs)

    def reset(self) -> None:
        """Drop everything measured so far and carry on measuring afresh."""
        with self._lock:
            was_collecting = self._collecting
            if was_collecting:
                self.cov.stop()
                self._collecting = False
            self.cov.erase()
            # A fresh Coverage: coverage.py's collector keeps references to its
            # old data in running tracers, so erasing alone would lose new data.
            self.cov = self._new_coverage()
            if self.settings.selective and not was_collecting:
                self.cov.start()
                self.cov.stop()
            self._apply()
