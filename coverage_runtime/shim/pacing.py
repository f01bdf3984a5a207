"""When the shipping thread works: between invocations, and only a small share of one.

Lambda freezes an environment once the runtime asks for the next event.  The
shipping thread's work (the replay of the recorded init into coverage.py, a
checkpoint's SQLite write and upload, a maintenance pass) then runs only
while a later invocation has thawed it, beside that invocation, competing
for the GIL and the CPU, and lengthening it: at 2,000 modules with branches
on 3.14 the first hand-over alone is about a second of coverage.py's first
sight of each file, which without pacing lands on the next one or two
invocations (bench/README.md, "Frozen between invocations").

So the thread works in steps and takes its turn between them (`turn`): at
once while no invocation is under way (after the response, until the
environment is frozen: free in Lambda; and all of it in an environment that
is never frozen); during an invocation only until it has spent
`SHARE_SECONDS` of its own CPU in it, then it waits until that invocation
ends.  A thawed invocation is slowed by at most that share and one step; the
work is spread over more invocations, the same CPU in all (less by whatever
runs before a freeze).  It never waits once the shutdown began (`close`), nor
while another thread needs the data now (`urgent`: a flush or a reset would
wait for locks the thread may hold).

Only the thread that `Pacer.attach` named waits; `turn` on any other thread
(the shutdown's, the handler's own ``flush()``) returns at once.
"""

from __future__ import annotations

import contextlib
import threading
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at init
if TYPE_CHECKING:
    from collections.abc import Iterator

# The shipping thread's CPU an invocation may see beside it before the thread
# waits for that invocation to end.  A step is the unit it cannot cut: a slice
# of the replay (`init_recorder.REPLAY_SLICE` events, a few ms at 2,000 modules
# with branches), or a group of files written (`measurement.WRITE_FILES`).
SHARE_SECONDS = 0.005
# The share while the thread runs a maintenance pass, which only lets hot code run
# a little faster (#18: it may cost an invocation 1 ms at most).  With one step
# of the pass (~0.5 ms at most: `init_recorder.RETIRE_SLICE`, `RETIRE_CODES`)
# that is ~1 ms, whatever the size of the function; the pass just spans more
# invocations.
MAINTENANCE_SHARE_SECONDS = 0.0005

_local = threading.local()


class Pacer:
    """Invocations in progress, as the runtime reports them, and the paced thread."""

    def __init__(self, share_seconds: float = SHARE_SECONDS) -> None:
        self._share = share_seconds
        self._changed = threading.Condition()
        self._running = 0  # invocations under way (more than one: Managed Instances)
        self._begun = 0  # invocations begun so far
        self._urgent = 0
        self._closed = False
        self._seen = 0  # the invocation in which the thread last took a turn...
        self._spent_from = 0.0  # ...and its CPU time when it first did
        self.waits = 0  # how often the thread waited for an invocation to end
        self._most = 0.0  # the most of its CPU one invocation saw, by its turns (`take_most`)...
        self._most_from = 0.0  # ...since this (its CPU time at the last call)

    def attach(self) -> None:
        """The calling thread is the paced one (the shipping thread, as it starts)."""
        _local.pacer = self

    # -- what the runtime reports ------------------------------------------------

    def invocation_started(self) -> None:
        with self._changed:
            self._running += 1
            self._begun += 1
            self._changed.notify_all()

    def invocation_ended(self) -> None:
        with self._changed:
            if self._running:
                self._running -= 1
            self._changed.notify_all()

    def close(self) -> None:
        """The shutdown began: the thread never waits again."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        """While another thread needs the data now: the thread does not wait."""
        with self._changed:
            self._urgent += 1
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._urgent -= 1

    @contextlib.contextmanager
    def sharing(self, seconds: float) -> Iterator[None]:
        """Within: the thread's share of an invocation is ``seconds`` (counted
        from its first step in the invocation, whatever the task)."""
        with self._changed:
            before, self._share = self._share, seconds
        try:
            yield
        finally:
            with self._changed:
                self._share = before

    def take_most(self) -> float:
        """The most CPU the thread spent in one invocation since the last call, as
        its turns saw it (from its first step in the invocation, or the call if
        later, to its last turn there, the one it waited at included, or to this
        call if the invocation still runs: the task's last step): what one task's
        work added to one invocation (benchmarks: `task_cpu`, on the paced thread
        at a task's start and end)."""
        with self._changed:
            now = time.thread_time()
            most, self._most = self._most, 0.0
            if self._running and self._seen == self._begun:  # (its last step ran in it)
                most = max(most, now - max(self._spent_from, self._most_from))
            self._most_from = now
            return most

    # -- the paced thread ---------------------------------------------------------

    def _free(self) -> bool:
        return not self._running or self._closed or self._urgent > 0

    def take_turn(self) -> None:
        """Between two steps: return at once unless an invocation is under way
        in which this thread has spent its share; then wait until it ends."""
        with self._changed:
            if self._free():
                return
            now = time.thread_time()
            if self._seen != self._begun:  # the first step in this invocation
                self._seen = self._begun
                self._spent_from = now
                return
            spent = now - self._spent_from
            self._most = max(self._most, now - max(self._spent_from, self._most_from))
            if spent < self._share:
                return
            self.waits += 1
            # Also when the next invocation began meanwhile (an event was waiting):
            # its share is the thread's, however busy the environment.
            begun = self._begun
            self._changed.wait_for(lambda: self._free() or self._begun != begun)
            self._seen = self._begun  # (the next step is the first in the new one)
            self._spent_from = time.thread_time()


def paced() -> bool:
    """Is the calling thread the paced one (so its work may go in smaller steps)?"""
    return getattr(_local, "pacer", None) is not None


@contextlib.contextmanager
def sharing(seconds: float) -> Iterator[None]:
    """The paced thread's share of an invocation is ``seconds`` within
    (`Pacer.sharing`); nothing changes on any other thread."""
    pacer = getattr(_local, "pacer", None)
    if pacer is None:
        yield
        return
    with pacer.sharing(seconds):
        yield


def turn() -> None:
    """Between two steps of the shipping thread's work (see `Pacer.take_turn`);
    at once on any other thread."""
    pacer = getattr(_local, "pacer", None)
    if pacer is not None:
        pacer.take_turn()
