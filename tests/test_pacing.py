"""`pacing`: the shipping thread yields to a running invocation beyond its share,
never to the shutdown nor to a thread that needs the data now.

Deterministic: the paced thread's share is 0 (every turn after an invocation's
first waits), and each test waits for the state it asserts (the thread
counted as waiting, or done), never for a length of time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from coverage_runtime.shim import pacing

LIMIT = 10.0  # seconds: only a broken pacer takes this long


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + LIMIT
    while not condition():
        assert time.monotonic() < deadline, "the state never came"
        time.sleep(0.001)


class Paced:
    """A thread attached to ``pacer`` that takes ``turns`` turns, then is done."""

    def __init__(self, pacer: pacing.Pacer, turns: int) -> None:
        self.taken = 0
        self.done = threading.Event()

        def run() -> None:
            pacer.attach()
            for _ in range(turns):
                pacing.turn()
                self.taken += 1
            self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()


def waiting(turns: int) -> tuple[pacing.Pacer, Paced]:
    """A paced thread of ``turns`` turns, waiting after its first step in an invocation."""
    pacer = pacing.Pacer(share_seconds=0)
    pacer.invocation_started()
    paced = Paced(pacer, turns)
    until(lambda: pacer.waits == 1)
    return pacer, paced


def test_between_invocations_the_thread_never_waits() -> None:
    pacer = pacing.Pacer(share_seconds=0)
    paced = Paced(pacer, 50)
    assert paced.done.wait(LIMIT)
    assert pacer.waits == 0


def test_beyond_its_share_it_waits_until_the_invocation_ends() -> None:
    pacer, paced = waiting(3)
    assert paced.taken == 1, "the invocation's first step, then it waits"
    assert not paced.done.is_set()
    pacer.invocation_ended()
    assert paced.done.wait(LIMIT)
    assert paced.taken == 3


def test_each_invocation_gives_it_a_share_again() -> None:
    pacer, paced = waiting(4)
    # One invocation ends and the next begins before the thread gets the CPU back.
    with pacer._changed:
        pacer.invocation_ended()
        pacer.invocation_started()
    until(lambda: pacer.waits == 2)
    assert paced.taken == 2, "one step in the new invocation, then it waits again"
    pacer.invocation_ended()
    assert paced.done.wait(LIMIT)


def test_within_its_share_it_goes_on() -> None:
    pacer = pacing.Pacer(share_seconds=60)
    pacer.invocation_started()
    paced = Paced(pacer, 20)
    assert paced.done.wait(LIMIT)
    assert pacer.waits == 0


def test_a_task_can_have_a_smaller_share_and_only_while_it_runs() -> None:
    """The maintenance pass's share (`pacing.sharing`): the thread waits after the
    invocation's first step within it, and has its own share again after it."""
    pacer = pacing.Pacer(share_seconds=60)
    pacer.invocation_started()
    done = threading.Event()
    taken: list[str] = []

    def run() -> None:
        pacer.attach()
        with pacing.sharing(0):
            for _ in range(2):
                pacing.turn()
                taken.append("maintenance")
        for _ in range(20):
            pacing.turn()
            taken.append("checkpoint")
        done.set()

    threading.Thread(target=run, daemon=True).start()
    until(lambda: pacer.waits == 1)
    assert taken == ["maintenance"], "its first step in the invocation, then it waits"
    pacer.invocation_ended()
    pacer.invocation_started()  # (the next invocation: within its 60 s share from now on)
    assert done.wait(LIMIT)
    assert taken == ["maintenance"] * 2 + ["checkpoint"] * 20
    assert pacer.waits == 1


