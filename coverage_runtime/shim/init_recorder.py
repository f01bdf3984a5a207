"""Measure the function's init without coverage.py: record now, let coverage.py record later.

Importing coverage.py, building its ``Coverage`` and starting it cost 25-35 ms
of every cold start in the image (3.14), before the function's own imports
even begin; on a real function that is a quarter of its init.  On the
``sysmon`` core, what coverage.py records is a pure function of the events
CPython delivers to its callbacks, in their order: each location reports
once, then returns ``DISABLE``.  So during init the recorder owns the
``sys.monitoring`` tool id, arms the same code objects coverage.py would arm,
and keeps each event as one tuple.

It keeps recording after the init, through the warm invocations, until data
is first needed: a checkpoint that is due, ``flush()``, ``reset()``, the
shutdown -- or at once after the first response when the stream is long
(`Measurement.hand_over_due`: a large function, whose early shutdown must not
face the whole build and replay, and the memory bound of the stream).  Then
coverage.py is built on the same tool id and the gate's callbacks --
coverage.py's own, behind the gate -- receive the recorded events in order
(`hand_over`), on the shipping thread where nothing is billed.  The data file
is then exactly what coverage.py would have recorded live, and no location
fires twice: the events stay disabled where they were.  Until then a first
hit costs one tuple, and a small function's first invocations never overlap
coverage.py's build.

The recorder never imports coverage.py.  It arms a superset of what
coverage.py traces (everything under the source directories but installed
packages and the runtime itself); coverage.py's own ``should_trace`` decides
at the hand-over, and what it does not trace is disarmed then.  The
maintenance pass needs no coverage.py either: `InitRecorder.retire` takes the
events off code objects whose every location fired, from the stream itself.

With labels (on by default: ``COVERAGE_LABELS``), the recorder never hands
over: it stays the tool's receiver for the environment's life, and coverage.py,
once built, is fed from the stream (`drain`) whenever data is needed or the
stream reaches its bound.  A label switch is one event in the stream
(`relabel`) and a re-arming of what was disabled (`rearm_for_label`: a
restart, or only the code objects that ran when a restart costs more; when
labels are changing, done ahead by `prearm` after the response, off the
invocation path), and a first hit under the new label is one tuple, where
coverage.py's callbacks and the gate's bookkeeping cost about 1.2 µs per line
with branches on the invocation path.  The replay gives each label what ran under it; a replayed
switch only parks what ran before it in the gate, which re-arms nothing (the
recorder did, live).

While paused (selective mode outside blocks, ``without_coverage()``),
nothing is recorded, exactly as the gate does: nothing is disabled but what
already recorded, and (lines only) a window's paused events past `MUTE_AFTER`
take the location callbacks off the tool (`Muting`), so the rest of it fires
nothing; resuming puts them back.  With branches each paused event cuts its
code object's sequential arc instead.  The gate adopts what was retired at the
hand-over.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from types import CodeType
from typing import TYPE_CHECKING, Any, Protocol

from coverage_runtime.shim import pacing

if TYPE_CHECKING:  # imported by the shutdown that needs it: not on the init path
    from coverage_runtime.shim import partial_replay

# What one recorded event is: (kind, code object, first argument, second argument);
# a SWITCH holds the new label where the others hold the code object.
START, LINE, RETURN, BRANCH_LEFT, BRANCH_RIGHT, RESET, SWITCH = range(7)
Event = tuple[int, Any, int, int]
BRANCHES = frozenset((BRANCH_LEFT, BRANCH_RIGHT))

# Events `InitRecorder.catch_up` replays at a time without the recorder's lock.
# Small, since the shipping thread takes its turn between slices (`pacing`): at
# 2,000 modules with branches in the image a replayed event costs ~11 µs on
# average (coverage.py's first sight of each file included), so ~6 ms a slice.
REPLAY_SLICE = 512
# Events scanned by the maintenance pass (`retire`) between two turns of the
# shipping thread (~0.2 µs each: ~0.4 ms), and code objects looked at or retired
# (a first look with branches, `locations`, is ~14 µs in the image: ~0.5 ms).
# Its share of an invocation is `pacing.MAINTENANCE_SHARE_SECONDS`.
RETIRE_SLICE = 2048
RETIRE_CODES = 32
# Within a slice, how many between two looks at `close` (the shutdown's replay waits
# for the slice: a whole one, first sights included, took 200 ms in a thawed
# environment of 500 modules with branches on a loaded machine).
CLOSE_CHECK_EVENTS = 256

# ``inspect.CO_OPTIMIZED`` (not importing `inspect` at init): a function's code.
CO_OPTIMIZED = 0x1

# What a paused event answers when the hand-over came meanwhile: forward it.
FORWARD = object()

# The tool ids coverage.py itself tries, in its order.
FIRST_TOOL_ID, LAST_TOOL_ID = 1, 5
TOOL_NAME = "coverage.py"


def source_prefixes(source_dirs: Iterable[str]) -> tuple[str, ...]:
    """Each source directory as given and resolved, ending with a separator: what a
    measured file's name starts with (for the recorder and the gate alike)."""
    prefixes = {
        form.rstrip(os.sep) + os.sep
        for directory in source_dirs
        for form in (directory, os.path.realpath(directory))
    }
    return tuple(sorted(prefixes))


# Paused events answered per window before the tool is muted: a mute and its unmute
# (``register_callback`` per event kind, the locks) cost about as much as 8 answered
# events on 3.14, and a block around one small call (the example's batch: 3 events
# per text item) never pays it.
MUTE_AFTER = 8


class Muting:
    """Takes a tool's location callbacks off while paused, and puts them back
    on resume.

    Code that runs while paused must not be recorded, and must still report
    when it next runs measured.  Answering ``DISABLE`` to its events loses
    them: each such code object had to be re-armed on resume (a
    re-instrumentation per code object per window), and code that alternates
    (a loop with a block per item) was then kept armed, one Python callback
    per paused line, branch and return, every time (and no end to them while
    `api.pause` holds).  With no callback registered for an event, CPython
    skips an armed location in C (~15 ns) and leaves it armed.  So a paused
    event disables nothing but what already recorded (nothing is re-armed on
    resume); a window's first `MUTE_AFTER` paused events are answered (~0.1
    µs each), and then the tool is muted (one ``register_callback`` per event
    kind, ~0.06 µs each on 3.14): the rest of the window costs nearly
    nothing, whatever runs (selective mode between its blocks, `api.pause`).
    A window in which nothing new runs pays nothing.

    The owner serialises `mute` and `unmute` under its lock and tests its
    ``paused`` flag there: a resume between a paused event and its `mute`
    must not leave the tool muted.
    """

    def __init__(
        self, tool: int, callbacks: dict[int, Callable[..., Any]], *, arcs: bool = False
    ) -> None:
        self._register: Any = getattr(sys, "monitoring").register_callback  # noqa: B009
        self._tool = tool
        self._callbacks = callbacks  # (strong references: the tool drops its own at `mute`)
        self.muted = False
        self.seen = 0  # paused events answered in this window (no lock: a hint)
        # Paused events answered before muting.  Never muted with arcs: coverage.py
        # keeps a last line per code object, and a frame that runs lines in a muted
        # window and carries on measured afterwards (a generator, a pause opened in a
        # callee) would join its stale last line to its next one, an arc that never
        # ran; answered, each paused event cuts its code object instead.
        self.limit = sys.maxsize if arcs else MUTE_AFTER

    def mute(self) -> None:
        """Take the callbacks off (a no-op once the tool id was freed: coverage.py
        stopped at shutdown while a paused event was on its way here)."""
        if not self.muted:
            self.muted = True
            try:
                for event in self._callbacks:
                    self._register(self._tool, event, None)
            except ValueError:
                pass

    def unmute(self) -> None:
        """Put the callbacks back (a no-op once the tool id was freed: coverage.py stopped)."""
        self.muted = False
        try:
            for event, callback in self._callbacks.items():
                self._register(self._tool, event, callback)
        except ValueError:
            pass


