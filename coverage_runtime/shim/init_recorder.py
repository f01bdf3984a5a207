"""Measure the function's init without coverage.py: record now, let coverage.py record later.

Importing coverage.py, building its ``Coverage`` and starting it cost 25-35 ms
of every cold start in the image (3.14), before the function's own imports
even begin; on a real function that is a quarter of its init.  On the
``sysmon`` core, what coverage.py records is a pure function of the events
CPython delivers to its callbacks, in their order: each location reports
once, then returns ``DISABLE``.  So during init the recorder owns the
``sys.monitoring`` tool id, arms the same code objects coverage.py would arm,
and keeps each event as one tuple.  After the first response (or when data
is needed sooner: a snapshot, shutdown), coverage.py is built on the same
tool id and the gate's callbacks -- coverage.py's own, behind the gate --
receive the recorded events in order (`hand_over`).  The data file is then
exactly what coverage.py would have recorded live, and no location fires
twice: the events stay disabled where they were.

The recorder never imports coverage.py.  It arms a superset of what
coverage.py traces (everything under the source directories but installed
packages and the runtime itself); coverage.py's own ``should_trace`` decides
at the hand-over, and what it does not trace is disarmed then.

While paused (selective mode outside blocks, ``without_coverage()``),
locations stay armed and record nothing, so they report when they next run
measured; with branches, a pause cuts the sequential arc as the gate does.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any, Protocol

# What one recorded event is: (kind, code object, first argument, second argument).
START, LINE, RETURN, BRANCH_LEFT, BRANCH_RIGHT, RESET = range(6)
Event = tuple[int, CodeType, int, int]

# Events `InitRecorder.catch_up` replays at a time without the recorder's lock.
REPLAY_SLICE = 2048

# The tool ids coverage.py itself tries, in its order.
FIRST_TOOL_ID, LAST_TOOL_ID = 1, 5
TOOL_NAME = "coverage.py"


def available() -> bool:
    """Can this Python record init this way (``sys.monitoring``, 3.12+)?"""
    return hasattr(sys, "monitoring")


class Receiver(Protocol):
    """What takes the recorded events over: the gate over a started coverage.py."""

    paused: bool

    def callbacks(self) -> dict[int, Callable[..., Any]]:
        """The callables for START, LINE, RETURN, BRANCH_LEFT, BRANCH_RIGHT."""
        ...

    def traced(self, code: CodeType) -> bool: ...
    def cut(self, code: CodeType) -> None: ...
    def install(self) -> None: ...


class InitRecorder:
    """Records first hits under the source directories until `hand_over`."""

    kind = "recorder"

    def __init__(
        self,
        source_dirs: Iterable[str],
        *,
        excluded: Iterable[str] = (),
        excluded_parts: Iterable[str] = (),
        branch: bool = False,
    ) -> None:
        monitoring: Any = getattr(sys, "monitoring", None)
        if monitoring is None:
            raise RuntimeError("sys.monitoring is missing (Python 3.12+)")
        self._monitoring = monitoring
        self._disable = monitoring.DISABLE
        events = monitoring.events
        self._branch = branch
        self.local_events = events.LINE
        if branch:
            self.local_events |= events.PY_RETURN | events.BRANCH_LEFT | events.BRANCH_RIGHT
        prefixes = {
            form.rstrip(os.sep) + os.sep
            for directory in source_dirs
            for form in (directory, os.path.realpath(directory))
        }
        self._prefixes = tuple(sorted(prefixes))
        # Certainly not traced by coverage.py: directories end with a separator,
        # anything else is a file name.
        excluded = tuple(excluded)
        self._excluded_dirs = tuple(e for e in excluded if e.endswith(os.sep))
        self._excluded_files = frozenset(e for e in excluded if not e.endswith(os.sep))
        self._excluded_parts = tuple(excluded_parts)
        self.events: list[Event] = []
        self._lock = threading.RLock()
        # One replaying thread at a time, and how far it got.
        self._replaying = threading.RLock()
        self._replayed = 0
        self._armed: dict[int, CodeType] = {}
        self._cut: set[int] = set()  # code objects whose last event is a pause
        self.paused = False
        self.tool: int | None = None
        self._forward: dict[int, Callable[..., Any]] | None = None

    # -- Gate protocol before the hand-over ------------------------------------

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    @property
    def handed_over(self) -> bool:
        return self._forward is not None

    # -- recording -------------------------------------------------------------

    def start(self) -> int:
        """Take a tool id and start receiving PY_START; returns the tool id."""
        monitoring = self._monitoring
        for tool in range(FIRST_TOOL_ID, LAST_TOOL_ID + 1):
            try:
                monitoring.use_tool_id(tool, TOOL_NAME)
            except ValueError:
                continue
            break
        else:
            raise RuntimeError("no sys.monitoring tool id is available")
        self.tool = tool
        events = monitoring.events
        register = monitoring.register_callback
        register(tool, events.PY_START, self._on_start)
        register(tool, events.LINE, self._on_line)
        if self._branch:
            register(tool, events.PY_RETURN, self._on_return)
            register(tool, events.BRANCH_LEFT, self._on_branch_left)
            register(tool, events.BRANCH_RIGHT, self._on_branch_right)
        monitoring.set_events(tool, events.PY_START)
        return tool

    def stop(self) -> None:
        """Give the tool id back without handing over (coverage.py could not start)."""
        if self.tool is None or self.handed_over:
            return
        self._monitoring.set_events(self.tool, 0)
        for code in self._armed.values():
            self._monitoring.set_local_events(self.tool, code, 0)
        self._monitoring.free_tool_id(self.tool)
        self.tool = None
        self.events = []

    def _on_start(self, code: CodeType, offset: int) -> Any:
        filename = code.co_filename
        if filename.startswith(self._prefixes):
            if (
                filename.startswith(self._excluded_dirs)
                or filename in self._excluded_files
                or any(part in filename for part in self._excluded_parts)
            ):
                return self._disable
        elif filename.startswith((os.sep, "<")) or not filename:
            return self._disable  # outside the sources, or never a real file
        if code.co_name == "__annotate__":
            return self._disable  # never runs as code; coverage.py ignores it too
        with self._lock:
            forward = self._forward
            if forward is None:
                self.events.append((START, code, offset, 0))
                self._armed[id(code)] = code
                self._monitoring.set_local_events(self.tool, code, self.local_events)
                return self._disable
        return forward[START](code, offset)

    def _record(self, kind: int, code: CodeType, a: int, b: int) -> Any:
        """One event that ran measured, or the callable to forward it to."""
        with self._lock:
            forward = self._forward
            if forward is None:
                self._cut.discard(id(code))
                self.events.append((kind, code, a, b))
                return self._disable
        return forward

    def _paused_event(self, code: CodeType) -> None:
        """With branches, no sequential arc joins lines across a pause."""
        if self._branch and id(code) not in self._cut:
            with self._lock:
                if self._forward is None:
                    self._cut.add(id(code))
                    self.events.append((RESET, code, 0, 0))

    def _on_line(self, code: CodeType, line: int) -> Any:
        if self._forward is None:
            if self.paused:
                self._paused_event(code)
                return None  # stays armed: it reports when it runs measured
            result = self._record(LINE, code, line, 0)
            if result is self._disable:
                return result
        return self._forward[LINE](code, line)  # type: ignore[index]

    def _on_return(self, code: CodeType, offset: int, value: object) -> Any:
        if self._forward is None:
            if self.paused:
                self._paused_event(code)
                return None
            result = self._record(RETURN, code, offset, 0)
            if result is self._disable:
                return result
        return self._forward[RETURN](code, offset, value)  # type: ignore[index]

    def _on_branch_left(self, code: CodeType, offset: int, destination: int) -> Any:
        if self._forward is None:
            if self.paused:
                return None
            result = self._record(BRANCH_LEFT, code, offset, destination)
            if result is self._disable:
                return result
        return self._forward[BRANCH_LEFT](code, offset, destination)  # type: ignore[index]

    def _on_branch_right(self, code: CodeType, offset: int, destination: int) -> Any:
        if self._forward is None:
            if self.paused:
                return None
            result = self._record(BRANCH_RIGHT, code, offset, destination)
            if result is self._disable:
                return result
        return self._forward[BRANCH_RIGHT](code, offset, destination)  # type: ignore[index]

    # -- the hand-over ---------------------------------------------------------

    def catch_up(self, receiver: Receiver) -> None:
        """Replay what was recorded so far into ``receiver``, in slices, without
        the recorder's lock: events keep arriving meanwhile (the function runs
        on), and `hand_over` replays the rest.  A large init (thousands of
        modules) is replayed while the next invocations run, instead of making
        their first-hit events wait for the whole replay."""
        while self._forward is None:
            with self._replaying:
                if self._forward is not None:
                    return
                end = min(len(self.events), self._replayed + REPLAY_SLICE)
                if end - self._replayed < REPLAY_SLICE:
                    return  # the rest is `hand_over`'s, under the lock
                self._replay(receiver, end)

    def hand_over(self, receiver: Receiver) -> int:
        """Replay every recorded event not replayed yet into ``receiver``, then let
        it take the tool's events.  Returns how many events were replayed in all.

        Under the recorder's lock: an event on another thread waits, then goes
        to the receiver after everything recorded before it.
        """
        with self._replaying, self._lock:
            if self._forward is not None:
                return 0
            # This thread may append while it replays (a source directory that
            # holds code coverage.py runs): `_replay` reads the length each time.
            while self._replayed < len(self.events):
                self._replay(receiver, len(self.events))
            traced = receiver.traced
            set_local = self._monitoring.set_local_events
            for code in self._armed.values():
                if not traced(code):
                    set_local(self.tool, code, 0)
            receiver.paused = self.paused
            receiver.install()
            self._forward = receiver.callbacks()
            replayed = self._replayed
            self.events = []
            self._armed = {}
            self._cut = set()
            return replayed

    def _replay(self, receiver: Receiver, end: int) -> None:
        """Events ``[_replayed, end)`` into ``receiver`` (``_replaying`` is held)."""
        callbacks = receiver.callbacks()
        start, line = callbacks[START], callbacks[LINE]
        traced = receiver.traced
        events = self.events
        for index in range(self._replayed, end):
            kind, code, a, b = events[index]
            if kind == START:
                start(code, a)
            elif not traced(code):
                continue
            elif kind == LINE:
                line(code, a)
            elif kind == RESET:
                receiver.cut(code)
            elif kind == RETURN:
                callbacks[RETURN](code, a, None)
            else:
                callbacks[kind](code, a, b)
        self._replayed = end
