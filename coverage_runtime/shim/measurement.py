"""The coverage.py session of one execution environment.

`Measurement` owns the `coverage.Coverage` object and decides what it
records.  Recording is on when the mode is ``full`` or a measured block is
open, and no excluding block is open.  coverage.py is started once and never
restarted: a gate from `coverage_adapter` switches recording in O(1) on every
core and keeps every thread measured.  coverage.py's collector is
process-wide, so the block counts are too; a lock keeps them consistent when
threads open blocks concurrently.

What the tracers record is taken from them, counted (`Tally`) and written to
one coverage.py SQLite data file under the data directory, so a snapshot is
the bytes of that file.  With labels, what is taken belongs to the label it
ran under, and is written as that coverage.py dynamic context.

What is written is also kept, in memory, by the base snapshot it follows
(`Since`), so that a delta snapshot (`delta_snapshot`: a fresh small data file
of everything written since a given base snapshot) costs what is new, not the
whole measured set (`layout.DELTA_SUFFIX`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from coverage_runtime.errors import StorageError
from coverage_runtime.settings import Settings, sysmon_supports
from coverage_runtime.shim import (
    coverage_adapter,
    distributions,
    init_recorder,
    labels,
    pacing,
    pause_points,
    structured_log,
    task_cpu,
)

if TYPE_CHECKING:  # imported by the shutdown that needs it: not on the init path
    from collections.abc import Callable

    from coverage_runtime.shim import partial_replay


def describe_storage_error(exc: BaseException, data_file: str) -> str:
    """What went wrong with the data file, in words an operator acts on."""
    import errno

    cause = exc.__cause__ or exc
    text = str(exc)
    number = getattr(cause, "errno", None) or getattr(exc, "errno", None)
    if number == errno.ENOSPC or "disk is full" in text or "SQLITE_FULL" in text:
        return f"the data directory is full (ENOSPC) writing {data_file}"
    if number in (errno.EROFS, errno.EACCES, errno.EPERM) or (
        "readonly" in text or "read-only" in text
    ):
        return f"the data directory is not writable writing {data_file}: {text}"
    return f"the coverage data file {data_file} could not be written: {text}"


# Never measure the runtime itself, nor installed packages, even when a
# source directory happens to contain them (a local checkout with a venv);
# packages installed into a source directory itself: see `distributions`.
_RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package
_PACKAGE_DIRS = ("site-packages", "dist-packages")
ALWAYS_OMIT = (
    os.path.join(_RUNTIME_DIR, "*"),
    *(f"*/{name}/*" for name in _PACKAGE_DIRS),
)
# The same, for the init recorder: what it never arms (path prefixes and parts).
_NEVER_ARMED = (_RUNTIME_DIR + os.sep,)
_NEVER_ARMED_PARTS = tuple(f"{os.sep}{name}{os.sep}" for name in _PACKAGE_DIRS)


# More per-thread tracers than this are compacted between invocations.
MAX_TRACERS = 16

# The init recorder hands over when data is first needed (a checkpoint, flush,
# reset, shutdown), or as soon as the shipping thread starts when it holds this
# many events: a large function's early shutdown must not face the whole build
# and replay, and the stream (a tuple per first hit, ~100-110 bytes) stays
# bounded (with labels it grows by what each invocation runs first, and is fed
# to coverage.py at the bound).  At the bound, building coverage.py and replaying
# cost ~71 ms with branches in the image (4,700 events in 50 modules), ~3x that
# on a third of a CPU: about half the default 400 ms shutdown budget.  See
# bench/README.md, "Where the init went".
HAND_OVER_AT_EVENTS = 5_000

# Files written to the data file at a time by the shipping thread, which takes its
# turn between groups (`pacing`): each group is one transaction of coverage.py's,
# ~0.1 ms per file of the synthetic function with branches in the image.
WRITE_FILES = 32


class Snapshot(NamedTuple):
    """A consistent copy of the data file (or of a delta file: ``delta``), and how
    much everything measured holds (a delta's counts are the whole environment's).

    (A `NamedTuple` because the init imports this module: see `errors.ConfigProblem`.)
    """

    body: bytes
    files: int
    lines: int
    arcs: int
    # With labels: every item taken under a label, repeats across labels counted.
    entries: int = 0
    # First hits the init recorder holds that coverage.py has not counted yet
    # (`Measurement.counts` before the hand-over): the counts above are then partial.
    waiting: int = 0
    # A base snapshot: its mark (`Since`); a delta: the mark of the base it extends.
    mark: int = 0
    delta: bool = False
    # A delta: the generation of the base it extends (`layout.BASE_GENERATION`).
    extends: int = 0
    # `layout.EPOCH`: the resets before it.
    epoch: int = 0

    @property
    def size(self) -> int:
        """What growth is measured in: arcs when measuring branches, else lines;
        with labels, what was taken (a known line under a new label is new)."""
        return self.entries or self.arcs or self.lines


class Tally:
    """Everything recorded so far, counted as it arrives.

    Counting the data file means one query per measured file; counting here
    costs only what is new, so `status()` costs the same with 10 files
    measured as with 1,000.
    """

    def __init__(self, *, arcs: bool, packed: bool, labelled: bool = False) -> None:
        self._arcs = arcs
        self._labelled = labelled
        self._packed = packed
        self._items: dict[str, set[Any]] = {}
        self._lines: dict[str, set[int]] = {}
        self.lines = 0
        self.arcs = 0
        self.files = 0
        # Labels only: items taken under each run of a label (repeats across runs
        # count: a label that comes back may look new), kept for the current run only.
        self.entries = 0
        self._run_label: str | None = None
        self._run_items: dict[str, set[Any]] = {}

    def add(
        self, recorded: coverage_adapter.Recorded, label: str = ""
    ) -> coverage_adapter.Recorded:
        """Count ``recorded`` (taken under ``label``), and return what of it is new
        under the label's current run: what the data file may lack under that
        label's context.  The C tracer records every line or arc again each time
        it runs; written again, each costs coverage.py's SQLite insert for
        nothing (on the host's 3.13 at 8,000 modules with branches, a checkpoint
        wrote ~100,000 such arcs in ~600 ms, and a shutdown could not)."""
        new_in_run = self._count_entries(recorded, label) if self._labelled else None
        new_here: coverage_adapter.Recorded = {}  # (unlabelled: new to the tally)
        for name, taken in recorded.items():
            if self._arcs:
                items = self._items.setdefault(name, set())
                fresh = taken - items
                if not fresh:
                    continue
                items |= fresh
                self.arcs += len(fresh)
                numbers = coverage_adapter.arc_lines(fresh, packed=self._packed)
            lines = self._lines.get(name)
            if lines is None:
                lines = self._lines[name] = set()
            if not self._arcs:
                fresh = numbers = taken - lines
            if fresh and new_in_run is None:
                new_here[name] = fresh
            before = len(lines)
            lines |= numbers
            if not before and lines:
                self.files += 1
            self.lines += len(lines) - before
        return new_here if new_in_run is None else new_in_run

    def _count_entries(
        self, recorded: coverage_adapter.Recorded, label: str
    ) -> coverage_adapter.Recorded:
        """Count the entries of ``label``'s current run; what is new in it."""
        if label != self._run_label:
            self._run_label = label
            self._run_items = {}
        run = self._run_items
        fresh_by_name: coverage_adapter.Recorded = {}
        for name, new in recorded.items():
            seen = run.get(name)
            if seen is None:
                run[name] = set(new)
                self.entries += len(new)
                if new:
                    fresh_by_name[name] = new
            else:  # (the C tracer records a line again each time it runs)
                fresh = new - seen
                if fresh:
                    seen |= fresh
                    self.entries += len(fresh)
                    fresh_by_name[name] = fresh
        return fresh_by_name

    def drop(self, name: str) -> None:
        """Count nothing of ``name`` any more: what was taken of it is dropped (the
        shutdown's replay leaves out a file never written: `Measurement._drop`).
        Its label entries stay counted (a growth test only, no count of the data)."""
        lines = self._lines.pop(name, None)
        if lines:
            self.files -= 1
            self.lines -= len(lines)
        self.arcs -= len(self._items.pop(name, ()))
        self._run_items.pop(name, None)  # (never written: not new to leave out)

    def everything(self) -> coverage_adapter.Recorded:
        """All that was recorded, in the tracers' own form: to rewrite a data file."""
        source = self._items if self._arcs else self._lines
        return {name: set(items) for name, items in source.items() if items}

    def new_run(self) -> None:
        """Everything is written afresh under one label (a fresh data file): what a
        label's run took before holds for no label's rows in it."""
        self._run_label = None
        self._run_items = {}

    def clear(self) -> None:
        self._items.clear()
        self._lines.clear()
        self.lines = self.arcs = self.files = self.entries = 0
        self._run_label = None
        self._run_items = {}