def other_tool(tool: int | None) -> str | None:
    """The name of a ``sys.monitoring`` tool registered besides ``tool``, if any."""
    monitoring: Any = getattr(sys, "monitoring", None)
    if monitoring is None:
        return None
    for candidate in range(6):
        if candidate != tool:
            name = monitoring.get_tool(candidate)
            if name is not None:
                return str(name)
    return None


_warned_per_code = False


def rearm_for_label(
    tool: int,
    armed: Callable[[], Iterable[CodeType]],
    local_events: int,
    *,
    each: Callable[[CodeType], None] | None = None,
    per_code: bool = False,
) -> str:
    """Make every location ``tool`` disabled report again: a new label began.

    coverage.py's callbacks (and the recorder's) return ``DISABLE``, so a
    line that ran under one label would never report under the next.
    ``sys.monitoring.restart_events()`` re-arms them all in O(1), and each
    code object is re-instrumented lazily when it next runs (so the switch
    costs what runs afterwards, per distinct line and code object), but it
    re-arms every tool's events.  So it is used only while ``tool`` is the
    only one registered; with another (a profiler, a debugger, another
    coverage tool), each ``armed`` code object is re-armed alone
    (``set_local_events`` to 0 and back: O(code objects) per switch) and
    ``each`` is called for it.  ``per_code`` asks for that way anyway: the
    caller found it cheaper (see `coverage_adapter.SysmonGate.relabel`).
    Returns which was done.
    """
    global _warned_per_code  # noqa: PLW0603 - one warning per process
    monitoring: Any = getattr(sys, "monitoring")  # noqa: B009 - (3.12+; typeshed of 3.11)
    other = other_tool(tool)
    if other is None and not per_code:
        monitoring.restart_events()
        return "restart"
    if other is not None and not _warned_per_code:
        _warned_per_code = True
        from coverage_runtime.shim import structured_log

        structured_log.warning(
            "another sys.monitoring tool is registered: each label switch re-arms every "
            "measured code object alone (its cost grows with the measured code)",
            other_tool=other,
        )
    rearm(tool, armed(), local_events, each=each)
    return "per-code"


def rearm(
    tool: int,
    codes: Iterable[CodeType],
    local_events: int,
    *,
    each: Callable[[CodeType], None] | None = None,
) -> int:
    """Make what ``tool`` disabled in ``codes`` report again, code object by code
    object (``each`` called first for each); how many.  ``DISABLE`` is undone
    only by a change of the code object's local events, so they go to 0 and
    back: each call re-instruments it (~2.5 µs on 3.14)."""
    set_local: Any = getattr(sys, "monitoring").set_local_events  # noqa: B009 - (3.12+)
    count = 0
    for code in codes:
        if each is not None:
            each(code)
        set_local(tool, code, 0)
        set_local(tool, code, local_events)
        count += 1
    return count


class RearmChoice:
    """Which way of `rearm_for_label` is cheaper, for the recorder and the gate alike.

    A restart makes every code object that runs afterwards start again, most
    of it outside the sources (the runtime, installed packages: ~180 code
    objects per invocation of the example function); re-arming one by one
    costs a toggle per measured code object that recorded since it was last
    re-armed (only those have disabled events).  The cheaper way per the last
    restart, measured again every 64th switch.  The receiver counts, in
    ``outside_starts``, the code outside the sources that started (no lock: a
    hint).
    """

    def __init__(self) -> None:
        self.outside_starts = 0
        self._per_restart: int | None = None

    def per_code(self, switches: int, ran: int) -> bool:
        """Switch number ``switches`` is coming, with ``ran`` code objects to
        re-arm: one by one rather than a restart?"""
        if switches > 1:  # (the first follows the init: nothing measured yet)
            self._per_restart = self.outside_starts
        outside = self._per_restart
        return outside is not None and switches % 64 != 0 and ran <= outside

    def done(self, how: str) -> None:
        """The switch re-armed ``how`` (`rearm_for_label`'s answer)."""
        if how == "restart":
            self.outside_starts = 0


def retirable(code: CodeType) -> bool:
    """Is ``code`` worth a look by the maintenance pass?  A function's code, not
    a module's or a class's body: those run once (a class body in a function
    is rare), so taking their events off gains nothing, and at 2,000 modules
    they were half the code objects the first pass looked at (each look with
    branches ~14 µs, `locations`) and a third of the events it scanned."""
    return bool(code.co_flags & CO_OPTIMIZED)


def line_locations(code: CodeType) -> frozenset[int]:
    """The lines of ``code`` that report a LINE event (`locations`)."""
    lines = {line for _, _, line in code.co_lines() if line is not None and line > 0}
    if code.co_name != "<module>":
        # The ``def`` (or decorator) line: the enclosing code records it.
        lines.discard(code.co_firstlineno)
    return frozenset(lines)


def locations(code: CodeType, arcs: bool) -> frozenset[Any]:
    """Every location of ``code`` that reports an event: its lines and, with
    branches, each branch direction and return (as the recorder and the gate
    key what fired).  When all of them fired, nothing more can be recorded
    from ``code``: its events can come off (`InitRecorder.retire`,
    `coverage_adapter.SysmonGate.retire`)."""
    lines = line_locations(code)
    if not arcs:
        return lines
    found: set[Any] = set(lines)
    branches = list(code.co_branches())  # type: ignore[attr-defined]
    found.update([(source, left) for source, left, _ in branches])
    found.update([(source, right) for source, _, right in branches])
    found.update([("return", offset) for offset in return_offsets(code)])
    return frozenset(found)


