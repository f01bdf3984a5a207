"""`bench/sizes.py --freeze`: which invocations its checkpoint rows compare.
Frozen, a checkpoint's work runs during the next invocation, so the rows take
the invocation after a checkpoint against the same work after none, and leave
out the pairs a maintenance pass (also run on the shipping thread) spills into."""

from __future__ import annotations

from bench.sizes import (
    FROZEN_INVOCATIONS,
    Sample,
    checkpoint_rows,
    frozen_pairs,
    frozen_schedule,
    maintained_before,
)


def test_the_schedule_runs_each_event_three_times_the_first_after_the_interval() -> None:
    plan = [frozen_schedule(k) for k in range(6)]
    assert [pause for pause, _ in plan] == [1.05, 0.4, 0.4, 1.05, 0.4, 0.4]
    assert [event["k"] for _, event in plan] == [0, 0, 0, 1, 1, 1]


def test_pairs_followed_by_maintenance_are_left_out() -> None:
    # The session asks for maintenance after invocations 4, 8, 16 and 32 (counted from 1):
    # invocations 4, 8, 16 and 32 (counted from 0) carry it.
    assert [k for k in range(FROZEN_INVOCATIONS) if maintained_before(k)] == [4, 8, 16, 32]
    durations = [float(k) for k in range(1, FROZEN_INVOCATIONS)]  # invocation k: k ms
    after, without = frozen_pairs(durations, range(1, 10))
    kept = [3, 4, 6, 7, 8, 9]  # 1 (invocation 4), 2 (8) and 5 (16) are left out
    assert after == [3.0 * g + 1 for g in kept]
    assert without == [3.0 * g + 2 for g in kept]


def test_the_rows_say_what_a_checkpoint_adds_to_the_next_invocation() -> None:
    durations = [10.0] * (FROZEN_INVOCATIONS - 1)
    for group in range(13):
        durations[3 * group] = 15.0  # invocation 3g + 1, after the checkpoint
    sample = Sample(50, "lines", durations_ms=durations)
    found = checkpoint_rows([sample], frozen=True)
    assert [label for label, *_ in found] == [
        "the first checkpoint (the init's data), added to the next invocation (frozen)",
        "a checkpoint with new data, added to the next invocation (frozen)",
        "a checkpoint with nothing new, added to the next invocation (frozen)",
    ]
    assert [(without, added) for _, without, added, _ in found] == [(10.0, 5.0)] * 3
