"""At shutdown, the recorded stream replayed file by file while time is left.

On the ``sysmon`` core coverage.py is fed the recorded events only when
data is needed (`init_recorder`); at a large init that replay costs about
a second with branches on 3.14 (coverage.py's first sight of each file
tokenizes it), more than the shutdown's window.  Rather than nothing, the
shutdown then ships an exact subset: the complete data of as many whole
files as fit.

Why per file is exact: coverage.py keeps its state per code object
(``last_line`` and the file's data set), so the events of one file, replayed
alone in their recorded order, give that file exactly what the whole replay
gives it.  Label switches are kept between a file's events where they came
(`plan`), so each label's data of the file is the whole replay's too.  A file
is never shipped in part: one whose events cannot all be replayed in time is
dropped (its data taken from coverage.py and thrown away).  One an earlier
replay began whose data was written to the data file (a checkpoint's drain
and snapshot) is always completed first; one begun but never written (the
shipping thread's catch-up, a drain no snapshot followed) waits its turn as
a new file does, and if left out, what was taken of it is dropped too
(`Measurement._drop`): at a large init that catch-up has begun thousands of
files, which completing whatever the budget left no time for the upload.

This module holds the plan (the stream grouped by file) and the budget (when
to stop); `InitRecorder.drain_within` replays.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any, NamedTuple

from coverage_runtime import env

# (`init_recorder`'s event kinds; imported from there would be a cycle.)
SWITCH = 6

# What the write of the data file and the PUT need after the replay, beyond
# what grows with the data: coverage.py's data file set-up, the PUT's round
# trip, the read-back of the stored generation.
RESERVE_SECONDS = 0.04
# The write of what was replayed (the SQLite write, the read-back), as a share of
# the replay's time, which includes taking and counting what the replay recorded
# (bench/README.md, "Where an early shutdown goes": image 3.14 and host 3.13,
# N=2,000 and 8,000).  With branches coverage.py's first sight of a file
# (tokenizing it) dominates the replay and the write costs 0.13-0.14 of it: 0.25.
# With lines the write costs 0.29-0.34 of the replay: 0.45.  (An early SIGTERM at
# N=2,000 with lines on the host's 3.13, loaded: 0.26.)
WRITE_SHARE = {True: 0.25, False: 0.45}  # by branch
# The same write, per replayed event (each about one arc or line to write), when the
# share of the replay's time says less: coverage.py wrote 2.0-2.3 µs an event with
# branches and 0.55-0.6 µs with lines (bench/README.md, "Where an early shutdown goes",
# image 3.14, N=500-8,000), whatever a file's first sight cost the replay.  A frozen
# environment shut down after 39 invocations of 500 modules (branches, image, loaded
# machine) replayed 39,899 events in 242 ms and had not written them 88 ms later,
# where the share had left 60: the write grows with the data, and invocations make
# more data per file than the init.  With a margin:
WRITE_SECONDS_PER_EVENT = {True: 3.5e-6, False: 1.0e-6}  # by branch
# A file is admitted only if twice the mean cost of the files replayed so far fits.
ESTIMATE_FACTOR = 2.0
# What the data taken from coverage.py in one go covers at least (seconds of
# replay): a take costs a pass over the files known to the gate, so per file it
# would grow with the square of the files; a file group is what a late file
# can cost when it does not fit (its group is dropped with it).
GROUP_SECONDS = 0.01
# Events replayed between two looks at the clock inside a file.
CLOCK_EVERY = 256


# Tests only (``COVERAGE_TEST_REPLAY_DELAY_MS``): each file first seen by the
# shutdown's replay costs this much more, so that a small function's replay
# outgrows the window as a large one's does.  Unset (always, in Lambda): 0.
def _test_delay_seconds(raw: str | None) -> float:
    """A malformed value is no delay: a test hook must never stop the shim."""
    try:
        seconds = float(raw or 0) / 1000
    except ValueError:
        return 0.0
    return seconds if 0 < seconds < 60 else 0.0  # (not NaN, not infinite)


TEST_DELAY_SECONDS = _test_delay_seconds(os.environ.get(env.TEST_REPLAY_DELAY_MS))


class Plan(NamedTuple):
    """The events of a stream's slice, grouped by file in stream order."""

    def events_of(self, name: str) -> int:
        """How many recorded events ``name``'s list holds (its switches not counted)."""
        return len(self.files[name]) - self.switches_in.get(name, 0)

    files: dict[str, list[Any]]  # file name -> its events, switches where they came
    switches_in: dict[str, int]  # file name -> the switches put in its list (if any)
    last_switch: int  # the label switches in the slice (0: none)
    last_label: Any  # the label after the slice (the start label if none)