def paced_codes(
    codes: dict[int, CodeType], stop: Callable[[], bool], rest: dict[int, CodeType]
) -> Iterator[tuple[int, CodeType]]:
    """``codes``' items for a maintenance pass (`InitRecorder.retire`,
    `coverage_adapter.SysmonGate.retire`), the shipping thread taking its turn
    every `RETIRE_CODES` of them (`pacing`).  If ``stop()`` says so at a turn,
    the ones not given yet go to ``rest``, the next pass's, and it ends.  The
    dict itself is walked: no copy of thousands of items in one step."""
    items = iter(codes.items())
    for index, (key, code) in enumerate(items):
        if index % RETIRE_CODES == RETIRE_CODES - 1:
            pacing.turn()
            if stop():
                rest[key] = code
                rest.update(items)  # (the rest of the iterator)
                return
        yield key, code


class Expected:
    """Whether a code object fired every location it has (`locations`), its
    lines looked at first: with branches the whole set costs ~14 µs a code
    object in the image (`co_branches`, `return_offsets`), and code that did
    not run every line yet (most, while a function grows) cannot be done, so
    the maintenance pass only pays for the lines of those."""

    __slots__ = ("_arcs", "_lines", "_whole")

    def __init__(self, arcs: bool) -> None:
        self._arcs = arcs
        self._lines: dict[int, frozenset[int]] = {}  # (with branches: not done yet)
        self._whole: dict[int, frozenset[Any]] = {}

    def done(self, key: int, code: CodeType, fired: AbstractSet[Any] | None) -> bool:
        """Has ``code`` (``key``: its id) nothing left to report, by ``fired``?"""
        if not fired:
            return False
        whole = self._whole.get(key)
        if whole is None:
            if not self._arcs:
                whole = self._whole[key] = line_locations(code)
            else:
                lines = self._lines.get(key)
                if lines is None:
                    lines = self._lines[key] = line_locations(code)
                if not lines <= fired:
                    return False
                del self._lines[key]
                whole = self._whole[key] = locations(code, True)
        return whole <= fired

    def forget(self, key: int) -> None:
        """``key`` retired (its id may name another code object later)."""
        self._whole.pop(key, None)
        self._lines.pop(key, None)


_returns: tuple[bytes, ...] | None = None


def return_offsets(code: CodeType) -> list[int]:
    """The offsets of ``code``'s return instructions, where PY_RETURN fires.

    A scan of the raw bytecode, not ``dis.get_instructions``: the maintenance
    pass asks this of every code object that ran, on the shipping thread, and
    ``dis`` cost 27 ms for 119 code objects in the image (~80 ms of the second
    invocation at a third of a CPU) against 0.5 ms.  ``co_code`` is the
    de-optimised code: one 2-byte unit per instruction or inline cache entry,
    the caches zeroed (``CACHE``), so every even byte is an opcode.
    """
    global _returns  # noqa: PLW0603 - computed once, on first use (not at init)
    if _returns is None:
        import opcode

        _returns = tuple(
            bytes((opcode.opmap[name],))
            for name in ("RETURN_VALUE", "RETURN_CONST")
            if name in opcode.opmap
        )
    opcodes = code.co_code[::2]  # (searched in C: ~3x faster than a loop over the units)
    found = []
    for op in _returns:
        index = opcodes.find(op)
        while index >= 0:
            found.append(index * 2)
            index = opcodes.find(op, index + 1)
    found.sort()
    return found


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
    def adopt(self, retired: dict[int, CodeType]) -> None: ...
    def relabel(self, label: str) -> None: ...

    def go_live(self) -> None:
        """What reaches the callbacks from now on runs now, it is not replayed (a
        start is armed): the recorder forwards to them next."""
        ...

    def install(self) -> None:
        """Register the callbacks on the tool (after `go_live`)."""
        ...


class Fed(Receiver, Protocol):
    """A receiver the shutdown's replay feeds file by file (`InitRecorder.drain_within`)."""

    label: str

    def take_labelled(self) -> list[tuple[str, Any]]: ...

    def data_name(self, code: CodeType) -> str | None:
        """The name ``code``'s file has in the data (None if it records nothing)."""
        ...


