"""The init recorder (sysmon: the init runs before coverage.py is built) at the
edges of its hand-over, on every CPython 3.12+ here.  The exactness matrix
(`test_exactness`, and in the image `test_container`) checks what it records
against plain coverage.py; these check what happens around it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO_ROOT
from tests.test_exactness import other_pythons, venv_for

SYSMON_PYTHONS = [p for p in other_pythons() if p.parent.parent.name >= "3.12"]


def run_case(python: str, case: str, *args: str) -> tuple[dict[str, Any], str]:
    """The case's result, and the log lines it wrote (the runtime logs to stdout)."""
    done = subprocess.run(
        [python, "-m", "tests.exactness.recorder_cases", case, *args],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    *log, last = done.stdout.strip().splitlines()
    return json.loads(last), "\n".join([*log, *done.stderr.splitlines()])


def assert_as_plain(result: dict[str, Any], reference: dict[str, Any]) -> None:
    """The case's lines and arcs are plain coverage.py's for the same calls."""
    assert (result["lines"], result["arcs"]) == (reference["lines"], reference["arcs"]), (
        result,
        reference,
    )


def assert_nothing_failed(log: str) -> None:
    """No step of the runtime failed, and no finaliser raised, in the case's log."""
    assert "could not" not in log and "Traceback" not in log and "Exception ignored" not in log


@pytest.fixture(params=SYSMON_PYTHONS, ids=lambda p: p.parent.parent.name)
def python(request: pytest.FixtureRequest) -> str:
    path: Path = request.param
    return venv_for(path)


@pytest.fixture(params=[(), ("--labels",)], ids=["hand-over", "labels-fed"])
def mode(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Without labels the recorder hands over to coverage.py; with them (the
    default sources) it stays the receiver and feeds coverage.py."""
    return request.param


def test_an_event_during_the_replay_waits_and_is_recorded_after_it(python):
    result, _ = run_case(python, "concurrent_event")
    # The worker's first line after the replay began waited for the recorder's lock...
    assert result["waited_in"] in ("_record", "_on_start"), result
    # ...and reached coverage.py: pooled(2) ran `if x:` and `return x * 3`.
    assert {30, 31} <= set(result["lines"]), result
    assert 32 not in result["lines"], result
    assert {8, 9} <= set(result["lines"]), "classify(1) ran before the hand-over"
    assert result["gate"] == "gate"


@pytest.mark.parametrize("order", ["before", "after"])
def test_a_hand_over_during_a_first_hit_loses_nothing(python, order):
    """The recorder keeps first hits without its lock; a hand-over that runs to
    its end while one is appended (before or after the append) leaves that
    line in coverage.py's data, and the rest exact."""
    result, log = run_case(python, "hand_over_during_a_first_hit", order)
    assert result["handed_over"] and result["gate"] == "gate", result
    # pooled(1) ran `if x:` and `return x * 3` (the line handed over around), not `return 0`.
    assert result["last_line"] == 31
    assert {30, 31} <= set(result["lines"]) and 32 not in result["lines"], result
    assert {8, 9} <= set(result["lines"]), "classify(1) ran before the hand-over"
    if result["arcs"] is not None:
        assert (30, 31) in [tuple(a) for a in result["arcs"]], result
        assert (31, -29) in [tuple(a) for a in result["arcs"]], result
    assert "took the init over" in log and "could not" not in log and "Traceback" not in log


def test_internals_changed_loses_the_init_loudly_and_measures_on(python, mode):
    result, log = run_case(python, "internals_changed", *mode)
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    errors = [r for r in records if "could not take the init over" in r["message"]]
    assert (
        len(errors) == 1 and "the init of this environment is not measured" in errors[0]["message"]
    ), records
    assert result["lines"] == [30, 32], "only what ran after: pooled(0)"
    assert result["gate"] == "gate"
    # The recorder gave its tool id back; coverage.py took one of its own.
    assert result["tools"].count("coverage.py") == 1, result


def test_the_hand_over_never_rearms_another_tools_events(python, mode):
    result, _ = run_case(python, "other_tool_untouched", *mode)
    assert result["other_tool_lines_before"] > 0
    assert result["other_tool_lines_after"] == result["other_tool_lines_before"], result


def test_code_running_during_a_sliced_replay_is_recorded_as_plain_coverage_py_does(python, mode):
    result, _ = run_case(python, "replay_while_running", *mode)
    reference, _ = run_case(python, "replay_while_running_reference")
    assert result["rounds"] >= 3
    assert result["lines"] == reference["lines"]
    assert result["arcs"] == reference["arcs"]


def test_a_catch_up_stops_within_a_few_events_once_the_shutdown_closes_the_stream(python):
    """The shutdown's replay waits for a catch-up's slice to end: it ends at the
    next look at `close`, not after the whole slice (200 ms, first sights included,
    in a thawed environment of 500 modules with branches)."""
    result, _ = run_case(python, "close_during_catch_up")
    assert result["recorded"] >= result["slice"], result  # a whole slice was due
    assert 0 < result["replayed"] <= result["check"] < result["slice"], result


def test_measured_code_run_by_the_replaying_thread_during_the_switch_is_kept(python):
    result, _ = run_case(python, "measured_code_during_the_switch")
    assert {30, 31} <= set(result["lines"]), result  # pooled(1)
    assert result["gate"] == "gate"


def test_a_failed_hand_over_loses_the_init_loudly_and_measures_on(python, mode):
    result, log = run_case(python, "hand_over_fails", *mode)
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    errors = [r for r in records if "could not take the init over" in r["message"]]
    assert len(errors) == 1 and "simulated failure" in errors[0]["error_message"], records
    assert result["lines"] == [30, 32], "only what ran after: pooled(0)"
    assert result["snapshot_bytes"] > 0
    assert result["tools"].count("coverage.py") == 1, result


def test_data_asked_during_the_hand_over_never_builds_a_second_coverage_py(python):
    result, log = run_case(python, "data_asked_during_the_hand_over")
    assert result["asker_in"] and "materialize" in result["asker_in"], result
    assert result["collectors"] == 1, result
    assert result["lines"] > 0 and result["gate"] == "gate", result
    assert "Expected current collector" not in log


def test_label_switches_choose_the_cheaper_rearming_and_each_label_gets_its_lines(python):
    result, _ = run_case(python, "label_switches_choose_the_cheaper_rearming", "--labels")
    # The first switch restarts; it shows many code objects outside the sources
    # starting again, so the next ones re-arm the measured code objects alone.
    assert result["chosen"] == ["restart", "per-code", "per-code", "per-code"], result
    negative, small, big = [9, 11, 12, 15, 16, 18], [9, 11, 14, 15, 16, 18], [9, 10, 15, 16, 17, 18]
    assert result["lines"] == {
        "label-0": negative, "label-1": small, "label-2": big, "label-3": small,
    }, result  # fmt: skip


def test_the_hand_over_waits_until_data_is_needed_and_status_never_builds_coverage_py(python, mode):
    check_deferred_hand_over(*run_case(python, "deferred_hand_over", *mode))


def check_deferred_hand_over(result: dict[str, Any], log: str) -> None:
    # Three responses: the shipping thread ran (client, maintenance) but built nothing.
    assert result["gates"] == ["recorder"] * 3, result
    assert not result["coverage_imported_before"], "status() and the passes import no coverage.py"
    before = result["status_before"]
    assert before["recorded_events_waiting"] > 0 and before["pending_checkpoint"], result
    assert result["retired"] >= 1, "the maintenance pass retires from the recorder's stream"
    # The first snapshot handed over: everything the recorder held is counted.
    after = result["status_after"]
    assert result["gate_after"] == "gate" and after["recorded_events_waiting"] == 0, result
    assert after["recorded_lines"] > 0
    assert {9, 10, 11, 12, 30, 31, 32} <= set(result["lines"]), result
    assert log.count("coverage.py took the init over") == 1


def test_a_long_stream_is_handed_over_when_the_shipping_thread_starts(python, mode):
    check_long_stream(run_case(python, "long_stream_hands_over_at_once", *mode)[0])


def check_long_stream(result: dict[str, Any]) -> None:
    assert result["waiting_after_init"] >= 5, result  # the (lowered) threshold
    assert result["gate"] == "gate", "handed over after the first response, no checkpoint due"
    assert {9, 11, 30, 31} <= set(result["lines"]), result


def test_labels_bound_the_recorded_stream_and_each_label_keeps_its_lines(python):
    check_labels_bound(run_case(python, "labels_bound_the_stream")[0])


def check_labels_bound(result: dict[str, Any]) -> None:
    waiting, gates, bound = result["waiting"], result["gates"], result["bound"]
    built = gates.index("gate")
    assert 0 < built < len(gates) - 1, result
    assert waiting[built - 1] >= bound // 2, "coverage.py not built before the stream grew"
    # The recorder stays the receiver: it is replayed into coverage.py (and let go)
    # whenever it reaches the bound, so it never holds more than one invocation over it.
    assert max(waiting) < 2 * bound, result
    drained = [i for i in range(1, len(waiting)) if waiting[i] < waiting[i - 1]]
    assert len(drained) >= 2, result
    for index, lines in result["lines"].items():
        assert {9, 15, 16, 18} <= set(lines), (index, lines)  # each run's own classify()


def test_a_reset_drops_everything_and_re_arms_what_was_recorded_or_retired(python, mode):
    result, _ = run_case(python, "reset_re_arms_what_was_recorded", *mode)
    assert result["retired"] >= 1, result
    assert result["lines"] == [30, 31], "only what ran after the reset: pooled(1), retired before"
    assert result["receiving"] == ("recorder" if mode else "gate"), result


@pytest.mark.parametrize("when", ["invocation", "init"])
def test_a_switch_during_a_first_hit_never_leaves_its_location_disabled(python, when):
    """The switch re-arms the code object before the first hit's callback returns:
    the location stays armed, so the next label records it too; also the first
    switch, from the init, during one of the init's first hits."""
    check_switch_during_a_first_hit(run_case(python, "switch_during_a_first_hit", when)[0])


def check_switch_during_a_first_hit(result: dict[str, Any]) -> None:
    assert result["switched"], result
    assert result["last_line"] in result["c_lines"], result


@pytest.fixture(params=["recorder", "gate"])
def labelled_receiver(request: pytest.FixtureRequest) -> str:
    """What receives the events with labels: the init recorder (always, when it can
    start) or coverage.py's gate (when it cannot)."""
    return request.param


def test_a_background_thread_between_the_prearm_and_the_switch_is_re_armed_at_it(
    python, labelled_receiver
):
    """Labels change on every invocation: the next switch is pre-armed after each
    response.  Code a background thread runs before the next event records under the
    old label and is re-armed by the switch: every label gets what its invocation ran."""
    check_prearm_then_a_background_thread(
        run_case(python, "prearm_then_a_background_thread", labelled_receiver)[0],
        labelled_receiver,
    )


def check_prearm_then_a_background_thread(result: dict[str, Any], receiver: str) -> None:
    assert result["receiving"] == receiver, result
    # init -> p: nothing; p -> a and a -> b: pre-armed after each (something to re-arm).
    assert len(result["prearmed_before_thread"]) == 2, result
    assert all(result["prearmed_before_thread"]), result
    # Then after b -> c and c -> d, and not after d -> d: the label did not change.
    assert len(result["prearmed"]) == 4, result
    assert result["stale_prearm"] == 0, "a pre-arm for a label switched from already"
    # The switch to "c" re-armed what the thread ran after the pre-arm ...
    (at_c,) = result["rearmed_at_c"]
    assert {"classify", "pooled"} <= set(at_c), result
    # ... and the switch to "d", pre-armed with nothing of them run since, did not.
    assert not {"classify", "pooled"} & set(result["switches"][-1]), result
    labels = result["labels"]
    union = {key: _items(labels["a"][key]) | _items(labels["p"][key]) for key in ("lines", "arcs")}
    for label in ("b", "c", "d"):
        got = {key: _items(labels[label][key]) for key in ("lines", "arcs")}
        assert got == union, (label, result)


def _items(found: list[Any]) -> set[Any]:
    """Lines, or arcs as tuples (JSON made them lists)."""
    return {tuple(item) if isinstance(item, list) else item for item in found}


def test_a_switch_waits_for_a_prearm_the_environment_thawed_in(python, labelled_receiver):
    """Frozen mid-pre-arm, thawed by the next event: the switch waits on the lock,
    then the new label records exactly what its invocation runs."""
    check_prearm_held(
        run_case(python, "prearm_held_while_the_next_event_comes", labelled_receiver)[0]
    )


def check_prearm_held(result: dict[str, Any]) -> None:
    assert result["reached"] and result["switch_waited"], result
    assert len(result["switches"]) == 2, "the held pre-arm left the switch to c nothing"
    labels = result["labels"]
    assert labels["b"]["lines"] == [9, 11, 14, 15, 16, 18], result
    assert labels["c"]["lines"] == [9, 11, 14, 15, 16, 18, 30, 31], result
    expected = _items(labels["b"]["arcs"]) | _items(labels["p"]["arcs"])
    assert _items(labels["c"]["arcs"]) == expected, result  # (branches: 3.14)


def test_the_maintenance_pass_never_retires_what_a_prearm_re_armed(python, labelled_receiver):
    """What fired before a pre-arm is stale: the pass after it retires no code
    object the pre-arm re-armed, and the next label records it."""
    result = run_case(python, "retire_after_a_prearm", labelled_receiver)[0]
    check_retire_after_a_prearm(result, labelled_receiver)


def check_retire_after_a_prearm(result: dict[str, Any], receiver: str) -> None:
    assert result["receiving"] == receiver, result
    assert not result["pooled_retired"], result
    labels = result["labels"]
    assert labels["a"]["lines"] == labels["b"]["lines"] == labels["c"]["lines"] == [30, 31, 32]
    assert labels["a"]["arcs"] == labels["b"]["arcs"] == labels["c"]["arcs"], result


def test_the_maintenance_pass_in_small_steps_retires_functions_never_bodies(python, mode):
    """The pass in steps of one event and one code object (the shipping thread's
    share of an invocation cuts it): each function whose every location fired
    is retired, by the recorder and after the hand-over by the gate; a module's
    or a class's body, which runs once, never is (#18: half the first pass's
    looks at 2,000 modules were bodies)."""
    check_retire_in_small_steps(run_case(python, "retire_in_small_steps", *mode)[0], mode)


def check_retire_in_small_steps(result: dict[str, Any], mode: tuple[str, ...]) -> None:
    assert result["receiving"] == ("recorder" if mode else "gate"), result
    for when in ("first", "second"):
        assert result[when]["cut"] == 0, result
        assert set(result[when]["armed_after_cut"].values()) == {True}, result
        assert result[when]["retired"] >= 2, result  # (and this file's own closures)
        assert result[when]["armed"] == {
            "<module>": True, "Square": True, "double": False, "area": False,
        }, result  # fmt: skip
    assert result["lines"] == [1, 5, 7, 10, 11, 12, 14, 15, 18, 19], result


def test_maintenance_passes_each_stopped_early_still_retire(python, mode):
    """Passes that other work stops at their first turn every time (frozen, a
    checkpoint after each response) go on where the last one stopped, so the
    code objects whose every location fired are retired all the same."""
    result = run_case(python, "retire_goes_on_after_stops", *mode)[0]
    assert result["receiving"] == "recorder", result
    assert result["retired"] >= 2, result
    assert result["armed"] == {"double": False, "area": False}, result


def test_a_maintenance_pass_during_a_reset_leaves_nothing_disarmed(python):
    """(labels) A pass that runs after the reset's drain, before the recorder
    forgets what fired or after the gate re-armed everything, may retire code
    by what fired before the reset: it must be armed again, and measured when
    it runs after the reset."""
    result = run_case(python, "reset_beside_a_maintenance_pass", "--labels")[0]
    assert set(result["passes"]) == {"before_forget_fired", "after_the_gate_re_armed"}, result
    assert result["pooled_lines"] == [1, 2, 3], result


def test_a_maintenance_pass_gives_way_to_a_checkpoint_and_goes_on_after_it(python):
    """Other work asked during a pass (a checkpoint after the next response) stops
    it at its next turn; the shipping thread does that work, then the pass again,
    which retires what the stopped one would have."""
    result = run_case(python, "maintenance_gives_way")[0]
    first, second = result["calls"]
    assert first == {"stop_before": True, "checkpoint_waiting": True, "retired": 0}, result
    assert second["stop_before"] is False and not second["checkpoint_waiting"], result
    assert second["retired"] >= 1 and result["pooled_events"] == 0, result


def test_code_retired_before_coverage_py_saw_it_start_stays_retired(python, mode):
    """The maintenance pass retires a code object from the recorder's stream
    before the first snapshot replays its start into coverage.py: coverage.py's
    first sight must not arm it again (a change of local events re-enables
    every disabled location), so it reports nothing when it runs again."""
    result, _ = run_case(python, "retired_before_its_start_is_replayed", *mode)
    reference, _ = run_case(python, "retired_before_its_start_is_replayed_reference")
    check_retired_before_its_start_is_replayed(result, reference, mode)


def check_retired_before_its_start_is_replayed(
    result: dict[str, Any], reference: dict[str, Any], mode: tuple[str, ...]
) -> None:
    assert result["receiving"] == ("recorder" if mode else "gate"), result
    assert result["retired"] and not result["replayed_before"], result
    assert result["local_events_after_replay"] == 0, "the replay armed a retired code object"
    assert result["local_events_after_run"] == 0, result
    # (branches, 3.14: re-armed, ``nest(0)`` joined the outer frame's last line to its first)
    assert_as_plain(result, reference)
    assert result["lines"] == [36, 37, 38, 39], result


def test_code_run_while_paused_is_never_recorded_and_stays_armed(python, mode):
    """The tool is muted in a paused window (`init_recorder.Muting`): what ran only
    paused is not recorded, what runs measured afterwards is, through blocks per
    item, a block mid-frame, nested blocks and a worker thread."""
    for case in ("paused_code", "paused_code_muted_at_once"):
        check_paused_code(run_case(python, case, *mode)[0], mode)
    result, _ = run_case(python, "paused_batch_first", *mode)
    assert result["lines"] == ["number"], "the text path only ever ran paused"


def check_paused_code(result: dict[str, Any], mode: tuple[str, ...]) -> None:
    phases = result["phases"]
    assert phases["batch"]["receiving"] == "recorder", result
    assert phases["receiving"] == ("recorder" if mode else "gate"), result
    # Paused in many windows, then one text item measured: recorded.
    assert phases["batch"]["after_measured"] == ["number", "text", "text-return"], result
    frames = set(phases["frames"])
    assert {"before", "after", "after-return", "nested-return", "before2", "after2"} <= frames
    assert {"step-1", "step-3", "gen-first", "gen-third", "split-call", "split-ret"} <= frames
    paused_only = {"inside", "inside-2", "inside3", "deep", "still-paused", "thread-paused"}
    paused_only |= {"step-2", "busy", "busy-add", "gen-busy", "gen-second", "callee-busy"}
    paused_only |= {"split-a", "split-b", "split-resume"}
    assert not frames & paused_only, result
    threads = set(phases["threads"])
    assert "thread-measured" in threads and "thread-paused" not in threads, result
    assert not result["muted"], "resumed: the callbacks are back"
    # With branches: no arc into or out of what ran paused, none across the block.
    assert not [arc for arc in result["arcs"] if set(arc) & paused_only], result
    assert ["before", "after"] not in result["arcs"], result
    assert ["before2", "after2"] not in result["arcs"], "no arc across the block"
    # Frames that run on through a window they do not resume: no arc across it.
    assert ["step-1", "step-3"] not in result["arcs"], result
    assert ["split-call", "split-after"] not in result["arcs"], result


def test_a_resume_between_a_paused_event_and_its_mute_leaves_the_tool_unmuted(python, mode):
    """Another thread resumes while a paused event is on its way to muting the
    tool: nothing is muted, the rest runs measured and is recorded, and the
    event's own line stays armed (recorded at its next run)."""
    check_resume_before_the_mute(run_case(python, "resume_before_the_mute", *mode)[0], mode)


def check_resume_before_the_mute(result: dict[str, Any], mode: tuple[str, ...]) -> None:
    on_recorder, after_data = result["results"]
    assert on_recorder["receiver"] == "recorder"
    assert after_data["receiver"] == ("recorder" if mode else "gate")
    for step, name in ((on_recorder, "race"), (after_data, "race2")):
        assert step["held"] and not step["muted"], result
        assert {f"{name}-then", f"{name}-return"} <= set(step["lines"]), result
        assert f"{name}-first" not in step["lines"], "its event came while paused"
        assert f"{name}-first" in step["then"], "it stayed armed"


@pytest.mark.parametrize("interpreter", ["host", *(p.parent.parent.name for p in SYSMON_PYTHONS)])
def test_return_offsets_from_the_raw_bytecode_are_dis_s(interpreter):
    """The maintenance pass finds return instructions by scanning ``co_code``
    (50x cheaper than ``dis``): on every Python, for compiled and specialised
    code, the offsets are exactly those ``dis`` names (the image's 3.14: in
    test_container)."""
    if interpreter == "host":
        python = sys.executable
    else:
        python = venv_for(next(p for p in SYSMON_PYTHONS if p.parent.parent.name == interpreter))
    done = subprocess.run(
        [python, "-m", "tests.exactness.return_offsets"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["checked"] > 1000


def test_a_start_while_the_gate_installs_is_armed(python):
    """A thread that starts new measured code inside `SysmonGate.install`, once
    PY_START is the gate's, reaches coverage.py live: it must be armed like any
    live start (`_replayed_start` is for replays only), or the code is never
    measured: the gate says live (``_is_live``: `SysmonGate.go_live`) before its
    callbacks are registered.  (Failed with a1adc44 alone, which said it after.)"""
    result, _ = run_case(python, "start_while_the_gate_installs")
    assert result.get("ran_inside_install"), result  # (the window was hit)
    assert result["pooled_local_events"] != 0, result
    assert result["lines"] == [9, 11, 14, 15, 16, 18, 30, 31, 32], result


def test_a_finaliser_the_gc_runs_inside_the_install_is_recorded_as_plain_coverage_py_does(
    python,
):
    """The cyclic GC runs a finaliser in measured code (its first run) on the
    hand-over's own thread inside `SysmonGate.install`, between the gate's
    location callbacks and its PY_START: a collection any allocation there may
    trigger.  The recorder forwards to the gate before the gate registers, so
    the finaliser's start and lines reach coverage.py in order.  (Failed
    before: the start was recorded, the lines went to the gate's callbacks
    first; lines 10 and 11 were lost, and with branches coverage.py's line
    callback raised KeyError inside the finaliser.)"""
    result, log = run_case(python, "finaliser_during_the_install")
    reference, _ = run_case(python, "finaliser_during_the_install_reference")
    check_finaliser_during_the_install(result, reference, log)


def check_finaliser_during_the_install(
    result: dict[str, Any], reference: dict[str, Any], log: str
) -> None:
    assert result["collected_inside_install"] and result["log"] == ["first"], result
    assert result["receiving"] == "gate", result
    assert_as_plain(result, reference)
    assert {10, 11} <= set(result["lines"]), result  # (the finaliser's body)
    assert "took the init over" in log, log
    assert_nothing_failed(log)


def test_an_omitted_finaliser_started_before_the_forward_is_disarmed(python):
    """A finaliser in a file coverage.py does not trace (the recorder arms a
    superset), first run on the hand-over's thread after its first check of
    what coverage.py traces and before the recorder forwards: the hand-over
    checks again after replaying its start, so it is disarmed and, run again
    down its other branch, never reaches coverage.py's callbacks.  (Failed
    before: left armed; in the image, with branches, coverage.py's branch
    callback failed an assertion inside the finaliser, which stopped.)"""
    result, log = run_case(python, "omitted_finaliser_before_the_forward")
    check_omitted_finaliser(result, log)


def check_omitted_finaliser(result: dict[str, Any], log: str) -> None:
    assert result["collected_before_the_forward"], result
    assert result["log"] == ["first", "again"], result  # (both ran to their end)
    assert result["local_events"] == 0, result
    assert result["receiving"] == "gate" and result["lines"] == [], result
    assert_nothing_failed(log)


def test_a_finaliser_the_gc_runs_inside_a_drain_leaves_its_file_measured(python):
    """(labels) The cyclic GC runs a finaliser in measured code (its first run)
    on the draining thread after the drain's last replay: its start is not
    replayed, so coverage.py does not know it yet.  The drain checks only the
    code whose start it replayed, so the finaliser's file stays armed, and new
    code of it (``later``) is measured as plain coverage.py measures it.
    (Failed before: the finaliser passed for untraced, its file was armed no
    more, and ``later``'s lines 18 and 19 were lost.)"""
    result, log = run_case(python, "finaliser_during_a_drain", "--labels")
    reference, _ = run_case(python, "finaliser_during_a_drain_reference")
    check_finaliser_during_a_drain(result, reference, log)


def check_finaliser_during_a_drain(
    result: dict[str, Any], reference: dict[str, Any], log: str
) -> None:
    assert result["collected_inside_drain"] and result["log"] == ["first"], result
    assert result["receiving"] == "recorder" and result["file_armed"] is True, result
    assert_as_plain(result, reference)
    assert {10, 11, 18, 19} <= set(result["lines"]), result
    assert_nothing_failed(log)


def test_the_exit_shutdown_stops_coverage_py_while_a_drain_replays(python):
    """`Measurement.finish` without a deadline (a normal exit) stops coverage.py
    while the shipping thread's drain replays a start into the fed gate: the
    tool id must be freed and the monitor stay off.  (Fails since a1adc44:
    ``SysMonitor.stop`` read ``sysmon_on`` switched off by `_replayed_start`;
    `InitRecorder.seal` now waits for the replay and lets no other start.)"""
    result, _ = run_case(python, "drain_during_exit_finish", "--labels")
    assert result["tool_after_finish"] is None, result
    assert result["sysmon_on_after"] is False, result


def test_first_hits_during_a_reset_report_under_the_next_label(python):
    """(labels) Code first run by another thread while `Measurement.reset` runs
    (after its drain, before ``forget_fired``) reports under the next label,
    which pre-armed per code object: `InitRecorder.forget_fired` keeps what the
    stream holds since the reset's drain as ran.  (Failed before: the label got
    nothing, its locations left disabled.)"""
    result, _ = run_case(python, "first_hits_during_a_reset")
    assert result["labels"]["c"]["lines"] == [30, 31], result


def test_untraced_code_the_drain_disarmed_stays_disarmed_across_switches(python):
    """(labels) Code under the source directory that coverage.py omits, armed by the
    recorder (a superset) and disarmed by the drain, is not armed again by the
    switches and pre-arms after it (it runs under each label): no first hits of it
    recorded and replayed for nothing, label after label.  (Failed before: armed
    again from the next label on, local events [32, 32, 32, 32] on 3.13.)"""
    check_untraced_stays_disarmed(run_case(python, "untraced_code_stays_disarmed")[0])


def check_untraced_stays_disarmed(result: dict[str, Any]) -> None:
    assert result["receiving"] == "recorder", result
    assert result["armed"] == [0, 0, 0, 0], result
    labels = result["labels"]
    assert [labels[label]["lines"] for label in "bcde"] == [[30, 31]] * 4, result
    assert all(labels[label]["arcs"] == labels["b"]["arcs"] for label in "cde"), result


def test_the_id_of_code_the_drain_disarmed_never_names_new_code(python):
    """(labels) What fired is keyed by ``id(code)`` in the recorder (`Expected`,
    ``_fired``, ``_cut``); code the drain disarmed as untraced is no longer held by
    the recorder, but coverage.py's monitor, which saw it start, keeps it alive: new
    code made afterwards (until it would take that id, bounded) never takes it, and
    is recorded as plain coverage.py records it.  (With coverage.py's monitor made
    to keep its code objects weakly, the new code took the id at once and lost its
    ``return 2``, retired by the old code's lines: lines [2, 3].)"""
    result, _ = run_case(python, "disarmed_code_keeps_its_id")
    reference, _ = run_case(python, "disarmed_code_keeps_its_id_reference")
    check_disarmed_code_keeps_its_id(result, reference)


def check_disarmed_code_keeps_its_id(result: dict[str, Any], reference: dict[str, Any]) -> None:
    assert result["receiving"] == "recorder", result
    assert result["named"], "the recorder's state still names the old id"
    assert result["alive"] and not result["reused"], result
    assert_as_plain(result, reference)
    assert result["lines"] == [2, 3, 4], result