class Since:
    """What was written to the data file, by the base snapshot it followed.

    Each base snapshot closes the current segment under its mark; a delta that
    extends the base of mark M is the union of the segments after M and the
    current one.  A segment goes once S3 confirms a base that holds it.  What
    was written since the last delta (`take_unsent`) is kept apart too, while a
    delta file exists: the delta file grows by it alone while it extends the
    same base.  (Without one, the next delta is written afresh from the segments:
    a copy kept for it would be a second measured set in memory for good in an
    environment that sends no deltas.)

    A segment that closes under a mark no newer than ``_floor`` is never kept: a
    delta extends a confirmed base, never one older than the newest confirmed
    (nor, after a `clear`, one of the dropped epoch), and that base holds the
    segment.  So nothing is copied before the first base snapshot: the init's
    data, ~7 MB at 2,000 modules with branches, was kept until the first base's
    confirmation for no delta ever to read.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.mark = 0
        self._floor = 1  # (the first base's mark)
        self._current: dict[str, coverage_adapter.Recorded] = {}
        self._closed: list[tuple[int, dict[str, coverage_adapter.Recorded]]] = []
        self._unsent: dict[str, coverage_adapter.Recorded] = {}

    def add(self, label: str, recorded: coverage_adapter.Recorded, *, unsent: bool) -> None:
        """``recorded`` was written under ``label``; ``unsent``: a delta file exists,
        which the next delta grows by it (`take_unsent`)."""
        kept = self.mark + 1 > self._floor  # (the mark it closes under; read racily:
        # a base confirmed meanwhile only makes the copy one that is not needed)
        copy = {name: set(items) for name, items in recorded.items()} if kept else None
        also = {name: set(items) for name, items in recorded.items()} if unsent else None
        with self._lock:
            if copy is not None:
                coverage_adapter.merge_into(self._current.setdefault(label, {}), copy)
            if also is not None:
                coverage_adapter.merge_into(self._unsent.setdefault(label, {}), also)

    def close(self) -> int:
        """A base snapshot holds everything written so far: its mark."""
        with self._lock:
            self.mark += 1
            if self.mark > self._floor:
                self._closed.append((self.mark, self._current))
            self._current = {}
            return self.mark

    def take_unsent(self) -> dict[str, coverage_adapter.Recorded]:
        """What was written since the last call (or `after`), by label."""
        with self._lock:
            unsent, self._unsent = self._unsent, {}
            return unsent

    def after(self, mark: int) -> dict[str, coverage_adapter.Recorded]:
        """Everything written since base ``mark``, by label (new sets); nothing is
        unsent after it."""
        with self._lock:
            self._unsent = {}
            parts = [seg for m, seg in self._closed if m > mark] + [self._current]
        union: dict[str, coverage_adapter.Recorded] = {}
        for part in parts:
            for label, recorded in part.items():
                target = union.setdefault(label, {})
                for name, items in recorded.items():
                    target.setdefault(name, set()).update(items)
        return union

    def confirmed(self, mark: int) -> None:
        """S3 holds base ``mark``: what it holds is never needed in a delta again."""
        with self._lock:
            self._floor = max(self._floor, mark)
            self._closed = [entry for entry in self._closed if entry[0] > self._floor]

    def clear(self) -> None:
        """A reset: no delta extends a base from before it."""
        with self._lock:
            self._current, self._closed, self._unsent = {}, [], {}
            self._floor = self.mark + 1


class Measurement:
    """Start coverage.py once for this process and gate what it records."""

    def __init__(self, settings: Settings, data_file: str) -> None:
        self.settings = settings
        self.data_file = data_file
        self._lock = threading.RLock()
        # Held while the data file is written (outside `_lock`): one writer at a time,
        # and a reset never races a write of what it dropped.  Taken before `_lock`.
        self._data_lock = threading.RLock()
        self._full = not settings.selective
        self._measure_depth = 0
        self._exclude_depth = 0
        self._collecting = False
        self._started = False
        self._finished = False
        self._paused = False  # `pause()`: nothing is recorded until `resume()`
        # What runs now is recorded under this label (`labels`): the init's, until
        # the first invocation; coverage.py's empty context without labels.
        self._labelled = settings.labelled
        self._first_label = labels.INIT if self._labelled else labels.UNLABELLED
        self.label = self._first_label
        self._installed = distributions.installed_paths(settings.source)
        # With the sysmon core, the init is recorded without coverage.py, which
        # is built after the first response (`materialize`).
        self._recorder: init_recorder.InitRecorder | None = None
        self._build_lock = threading.Lock()
        self._built: tuple[Any, coverage_adapter.SysmonGate] | None = None
        self.cov: Any = None if self.defers_start else self._new_coverage()
        self._gate: coverage_adapter.Gate | None = None
        # Taken from the gate, not written to the data file yet: by label.
        self._outbox: dict[str, coverage_adapter.Recorded] = {}
        # The files (names in the data) written to the data file so far: what of
        # them the file holds must not stay incomplete (`_replay_within`).
        self._written: set[str] = set()
        self._tally = self._new_tally(packed=False)
        # What was written since each base snapshot (delta snapshots), and the
        # data's epoch (`layout.EPOCH`: one more at each `reset`).
        self._since = Since()
        self.epoch = 0
        # The base mark the delta file on disk extends (None: none, or not to trust).
        self._delta_extends: int | None = None
        self.storage_problem: str | None = None
        # The shutdown's replay (`finish` with a deadline): what it fed and left out.
        self.replay_outcome: partial_replay.Outcome | None = None

    @property
    def partial(self) -> partial_replay.Outcome | None:
        """The shutdown's replay outcome if it left files out (the data is then
        exactly that of the files it holds, and the rest is lost)."""
        outcome = self.replay_outcome
        return outcome if outcome is not None and outcome.partial else None

    # -- coverage.py ---------------------------------------------------------

    def _new_coverage(self) -> Any:
        coverage = coverage_adapter.import_coverage()
        settings = self.settings
        if settings.branch and settings.core == "sysmon" and sysmon_supports(branch=True):
            # coverage.py's first sight of each file: its multiline maps, from the
            # image's build where it has them (read when first asked for).
            from coverage_runtime.shim import maps_cache

            coverage_adapter.use_known_maps(maps_cache.Known(settings.source))
        os.makedirs(os.path.dirname(self.data_file), exist_ok=True)
        sources = list(self.settings.source)
        cov = coverage.Coverage(
            data_file=self.data_file,
            source=sources,
            omit=[
                *ALWAYS_OMIT,
                *distributions.omit_patterns(sources, self._installed),
                *self.settings.omit,
            ],
            branch=self.settings.branch,
            config_file=False,
            auto_data=False,
            messages=False,
        )
        if self.settings.core:
            cov.set_option("run:core", self.settings.core)
        # A warning from coverage.py (e.g. "module never imported") must not
        # end up as noise in every function's log; the others are JSON records.
        cov.set_option("run:disable_warnings", ["no-data-collected", "module-not-imported"])
        coverage_adapter.route_warnings(cov, structured_log.warning)
        if self.settings.include:
            coverage_adapter.narrow_to(cov, self.settings.include, sources)
        return cov

    @property
    def defers_start(self) -> bool:
        """Is the init recorded without coverage.py (the sysmon core can)?"""
        settings = self.settings
        return (
            settings.core == "sysmon"
            and init_recorder.available()
            and sysmon_supports(branch=settings.branch)
        )

    def core_name(self) -> str | None:
        """The core coverage.py really uses (it may fall back from sysmon)."""
        return coverage_adapter.core_name(self.cov) or self.settings.core

    @property
    def gate_kind(self) -> str | None:
        """``gate`` (switching without restarts), ``restart`` (the fallback),
        or ``recorder`` (the init, before coverage.py is built)."""
        if self._gate is not None:
            return self._gate.kind
        return self._recorder.kind if self._recorder is not None else None

    @property
    def receiving(self) -> str | None:
        """What receives the events now: ``recorder`` (the init recorder: before
        the hand-over, and for good with labels) or the gate's kind."""
        receiver = self._receiver()
        return None if receiver is None else receiver.kind

    def _receiver(self) -> coverage_adapter.Gate | init_recorder.InitRecorder | None:
        """What receives the events now, to pause, resume and relabel: the init
        recorder until it hands over (with labels, for good), then the gate."""
        recorder = self._recorder
        if recorder is not None and not recorder.handed_over:
            return recorder
        return self._gate

    def hand_over_due(self) -> bool:
        """Should coverage.py take the recorded events over (with labels: be fed
        them) before data is needed?  Yes once the stream holds
        `HAND_OVER_AT_EVENTS`: see there."""
        recorder = self._recorder
        return (
            recorder is not None
            and not recorder.handed_over
            and recorder.waiting >= HAND_OVER_AT_EVENTS
        )

    # -- collection state ----------------------------------------------------

    @property
    def collecting(self) -> bool:
        return self._collecting

    def begin(self) -> None:
        """Start coverage.py now; in selective mode, paused until a block opens."""
        with self._lock:
            if self._started:
                return
            if self.cov is None:
                self._record_init()
                return
            self._start_now()

    def _record_init(self) -> None:
        recorder = init_recorder.InitRecorder(
            self.settings.source,
            excluded=(*_NEVER_ARMED, *self._installed),
            excluded_parts=_NEVER_ARMED_PARTS,
            branch=self.settings.branch,
            labelled=self._labelled,
        )
        try:
            recorder.start()
        except RuntimeError as exc:  # every tool id taken: coverage.py would fail as well
            structured_log.warning("the init is measured by coverage.py itself", reason=str(exc))
            self.cov = self._new_coverage()
            self._start_now()
            return
        self._recorder = recorder
        self._started = True
        self._collecting = True
        self._apply()

    def _start_now(self) -> None:
        """Start coverage.py itself now (the lock is held)."""
        coverage_adapter.start(self.cov)
        self._started = True
        self._collecting = True
        try:
            self._gate = coverage_adapter.attach(
                self.cov, self.settings.source, labelled=self._labelled, label=self.label
            )
        except coverage_adapter.InternalsChanged as exc:
            structured_log.error(
                "coverage.py internals changed: every measured block restarts coverage.py",
                error_message=str(exc),
                coverage_version=getattr(sys.modules.get("coverage"), "__version__", None),
            )
            self._gate = coverage_adapter.RestartGate(self.cov, label=self.label)
        self._tally = self._new_tally(packed=self._packed_arcs())
        self._apply()

    def materialize(self) -> bool:
        """Build coverage.py and hand the recorded init over to it; True if
        this call did it.  From any thread: whatever first needs data calls it
        (a snapshot, `data`, `reset`, `finish`), and the shipping thread when
        the stream is long (`hand_over_due`).  With labels the recorder stays
        the receiver: each call replays what it holds into coverage.py (`_feed`).

        The build (importing coverage.py, ``Coverage()``, the deferred start)
        and the replay of all but the last recorded events run outside the
        measurement lock, so blocks opened meanwhile never wait for them; only
        the last slice and the switch hold it.
        """
        recorder = self._recorder
        if recorder is None or recorder.handed_over or self.replay_outcome is not None:
            return False
        pause_points.reach("materialize")  # (tests: the recorder still holds the whole init)
        problem: Exception | None = None
        if self._gate is None:
            problem = self._build_once(recorder)
        with self._lock:
            if (
                recorder.handed_over
                or self._recorder is not recorder
                or self.replay_outcome is not None  # the shutdown replayed what fit: no more
            ):
                return False
            adopted = self._gate  # (labels) built before, or by another thread meanwhile
            if adopted is None:
                if problem is not None or self._built is None:
                    self._give_up_recording(problem)
                    return True
                cov, gate = self._built
                if not self._labelled:
                    return self._hand_over(recorder, cov, gate)
                # The recorder stays the receiver; coverage.py is fed from its
                # stream whenever data is needed (`_feed`, outside the lock).
                self._built = None
                self.cov = cov
                self._gate = gate
                self._tally = self._new_tally(packed=self._packed_arcs())
        if adopted is not None:
            self._feed(recorder, adopted)
            task_cpu.step("replay")
            return True
        replayed = self._feed(recorder, gate)
        task_cpu.step("replay")
        structured_log.info("coverage.py took the init over", replayed_events=replayed, fed=True)
        return True

    def _build_once(
        self, recorder: init_recorder.InitRecorder, *, catch_up: bool = True
    ) -> Exception | None:
        """Build coverage.py unless it is built or being built; what went wrong."""
        problem: Exception | None = None
        if self._built is None and self._gate is None and catch_up:
            # The import on its own (30-45 ms in the image), its dependencies one at
            # a time: the shipping thread takes its turn between the steps (`pacing`).
            with contextlib.suppress(Exception):  # the build below fails alike, and says why
                coverage_adapter.import_coverage(between=pacing.turn)
            pacing.turn()
        with self._build_lock:
            if self._built is None and self._gate is None and not recorder.handed_over:
                pause_points.reach("coverage-build")
                try:
                    self._built = self._build(recorder)
                except Exception as exc:  # InternalsChanged, or coverage.py could not start
                    problem = exc
                task_cpu.step("build coverage.py")
        built = self._built
        if built is not None and catch_up:
            recorder.catch_up(built[1])  # the bulk, while blocks and events go on
            task_cpu.step("replay")
        return problem

    def _hand_over(
        self, recorder: init_recorder.InitRecorder, cov: Any, gate: coverage_adapter.SysmonGate
    ) -> bool:
        """Let the gate take the tool's events after the replay (the lock is held)."""
        try:
            replayed = recorder.hand_over(gate)
        except Exception as exc:
            self._built = None
            coverage_adapter.abandon(cov)
            self._give_up_recording(exc)
            return True
        # Only now: until the hand-over is done, another thread that finds no
        # build under way would start a second coverage.py (a second collector).
        self._built = None
        self.cov = cov
        self._gate = gate
        if gate.label != self.label:  # (the replay ends at the current label)
            gate.relabel(self.label)
        self._tally = self._new_tally(packed=self._packed_arcs())
        structured_log.info("coverage.py took the init over", replayed_events=replayed)
        return True

    def _feed(self, recorder: init_recorder.InitRecorder, gate: coverage_adapter.Gate) -> int:
        """With labels: replay what the recorder holds into coverage.py's callbacks
        behind the gate (`InitRecorder.drain`), the recorder staying the receiver.

        Why not hand over: after a hand-over, the first run after each label
        switch goes through coverage.py's Python callbacks and the gate's
        bookkeeping, on the invocation path (+667 µs per switch on the
        example's business event with branches); here it is one tuple per
        first hit, and the replay runs where data is needed.  Returns how many
        events were replayed (0 if this call found nothing to do).
        """
        try:
            return recorder.drain(cast(coverage_adapter.SysmonGate, gate))
        except Exception as exc:
            with self._lock:
                if self._recorder is recorder and self._gate is gate:
                    self._gate = None
                    coverage_adapter.abandon(self.cov)
                    self._give_up_recording(exc)
            return 0

    def _build(
        self, recorder: init_recorder.InitRecorder
    ) -> tuple[Any, coverage_adapter.SysmonGate]:
        cov = self._new_coverage()
        assert recorder.tool is not None
        try:
            coverage_adapter.start_deferred(cov, recorder.tool)
            if coverage_adapter.local_events(cov) != recorder.local_events:
                raise coverage_adapter.InternalsChanged(
                    "coverage.py arms other local events than the init recorder"
                )
            gate = coverage_adapter.SysmonGate(
                cov,
                self.settings.source,
                deferred=True,
                labelled=self._labelled,
                label=self._first_label,  # (the recorder's: the replay switches on)
                fed=self._labelled,  # (labels: the recorder stays the receiver)
            )
        except Exception:
            coverage_adapter.abandon(cov)  # the tool is the recorder's: nothing to free
            raise
        return cov, gate

    def _give_up_recording(self, problem: Exception | None) -> None:
        """coverage.py cannot take the recorded init over: measure from now on."""
        recorder = self._recorder
        assert recorder is not None
        structured_log.error(
            "coverage.py could not take the init over (internals changed?): the init of this "
            "environment is not measured",
            error_message=str(problem),
            coverage_version=getattr(sys.modules.get("coverage"), "__version__", None),
        )
        recorder.stop()
        self._recorder = None
        self.cov = self._new_coverage()
        self._start_now()

    def _new_tally(self, *, packed: bool) -> Tally:
        return Tally(arcs=self.settings.branch, packed=packed, labelled=self._labelled)

    def _packed_arcs(self) -> bool:
        try:
            return coverage_adapter.packed_arcs(self.cov)
        except coverage_adapter.InternalsChanged:
            return False

    def enter(self, measure: bool = True) -> None:
        """Open a block that measures (``measure=True``) or excludes its code.

        This runs for every block of every invocation: a few attribute updates
        under the lock, and one call into the gate when collection switches.
        (``acquire``/``release``, not ``with``: a ``with`` looks the lock's
        ``__enter__`` and ``__exit__`` up each time, ~870 instructions a block
        pair on 3.14, a tenth of it: bench/README.md, "The batch event counted".)
        """
        lock = self._lock
        lock.acquire()
        try:
            if measure:
                self._measure_depth += 1
            else:
                self._exclude_depth += 1
            self._apply()
        finally:
            lock.release()

    def exit(self, measure: bool = True) -> None:
        """Close a block opened by `enter` with the same ``measure``."""
        lock = self._lock
        lock.acquire()
        try:
            if measure:
                if self._measure_depth:
                    self._measure_depth -= 1
            elif self._exclude_depth:
                self._exclude_depth -= 1
            self._apply()
        finally:
            lock.release()

    def _apply(self) -> None:
        """Recording on or off, per the mode and the open blocks (the lock is held)."""
        wanted = not (self._exclude_depth or self._finished or self._paused) and (
            self._full or self._measure_depth > 0
        )
        if wanted is self._collecting:
            return  # (most measured blocks in full mode: nothing to look up)
        recorder = self._recorder  # `_receiver`, inlined: every switching block asks
        gate = recorder if recorder is not None and not recorder.handed_over else self._gate
        if gate is None:
            return
        if wanted:
            gate.resume()
        else:
            gate.pause()
        self._collecting = wanted

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Record nothing until `resume`, whatever blocks open (the run-time switch)."""
        with self._lock:
            self._paused = True
            self._apply()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._apply()

    def switch_label(self, label: str) -> None:
        """Record what runs from now on under ``label`` (an admitted one: see
        `labels.LabelBook`).  O(1): nothing is written; what ran so far stays
        the previous label's (the gate parks it), and each code object reports
        again when it is first called under the new label."""
        if label == self.label or not self._labelled:
            return
        with self._lock:
            if label == self.label or self._finished:
                return
            self.label = label
            target = self._receiver()
            if target is not None:
                target.relabel(label)

    def prearm(self, label: str | None = None) -> int:
        """Ready the next label switch now, off the invocation path: re-arm what
        the current label disabled (and park what it recorded), the label
        staying the current one (nothing if it is no longer ``label``: the
        next switch came first), so that `switch_label` then costs what
        recorded since (normally nothing: O(1)).  From the shipping thread,
        while the runtime waits for the next event; only when labels are
        changing (`CoverageSession.between_invocations`): a pre-arm followed
        by the same label makes every line report again for nothing.  Under
        the lock: never after `finish`, nor inside a snapshot.  Returns how
        many code objects were re-armed."""
        if not self._labelled:
            return 0
        with self._lock:
            receiver = self._receiver()
            if self._finished or receiver is None or label not in (None, self.label):
                return 0
            pause_points.reach("prearm")  # (tests: the next event comes meanwhile)
            return receiver.prearm()

    def compact(self) -> None:
        """Let go of the tracers of threads that have ended.

        coverage.py's ``ctrace`` core starts one tracer per thread and keeps
        it for good, so a function that starts threads per request (a thread
        pool per health check) would grow that list for the environment's
        life.  Only the tracers of ended threads go; collection never stops.
        """
        gate = self._gate
        if gate is None or not gate.has_tracers:
            return  # sysmon: one monitor serves every thread; no lock taken
        with self._lock:
            gate.compact(MAX_TRACERS)

    def maintain(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Count what was recorded and let fully recorded code run free.

        Costs a pass over the measured files, so the runtime calls it on a
        decaying schedule between invocations, not after every one.
        Returns how many code objects stopped reporting events.  While the
        init recorder receives the events (before the hand-over; with labels,
        always) it does it from its own stream: no coverage.py is needed.
        The pass ends early once ``stop()`` says so (between its steps: other
        work of the shipping thread's waits); the next one goes on from there.
        A gate that retires nothing (the C tracer's) has no pass: its count
        alone, of everything run since the last take, was one unpaced step
        (7.6 ms of an invocation at 8,000 modules with lines on 3.11; 344 ms
        of CPU over four passes with branches), which the checkpoint does
        anyway.  Only what label switches parked there is counted: each is a
        copy of all its label ran (the C tracer records every line each time),
        kept until the next take, and between checkpoints (none with
        ``COVERAGE_FLUSH_INTERVAL_SECONDS=0``, few while S3 fails) labels that
        change with every invocation grew it without bound, and the
        shutdown's count of it.
        """
        with self._lock:
            gate = self._gate
            receiver = self._receiver()
            if self._finished or receiver is None:
                return 0
            if not isinstance(receiver, init_recorder.InitRecorder):
                assert gate is not None
                if not gate.retires:
                    self._tally_taken(gate.take_parked())
                    return 0
                self._tally_new()
        if isinstance(receiver, init_recorder.InitRecorder):
            return receiver.retire(stop)  # (its own locks; 0 if it handed over meanwhile)
        assert gate is not None
        # The pass itself runs outside the lock (90-250 ms at 2,000 modules the
        # first time): it only takes events off code whose every location is
        # recorded already, which loses nothing whatever runs meanwhile.
        return gate.retire(stop)

    def finish(self, deadline: float | None = None) -> None:
        """Stop for good: the environment is shutting down.

        With a ``deadline`` (the shutdown's, `time.monotonic`), what the init
        recorder holds is replayed only as far as the write and the upload of
        it still fit before it, whole files only (`_replay_within`).
        """
        with self._lock:
            if self._finished:
                return
            receiver = self._receiver()
            recorder = receiver if isinstance(receiver, init_recorder.InitRecorder) else None
            if recorder is not None and (self._labelled or deadline is not None):
                recorder.pause()  # (it stays the receiver) nothing more after the last replay
            if recorder is not None and deadline is not None:
                self._replay_within(recorder, deadline)
            else:
                self.materialize()
            self._finished = True
            if self._recorder is not None:
                self._recorder.seal()  # (no replay into coverage.py while or after it stops)
            if self._gate is not None:
                self._tally_new()
                self._gate.stop()
                self._tally_new()
            self._collecting = False

    def _replay_within(self, recorder: init_recorder.InitRecorder, deadline: float) -> None:
        """The shutdown's replay (the lock is held): build coverage.py if not yet,
        then feed it what the recorder holds, file by file, until the budget of
        ``deadline`` says the rest would not be written and uploaded in time
        (`InitRecorder.drain_within`).  Never handed over: the process ends."""
        recorder.close()  # a catch-up under way elsewhere stops after its slice
        gate = self._gate
        built_here = gate is None
        if gate is None:
            problem = self._build_once(recorder, catch_up=False)
            built, self._built = self._built, None
            if problem is not None or built is None:
                self._give_up_recording(problem)
                return
            self.cov, gate = built
            self._gate = gate
            self._tally = self._new_tally(packed=self._packed_arcs())
        assert isinstance(gate, coverage_adapter.SysmonGate)
        from coverage_runtime.shim import partial_replay  # (the shutdown's: not at init)

        budget = partial_replay.Budget(deadline, branch=self.settings.branch)
        try:
            outcome = recorder.drain_within(
                gate,
                budget,
                self._tally_new,
                written=self._written,
                drop=self._drop,
                held=self._held,
            )
        except Exception as exc:
            self._gate = None
            coverage_adapter.abandon(self.cov)
            self._give_up_recording(exc)
            return
        self.replay_outcome = outcome
        if not built_here:  # (fed before: a partial replay is said by the loss record)
            return
        structured_log.info(
            "coverage.py took the init over",
            at_shutdown=True,
            partial=outcome.partial,
            replay_ms=round((budget.clock() - budget.started) * 1000, 1),
            **outcome.as_fields(),
        )

    # -- data ----------------------------------------------------------------

    def _tally_new(self) -> None:
        # (Every caller has built coverage.py first: `materialize`.)
        if self._gate is None:
            return
        self._tally_taken(self._gate.take_labelled())

    def _tally_taken(self, labelled: list[tuple[str, coverage_adapter.Recorded]]) -> None:
        """Count what was taken, by label in order; what is new goes to the outbox."""
        for label, taken in labelled:
            new = self._tally.add(taken, label)  # (what is new under the label's run)
            if new:
                coverage_adapter.merge_into(self._outbox.setdefault(label, {}), new)

    def _write(self) -> None:
        self._tally_new()
        outbox, self._outbox = self._outbox, {}
        self._write_outbox(outbox)

    def _write_outbox(
        self, outbox: dict[str, coverage_adapter.Recorded], *, paced: bool = False
    ) -> None:
        """Each label's items as its coverage.py dynamic context.  ``paced`` (outside
        the measurement lock only), on the shipping thread: `WRITE_FILES` files at
        a time, the thread taking its turn between them (`pacing`), so that the
        first checkpoint of a large function (~240 ms for 2,000 modules with
        branches) does not land on one invocation.  Elsewhere (the shutdown, a
        flush) in one go: one transaction of coverage.py's."""
        arcs = self.settings.branch
        paced = paced and pacing.paced()
        for label, recorded in outbox.items():
            self._written.update(recorded)
            # (`_delta_extends` changes under the data lock, held by every writer.)
            self._since.add(label, recorded, unsent=self._delta_extends is not None)
            coverage_adapter.set_context(self.cov, label or None)
            if not paced or len(recorded) <= WRITE_FILES:
                coverage_adapter.write_recorded(self.cov, recorded, arcs=arcs)
                continue
            names = list(recorded)
            for begin in range(0, len(names), WRITE_FILES):
                group = {name: recorded[name] for name in names[begin : begin + WRITE_FILES]}
                coverage_adapter.write_recorded(self.cov, group, arcs=arcs)
                pacing.turn()

    def _held(self) -> dict[str, int]:
        """The lines or arcs taken to be written and not written yet, under every
        label, by file name in the data.  (The lock is held.)  One pass over what
        is to be written, whatever the number of labels or files replayed."""
        held: dict[str, int] = {}
        get = held.get
        for recorded in self._outbox.values():
            for name, items in recorded.items():
                held[name] = get(name, 0) + len(items)
        return held

    def _drop(self, names: list[str]) -> None:
        """Leave these files out of the data (the shutdown's replay could not
        complete them, and none of their data was written): what was taken of
        them leaves the outbox and the counts.  (The lock is held.)"""
        for name in names:
            for recorded in self._outbox.values():
                recorded.pop(name, None)
            self._tally.drop(name)

    def counts(self) -> Snapshot:
        """What was measured so far (no bytes): the data file is not read, and
        coverage.py is never built for it (``status()`` calls it on every health
        check, the shipping thread before a checkpoint).  It takes what the gate
        holds: on sysmon what is new, on the C tracer everything run since the
        last take (it re-adds what runs again), so the runtime's billed path
        never calls it (`CoverageSession.between_invocations`).  Before the hand-over what
        the init recorder holds is not counted yet: ``waiting`` says how many
        events (`materialize` first for complete counts).  None once the shutdown's
        replay ran (`_replay_within`): the stream it leaves in the recorder is
        counted, or left out for good (`partial`), never replayed again."""
        with self._lock:
            receiver = self._receiver()
            waiting = (
                receiver.waiting
                if isinstance(receiver, init_recorder.InitRecorder) and self.replay_outcome is None
                else 0
            )
            self._tally_new()
            tally = self._tally
            return Snapshot(
                body=b"",
                files=tally.files,
                lines=tally.lines,
                arcs=tally.arcs,
                entries=tally.entries,
                waiting=waiting,
            )

    def data(self) -> Any:
        """coverage.py's `CoverageData` with everything measured so far written to it."""
        with self._data_lock:
            self.materialize()  # (outside the lock: see there)
            with self._lock:
                return self._data()

    def _data(self) -> Any:
        if self._gate is None:
            return self.cov.get_data()
        self._write()
        if self._gate.kind == "restart":
            return self.cov.get_data()
        return coverage_adapter.coverage_data(self.cov)

    def snapshot(self) -> Snapshot:
        """Write what was collected to the data file and return its bytes.

        Only taking what is new holds the measurement lock; the SQLite write
        and the read run outside it (one snapshot at a time), so a block that
        opens meanwhile on another thread never waits for the data file.

        A data directory that cannot be written raises `StorageError` saying
        why (full, read-only), and nothing is lost from memory: the next
        snapshot starts a fresh data file and writes everything measured so
        far (dynamic contexts before the failure are merged into the current one).
        """
        import sqlite3

        from coverage.exceptions import CoverageException  # DataError wraps sqlite's errors

        with self._data_lock:
            try:
                self.materialize()  # (outside the lock: see there)
                outbox, counts = self._take()
                task_cpu.step("take")
                self._write_outbox(outbox, paced=True)
                task_cpu.step("write")
                if not os.path.exists(self.data_file):
                    # coverage.py creates the file on first write: nothing measured yet.
                    return counts
                mark = self._since.close()
                with open(self.data_file, "rb") as handle:
                    body = handle.read()
                task_cpu.step("read")
            except (OSError, sqlite3.Error, CoverageException) as exc:
                self.storage_problem = describe_storage_error(exc, self.data_file)
                raise StorageError(self.storage_problem) from exc
            if self.storage_problem is not None:
                structured_log.info(
                    "coverage data file written again after a storage error",
                    was=self.storage_problem,
                    data_file=self.data_file,
                )
                self.storage_problem = None
            return counts._replace(body=body, waiting=0, mark=mark, epoch=self.epoch)

    def _take(self) -> tuple[dict[str, coverage_adapter.Recorded], Snapshot]:
        """A snapshot's first step, under the lock: what is new (to write), and the
        counts of everything (after a storage error, all of it is new again)."""
        with self._lock:
            if self.storage_problem is not None:
                self._start_fresh_data_file()
            if self._gate is None or self._gate.kind == "restart":
                self.data()  # coverage.py's own flush, under the lock
                outbox: dict[str, coverage_adapter.Recorded] = {}
            else:
                self._tally_new()
                outbox, self._outbox = self._outbox, {}
            return outbox, self.counts()

    @property
    def deltas(self) -> bool:
        """Can a delta snapshot be taken?  When what is recorded is written through
        the outbox (`Since` sees it): not in coverage.py's own flush (`RestartGate`)."""
        gate = self._gate
        return gate is not None and gate.kind != "restart"

    @property
    def delta_extends(self) -> int | None:
        """The mark of the base the delta file extends (None: no whole delta file)."""
        return self._delta_extends

    def base_confirmed(self, mark: int) -> None:
        self._since.confirmed(mark)

    def delta_snapshot(self, mark: int, path: str) -> Snapshot:
        """A delta: everything measured since base snapshot ``mark``, in a
        coverage.py data file of its own at ``path`` (`Since`), with the counts of
        all that was measured.  While it extends the same base, the file grows by
        what is new alone; for another base it is written afresh (what was
        written since that base's snapshot: little, once it is confirmed).  What
        is new goes to the data file too, as a base snapshot writes it (paced):
        the next base holds it."""
        import sqlite3

        from coverage.exceptions import CoverageException

        with self._data_lock:
            try:
                self.materialize()
                outbox, counts = self._take()
                task_cpu.step("take")
                self._write_outbox(outbox, paced=True)
                task_cpu.step("write")
                fresh = self._delta_extends != mark or not os.path.exists(path)
                self._delta_extends = None  # (until written whole)
                coverage_adapter.write_data_file(
                    self.cov,
                    path,
                    self._since.after(mark) if fresh else self._since.take_unsent(),
                    arcs=self.settings.branch,
                    fresh=fresh,
                )
                self._delta_extends = mark
                with open(path, "rb") as handle:
                    body = handle.read()
                task_cpu.step("delta")
            except (OSError, sqlite3.Error, CoverageException) as exc:
                self.storage_problem = describe_storage_error(exc, path)
                raise StorageError(self.storage_problem) from exc
            return counts._replace(body=body, waiting=0, mark=mark, delta=True, epoch=self.epoch)

    def _start_fresh_data_file(self) -> None:
        self._tally_new()
        self._tally.new_run()
        data = coverage_adapter.coverage_data(self.cov) if self._gate else None
        if data is not None:
            data.erase()
        # (What each label ran is not kept apart in memory: all of it goes to the
        # current label in the fresh file.)
        self._outbox = {self.label: self._tally.everything()}

    def reset(self) -> None:
        """Drop everything measured so far and carry on measuring afresh."""
        with self._data_lock, self._lock:
            self.materialize()
            self._since.clear()
            self._delta_extends = None
            self.epoch += 1
            if self._gate is None:
                self.cov.erase()
                return
            self._gate.take_labelled()  # (dropped, with what waits under past labels)
            receiver = self._receiver()
            if isinstance(receiver, init_recorder.InitRecorder):
                # (labels) Before the gate re-arms what it traces: a maintenance pass
                # that took events off by what fired before the reset after the
                # re-arming (it waits for no lock held here) left that code disarmed
                # for good once its retirement was forgotten.  Now a pass before this
                # is undone by the re-arming; after it, only what ran since the
                # drain counts, which is replayed as the new epoch's.
                receiver.forget_fired()
            self._gate.forget()
            self._outbox = {}
            self._tally.clear()
            self._written.clear()
            if self._gate.kind == "restart":
                return
            coverage_adapter.coverage_data(self.cov).erase()