class InitRecorder:
    """Records first hits under the source directories until `hand_over` (with
    labels, for good: `drain`)."""

    # Slots: with more than 30 attributes an instance's dict leaves CPython's shared
    # keys, and on 3.14 every load on the first-hit and paused paths was a dict
    # lookup (``LOAD_ATTR_WITH_HINT``) or not specialized at all (``events``):
    # ~200 instructions a load.  ``__dict__`` keeps instances open to a test's
    # stand-in method (and to ``_record``, chosen per instance).
    __slots__ = (
        "__dict__", "_armed", "_branch", "_closed", "_cut", "_disable", "_excluded_dirs",
        "_excluded_files", "_excluded_parts", "_expected", "_fed_files", "_files", "_fired",
        "_forward", "_labelled", "_lock", "_monitoring", "_muting", "_paused", "_prefixes",
        "_ran", "_ran_is_armed", "_rearming", "_rearms", "_replayed", "_replaying", "_retired",
        "_scanned", "_scanned_switches", "_switches", "_touched", "_unchecked", "events",
        "handed_over", "local_events", "tool",
    )  # fmt: skip

    kind = "recorder"

    def __init__(
        self,
        source_dirs: Iterable[str],
        *,
        excluded: Iterable[str] = (),
        excluded_parts: Iterable[str] = (),
        branch: bool = False,
        labelled: bool = False,
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
        self._prefixes = source_prefixes(source_dirs)
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
        self._files: dict[str, bool] = {}  # file name -> armed
        self._armed: dict[int, CodeType] = {}
        self._cut: set[int] = set()  # code objects whose last event is a pause
        self._muting = Muting(0, {})  # (`start`: the tool's location callbacks)
        # `retire`: what fired per code object since its last re-arming, how far
        # the stream was scanned, and what had its events taken off.
        self._fired: dict[int, set[Any]] = {}
        self._expected = Expected(branch)
        self._scanned = 0
        self._touched: dict[int, CodeType] = {}
        self._retired: dict[int, CodeType] = {}
        # Armed since the last `drain`: does coverage.py trace them?
        self._unchecked: dict[int, CodeType] = {}
        self._switches = 0  # label switches so far, and how many of them were scanned
        self._scanned_switches = 0
        # Switches and pre-arms so far: a first hit that sees this move while it is
        # recorded stays armed (`_record_fed`).
        self._rearms = 0
        # Labels: code objects that recorded since they were last re-armed, and how
        # a switch re-arms them.  Until the first switch (the init, under `init`)
        # every armed code object counts as ran (`_ran_so_far`) and a first hit
        # stores nothing there: it is one per location at the init, tens of thousands
        # at a large one, and the first switch re-arms what ran at the init anyway.
        self._ran: dict[int, CodeType] = {}
        self._ran_is_armed = labelled
        self._rearming = RearmChoice()
        # Private, and not for style: every paused event's callback reads it, and on
        # CPython 3.14 the specializer left a load of ``self.paused`` generic on this
        # class (~220 instructions more an event: bench/README.md, "The batch event counted").
        self._paused = False
        self.tool: int | None = None
        self._forward: dict[int, Callable[..., Any]] | None = None
        # Set with ``_forward`` (`hand_over`): a plain attribute, since every block that
        # switches asks it (`Measurement._apply`), where a property is a call more.
        self.handed_over = False
        self._labelled = labelled
        # Files whose code a replay has started in the receiver, with one such code
        # object (`drain_within` completes those whose data was written), and
        # whether the shutdown's replay closed the stream.
        self._fed_files: dict[str, CodeType] = {}
        self._closed = False
        if labelled:
            self._record = self._record_fed  # type: ignore[method-assign]

    # -- Gate protocol before the hand-over ------------------------------------

    def pause(self) -> None:
        self._muting.seen = 0
        self._paused = True

    @property
    def waiting(self) -> int:
        """Recorded events that no receiver has taken yet (0 once handed over)."""
        return len(self.events)

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
        located: dict[int, Callable[..., Any]] = {events.LINE: self._first_hit(LINE, self._on_line)}
        if self._branch:
            located[events.PY_RETURN] = self._first_hit(RETURN, self._on_return)
            located[events.BRANCH_LEFT] = self._first_hit(BRANCH_LEFT, self._on_branch(BRANCH_LEFT))
            located[events.BRANCH_RIGHT] = self._first_hit(
                BRANCH_RIGHT, self._on_branch(BRANCH_RIGHT)
            )
        for event, callback in located.items():
            register(tool, event, callback)
        self._muting = Muting(tool, located, arcs=self._branch)
        monitoring.set_events(tool, events.PY_START)
        return tool

    def stop(self) -> None:
        """Give the tool id back without handing over (coverage.py could not start)."""
        with self._lock:
            if self.tool is None or self.handed_over:
                return
            try:
                self._monitoring.set_events(self.tool, 0)
                for code in list(self._armed.values()):
                    self._monitoring.set_local_events(self.tool, code, 0)
                self._monitoring.free_tool_id(self.tool)
            except ValueError:
                pass  # the tool id was freed already (coverage.py stopped on it)
            self.tool = None
            self.events = []

    def _on_start(self, code: CodeType, offset: int) -> Any:
        # Once per code object the process runs: thousands at a large init, most of
        # them in installed packages, so the decision is cached per file.
        armed = self._files.get(code.co_filename)
        if armed is None:
            armed = self._files[code.co_filename] = self._arms(code.co_filename)
        if not armed or code.co_name == "__annotate__":
            self._rearming.outside_starts += 1  # (labels: what a restart costs)
            return self._disable  # (``__annotate__`` never runs as code; coverage.py agrees)
        key = id(code)
        lock = self._lock  # (acquire/release: a ``with`` looks up the RLock's methods each time)
        lock.acquire()
        try:
            forward = self._forward
            if forward is None:
                if key in self._armed:  # (labels) its first call since a label switch
                    if self._branch:
                        self.events.append((RESET, code, 0, 0))
                    if self._retired.pop(key, None) is not None:  # `retire` took them off
                        self._monitoring.set_local_events(self.tool, code, self.local_events)
                    return self._disable
                self.events.append((START, code, offset, 0))
                self._armed[key] = code
                self._unchecked[key] = code
                self._monitoring.set_local_events(self.tool, code, self.local_events)
                return self._disable
        finally:
            lock.release()
        return forward[START](code, offset)

    def _arms(self, filename: str) -> bool:
        """Might coverage.py trace this file?  A superset: it decides at the hand-over."""
        if filename.startswith(self._prefixes):
            return not (
                filename.startswith(self._excluded_dirs)
                or filename in self._excluded_files
                or any(part in filename for part in self._excluded_parts)
            )
        # Outside the sources, or never a real file; a relative name may still be one.
        return bool(filename) and not filename.startswith((os.sep, "<"))

    def _record(self, kind: int, code: CodeType, a: int, b: int) -> Any:
        """Keep one event that ran measured (``DISABLE``), or `FORWARD` after the hand-over.

        Without the lock: it cost about half of each event's time, 8-13 ms of
        a 2,000-module init in the image (bench/recorder_floor.py).  Each store
        is atomic.  `hand_over` sets ``_forward`` before its last replay and
        only then drops the list: so an event appended while ``_forward`` was
        still unset is replayed; one that finds it set after the append may or
        may not have been, and is forwarded as well (coverage.py's callbacks
        take a repeat as a no-op: they add to sets).
        """
        events = self.events
        if self._forward is not None:
            return FORWARD
        events.append((kind, code, a, b))  # (``_ran`` is the labels' only: `_record_fed`)
        if self._branch:  # after the append: a pause's cut meanwhile is then only repeated
            self._cut.discard(id(code))
        if self._forward is None:
            return self._disable
        return FORWARD

    def _record_fed(self, kind: int, code: CodeType, a: int, b: int) -> Any:
        """`_record` for a recorder that is never handed over (labels: `drain`):
        without the lock, the one path that runs per first hit for the
        environment's life.  Each store is atomic; concurrent threads' events
        are in the order of their appends, as under the lock; `drain` only cuts
        what it replayed, and an event that lands between a switch's event and
        its re-arming belongs to the new label and, re-armed, fires again
        (recorded twice under it: the same data).

        A switch (or a `prearm`) on another thread between the store in
        ``_ran`` and the return may re-arm this code object before CPython
        applies the ``DISABLE``, and leaves the key in the set it took: the
        location would then stay disabled through the next per-code switch.
        So it stays armed instead, noted in the new set (as `_skip` does for
        a resume).  The re-arming takes the set before the count moves: a
        first hit that reads the moved count stores in the new set, and one
        that stored in the set taken either sees the count move or returned
        before the re-arming began."""
        rearms = self._rearms
        key = id(code)
        if self._branch:
            self._cut.discard(key)
        self._ran[key] = code
        self.events.append((kind, code, a, b))
        if self._rearms != rearms:
            self._ran[key] = code
            return None
        return self._disable

    def _paused_event(self, code: CodeType, location: Any) -> Any:
        """A location reached while paused: nothing recorded, as the gate does.

        The location stays armed: it reports when it next runs measured, and
        nothing is re-armed on `resume`; past `MUTE_AFTER` events the tool is
        muted for the rest of the window (`Muting`).  With branches, no
        sequential arc joins ``code``'s lines around the pause.  `FORWARD` if
        the hand-over came meanwhile.

        A ``location`` (a line, a branch direction, a return) that already
        fired under the current label, by what `retire`'s scans saw, is
        disabled: it has nothing left to record.
        """
        with self._lock:
            if self._forward is not None:
                return FORWARD
            if not self._paused:
                return None  # a resume came meanwhile: stay armed, the tool unmuted
            muting = self._muting
            if self._branch:
                self._cut_code(code)
            muting.seen += 1
            if muting.seen > muting.limit:
                muting.mute()
            return self._fired_already(id(code), location)

    def _fired_already(self, key: int, location: Any) -> Any:
        """``DISABLE`` if the location already fired under the current label
        (with labels: since its code object was last re-armed, `prearm`)."""
        ran = self._armed if self._ran_is_armed else self._ran
        if self._scanned_switches == self._switches and (key in ran or not self._labelled):
            fired = self._fired.get(key)
            if fired is not None and location in fired:
                return self._disable
        return None

    def _cut_code(self, code: CodeType) -> None:
        """No sequential arc joins ``code``'s lines before and after this point
        (branches; the lock is held)."""
        key = id(code)
        if key not in self._cut:
            self._cut.add(key)
            self.events.append((RESET, code, 0, 0))

    def relabel(self, label: str) -> None:
        """What runs from now on is ``label``'s (never after a hand-over).

        Re-arms as the gate does (`coverage_adapter.SysmonGate.relabel`): a
        restart, or, when the last restart made more code outside the sources
        start again than there are code objects to re-arm, only the code
        objects that recorded since they were last re-armed (the others have
        nothing disabled; one retired had recorded, so it is among them).
        After a `prearm`, only what recorded since (normally nothing: O(1)).
        """
        with self._lock:
            if self._forward is not None:
                raise RuntimeError("the init recorder has handed over: relabel the gate")
            self.events.append((SWITCH, label, 0, 0))
            ran, self._ran = self._ran_so_far(), {}  # (before the count moves: `_record_fed`)
            self._switches += 1
            self._rearms += 1
            if not ran:
                return  # nothing disabled since the last re-arming (a pre-arm)
            assert self.tool is not None
            how = rearm_for_label(
                self.tool,
                lambda: list(ran.values()),
                self.local_events,
                each=self._cut_for_label if self._branch else None,
                per_code=self._rearming.per_code(self._switches, len(ran)),
            )
            self._rearming.done(how)
            if how != "restart":  # each code object that ran was re-armed, retired ones too
                for key in ran:
                    self._retired.pop(key, None)

    def _ran_so_far(self) -> dict[int, CodeType]:
        """``_ran``, and the init's end at the first switch or pre-arm: what was
        armed then counts as ran (a superset: code that only started while
        paused is re-armed too, for nothing).  The lock is held."""
        if self._ran_is_armed:
            self._ran_is_armed = False
            self._ran.update(self._armed)
        return self._ran

    def _cut_for_label(self, code: CodeType) -> None:
        self.events.append((RESET, code, 0, 0))

    def prearm(self) -> int:
        """Re-arm, ahead of a label switch, what `relabel` would re-arm, the
        label staying the current one: off the invocation path (the shipping
        thread, while the runtime waits for the next event), so the switch
        then re-arms only what recorded since (normally nothing).  Returns how
        many code objects were re-armed.

        Always code object by code object, never ``restart_events()``: this
        costs nothing billed, and a restart would make every code object
        outside the sources start again on the next invocation's path (and
        re-arm other tools' events).

        Exact: what runs between this and the switch (a background thread)
        reports again under the current label (recorded twice: the same
        data), is disabled again and noted in ``_ran``, so the switch re-arms
        it.  With branches each re-armed code object is cut here (as
        `_cut_for_label` does at a switch): a frame that goes on running it
        before the switch joins no line it ran before to one it runs after
        (coverage.py's sequential arc from a stale last line: an arc that
        may never have run).  What fired before is left in ``_fired`` (no scan
        of the stream here: it was 0.12-0.4 ms of a pre-arm's 0.2-0.5 ms on
        the example's events with branches, in the image), and `retire` and
        `_fired_already` trust it only for code objects that recorded since
        they were last re-armed (``_ran``): one re-armed here is not retired,
        nor a location of it disabled while paused, until it records again;
        then the switch re-arms it anyway.
        """
        with self._lock:
            ran = self._ran_so_far() if self._labelled else self._ran
            if self._forward is not None or not self._labelled or not ran or self.tool is None:
                return 0  # (handed over, or stopped: coverage.py could not start)
            self._ran = {}  # (before the count moves: `_record_fed`)
            self._rearms += 1
            retired = self._retired

            def each(code: CodeType) -> None:
                if self._branch:
                    self._cut_for_label(code)
                retired.pop(id(code), None)

            return rearm(self.tool, ran.values(), self.local_events, each=each)

    def resume(self) -> None:
        if self._branch:  # never muted with arcs (`Muting`): nothing to serialise
            self._paused = False
            return
        with self._lock:
            self._paused = False
            muting = self._muting
            if self._forward is None and muting.muted:
                muting.unmute()

    def _first_hit(self, kind: int, general: Callable[..., Any]) -> Callable[..., Any]:
        """The callback of ``kind``'s events: a first hit while measuring is
        recorded in this one frame, what `_record` (or `_record_fed`) does
        written out again, and so is a paused event's answer in a short window
        (``general``'s); anything else (handed over, the rest of a window)
        goes to ``general``.

        A first hit is the one path that runs per location: tens of thousands
        of times at a large function's init.  Through ``general`` and `_record`
        it was two Python frames and a dozen attribute loads, ~4,500
        instructions a first hit beyond a bare callback's, about half of what
        measuring added to the init of 2,000 modules (bench/README.md).  Each
        store is atomic and in the order `_record` and `_record_fed` document:
        keep them alike."""
        disable = self._disable
        labelled = self._labelled
        arcs = self._branch
        keeps_b = kind in (BRANCH_LEFT, BRANCH_RIGHT)  # (a return's second argument is its value)

        def first_hit(code: CodeType, a: int, b: Any = 0) -> Any:  # noqa: PLR0912 - one frame
            if not self._paused:
                if labelled:  # `_record_fed`
                    rearms = self._rearms
                    if arcs and self._cut:  # (empty unless something paused: no id() then)
                        self._cut.discard(id(code))
                    if not self._ran_is_armed:
                        self._ran[id(code)] = code
                    self.events.append((kind, code, a, b if keeps_b else 0))
                    if self._rearms == rearms:
                        return disable
                    self._ran[id(code)] = code
                    return None
                events = self.events  # `_record`
                if self._forward is None:
                    events.append((kind, code, a, b if keeps_b else 0))
                    if arcs and self._cut:
                        self._cut.discard(id(code))
                    if self._forward is None:
                        return disable
            elif self._forward is None:  # a paused event answered at once, as ``general`` does
                if arcs:
                    if id(code) in self._cut:
                        return None
                else:
                    muting = self._muting
                    if muting.seen < muting.limit:
                        muting.seen += 1
                        return None
            return general(code, a, b) if kind != LINE else general(code, a)

        return first_hit

    # Paused events are answered here without the lock, written out in each callback
    # (the example's batch answers 700 an invocation with branches): lines only, the
    # first `MUTE_AFTER` of a window; with branches (never muted), each in code already
    # cut, with no count kept.

    def _on_line(self, code: CodeType, line: int) -> Any:
        if self._forward is None:
            if self._paused:
                if self._branch:  # never muted: a window's count does not matter
                    if id(code) in self._cut:
                        return None
                else:
                    muting = self._muting
                    if muting.seen < muting.limit:
                        muting.seen += 1
                        return None
                result = self._paused_event(code, line)
            else:
                result = self._record(LINE, code, line, 0)
            if result is not FORWARD:
                return result
        return self._forward[LINE](code, line)  # type: ignore[index]

    def _on_return(self, code: CodeType, offset: int, value: object) -> Any:
        if self._forward is None:
            if self._paused:
                if id(code) in self._cut:  # (branches only: never muted, see `_on_line`)
                    return None
                result = self._paused_event(code, ("return", offset))
            else:
                result = self._record(RETURN, code, offset, 0)
            if result is not FORWARD:
                return result
        return self._forward[RETURN](code, offset, value)  # type: ignore[index]

    def _on_branch(self, kind: int) -> Callable[[CodeType, int, int], Any]:
        """The callback of BRANCH_LEFT or BRANCH_RIGHT (``kind``): one closure per
        direction, not a shared method taking the kind (a call more per event)."""

        def on_branch(code: CodeType, offset: int, destination: int) -> Any:
            if self._forward is None:
                if self._paused:
                    if id(code) in self._cut:  # (as in `_on_return`)
                        return None
                    result = self._paused_event(code, (offset, destination))
                else:
                    result = self._record(kind, code, offset, destination)
                if result is not FORWARD:
                    return result
            return self._forward[kind](code, offset, destination)  # type: ignore[index]

        return on_branch

    # -- the maintenance pass --------------------------------------------------

    def retire(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Take the local events off code objects whose every location fired
        since they were last armed, as the gate's ``retire`` does after the
        hand-over: on 3.12-3.14 code that carries LINE events runs about 1.2x
        slower even when each of them returned ``DISABLE``, and the
        maintenance pass must not need coverage.py.  Returns how many.

        What fired is read from the stream (new events only), on the shipping
        thread, without the recorder's lock; only taking the events off holds
        it, and only if no label switch came meanwhile (a switch re-arms what
        fired under the last label, which must then report again).  The
        replay fills the gate's own record of what fired, so after the
        hand-over the gate decides alike.  Between its steps ``stop()`` may
        end it: what it did not look at yet waits for the next pass.
        """
        with self._replaying:  # the hand-over and `drain` empty the stream: not meanwhile
            if self._forward is not None:
                return 0
            end = len(self.events)
            while self._scanned < end:  # (in slices: the shipping thread takes its turns)
                self._scan(min(end, self._scanned + RETIRE_SLICE))
                pacing.turn()
                if stop():
                    return 0  # (the scan goes on from here next time)
            done = self._finished_codes(stop)
            retired = 0
            for first in range(0, len(done), RETIRE_CODES):
                if first:
                    pacing.turn()
                    if stop():
                        self._touched.update(done[first:])  # (looked at again next time)
                        break
                taken = self._take_off(done[first : first + RETIRE_CODES])
                if taken is None:
                    break  # a switch came meanwhile: the next pass decides again
                retired += taken
            return retired

    def _take_off(self, done: list[tuple[int, CodeType]]) -> int | None:
        """Take the events off ``done`` (`retire`), under the recorder's lock;
        ``None`` if a label switch or the hand-over came since the scan."""
        with self._lock:
            if self._forward is not None or self._switches != self._scanned_switches:
                return None
            set_local = self._monitoring.set_local_events
            retired = 0
            ran = (self._armed if self._ran_is_armed else self._ran) if self._labelled else None
            for key, code in done:
                if ran is not None and key not in ran:  # re-armed since (`prearm`)
                    continue
                set_local(self.tool, code, 0)
                self._retired[key] = code
                del self._fired[key]
                self._expected.forget(key)
                retired += 1
            return retired

    def _scan(self, end: int) -> None:
        """Note what fired in the stream up to ``end`` (``_replaying`` is held).

        One event is ~0.2 µs: a code object's events mostly come one after
        another (its first run), so the per-code lookups happen once a run.
        Bodies (`retirable`) are passed over."""
        fired = self._fired
        touched = self._touched
        last: Any = None  # the code object (or label) of the run under way...
        add: Callable[[Any], None] | None = None  # ...and where its locations go (None: skipped)
        for kind, code, a, b in self.events[self._scanned : end]:  # (a copy: no skipping)
            if code is not last:
                last = code
                if kind == SWITCH:
                    fired.clear()  # every armed code object reports again under the new label
                    touched.clear()
                    self._scanned_switches += 1  # (after: `_paused_event` reads both)
                    last = add = None  # (a next switch to the same label is one too)
                    continue
                if not retirable(code):
                    add = None
                    continue
                key = id(code)
                found = fired.get(key)
                if found is None:
                    found = fired[key] = set()
                touched[key] = code
                add = found.add
            if add is None:
                continue
            if kind == LINE:
                add(a)
            elif kind == RETURN:
                add(("return", a))
            elif kind in BRANCHES:
                add((a, b))
        self._scanned = end

    def _finished_codes(self, stop: Callable[[], bool]) -> list[tuple[int, CodeType]]:
        """The code objects with new events since the last pass whose every
        location fired (without the recorder's lock: the shipping thread takes
        its turn every `RETIRE_CODES` of them).  If ``stop()`` says so at a
        turn, those found so far (`retire` takes their events off in its first
        step, and the rest at its next turns, or the next pass), and the ones
        not looked at yet wait for the next pass.  The others looked at are
        dropped, as at the end of a pass: what fired in them changes only with
        new events, which touch them again.  (Before, a stopped pass put every
        one back, and the next looked at the same first ones again: passes
        stopped at their first turn each time never retired anything.)"""
        touched, self._touched = self._touched, {}
        fired = self._fired
        done = []
        for key, code in paced_codes(touched, stop, self._touched):
            if self._expected.done(key, code, fired[key]):
                done.append((key, code))
        return done

    def forget_fired(self) -> None:
        """Everything coverage.py knows was re-armed (`Measurement.reset`): nothing
        counts as fired.  But code that first ran since the reset's drain (another
        thread) is not known to coverage.py yet, its start still in the stream:
        its first hits disabled what they recorded, and only ``_ran`` can have the
        next per-code switch re-arm it."""
        with self._replaying, self._lock:
            self._fired = {}
            self._touched = {}
            self._retired = {}
            # (with labels the stream holds only what came since the last drain)
            self._ran = {id(code): code for kind, code, _, _ in self.events if kind != SWITCH}
            self._ran_is_armed = False  # (nothing else ran since everything was re-armed)

    # -- feeding coverage.py, the recorder staying the receiver (labels) --------

    def drain(self, receiver: Receiver) -> int:
        """Replay what was recorded so far into ``receiver`` and let it go, the
        recorder staying the tool's live receiver: with labels, a first hit
        stays one tuple and a switch one event and a re-arming (`relabel`)
        after coverage.py is built, and coverage.py's callbacks run here, on
        the thread that needs data (the shipping thread's checkpoint, a
        flush, the shutdown), where nothing is billed.  Returns how many
        events were replayed.

        ``receiver`` is never installed: its callbacks are called directly,
        and a replayed switch only parks what ran before it (the gate
        re-arms nothing it does not own).  The bulk is replayed without the
        recorder's lock (`catch_up`); the rest, under it, before the stream is
        cut.  Code objects armed since the last drain that coverage.py does not
        trace are disarmed, and their files armed no more.
        """
        self.catch_up(receiver)
        with self._replaying, self._lock:
            if self._forward is not None or self._closed:
                return 0
            self._replay_and_check(receiver)
            end = self._replayed
            self._scan(end)  # (what fired counts for `retire` before it goes)
            del self.events[:end]
            self._replayed = 0
            self._scanned = 0
            return end

    # -- the hand-over ---------------------------------------------------------

    def catch_up(self, receiver: Receiver) -> None:
        """Replay what was recorded so far into ``receiver``, in slices, without
        the recorder's lock: events keep arriving meanwhile (the function runs
        on), and `hand_over` replays the rest.  A large init (thousands of
        modules) is replayed while the next invocations run, instead of making
        their first-hit events wait for the whole replay."""
        while self._forward is None and not self._closed:
            with self._replaying:
                if self._forward is not None or self._closed:
                    return
                end = min(len(self.events), self._replayed + REPLAY_SLICE)
                if end - self._replayed < REPLAY_SLICE:
                    return  # the rest is `hand_over`'s, under the lock
                while self._replayed < end and not self._closed:
                    self._replay(receiver, min(end, self._replayed + CLOSE_CHECK_EVENTS))
            pacing.turn()  # (the shipping thread: not beyond its share of an invocation)

    def hand_over(self, receiver: Receiver) -> int:
        """Replay every recorded event not replayed yet into ``receiver``, then let
        it take the tool's events.  Returns how many events were replayed in all.

        Under the recorder's lock: an event on another thread waits, then goes
        to the receiver after everything recorded before it.

        The recorder forwards to the receiver before the receiver's callbacks
        are registered (`Receiver.install`, one event kind at a time): from
        then on every event reaches the receiver, through the recorder's
        callbacks or its own, in the order it ran.  Registered first, a
        location callback took the events of code whose start the recorder
        still held, unreplayed: measured code that this very thread ran
        inside the registrations (a finaliser in measured code, run by a
        collection of the cyclic GC that any allocation there may trigger,
        or a signal handler on the main thread) lost its first lines, and
        with branches coverage.py's line callback failed on the code object
        it had never seen start.
        """
        if self._labelled:  # (its events are recorded without the lock: `_record_fed`)
            raise RuntimeError("a labelled init recorder is drained, never handed over")
        with self._replaying, self._lock:
            if self._forward is not None or self._closed:
                return 0
            self._replay_and_check(receiver)
            receiver.adopt(self._retired)
            receiver.paused = self._paused
            receiver.go_live()  # (before the forward: a start forwarded live is armed)
            self._forward = receiver.callbacks()
            # What this very thread ran since the last replay (a finaliser, say), and
            # what another thread appended before it saw ``_forward`` (`_record`):
            # before anything this thread runs from now on, which is forwarded.
            self._replay_and_check(receiver)
            receiver.install()
            # Only now: until here a failure leaves `stop` to give the tool id back.
            self.handed_over = True
            replayed = self._replayed
            self.events = []
            self._armed = {}
            self._cut = set()
            self._fired = {}
            self._touched = {}
            self._expected = Expected(self._branch)
            self._retired = {}
            self._unchecked = {}
            self._ran = {}
            return replayed

    def _replay_rest(self, receiver: Receiver) -> None:
        """Everything not replayed yet (the locks are held).  This thread may
        append while it replays (a source directory that holds code coverage.py
        runs): the length is read again each time."""
        while self._replayed < len(self.events):
            self._replay(receiver, len(self.events))

    def _replay_and_check(self, receiver: Receiver) -> None:
        """`_replay_rest`, then take the events off the code objects started
        before it that coverage.py does not trace (the recorder arms a
        superset), and arm their files no more.

        They are taken before the replay, which replays their starts.  Code
        that this very thread starts once the replay has read the stream to
        its end (a finaliser run by a collection of the cyclic GC, a signal
        handler) is unknown to coverage.py: it would pass for untraced and be
        disarmed, and with labels its file never armed again.  It waits for
        the next check (the next drain; the hand-over's second).

        With labels, what is disarmed is not re-armed by a switch or a pre-arm
        either (``_ran``): re-armed, it recorded its first hits under every
        label from then on, a tuple each on the invocation path, replayed for
        nothing.  What fired in it stays keyed by its id (``_fired``,
        `Expected`, ``_cut``) with no reference to it here: coverage.py's
        monitor, which has seen it start, keeps it alive (``code_objects``:
        its own ``code_infos`` is keyed by id), so the id names no other code
        object while that state lives."""
        unchecked, self._unchecked = self._unchecked, {}
        self._replay_rest(receiver)
        traced = receiver.traced
        set_local = self._monitoring.set_local_events
        for key, code in unchecked.items():
            if not traced(code):
                set_local(self.tool, code, 0)
                self._armed.pop(key, None)
                self._ran.pop(key, None)
                self._files[code.co_filename] = False

    def _replay(self, receiver: Receiver, end: int) -> None:
        """Events ``[_replayed, end)`` into ``receiver`` (``_replaying`` is held)."""
        self._deliver(receiver, self.events, self._replayed, end)
        self._replayed = end

    def _deliver(self, receiver: Receiver, events: list[Event], begin: int, end: int) -> None:
        """``events[begin:end]`` into ``receiver``'s callbacks, in order."""
        callbacks = receiver.callbacks()
        start, line = callbacks[START], callbacks[LINE]
        traced = receiver.traced
        fed_files = self._fed_files
        known: dict[int, bool] = {}  # traced, per code object, for this call
        for index in range(begin, end):
            kind, code, a, b = events[index]
            if kind == START:
                start(code, a)
                fed_files[code.co_filename] = code
                known.pop(id(code), None)  # (traced now, maybe)
                continue
            if kind == SWITCH:
                receiver.relabel(code)
                continue
            measured = known.get(id(code))
            if measured is None:
                measured = known[id(code)] = traced(code)
            if not measured:
                continue
            if kind == LINE:
                line(code, a)
            elif kind == RESET:
                receiver.cut(code)
            elif kind == RETURN:
                callbacks[RETURN](code, a, None)
            else:
                callbacks[kind](code, a, b)

    # -- the shutdown: what fits, file by file -----------------------------------

    def seal(self) -> None:
        """No replay from now on, none under way (`close`, waiting for a replay)."""
        with self._replaying:
            self._closed = True

    def close(self) -> None:
        """No replay but `drain_within`'s from now on: a catch-up under way on
        another thread stops after its slice (the shutdown replays the rest)."""
        self._closed = True

    def drain_within(
        self,
        receiver: Fed,
        budget: partial_replay.Budget,
        settle: Callable[[], None],
        *,
        written: Container[str] | None = None,
        drop: Callable[[list[str]], None] = lambda names: None,
        held: Callable[[], Mapping[str, int]] = dict,
    ) -> partial_replay.Outcome:
        """At shutdown: replay what was not replayed yet, file by file, while
        ``budget`` lets, and then nothing more (`close`).  Each file's events
        are replayed all or none (see `partial_replay`): ``settle`` takes what
        the receiver holds (into the data to write) after each group of whole
        files, and the data of a group cut by the budget is taken and dropped.

        Files an earlier replay began whose data was written to the data file
        (``written``: names in the data; None: all of them) are completed
        first, whatever the budget: what the file holds of them, maybe in S3
        already, must not stay incomplete.  Then the others in stream order
        (the order of the function's imports and first calls), as long as the
        budget admits one more: new files, and files an earlier replay began
        but whose data was never written (a catch-up cut by the shutdown, a
        drain no snapshot followed): ``drop`` removes what was taken of those
        left out (by their names in the data), so they are missing whole, as
        new files left out are, instead of keeping the whole window (and at a
        large init more) to be completed.

        The budget counts all that the data to write holds from before
        (``held``: lines or arcs by file name in the data, once ``settle``
        took what earlier replays fed): of a file left out it is dropped, of
        one completed it is written with the rest of it (frozen at 2,000
        modules with branches, where the catch-up had fed the first files
        half their events, the write outgrew an estimate of the rest alone,
        and the shutdown's upload missed the deadline), and so is all of a
        file an earlier replay fed whole (no event of it left to replay) and
        the earlier data of a begun file.
        """
        from coverage_runtime.shim import partial_replay

        self.close()
        with self._replaying, self._lock:
            if self._forward is not None:
                return partial_replay.Outcome(0, 0, 0, 0, 0)
            budget.begin()  # (what a catch-up's slice kept it waiting for is not replay)
            events = self.events
            begin, end = self._replayed, len(events)
            start_label = receiver.label
            plan = partial_replay.plan(events, begin, end, start_label)
            fed = self._fed_files
            names = {name: receiver.data_name(fed[name]) for name in plan.files if name in fed}
            begun = {
                name for name, data_name in names.items() if written is None or data_name in written
            }
            rest = [name for name in plan.files if name not in begun]
            # What earlier replays fed, taken into the data to write, by file: of
            # the rest, written only with the file's completion (else dropped with
            # it); all else, written.
            settle()
            pending = held()
            earlier = {name: pending.get(names.get(name) or "", 0) for name in rest}
            later = {names[name] for name in rest if names.get(name)}
            before = sum(count for data_name, count in pending.items() if data_name not in later)
            replayed = 0
            budget.file_started()
            for name in [name for name in plan.files if name in begun]:  # (stream order)
                # (No clock: the shutdown's own deadline still bounds it.)
                self._deliver_file(receiver, plan.files[name], start_label)
                replayed += plan.events_of(name)
            budget.replayed(replayed, new=False, earlier=before)
            settle()  # (what the begun files' replay recorded)
            completed, rest_events = self._replay_admitted(
                receiver, plan, rest, start_label, budget=budget, settle=settle, earlier=earlier
            )
            files = len(begun) + len(completed)
            replayed += rest_events
            if receiver.label != plan.last_label:  # where the whole replay would leave it
                receiver.relabel(plan.last_label)
                settle()
            left = [names[name] for name in names if name not in completed and name not in begun]
            dropped = [name for name in left if name is not None]
            if dropped:
                drop(dropped)
            switches = plan.last_switch
            return partial_replay.Outcome(
                files_replayed=files,
                files_left=len(plan.files) - files,
                events_replayed=replayed,
                events_left=end - begin - switches - replayed,
                begun=len(begun),
            )

    def _replay_admitted(
        self,
        receiver: Fed,
        plan: partial_replay.Plan,
        names: list[str],
        start_label: str,
        *,
        budget: partial_replay.Budget,
        settle: Callable[[], None],
        earlier: Mapping[str, int],
    ) -> tuple[set[str], int]:
        """`drain_within`'s files after the begun ones: ``names`` in order while
        ``budget`` admits one more, taken (``settle``) by groups of whole files;
        a group cut by the budget is dropped.  The files completed, and their
        events.  ``earlier``: what the data to write held of a file before
        (an earlier replay's), written with it."""
        from coverage_runtime.shim import partial_replay

        fed = self._fed_files
        clock = budget.clock
        completed: set[str] = set()
        replayed = 0
        group: list[str] = []
        group_events = 0
        group_started = clock()
        for name in names:
            if not budget.admits():
                break
            new = name not in fed  # (a begun file's first sight is paid: no estimate)
            budget.file_started()
            if partial_replay.TEST_DELAY_SECONDS:
                time.sleep(partial_replay.TEST_DELAY_SECONDS)
            if not self._deliver_file(receiver, plan.files[name], start_label, budget):
                receiver.take_labelled()  # the cut group's data: dropped, whole files only
                return completed, replayed
            budget.replayed(plan.events_of(name), new=new, earlier=earlier.get(name, 0))
            group.append(name)
            group_events += plan.events_of(name)
            if clock() - group_started >= partial_replay.GROUP_SECONDS:
                settle()
                completed.update(group)
                replayed += group_events
                group, group_events, group_started = [], 0, clock()
        settle()
        completed.update(group)
        return completed, replayed + group_events

    def _deliver_file(
        self,
        receiver: Fed,
        events: list[Any],
        start_label: str,
        budget: partial_replay.Budget | None = None,
    ) -> bool:
        """One file's events (`partial_replay.plan`) into ``receiver``, from
        ``start_label``; False if ``budget`` ran out before the last of them."""
        from coverage_runtime.shim import partial_replay

        if receiver.label != start_label:
            receiver.relabel(start_label)
        step = partial_replay.CLOCK_EVERY
        for begin in range(0, len(events), step):
            if budget is not None and budget.expired():
                return False
            self._deliver(receiver, events, begin, min(begin + step, len(events)))
        return True