def plan(events: Sequence[Any], start: int, end: int, label: Any) -> Plan:
    """Group ``events[start:end]`` by file, in stream order of first appearance.

    A file's list starts under ``label`` (the receiver's at ``start``); each
    switch that came between two of its events is put between them, as
    ``(SWITCH, label, number, 0)`` (``number`` counts the slice's switches).
    """
    files: dict[str, list[Any]] = {}
    marks: dict[str, int] = {}
    under: dict[str, int] = {}  # file -> the switch number its last event came under
    get = files.get
    switch = 0
    # (One pass, ~0.15 µs an event on the host's 3.13: 18 ms for the 116,000 events
    # of 2,000 modules with branches.)
    for event in islice(events, start, end):
        code = event[1]
        if event[0] == SWITCH:
            switch += 1
            label = code
            continue
        name = code.co_filename
        group = get(name)
        if group is None:
            group = files[name] = []
            if switch:
                group.append((SWITCH, label, switch, 0))
                marks[name] = 1
            under[name] = switch
        elif switch and under[name] != switch:
            group.append((SWITCH, label, switch, 0))
            marks[name] = marks.get(name, 0) + 1
            under[name] = switch
        group.append(event)
    return Plan(files, marks, switch, label)


class Outcome(NamedTuple):
    """What a shutdown's replay fed coverage.py, and what it left out."""

    files_replayed: int
    files_left: int  # files with recorded events not replayed (their data is not shipped)
    events_replayed: int
    events_left: int
    begun: int  # files completed because an earlier replay began them and wrote their data

    @property
    def partial(self) -> bool:
        return self.files_left > 0

    def as_fields(self) -> dict[str, int]:
        """For the loss record."""
        return {
            "files_replayed": self.files_replayed,
            "files_not_replayed": self.files_left,
            "events_replayed": self.events_replayed,
            "events_not_replayed": self.events_left,
        }


class Budget:
    """When the replay must stop so the write and the PUT of what it replayed
    still end before ``deadline`` (the shutdown work's own, `session._window`).

    The write's share is of the replay's time from the moment the stream is the
    shutdown's (`begin`: planning, replaying, taking and counting, as
    `WRITE_SHARE` was measured), not of waiting for a catch-up's slice to end
    before it (the shipping thread's: 200 ms in a thawed environment at 500
    modules on a loaded machine), which writes nothing and, counted, left no
    time for any file."""

    def __init__(
        self, deadline: float, *, branch: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.deadline = deadline
        self.clock = clock
        self.write_share = WRITE_SHARE[branch]
        self.write_per_event = WRITE_SECONDS_PER_EVENT[branch]
        self.started = clock()
        self._replay_started = self.started
        self._events = 0  # replayed in whole files so far: their data is to be written
        self._file_started: float | None = None  # the file being replayed
        self._new_seconds = 0.0  # spent on files first seen by this replay
        self._new_files = 0

    def begin(self) -> None:
        """The stream is the shutdown's now: its replay's time counts from here."""
        self._replay_started = self.clock()

    def stop_at(self) -> float:
        """The replay's own end: what it replayed still has to be written and put,
        which grows with what it replayed (`WRITE_SHARE` of its time, or
        `WRITE_SECONDS_PER_EVENT`, whichever says more)."""
        now = self.clock()
        write = max(
            self.write_share * (now - self._replay_started), self.write_per_event * self._events
        )
        return self.deadline - RESERVE_SECONDS - write

    def expired(self) -> bool:
        return self.clock() >= self.stop_at()

    def admits(self) -> bool:
        """Is there time for one more file?  By the mean cost of the new files so far."""
        estimate = self._new_seconds / self._new_files if self._new_files else 0.0
        return self.clock() + ESTIMATE_FACTOR * estimate < self.stop_at()

    def file_started(self) -> None:
        """A file's replay begins (or a run of files replayed as one: the begun ones)."""
        self._file_started = self.clock()

    def replayed(self, events: int, *, new: bool, earlier: int = 0) -> float:
        """The file begun at `file_started` was replayed whole, ``events`` of them
        (``new``: first seen by this replay, its cost an estimate for the next
        ones); their data is to be written, with ``earlier`` lines or arcs an
        earlier replay took of it (each written as an event's is; for the begun
        run, all that earlier replays fed of files not left to this one's
        choice).  Returns its seconds."""
        started = self._file_started
        seconds = 0.0 if started is None else self.clock() - started
        self._file_started = None
        self._events += events + earlier
        if new:
            self._new_seconds += seconds
            self._new_files += 1
        return seconds