def spin(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU (not a sleep)."""
    until_cpu = time.thread_time() + seconds
    while time.thread_time() < until_cpu:
        pass


def test_it_tells_the_most_cpu_one_invocation_saw_of_each_task() -> None:
    """`Pacer.take_most` (on the paced thread, at a task's start and end): from
    the thread's first step in an invocation, or the task's start if later, to
    its turn there (the one it waits at included); nothing between invocations."""
    pacer = pacing.Pacer(share_seconds=60)
    done = threading.Event()
    most: list[float] = []

    def run() -> None:
        pacer.attach()
        pacer.take_most()  # (a first task begins)
        spin(0.005)  # (between invocations: not counted)
        pacing.turn()
        pacer.invocation_started()
        pacing.turn()  # its first step in the invocation...
        spin(0.003)
        pacing.turn()  # ...within its share
        most.append(pacer.take_most())  # the task ends, the next begins (maintenance, say)
        with pacing.sharing(0):
            spin(0.001)
            pacing.turn()  # beyond the smaller share: it waits
        most.append(pacer.take_most())
        done.set()

    threading.Thread(target=run, daemon=True).start()
    until(lambda: pacer.waits == 1)
    pacer.invocation_ended()
    assert done.wait(LIMIT)
    first, second = most
    assert 0.003 <= first < 0.005, most
    assert 0.001 <= second < 0.003, "the second task's own CPU, not the first's in the invocation"


def test_the_most_counts_a_task_s_last_step_after_its_last_turn() -> None:
    """A task that ends inside an invocation, its last step after its last turn:
    that step was billed too (it undercounted by up to one step, ~0.5 ms)."""
    pacer = pacing.Pacer(share_seconds=60)
    pacer.attach()
    try:
        pacer.take_most()  # (a task begins)
        pacer.invocation_started()
        pacing.turn()  # its first step in the invocation
        spin(0.003)  # its last step: no turn after it
        in_invocation = pacer.take_most()  # (the task ends, the invocation still runs)
        pacer.invocation_ended()
        spin(0.003)  # (between invocations: not counted)
        after = pacer.take_most()
    finally:
        pacing._local.pacer = None
    assert 0.003 <= in_invocation < 0.03, in_invocation
    assert after == 0.0, after


@pytest.mark.parametrize("release", ["close", "urgent"])
def test_the_shutdown_and_an_urgent_caller_release_it(release: str) -> None:
    pacer, paced = waiting(3)
    if release == "close":
        pacer.close()
        assert paced.done.wait(LIMIT)
    else:
        with pacer.urgent():  # (a flush on the handler's thread, say)
            assert paced.done.wait(LIMIT)
    assert pacer.waits == 1, "no wait once released, the invocation still running"


def test_other_threads_never_wait() -> None:
    pacer = pacing.Pacer(share_seconds=0)
    pacer.invocation_started()
    pacer.attach()  # (attached to this test's thread...)
    try:
        done = threading.Event()

        assert pacing.paced()

        def other() -> None:
            for _ in range(5):
                pacing.turn()
            if not pacing.paced():
                done.set()

        threading.Thread(target=other, daemon=True).start()
        assert done.wait(LIMIT)  # (...so any other thread passes freely)
    finally:
        pacing._local.pacer = None
    assert pacer.waits == 0


def test_a_reset_never_waits_for_a_shipping_thread_that_waits_for_the_invocation(
    tmp_path, monkeypatch
) -> None:
    """The shipping thread waits between two groups of a checkpoint's write, holding
    the snapshot's locks, while an invocation runs; the handler's own ``reset()``
    (which needs those locks) releases it (`Pacer.urgent`) instead of waiting for an
    invocation that cannot end until it returns."""
    import importlib
    import sys

    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import measurement as measurement_module
    from coverage_runtime.shim.identity import EnvironmentIdentity
    from coverage_runtime.shim.session import CoverageSession

    source = tmp_path / "src"
    source.mkdir()
    for index in range(3):
        (source / f"paced_{index}.py").write_text(f"def f():\n    return {index}\n")
    monkeypatch.syspath_prepend(str(source))
    monkeypatch.setattr(measurement_module, "WRITE_FILES", 1)  # a turn after each file
    settings = load_settings(
        {"COVERAGE_SOURCE": str(source), "COVERAGE_DATA_DIR": str(tmp_path / "data")}
    )
    session = CoverageSession.start(settings, EnvironmentIdentity.detect({}))
    try:
        session.pacer = pacing.Pacer(share_seconds=0)
        for index in range(3):
            importlib.import_module(f"paced_{index}").f()
        session.invocation_arrived()
        done = threading.Event()

        def checkpoint_write() -> None:
            session.pacer.attach()
            session._checkpoint_snapshot()
            done.set()

        threading.Thread(target=checkpoint_write, daemon=True).start()
        until(lambda: session.pacer.waits >= 1)  # between two files, the locks held
        assert not done.is_set()
        session.reset()  # (would wait for ever without `urgent`)
        assert done.wait(LIMIT)
        session.between_invocations()
    finally:
        session.measurement.finish()
        for index in range(3):
            sys.modules.pop(f"paced_{index}", None)
