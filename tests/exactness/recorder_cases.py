"""The init recorder's hand-over at its edges, on a Python with sys.monitoring.

    python -m tests.exactness.recorder_cases CASE [--labels]   -> one JSON document

Without ``--labels`` the runtime runs with ``COVERAGE_LABELS=none``, where the
recorder hands over to coverage.py; with it (the default sources), the
recorder stays the receiver and feeds coverage.py (`InitRecorder.drain`).

Each case runs in its own process (coverage.py and sys.monitoring are
process-wide); `tests/test_init_recorder.py` runs them on every 3.12+ Python
here and asserts on the documents.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from coverage_runtime.shim import init_recorder

HERE = Path(__file__).resolve().parent
FRESH = HERE / "measured_only.py"
LABELS = {"COVERAGE_LABELS": "none"}  # `--labels`: the default sources


def session(branch: bool = False, **extra: str) -> Any:
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import api
    from coverage_runtime.shim.session import CoverageSession

    env = {
        "LAMBDA_TASK_ROOT": str(HERE),
        "COVERAGE_SOURCE": str(HERE),
        "COVERAGE_CORE": "sysmon",
        "COVERAGE_BRANCH": str(branch).lower(),
        "COVERAGE_DATA_DIR": tempfile.mkdtemp(),
        **LABELS,
        **extra,
    }
    runtime = CoverageSession.start(load_settings(env))
    api.install(runtime)
    return runtime


def branches() -> bool:
    """Branches where sysmon measures them (3.14+)."""
    return sys.version_info >= (3, 14)


def shipper_idle(runtime: Any) -> None:
    """Wait until the shipping thread has done everything asked of it and waits
    for more (deterministic: read from its frames and its flags, no sleep
    assumed long enough)."""
    shipper = runtime._shipper
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        thread = shipper._thread
        if thread is not None:
            frames = frames_of(thread)
            flags = (shipper._requested, shipper._maintain, shipper._hand_over, shipper._prearm)
            if frames[:1] == ["wait"] and "_run" in frames and not any(flags):
                return
        time.sleep(0.001)
    raise AssertionError("the shipping thread never became idle")


def invocation(runtime: Any, work: Any, label: str | None = None) -> None:
    """One invocation as the runtime client drives it: arrived, ran, responded."""
    context = None  # (the Lambda-Runtime-Client-Context header: JSON)
    if label is not None:
        context = json.dumps({"custom": {"coverage-label": label}})
    runtime.invocation_arrived(client_context=context)
    work()
    runtime.between_invocations()
    shipper_idle(runtime)


def frames_of(thread: threading.Thread) -> list[str]:
    frame = sys._current_frames().get(thread.ident or 0)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def concurrent_event() -> dict[str, Any]:
    """A thread starts new measured code while the events are replayed: it waits
    for the replay, then its lines reach coverage.py after the recorded ones."""
    runtime = session(branch=sys.version_info >= (3, 14))
    measurement = runtime.measurement
    from tests.exactness import measured_only

    measured_only.classify(1)  # recorded, before the hand-over
    recorder = measurement._recorder
    replaying = threading.Event()
    go = threading.Event()
    holder: dict[str, Any] = {}

    def worker() -> None:
        replaying.wait(10)
        holder["pooled"] = measured_only.pooled(2)  # a first call: PY_START, LINE

    thread = threading.Thread(target=worker)
    thread.start()
    original = recorder.hand_over

    def hand_over(receiver: Any) -> int:
        callbacks = receiver.callbacks

        def held_callbacks() -> Any:
            found = callbacks()
            replaying.set()
            # Deterministic: go on once the worker waits for the recorder's lock.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if {"_on_start", "_record"} & set(frames_of(thread)):
                    holder["waited_in"] = frames_of(thread)[0]
                    break
                time.sleep(0.001)
            go.set()
            return found

        receiver.callbacks = held_callbacks
        return original(receiver)

    recorder.hand_over = hand_over
    measurement.materialize()
    thread.join(10)
    data = measurement.data()
    lines = sorted(data.lines(str(FRESH)) or ())
    return {
        "waited_in": holder.get("waited_in"),
        "gate": measurement.gate_kind,
        "lines": lines,
        "pooled": holder.get("pooled"),
    }


def internals_changed() -> dict[str, Any]:
    """coverage.py cannot take the init over: one error record, and measuring goes on."""
    from coverage_runtime.shim import coverage_adapter

    def refuse(cov: Any, tool: int) -> None:
        raise coverage_adapter.InternalsChanged("simulated upgrade")

    coverage_adapter.start_deferred = refuse
    runtime = session()
    from tests.exactness import measured_only

    measured_only.classify(1)  # the init: not measured in the end
    measurement = runtime.measurement
    materialized = measurement.materialize()
    measured_only.pooled(0)  # after: measured by coverage.py itself
    data = measurement.data()
    tools = [sys.monitoring.get_tool(tool) for tool in range(6)]
    return {
        "materialized": materialized,
        "gate": measurement.gate_kind,
        "lines": sorted(data.lines(str(FRESH)) or ()),
        "tools": tools,
    }


def other_tool_untouched() -> dict[str, Any]:
    """The hand-over never re-arms another tool's disabled events (no restart_events)."""
    monitoring = sys.monitoring
    tool = monitoring.PROFILER_ID
    monitoring.use_tool_id(tool, "other")
    seen: list[int] = []

    def line(code: Any, number: int) -> Any:
        seen.append(number)
        return monitoring.DISABLE

    monitoring.register_callback(tool, monitoring.events.LINE, line)
    runtime = session()
    from tests.exactness import measured_only

    monitoring.set_local_events(tool, measured_only.classify.__code__, monitoring.events.LINE)
    measured_only.classify(1)
    before = len(seen)
    runtime.measurement.materialize()
    measured_only.classify(1)
    return {"other_tool_lines_before": before, "other_tool_lines_after": len(seen)}


def replay_while_running() -> dict[str, Any]:
    """A thread keeps running measured code while the recorded events are replayed
    in slices: what it ran is all recorded, whether it ran before, during or after."""
    from coverage_runtime.shim import init_recorder

    init_recorder.REPLAY_SLICE = 3
    runtime = session(branch=sys.version_info >= (3, 14))
    measurement = runtime.measurement
    from tests.exactness import measured_only

    stop = threading.Event()
    rounds = [0]

    def worker() -> None:
        while not stop.is_set() or rounds[0] < 3:
            for value in (-1, 5, 20):
                measured_only.classify(value)
            list(measured_only.gen_measured(3))
            rounds[0] += 1

    thread = threading.Thread(target=worker)
    thread.start()
    while rounds[0] < 1:
        time.sleep(0.001)
    measurement.materialize()
    stop.set()
    thread.join(10)
    data = measurement.data()
    arcs = data.arcs(str(FRESH)) or () if data.has_arcs() else ()
    return {
        "rounds": rounds[0],
        "lines": sorted(data.lines(str(FRESH)) or ()),
        "arcs": sorted(list(arc) for arc in arcs),
    }


def close_during_catch_up() -> dict[str, Any]:
    """The shutdown closes the stream while a catch-up replays a slice: the slice
    stops at the next look at `close` (`CLOSE_CHECK_EVENTS`), not at its end, so
    the shutdown's replay waits that long only."""
    from coverage_runtime.shim import init_recorder

    init_recorder.REPLAY_SLICE = 16
    init_recorder.CLOSE_CHECK_EVENTS = 2
    runtime = session()
    measurement = runtime.measurement
    from tests.exactness import measured_only

    for value in (-1, 5, 20):
        measured_only.classify(value)
    list(measured_only.gen_measured(3))
    recorder = measurement._recorder
    measurement._build_once(recorder, catch_up=False)
    gate = measurement._built[1]
    callbacks = gate.callbacks
    delivered = [0]

    def closing(callback: Any) -> Any:
        def call(*args: Any) -> Any:
            delivered[0] += 1
            if delivered[0] == 1:
                recorder.close()  # as the shutdown's replay does, from its thread
            return callback(*args)

        return call

    gate.callbacks = lambda: {kind: closing(call) for kind, call in callbacks().items()}
    recorded = len(recorder.events)
    recorder.catch_up(gate)
    return {
        "recorded": recorded,
        "replayed": recorder._replayed,
        "slice": init_recorder.REPLAY_SLICE,
        "check": init_recorder.CLOSE_CHECK_EVENTS,
    }


def plain_reference(calls: Any, path: Path = FRESH) -> dict[str, Any]:
    """``calls()`` under plain coverage.py (sysmon, branches where it measures them):
    ``path``'s lines and arcs (`FRESH`'s unless told)."""
    import coverage

    cov = coverage.Coverage(
        data_file=None, source=[str(HERE)], branch=branches(), config_file=False
    )
    cov.set_option("run:core", "sysmon")
    cov.start()
    calls()
    cov.stop()
    return fresh_data(cov.get_data(), path)


def fresh_data(data: Any, path: Path = FRESH) -> dict[str, Any]:
    """``path``'s lines and arcs in ``data`` (`FRESH`'s unless told)."""
    arcs = data.arcs(str(path)) or () if data.has_arcs() else ()
    return {
        "lines": sorted(data.lines(str(path)) or ()),
        "arcs": sorted(list(arc) for arc in arcs),
    }


def replay_while_running_reference() -> dict[str, Any]:
    """The same calls under plain coverage.py (the import measured too, as before)."""

    def calls() -> None:
        from tests.exactness import measured_only

        for value in (-1, 5, 20):
            measured_only.classify(value)
        list(measured_only.gen_measured(3))

    return plain_reference(calls)


def measured_code_during_the_switch() -> dict[str, Any]:
    """Measured code that the replaying thread itself runs after the last replayed
    event and before the recorder forwards to the receiver (a finaliser, say) is
    recorded, and replayed before anything forwarded."""
    from coverage_runtime.shim import coverage_adapter

    runtime = session()
    measurement = runtime.measurement
    from tests.exactness import measured_only

    original = coverage_adapter.SysmonGate.adopt

    def adopt(gate: Any, retired: Any) -> None:
        measured_only.pooled(1)  # a first call, on the replaying thread, mid-switch
        original(gate, retired)

    coverage_adapter.SysmonGate.adopt = adopt  # type: ignore[method-assign]
    measurement.materialize()
    data = measurement.data()
    return {"gate": measurement.gate_kind, "lines": sorted(data.lines(str(FRESH)) or ())}


def hand_over_fails() -> dict[str, Any]:
    """An error in the hand-over (with labels: in feeding coverage.py): one error
    record, the init is lost, measuring goes on with coverage.py itself, and later
    data and snapshots work."""
    from coverage_runtime.shim import coverage_adapter

    def broken(gate: Any, *args: Any) -> bool:
        raise RuntimeError("simulated failure in the hand-over")

    coverage_adapter.SysmonGate.traced = broken  # type: ignore[method-assign]
    runtime = session()
    measurement = runtime.measurement
    from tests.exactness import measured_only

    measured_only.classify(1)
    measurement.materialize()
    measured_only.pooled(0)
    data = measurement.data()
    snapshot = measurement.snapshot()
    return {
        "gate": measurement.gate_kind,
        "lines": sorted(data.lines(str(FRESH)) or ()),
        "snapshot_bytes": len(snapshot.body),
        "tools": [sys.monitoring.get_tool(tool) for tool in range(6)],
    }


def data_asked_during_the_hand_over() -> dict[str, Any]:
    """Another thread needs coverage.py (`Measurement.materialize`: a flush, say)
    while the shipping thread hands the init over: it waits for that hand-over
    and never builds a second coverage.py (a second collector, which would make
    the first one's stop fail at shutdown)."""
    from coverage.collector import Collector

    runtime = session()
    measurement = runtime.measurement
    from tests.exactness import measured_only

    measured_only.classify(1)
    recorder = measurement._recorder
    original = recorder.hand_over
    handing_over = threading.Event()
    holder: dict[str, Any] = {}

    def asker() -> None:
        handing_over.wait(10)
        measurement.materialize()
        holder["lines"] = measurement.counts().lines

    thread = threading.Thread(target=asker)
    thread.start()

    def hand_over(receiver: Any) -> int:
        handing_over.set()
        # Deterministic: go on once the asker waits for the measurement's lock.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frames = frames_of(thread)
            if "materialize" in frames and frames[0] != "wait":
                holder["asker_in"] = frames[:3]
                time.sleep(0.05)  # (a build would run now, if it were going to)
                break
            time.sleep(0.001)
        return original(receiver)

    recorder.hand_over = hand_over
    measurement.materialize()
    thread.join(10)
    collectors = len(Collector._collectors)
    runtime.measurement.finish()  # Collector.stop() checks that it is the current one
    return {
        "collectors": collectors,
        "asker_in": holder.get("asker_in"),
        "lines": holder.get("lines"),
        "gate": measurement.gate_kind,
    }


def label_switches_choose_the_cheaper_rearming() -> dict[str, Any]:
    """After a restart, code outside the sources starts again too (the runtime's,
    installed packages'); when that outnumbers the measured code objects, the next
    switches re-arm the measured ones one by one, and each label still gets its
    lines."""
    import email.generator
    import email.message
    import re as regex

    from coverage_runtime.shim import init_recorder

    runtime = session()
    measurement = runtime.measurement
    from tests.exactness import measured_only

    measured_only.classify(1)
    measurement.materialize()
    chosen: list[str] = []
    original = init_recorder.rearm_for_label

    def recording(*args: Any, **kwargs: Any) -> str:
        how = original(*args, **kwargs)
        chosen.append(how)
        return how

    init_recorder.rearm_for_label = recording  # type: ignore[assignment]

    def outside_work() -> None:  # many code objects outside the sources
        message = email.message.EmailMessage()
        message["Subject"] = "x"
        message.set_content("body")
        email.generator.Generator(__import__("io").StringIO()).flatten(message)
        regex.compile(r"(a|b)+c").sub("d", "abc")

    lines = {}
    for index in range(4):
        label = f"label-{index}"
        runtime.label(label)
        outside_work()
        measured_only.classify((-3, 4, 11, 4)[index])
        data = measurement.data()
        data.set_query_contexts([f"^{label}$"])
        lines[label] = sorted(data.lines(str(FRESH)) or ())
    return {"chosen": chosen, "lines": lines}


def deferred_hand_over() -> dict[str, Any]:
    """After the first responses the shipping thread builds no coverage.py (a
    small init): the recorder goes on recording, status() counts without
    building it, the maintenance pass retires from the recorder's stream; the
    first snapshot hands over, and what was recorded is all there."""
    from tests.exactness import measured_only

    runtime = session(branch=branches())
    measurement = runtime.measurement
    import coverage_runtime

    gates = []
    for value in (1, -1, 20):
        invocation(runtime, lambda value=value: measured_only.classify(value))
        gates.append(measurement.gate_kind)
    status = coverage_runtime.status()
    assert status["enabled"]
    # The shipping thread's maintenance passes (after invocations 1 and 2) ran
    # on the recorder: `pooled`'s every line ran, `classify`'s not all.
    measured_only.pooled(0)
    measured_only.pooled(1)
    retired = measurement.maintain()
    coverage_imported = "coverage" in sys.modules
    measurement.snapshot()  # what a checkpoint, flush or shutdown asks first
    after = coverage_runtime.status()
    assert after["enabled"]
    data = measurement.data()
    return {
        "gates": gates,
        "coverage_imported_before": coverage_imported,
        "status_before": {
            key: status[key]  # type: ignore[literal-required]
            for key in ("recorded_lines", "recorded_events_waiting", "pending_checkpoint")
        },
        "status_after": {
            key: after[key]  # type: ignore[literal-required]
            for key in ("recorded_lines", "recorded_events_waiting", "pending_checkpoint")
        },
        "gate_after": measurement.gate_kind,
        "lines": sorted(data.lines(str(FRESH)) or ()),
        "retired": retired,
    }


def long_stream_hands_over_at_once() -> dict[str, Any]:
    """A stream of `HAND_OVER_AT_EVENTS` or more (a large init) is handed over by
    the shipping thread as soon as it starts, not at the first checkpoint."""
    from coverage_runtime.shim import measurement as measurement_module
    from tests.exactness import measured_only

    measurement_module.HAND_OVER_AT_EVENTS = 5
    runtime = session(branch=branches())
    measurement = runtime.measurement
    measured_only.classify(1)  # (the init)
    waiting = measurement.counts().waiting
    invocation(runtime, lambda: measured_only.pooled(1))
    data = measurement.data()
    return {
        "waiting_after_init": waiting,
        "gate": measurement.gate_kind,
        "lines": sorted(data.lines(str(FRESH)) or ()),
    }


def labels_bound_the_stream() -> dict[str, Any]:
    """With a new label on every invocation the stream grows by what each runs;
    once it holds the bound, the shipping thread hands it over, and every label
    keeps what ran under it."""
    from coverage_runtime.shim import measurement as measurement_module
    from tests.exactness import measured_only

    bound = measurement_module.HAND_OVER_AT_EVENTS = 60
    runtime = session(branch=branches(), COVERAGE_LABELS="client-context")
    measurement = runtime.measurement
    waiting = []
    gates = []
    for index in range(12):
        invocation(runtime, lambda index=index: measured_only.classify(index), f"run-{index}")
        waiting.append(measurement.counts().waiting)
        gates.append(measurement.gate_kind)
    data = measurement.data()
    lines = {}
    for index in range(12):
        data.set_query_contexts([f"^run-{index}$"])
        lines[index] = sorted(data.lines(str(FRESH)) or ())
    return {"bound": bound, "waiting": waiting, "gates": gates, "lines": lines}


def reset_re_arms_what_was_recorded() -> dict[str, Any]:
    """A reset drops everything and what runs afterwards records again, code the
    maintenance pass retired included (with labels: while the recorder feeds
    coverage.py)."""
    from tests.exactness import measured_only

    runtime = session(branch=branches())
    measurement = runtime.measurement
    measured_only.pooled(0)  # (the init)
    measured_only.pooled(1)
    retired = measurement.maintain()  # pooled ran whole: its events come off
    invocation(runtime, lambda: measured_only.classify(1), "a")
    measurement.snapshot()
    runtime.reset()
    invocation(runtime, lambda: measured_only.pooled(1), "a")
    data = measurement.data()
    return {
        "retired": retired,
        "lines": sorted(data.lines(str(FRESH)) or ()),
        "receiving": measurement.receiving,
    }


class SwitchOnAppend(list):  # type: ignore[type-arg]
    """The recorder's stream, switching the label (as the main thread would while
    a background thread records) right after the event of ``line`` in ``code`` is
    appended: between a first hit's note in the label's set and its callback's
    return."""

    def __init__(self, items: list[Any], code: Any, line: int, switch: Any) -> None:
        super().__init__(items)
        self.code, self.line, self.switch, self.done = code, line, switch, False

    def append(self, item: Any) -> None:
        super().append(item)
        if not self.done and item[1] is self.code and item[2] == self.line:
            self.done = True
            self.switch()


def switch_during_a_first_hit(when: str = "invocation") -> dict[str, Any]:
    """A label switch lands while a first hit is recorded (labels: the recorder's
    lock-free path), and re-arms its code object before the callback returns: the
    location must not stay disabled through the next switch.  Another tool is
    registered, so switches re-arm code object by code object.  ``when``
    ``init``: the first switch, during a first hit of the init (the recorder
    notes nothing per hit then: what was armed counts as ran)."""
    from tests.exactness import measured_only

    sys.monitoring.use_tool_id(sys.monitoring.PROFILER_ID, "other")
    runtime = session(branch=False, COVERAGE_LABELS="client-context")
    measurement = runtime.measurement
    if when != "init":
        invocation(runtime, lambda: measured_only.classify(1), "a")
    code = measured_only.pooled.__code__
    last = code.co_firstlineno + 2  # `return x * 3`: pooled(1)'s last line event
    recorder = measurement._recorder
    recorder.events = SwitchOnAppend(
        recorder.events, code, last, lambda: measurement.switch_label("b")
    )
    if when == "init":
        measured_only.pooled(1)  # its last line: the switch from `init`
    else:
        invocation(runtime, lambda: measured_only.pooled(1), "a")  # its last line: the switch
    invocation(runtime, lambda: measured_only.pooled(1), "c")
    data = measurement.data()
    data.set_query_contexts(["^c$"])
    return {
        "switched": recorder.events.done,
        "last_line": last,
        "c_lines": sorted(data.lines(str(FRESH)) or ()),
    }


class HandOverOnAppend(list):  # type: ignore[type-arg]
    """The recorder's stream, handing the init over on another thread while the
    event of ``line`` in ``code`` is appended (the recorder's lock-free path):
    ``before`` the append (the hand-over's last replay cannot see it) or
    ``after`` it (the last replay may take it: it is then delivered twice)."""

    def __init__(self, items: list[Any], code: Any, line: int, order: str, hand: Any) -> None:
        super().__init__(items)
        self.code, self.line, self.order, self.hand, self.done = code, line, order, hand, False

    def append(self, item: Any) -> None:
        hit = not self.done and item[1] is self.code and item[2] == self.line
        if hit and self.order == "before":
            self._hand_over()
        super().append(item)
        if hit and self.order == "after":
            self._hand_over()

    def _hand_over(self) -> None:
        self.done = True
        thread = threading.Thread(target=self.hand)
        thread.start()
        thread.join(30)  # (the GIL is let go: the hand-over runs to its end)


def hand_over_during_a_first_hit(order: str = "before") -> dict[str, Any]:
    """The hand-over runs to its end while a first hit is being recorded,
    without the lock: that line must reach coverage.py either way."""
    runtime = session(branch=branches())
    measurement = runtime.measurement
    from tests.exactness import measured_only

    measured_only.classify(1)
    code = measured_only.pooled.__code__
    last = code.co_firstlineno + 2  # `return x * 3`
    recorder = measurement._recorder
    stream = recorder.events = HandOverOnAppend(
        recorder.events, code, last, order, measurement.materialize
    )
    measured_only.pooled(1)
    data = measurement.data()
    return {
        "handed_over": stream.done,
        "gate": measurement.gate_kind,
        "last_line": last,
        "lines": sorted(data.lines(str(FRESH)) or ()),
        "arcs": sorted(data.arcs(str(FRESH)) or ()) if branches() else None,
    }


def paused_code() -> dict[str, Any]:
    """Code run while paused is never recorded and stays armed (the tool is muted
    in a long window: `init_recorder.Muting`): the batch's text path, paused in many
    windows, is recorded once an item of it runs measured; a block in the middle
    of a frame, nested blocks, a worker thread running while the main thread's
    block is open (a pause is process-wide), then the same function measured.
    First on the recorder, then (after ``data()``) on the gate without labels, or
    on the recorder feeding coverage.py with them."""
    from tests.exactness import paused

    runtime = session(branch=branches())
    measurement = runtime.measurement
    tags = paused.tagged()
    path = str(HERE / "paused.py")

    def lines() -> list[str]:
        recorded = set(measurement.data().lines(path) or ())
        return sorted(tag for tag, number in tags.items() if number in recorded)

    phases: dict[str, Any] = {}
    mixed = [0, "a", 2, "b", 4, "c"]  # text items are never measured: every 2nd is
    for _ in range(4):
        invocation(runtime, lambda: paused.batch(mixed, 2))
    before = measurement.receiving
    invocation(runtime, lambda: paused.batch(["z", 1], 1))  # now a text item measured
    phases["batch"] = {"receiving": before, "after_measured": lines()}
    # (``lines()`` builds coverage.py: without labels the gate receives from now on)
    phases["receiving"] = measurement.receiving
    invocation(runtime, paused.mid_frame)
    invocation(runtime, lambda: paused.mid_frame_after_a_call(False))
    invocation(runtime, lambda: paused.mid_frame_after_a_call(True))
    invocation(runtime, paused.nested)
    invocation(runtime, paused.generator_across_a_window)
    invocation(runtime, paused.split_window)
    started, ran = threading.Event(), threading.Event()

    def worker() -> None:
        started.wait(10)
        paused.threaded(True)
        ran.set()

    thread = threading.Thread(target=worker)
    thread.start()
    with paused.without_coverage():  # process-wide: the worker's code runs paused
        started.set()
        ran.wait(10)
    thread.join()
    phases["frames"] = lines()
    thread = threading.Thread(target=paused.threaded, args=(False,))
    thread.start()
    thread.join()
    phases["threads"] = lines()
    data = measurement.data()
    numbers = {number: tag for tag, number in tags.items()}
    arcs = data.arcs(path) or () if data.has_arcs() else ()
    return {
        "phases": phases,
        "mute_after": init_recorder.MUTE_AFTER,
        "muted": measurement._receiver()._muting.muted,
        "arcs": sorted([str(numbers.get(a, a)), str(numbers.get(b, b))] for a, b in arcs),
        "tags": tags,
    }


def paused_code_muted_at_once() -> dict[str, Any]:
    """`paused_code` with the tool muted at each window's first paused event."""
    init_recorder.MUTE_AFTER = 0
    return paused_code()


def paused_batch_first() -> dict[str, Any]:
    """The batch's text path only ever paused, then nothing else: not recorded."""
    from tests.exactness import paused

    runtime = session(branch=branches())
    measurement = runtime.measurement
    for _ in range(4):
        invocation(runtime, lambda: paused.batch([0, "a", 2, "b"], 2))
    recorded = set(measurement.data().lines(str(HERE / "paused.py")) or ())
    return {"lines": sorted(t for t, n in paused.tagged().items() if n in recorded)}


def resume_before_the_mute() -> dict[str, Any]:
    """Another thread resumes between a paused event's dispatch and its mute: the
    tool must not stay muted, or what runs measured afterwards is lost.  Held
    there deterministically (the receiver's paused path, wrapped), on the
    recorder and then on the gate (without labels) or the feeding recorder.  The
    tool is muted at the first paused event (``MUTE_AFTER`` 0)."""
    from tests.exactness import paused

    init_recorder.MUTE_AFTER = 0
    runtime = session(branch=branches())
    measurement = runtime.measurement
    tags = paused.tagged()
    path = str(HERE / "paused.py")
    results = []
    for function in (paused.raced, paused.raced_again):
        receiver = measurement._receiver()
        real = receiver._paused_event
        held: list[bool] = []

        def resume_first(*args: Any, real: Any = real, held: list[bool] = held) -> Any:
            if not held:
                held.append(True)
                other = threading.Thread(target=measurement.resume)
                other.start()
                other.join()
            return real(*args)

        receiver._paused_event = resume_first
        measurement.pause()
        function()  # its first line's event resumes; the rest runs measured
        del receiver._paused_event
        recorded = set(measurement.data().lines(path) or ())  # (without labels: hand-over)
        results.append(
            {
                "receiver": receiver.kind,
                "held": bool(held),
                "muted": receiver._muting.muted,
                "lines": sorted(t for t, n in tags.items() if n in recorded),
            }
        )
        function()  # its first line stayed armed: recorded now
        recorded = set(measurement.data().lines(path) or ())
        results[-1]["then"] = sorted(t for t, n in tags.items() if n in recorded)
    return {"results": results}


def _labelled_session(receiver: str) -> Any:
    """A labelled session (``COVERAGE_LABELS=client-context``; branches where sysmon
    measures them) whose events go to ``receiver``: ``recorder`` (the default: the
    init recorder stays the receiver and feeds coverage.py) or ``gate`` (coverage.py
    started at once, its labelled gate installed: where the recorder cannot start)."""
    from coverage_runtime.shim import measurement as measurement_module

    if receiver == "gate":
        measurement_module.Measurement.defers_start = property(  # type: ignore[assignment, method-assign]
            lambda self: False
        )
    return session(branch=branches(), COVERAGE_LABELS="client-context")


def _rearm_counter(runtime: Any) -> list[Any]:
    """What each label switch (not a pre-arm) re-arms, appended to the list
    returned: the names of the code objects, or "restart"."""
    from coverage_runtime.shim import coverage_adapter

    counts: list[Any] = []
    original = init_recorder.rearm_for_label

    def counting(tool: int, armed: Any, *args: Any, **kwargs: Any) -> str:
        codes = list(armed())
        how = original(tool, lambda: codes, *args, **kwargs)
        counts.append(sorted(c.co_name for c in codes) if how == "per-code" else how)
        return how

    init_recorder.rearm_for_label = counting  # type: ignore[assignment]
    coverage_adapter.init_recorder.rearm_for_label = counting  # type: ignore[attr-defined]
    return counts


def _by_label(measurement: Any, labels: list[str]) -> dict[str, Any]:
    data = measurement.data()
    found = {}
    for label in labels:
        data.set_query_contexts([f"^{label}$"])
        found[label] = {
            "lines": sorted(data.lines(str(FRESH)) or ()),
            "arcs": sorted(map(list, data.arcs(str(FRESH)) or ())),
        }
    return found


def prearm_then_a_background_thread(receiver: str = "recorder") -> dict[str, Any]:
    """Labels change on every invocation, so after each response the shipping thread
    pre-arms the next switch.  Between the pre-arm and the next event a background
    thread runs measured code: under the old label still, reported again (the code
    was re-armed) and disabled again.  The switch must re-arm exactly what it ran,
    and the next label gets every line and arc its invocation runs.

    Invocations: "a" classify(1) (init -> a: no pre-arm), "b" classify(1) (a -> b:
    pre-armed after it), then the thread runs classify(1) and pooled(1) under "b",
    then "c" runs classify(1) and pooled(1), then "d" the same, then "d" again (the
    label did not change: no pre-arm after it).  Truth: "a" is
    classify(1) in a fresh process, "p" pooled(1) alone, recorded first."""
    from tests.exactness import measured_only

    runtime = _labelled_session(receiver)
    measurement = runtime.measurement
    counts = _rearm_counter(runtime)
    prearmed: list[int] = []
    original_prearm = measurement.prearm

    def counting_prearm(*args: Any) -> int:
        done = original_prearm(*args)
        prearmed.append(done)
        return done

    measurement.prearm = counting_prearm  # type: ignore[method-assign]

    invocation(runtime, lambda: measured_only.pooled(1), "p")
    invocation(runtime, lambda: measured_only.classify(1), "a")
    invocation(runtime, lambda: measured_only.classify(1), "b")
    before_thread = list(prearmed)
    worker = threading.Thread(target=lambda: (measured_only.classify(1), measured_only.pooled(1)))
    worker.start()
    worker.join()
    switches_before_c = len(counts)
    invocation(runtime, lambda: (measured_only.classify(1), measured_only.pooled(1)), "c")
    rearmed_at_c = counts[switches_before_c:]
    invocation(runtime, lambda: (measured_only.classify(1), measured_only.pooled(1)), "d")
    invocation(runtime, lambda: measured_only.classify(1), "d")  # the same: no pre-arm after
    # "d" ran classify again (something to re-arm), but a pre-arm meant for the
    # switch from "c" comes late (that switch came first): it does nothing.
    stale = original_prearm("c")
    return {
        "stale_prearm": stale,
        "receiving": measurement.receiving,
        "prearmed_before_thread": before_thread,
        "prearmed": prearmed,
        "rearmed_at_c": rearmed_at_c,
        "switches": counts,
        "labels": _by_label(measurement, ["p", "a", "b", "c", "d"]),
    }


def prearm_held_while_the_next_event_comes(receiver: str = "recorder") -> dict[str, Any]:
    """The environment is frozen mid-pre-arm and thaws with the next event: the
    switch waits on the measurement lock until the pre-arm is done, and the next
    label records exactly (held at the pause point ``prearm``, under the lock)."""
    import os

    from coverage_runtime.shim import pause_points
    from tests.exactness import measured_only

    pauses = tempfile.mkdtemp()
    pause_points._directory = pauses
    pause_points._points = {"prearm"}
    runtime = _labelled_session(receiver)
    measurement = runtime.measurement
    counts = _rearm_counter(runtime)
    invocation(runtime, lambda: measured_only.pooled(1), "p")  # (init -> p: no pre-arm)
    runtime.invocation_arrived(client_context=json.dumps({"custom": {"coverage-label": "b"}}))
    measured_only.classify(1)
    runtime.between_invocations()  # labels changing: the shipping thread pre-arms
    reached = os.path.join(pauses, "prearm.reached")
    deadline = time.monotonic() + 20
    while not os.path.exists(reached) and time.monotonic() < deadline:
        time.sleep(0.001)
    arrived = threading.Event()

    def next_event() -> None:  # the thaw: the next event, on the main thread
        runtime.invocation_arrived(client_context=json.dumps({"custom": {"coverage-label": "c"}}))
        arrived.set()

    main = threading.Thread(target=next_event)
    main.start()
    waited = not arrived.wait(0.2)  # the switch waits for the pre-arm's lock
    open(os.path.join(pauses, "prearm.go"), "w").close()
    main.join()
    measured_only.classify(1)
    measured_only.pooled(1)
    runtime.between_invocations()
    shipper_idle(runtime)
    return {
        "reached": os.path.exists(reached),
        "switch_waited": waited,
        "switches": counts,
        "labels": _by_label(measurement, ["p", "b", "c"]),
    }


def retire_after_a_prearm(receiver: str = "recorder") -> dict[str, Any]:
    """The maintenance pass after a pre-arm: what fired under the label (every
    location of ``pooled``) must not retire a code object the pre-arm re-armed, or
    the next switch, which re-arms only what recorded since, would leave it
    without events under the next label."""
    from tests.exactness import measured_only

    runtime = _labelled_session(receiver)
    measurement = runtime.measurement

    def both() -> None:
        measured_only.pooled(1)
        measured_only.pooled(0)

    invocation(runtime, both, "a")  # (init -> a: no pre-arm)
    invocation(runtime, both, "b")  # (a -> b: pre-armed after it)
    retired = measurement.maintain()
    retiring = measurement._receiver()  # (the recorder, or the gate)
    pooled_retired = id(measured_only.pooled.__code__) in retiring._retired
    invocation(runtime, both, "c")
    return {
        "receiving": measurement.receiving,
        "retired": retired,
        "pooled_retired": pooled_retired,
        "labels": _by_label(measurement, ["a", "b", "c"]),
    }


def retire_in_small_steps() -> dict[str, Any]:
    """The maintenance pass in steps of one event and one code object, as the
    shipping thread's share of an invocation cuts it: a code object's run of
    events split between two steps still counts whole, and a pass stopped at
    its first turn (other work asked) leaves the rest to the next.  Functions whose every
    location fired retire; a module's or a class's body never does (it runs
    once).  Then a reload (new code objects: after the hand-over without
    labels, so the gate's pass decides) the same."""
    import importlib

    init_recorder.RETIRE_SLICE = 1
    init_recorder.RETIRE_CODES = 1
    runtime = session(branch=branches())
    measurement = runtime.measurement
    tool = measurement._recorder.tool
    from tests.exactness import bodies

    def run() -> None:
        bodies.double(1)
        bodies.Square().area(2)

    def armed() -> dict[str, bool]:
        codes = (bodies.BODY, bodies.Square.body, bodies.double.__code__,
                 bodies.Square.area.__code__)  # fmt: skip
        get_local = sys.monitoring.get_local_events  # type: ignore[attr-defined]
        return {code.co_name: get_local(tool, code) != 0 for code in codes}

    def passes() -> dict[str, Any]:
        cut = measurement.maintain(stop=lambda: True)  # (ended at its first turn)
        return {"cut": cut, "armed_after_cut": armed(), "retired": measurement.maintain(),
                "armed": armed()}  # fmt: skip

    invocation(runtime, run)
    first = passes()
    measurement.snapshot()  # (without labels: the hand-over)
    invocation(runtime, lambda: importlib.reload(bodies))
    invocation(runtime, run)
    second = passes()
    data = measurement.data()
    return {
        "receiving": measurement.receiving,
        "first": first,
        "second": second,
        "lines": sorted(data.lines(bodies.__file__) or ()),
    }


def retire_goes_on_after_stops() -> dict[str, Any]:
    """Maintenance passes each stopped at their first turn (other work asked
    every time: frozen, a checkpoint or a pre-arm after each response) still
    get through the code objects to look at, a step a pass.  Before, a pass
    stopped while looking put every code object back, and the next looked at
    the same first ones again: nothing was ever retired."""
    init_recorder.RETIRE_CODES = 2  # (a turn after each code object looked at)
    runtime = session(branch=branches())
    measurement = runtime.measurement
    tool = measurement._recorder.tool
    from tests.exactness import bodies

    invocation(runtime, lambda: (bodies.double(1), bodies.Square().area(2)))
    codes = (bodies.double.__code__, bodies.Square.area.__code__)
    get_local = sys.monitoring.get_local_events  # type: ignore[attr-defined]
    retired = [measurement.maintain(stop=lambda: True) for _ in range(40)]
    return {
        "receiving": measurement.receiving,
        "retired": sum(retired),
        "armed": {code.co_name: get_local(tool, code) != 0 for code in codes},
    }


def reset_beside_a_maintenance_pass() -> dict[str, Any]:
    """(``--labels``) Maintenance passes on the shipping thread during a reset,
    after its drain: one just before the recorder forgets what fired
    (`InitRecorder.forget_fired`), one just after the gate re-armed what
    coverage.py traces (`SysmonGate.forget`).  A pass takes none of the locks
    the reset holds and waits for none of its work after the drain.
    ``pooled`` fired every location before the reset (the reset's drain
    scanned it: it waits to be looked at), so a pass that still reads what
    fired before the reset retires it; run after the reset, it must be
    measured.  (Before, the gate re-armed first and the recorder forgot its
    retirement after: a pass in between left it disarmed for good.)"""
    from tests.exactness import measured_only

    runtime = session()
    measurement = runtime.measurement
    recorder = measurement._recorder
    invocation(runtime, lambda: measured_only.pooled(1) + measured_only.pooled(0))
    measurement.snapshot()  # (coverage.py built, fed)
    invocation(runtime, lambda: measured_only.pooled(1) + measured_only.pooled(0))
    gate = measurement._gate
    passes: dict[str, int] = {}

    def with_a_pass(when: str, original: Any) -> Any:
        def call() -> None:
            if when == "after_the_gate_re_armed":
                original()
            # The shipping thread's pass at this moment (made deterministic: it
            # takes none of the locks the reset holds).
            worker = threading.Thread(target=lambda: passes.update({when: recorder.retire()}))
            worker.start()
            worker.join()
            if when != "after_the_gate_re_armed":
                original()

        return call

    recorder.forget_fired = with_a_pass("before_forget_fired", recorder.forget_fired)  # type: ignore[method-assign]
    gate.forget = with_a_pass("after_the_gate_re_armed", gate.forget)  # type: ignore[method-assign]
    runtime.reset()
    invocation(runtime, lambda: measured_only.pooled(1) + measured_only.pooled(0))
    get_local = sys.monitoring.get_local_events  # type: ignore[attr-defined]
    code = measured_only.pooled.__code__
    lines = measurement.data().lines(measured_only.__file__) or ()
    first = code.co_firstlineno
    return {
        "passes": passes,
        "pooled_armed": get_local(recorder.tool, code) != 0,
        "pooled_lines": sorted(line - first for line in lines if first < line <= first + 3),
    }


def maintenance_gives_way() -> dict[str, Any]:
    """A checkpoint asked while the shipping thread runs a maintenance pass: the
    pass stops at its next turn, the checkpoint goes first, then the pass is
    asked again and goes on (frozen, a pass at 8,000 modules spans hundreds of
    invocations at its share)."""
    from tests.exactness import measured_only

    runtime = session()
    measurement = runtime.measurement
    shipper = runtime._shipper
    original = measurement.maintain
    calls: list[dict[str, Any]] = []

    def maintain(stop: Any) -> int:
        if not calls:
            shipper.request_checkpoint()  # (as the runtime does after a response)
        calls.append({"stop_before": stop(), "checkpoint_waiting": shipper._requested})
        calls[-1]["retired"] = original(stop)
        return calls[-1]["retired"]

    measurement.maintain = maintain  # type: ignore[method-assign]
    invocation(runtime, lambda: measured_only.pooled(1) + measured_only.pooled(0))
    shipper.request_maintenance()
    shipper_idle(runtime)
    tool = measurement._recorder.tool
    get_local = sys.monitoring.get_local_events  # type: ignore[attr-defined]
    return {"calls": calls, "pooled_events": get_local(tool, measured_only.pooled.__code__)}


def retired_before_its_start_is_replayed() -> dict[str, Any]:
    """The maintenance pass retires a code object whose every location fired
    while the recorder still holds its first start (coverage.py has not seen
    it: the pass runs before the first snapshot); the snapshot then replays
    that start into coverage.py.  The code object must stay retired: run again
    (same label) it reports nothing.  ``nest(1)`` leaves its outer frame's
    last line (``depth += 1``) as coverage.py's last line of the code object,
    its return having fired in the inner frame: had the replay re-armed it,
    ``nest(0)`` would report its first line again, and with branches coverage.py
    would join the two (an arc that never ran; plain coverage.py:
    `retired_before_its_start_is_replayed_reference`)."""
    from tests.exactness import measured_only

    runtime = session(branch=branches())
    measurement = runtime.measurement
    code = measured_only.nest.__code__
    recorder = measurement._recorder
    tool = recorder.tool
    invocation(runtime, lambda: measured_only.nest(1))
    measurement.maintain()  # (the shipping thread's pass after the first invocation ran too)
    retired = id(code) in recorder._retired
    replayed_before = "coverage" in sys.modules and measurement.gate_kind == "gate"
    measurement.snapshot()  # a checkpoint: coverage.py built, the stream replayed into it
    get_local = sys.monitoring.get_local_events  # type: ignore[attr-defined]
    after_replay = get_local(tool, code)
    invocation(runtime, lambda: measured_only.nest(0))
    after_run = get_local(tool, code)
    return {
        "receiving": measurement.receiving,
        "retired": retired,
        "replayed_before": replayed_before,
        "local_events_after_replay": after_replay,
        "local_events_after_run": after_run,
        **fresh_data(measurement.data()),
    }


def retired_before_its_start_is_replayed_reference() -> dict[str, Any]:
    """The same calls under plain coverage.py."""
    from tests.exactness import measured_only

    def calls() -> None:
        measured_only.nest(1)
        measured_only.nest(0)

    return plain_reference(calls)


# The gate's install with its sys.monitoring replaced by the hooks' ``Monitoring``
# (each hook string below defines its own) for the call.
INSTALL_HOOK = """
def install(gate):
    real = gate._monitoring
    gate._monitoring = Monitoring(gate)
    try:
        original_install(gate)
    finally:
        gate._monitoring = real
"""

HOOKS = """
class Monitoring:
    def __init__(self, gate):
        self._gate = gate
        self.events = sys.monitoring.events

    def register_callback(self, tool, event, callback):
        result = sys.monitoring.register_callback(tool, event, callback)
        if event == self.events.PY_START and callback == self._gate._filter_start:
            seen["ran_inside_install"] = True
            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
        return result
"""


def start_while_the_gate_installs() -> dict[str, Any]:
    """A thread starts new measured code right after the gate's PY_START
    registration (`SysmonGate.install`; a GIL switch there, made deterministic:
    the thread runs inside the registration).  Its start reaches
    `SysmonGate._filter_start` live: coverage.py must arm it (the recorder no
    longer receives PY_START), or the code is never measured, so the gate must
    not take it for a replayed one (``_is_live``, said by `SysmonGate.go_live`
    before the recorder forwards).  Plain coverage.py records ``pooled``'s lines."""
    from coverage_runtime.shim import coverage_adapter
    from tests.exactness import measured_only

    runtime = session(branch=branches())
    measurement = runtime.measurement
    tool = measurement._recorder.tool
    invocation(runtime, lambda: measured_only.classify(1))
    original_install = coverage_adapter.SysmonGate.install
    seen: dict[str, Any] = {}
    # The hooks run on the installing thread inside the hand-over: compiled outside
    # the sources, so that their own events (branches, 3.14) never reach the gate.
    namespace: dict[str, Any] = {
        "sys": sys, "threading": threading, "seen": seen, "original_install": original_install,
        "run": lambda: measured_only.pooled(2),
    }  # fmt: skip
    exec(compile(HOOKS + INSTALL_HOOK, "<hook>", "exec"), namespace)  # (a test's hook, see above)
    coverage_adapter.SysmonGate.install = namespace["install"]  # type: ignore[method-assign]
    try:
        measurement.snapshot()  # the hand-over (no labels)
    finally:
        coverage_adapter.SysmonGate.install = original_install  # type: ignore[method-assign]
    invocation(runtime, lambda: measured_only.pooled(0))
    data = measurement.data()
    return {
        "receiving": measurement.receiving,
        **seen,
        "pooled_local_events": sys.monitoring.get_local_events(  # type: ignore[attr-defined]
            tool, measured_only.pooled.__code__
        ),
        "lines": sorted(data.lines(str(FRESH)) or ()),
    }


FINALISED = HERE / "finalised.py"

FINALISER_HOOKS = """
class Junk:  # (no free list: each one counts towards the threshold)
    pass


def collect_here(where):
    held = Held.__new__(Held)  # (no measured code runs to build it)
    held.me = held
    held.first = True
    held.log = log
    gone = weakref.ref(held)
    del held
    thresholds = gc.get_threshold()
    gc.set_threshold(1)
    try:
        for _ in range(100_000):  # allocations, until a collection (at a back edge) takes it
            if gone() is None:
                break
            junk = Junk()
    finally:
        gc.set_threshold(*thresholds)
    seen[where] = gone() is None


class Monitoring:
    def __init__(self, gate):
        self._gate = gate
        self.events = sys.monitoring.events

    def register_callback(self, tool, event, callback):
        if event == self.events.PY_START and callback == self._gate._filter_start:
            collect_here("collected_inside_install")
        return sys.monitoring.register_callback(tool, event, callback)


def adopt(gate, retired):
    collect_here("collected_before_the_forward")
    original_adopt(gate, retired)


def scan(end):
    if sys._getframe(1).f_code.co_name == "drain" and "collected_inside_drain" not in seen:
        collect_here("collected_inside_drain")
    return original_scan(end)
"""


def _finaliser_hooks(seen: dict[str, Any], log: list[str], **more: Any) -> dict[str, Any]:
    """`FINALISER_HOOKS`, compiled outside the sources: they run on the thread of
    the hand-over or the drain, and only the finaliser's own events may reach
    the tool."""
    import gc
    import weakref

    namespace: dict[str, Any] = {
        "sys": sys, "gc": gc, "weakref": weakref, "seen": seen, "log": log,
        "Held": sys.modules["tests.exactness.finalised"].Held, **more,
    }  # fmt: skip
    exec(compile(FINALISER_HOOKS + INSTALL_HOOK, "<hook>", "exec"), namespace)  # (a test's hook)
    return namespace


def _snapshot_with_a_finaliser(
    measurement: Any, owner: Any, name: str, hook: str
) -> tuple[dict[str, Any], list[str]]:
    """``measurement.snapshot()`` (the hand-over without labels, a drain with them)
    with ``owner.name`` replaced by the hook ``hook`` (`FINALISER_HOOKS`), then put
    back; what the hook saw and the finaliser's log."""
    seen: dict[str, Any] = {}
    log: list[str] = []
    original = getattr(owner, name)
    own = name in vars(owner)  # (a class's method; else an instance's, deleted after)
    setattr(owner, name, _finaliser_hooks(seen, log, **{f"original_{hook}": original})[hook])
    try:
        measurement.snapshot()
    finally:
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)
    return seen, log


def finaliser_during_the_install() -> dict[str, Any]:
    """An automatic collection of the cyclic GC runs a finaliser in measured
    code (its first run: PY_START, LINE, a branch) on the hand-over's own
    thread inside `SysmonGate.install`, after the gate's location callbacks
    are registered and before its PY_START is: a collection run by any
    allocation there, made deterministic (a young cycle, the threshold at 1,
    allocations until it is collected, inside the last registration).  Its
    lines and arcs must be what plain coverage.py records
    (`finaliser_during_the_install_reference`), and the hand-over must not
    give up."""
    import importlib

    from coverage_runtime.shim import coverage_adapter

    runtime = session(branch=branches())
    measurement = runtime.measurement
    invocation(runtime, lambda: importlib.import_module("tests.exactness.finalised"))
    gate = coverage_adapter.SysmonGate
    seen, log = _snapshot_with_a_finaliser(measurement, gate, "install", "install")
    return {
        "receiving": measurement.receiving,
        "gate": measurement.gate_kind,
        **seen,
        "log": log,
        **fresh_data(measurement.data(), FINALISED),
    }


def collect_a_held_cycle() -> None:
    """(Plain coverage.py's references) `finalised` imported, and one ``Held`` in a
    cycle collected: its finaliser runs once, down its first path."""
    import gc

    from tests.exactness import finalised

    held = finalised.Held.__new__(finalised.Held)
    held.me = held  # type: ignore[attr-defined]
    held.first = True  # type: ignore[attr-defined]
    held.log = []  # type: ignore[attr-defined]
    del held
    gc.collect()


def finaliser_during_the_install_reference() -> dict[str, Any]:
    """The same code under plain coverage.py: the import, and the finaliser run once."""
    return plain_reference(collect_a_held_cycle, FINALISED)


def omitted_finaliser_before_the_forward() -> dict[str, Any]:
    """The same finaliser in a file the recorder arms and coverage.py does not
    trace (omitted), run by a collection on the hand-over's thread after its
    first check of what coverage.py traces and before the recorder forwards
    (`SysmonGate.adopt`).  Its start is replayed after the forward: the
    second check must disarm it, or, run again down its other branch, its
    events reach coverage.py's callbacks for a code object coverage.py does
    not trace (with branches its branch callback fails inside the finaliser)."""
    import gc

    from coverage_runtime.shim import coverage_adapter

    # Imported before the recorder starts: the finaliser's start is the first of its
    # file the recorder sees (the module's own start would have had the first check
    # disarm the file).
    from tests.exactness import finalised

    runtime = session(branch=branches(), COVERAGE_EXCLUDE_PATTERNS="*/finalised.py")
    measurement = runtime.measurement
    tool = measurement._recorder.tool

    gate = coverage_adapter.SysmonGate
    seen, log = _snapshot_with_a_finaliser(measurement, gate, "adopt", "adopt")

    def again() -> None:
        held = finalised.Held.__new__(finalised.Held)
        held.me = held  # type: ignore[attr-defined]
        held.first = False  # (its other branch: locations the first run left armed)
        held.log = log  # type: ignore[attr-defined]
        del held
        gc.collect()

    invocation(runtime, again)
    get_local = sys.monitoring.get_local_events  # type: ignore[attr-defined]
    return {
        "receiving": measurement.receiving,
        **seen,
        "log": log,
        "local_events": get_local(tool, finalised.Held.__del__.__code__),
        **fresh_data(measurement.data(), FINALISED),
    }


def finaliser_during_a_drain() -> dict[str, Any]:
    """(``--labels``) The same finaliser, run by a collection on the draining
    thread inside `InitRecorder.drain`, after its last replay and before it
    checks the code objects armed since the last drain (`_replay_and_check`):
    its start is recorded, not replayed yet, so coverage.py does not know the
    code.  Then ``later``, new code of the same file, runs.  Both must be what
    plain coverage.py records (`finaliser_during_a_drain_reference`).  (Before,
    the finaliser's code passed for untraced and its file was armed no more:
    ``later`` was never measured.)"""
    import importlib

    runtime = session(branch=branches())
    measurement = runtime.measurement
    invocation(runtime, lambda: importlib.import_module("tests.exactness.finalised"))
    from tests.exactness import finalised

    recorder = measurement._recorder
    seen, log = _snapshot_with_a_finaliser(measurement, recorder, "_scan", "scan")  # a drain
    invocation(runtime, lambda: finalised.later(1))
    return {
        "receiving": measurement.receiving,
        **seen,
        "log": log,
        "file_armed": recorder._files.get(finalised.later.__code__.co_filename),
        **fresh_data(measurement.data(), FINALISED),
    }


def finaliser_during_a_drain_reference() -> dict[str, Any]:
    """The same code under plain coverage.py."""

    def calls() -> None:
        collect_a_held_cycle()
        from tests.exactness import finalised

        finalised.later(1)

    return plain_reference(calls, FINALISED)


# Code compiled at run time under names in the source directory (no such files): the
# first is omitted (`_omitted_session`), so the recorder arms it and coverage.py does not
# trace it; the second is measured.  The two ``probe``s are the same bytecode on other
# lines: code objects of one size.
OMITTED = HERE / "omitted_generated.py"
OMITTED_SOURCE = "def probe(x):\n    if x: return 1\n    return 2\ndef other():\n    return 0\n"
GENERATED = HERE / "measured_generated.py"
GENERATED_SOURCE = "def probe(x):\n    if x:\n        return 1\n    return 2\n"


def _omitted_session() -> Any:
    """Labels changing per invocation (client context); `OMITTED` omitted."""
    return session(
        branch=branches(),
        COVERAGE_LABELS="client-context",
        COVERAGE_EXCLUDE_PATTERNS=f"*/{OMITTED.name}",
    )


def _generated_probe() -> Any:
    """`GENERATED`'s ``probe`` code object (its module never runs)."""
    module = compile(GENERATED_SOURCE, str(GENERATED), "exec")
    return next(c for c in module.co_consts if getattr(c, "co_name", None) == "probe")


def _run_omitted(namespace: dict[str, Any]) -> None:
    """`OMITTED`'s code, compiled and run: ``probe`` half (its ``return 2`` not), then
    ``other``, the last of its file to start (the replay's note of the file,
    ``_fed_files``, holds that one, not ``probe``)."""
    exec(compile(OMITTED_SOURCE, str(OMITTED), "exec"), namespace)
    namespace["probe"](1)
    namespace["other"]()


def untraced_code_stays_disarmed() -> dict[str, Any]:
    """(labels) Omitted code the recorder armed (its superset) ran under "a", and
    the drain disarmed it (coverage.py does not trace it).  The switches and
    pre-arms after must leave it disarmed while it runs under every label, and
    each label still gets the measured code it ran.  (Before: the recorder's
    ``_ran`` kept it, so the next pre-arm armed it again, and it recorded its
    first hits under every label from then on, for nothing.)"""
    from tests.exactness import measured_only

    runtime = _omitted_session()
    measurement = runtime.measurement
    recorder = measurement._recorder
    namespace: dict[str, Any] = {}

    def first() -> None:
        _run_omitted(namespace)
        measured_only.pooled(1)

    invocation(runtime, first, "a")
    measurement.data()  # the drain: disarmed
    probe = namespace["probe"]
    get_local = sys.monitoring.get_local_events  # type: ignore[attr-defined]
    armed = []
    labels = ["b", "c", "d", "e"]
    for label in labels:
        invocation(runtime, lambda: (probe(1), measured_only.pooled(1)), label)
        armed.append(get_local(recorder.tool, probe.__code__))
        measurement.data()
    return {
        "receiving": measurement.receiving,
        "armed": armed,
        "labels": _by_label(measurement, labels),
    }


def disarmed_code_keeps_its_id() -> dict[str, Any]:
    """(labels) The recorder keys what fired by ``id(code)`` (`init_recorder.Expected`,
    ``_fired``, ``_cut``) and holds no reference to code the drain disarmed as
    untraced.  Omitted code ran half under "a" (a maintenance pass noted its
    lines), was disarmed, and every other reference to it is dropped; then new
    measured code of its size is made until it takes its id or a bound is
    reached, and run half, a pass, then whole.  The old id must still name the
    old code object (coverage.py's monitor keeps each code object it saw
    start), and the new code be recorded as plain coverage.py records it.  (With
    coverage.py's list of code objects made to keep nothing and its note of the
    old one dropped, the new code took the id at its first try, the pass retired
    it by the old code's lines, and its ``return 2`` was lost: lines [2, 3].)"""
    import gc
    import types
    import weakref

    runtime = _omitted_session()
    measurement = runtime.measurement
    recorder = measurement._recorder
    template = _generated_probe()  # (before: the loop below makes code objects only)
    namespace: dict[str, Any] = {}
    invocation(runtime, lambda: _run_omitted(namespace), "a")
    old = namespace["probe"].__code__
    key, size, alive = id(old), sys.getsizeof(old), weakref.ref(old)
    measurement.maintain()  # what fired of it: not all (`Expected` notes its lines)
    measurement.data()  # the drain: disarmed
    invocation(runtime, lambda: None, "b")  # (the switch: what fired is forgotten)
    measurement.maintain()
    del old
    namespace.clear()
    gc.collect()
    expected = recorder._expected
    named = key in expected._whole or key in expected._lines
    made = []
    for _ in range(1000):
        code = template.replace(co_name="probe")
        if id(code) == key:
            break
        made.append(code)
    probe = types.FunctionType(code, {})
    invocation(runtime, lambda: probe(1), "b")
    measurement.maintain()
    invocation(runtime, lambda: probe(0), "b")
    return {
        "receiving": measurement.receiving,
        "named": named,
        "alive": alive() is not None,
        "reused": id(code) == key,
        "sizes": [size, sys.getsizeof(code)],
        **fresh_data(measurement.data(), GENERATED),
    }


def disarmed_code_keeps_its_id_reference() -> dict[str, Any]:
    """The new code's calls under plain coverage.py."""

    def calls() -> None:
        import types

        probe = types.FunctionType(_generated_probe(), {})
        probe(1)
        probe(0)

    return plain_reference(calls, GENERATED)


def drain_during_exit_finish() -> dict[str, Any]:
    """(``--labels``) The shipping thread's drain (a checkpoint's `materialize`)
    replays a start into the fed gate while the shutdown at exit
    (`Measurement.finish` without a deadline: no `InitRecorder.close`) stops
    coverage.py: `SysmonGate._replayed_start` has ``sysmon_on`` off, so
    ``SysMonitor.stop`` takes it for "not started" and neither clears the
    tool's events nor frees the tool id; the replay then sets ``sysmon_on``
    back on a stopped monitor.  Hooks (no sleeps): the drain held at its
    catch-up's turn, then inside ``should_trace`` of the late start."""
    from tests.exactness import measured_only

    runtime = session(branch=branches())
    measurement = runtime.measurement
    invocation(runtime, lambda: measured_only.classify(1))
    measurement.materialize()  # coverage.py built and fed
    gate = measurement._gate
    tracer = gate._tracer
    recorder = measurement._recorder
    tool = recorder.tool
    invocation(runtime, lambda: list(measured_only.gen_measured(3)))  # events to replay
    held, go, inside, release = (threading.Event() for _ in range(4))
    drainer: list[threading.Thread] = []

    class Pacing:
        @staticmethod
        def turn() -> None:
            if drainer and threading.current_thread() is drainer[0] and not go.is_set():
                held.set()
                go.wait(10)

    original_should_trace = tracer.should_trace
    seen: dict[str, Any] = {}

    def should_trace(filename: str, frame: Any) -> Any:
        if filename.endswith("late_start.py"):
            seen["sysmon_on_in_replay"] = tracer.sysmon_on
            inside.set()
            release.wait(10)
        return original_should_trace(filename, frame)

    original_take = gate.take_labelled
    taken: list[int] = []

    def take_labelled() -> Any:
        if not taken:  # `finish`'s, after its own drain, before `gate.stop()`
            taken.append(1)
            from tests.exactness import late_start  # noqa: F401 - a START after that drain

            go.set()
            inside.wait(10)
        return original_take()

    saved_pacing, saved_slice = init_recorder.pacing, init_recorder.REPLAY_SLICE
    init_recorder.pacing = Pacing  # type: ignore[assignment]
    init_recorder.REPLAY_SLICE = 2
    tracer.should_trace = should_trace
    gate.take_labelled = take_labelled
    try:

        def drain() -> None:
            try:
                measurement.materialize()
            finally:
                inside.set()  # (a fix may have the drain replay nothing: no wait then)

        thread = threading.Thread(target=drain)
        drainer.append(thread)
        thread.start()
        held.wait(10)
        measurement.finish(None)  # (the shutdown at a normal exit)
        seen["tool_after_finish"] = sys.monitoring.get_tool(tool)  # type: ignore[attr-defined]
        release.set()
        thread.join(10)
    finally:
        init_recorder.pacing, init_recorder.REPLAY_SLICE = saved_pacing, saved_slice
    return {
        "receiving": measurement.receiving,
        **seen,
        "sysmon_on_after": tracer.sysmon_on,
        "tool_after": sys.monitoring.get_tool(tool),  # type: ignore[attr-defined]
        "started_after": measurement.cov._started,
    }


def first_hits_during_a_reset() -> dict[str, Any]:
    """(labels) A background thread runs new measured code while `Measurement.reset`
    is between its drain and `InitRecorder.forget_fired` (here: as the gate's
    ``forget`` begins).  Its first hits disabled their locations and noted the code
    object in the recorder's ``_ran``; coverage.py had not seen it start, so the
    gate's ``forget`` did not re-arm it, and ``forget_fired`` then dropped it from
    ``_ran``: the next switch (pre-armed: per code object) re-arms nothing, and
    ``pooled(1)`` under "c" reports nothing.  Truth: "c" holds its lines."""
    from coverage_runtime.shim import coverage_adapter
    from tests.exactness import measured_only

    runtime = _labelled_session("recorder")
    measurement = runtime.measurement
    invocation(runtime, lambda: measured_only.classify(1), "a")
    invocation(runtime, lambda: measured_only.classify(1), "b")  # (pre-armed after it)
    original_forget = coverage_adapter.SysmonGate.forget

    def forget(gate: Any) -> None:
        thread = threading.Thread(target=lambda: measured_only.pooled(1))
        thread.start()
        thread.join()
        original_forget(gate)

    coverage_adapter.SysmonGate.forget = forget  # type: ignore[method-assign]
    try:
        measurement.reset()
    finally:
        coverage_adapter.SysmonGate.forget = original_forget  # type: ignore[method-assign]
    invocation(runtime, lambda: measured_only.pooled(1), "c")
    return {"receiving": measurement.receiving, "labels": _by_label(measurement, ["b", "c"])}


CASES = {
    f.__name__: f
    for f in (
        paused_code,
        paused_code_muted_at_once,
        paused_batch_first,
        resume_before_the_mute,
        hand_over_during_a_first_hit,
        switch_during_a_first_hit,
        reset_re_arms_what_was_recorded,
        deferred_hand_over,
        long_stream_hands_over_at_once,
        labels_bound_the_stream,
        label_switches_choose_the_cheaper_rearming,
        data_asked_during_the_hand_over,
        concurrent_event,
        internals_changed,
        other_tool_untouched,
        replay_while_running,
        replay_while_running_reference,
        close_during_catch_up,
        measured_code_during_the_switch,
        hand_over_fails,
        prearm_then_a_background_thread,
        prearm_held_while_the_next_event_comes,
        retire_after_a_prearm,
        retire_in_small_steps,
        maintenance_gives_way,
        retire_goes_on_after_stops,
        reset_beside_a_maintenance_pass,
        retired_before_its_start_is_replayed,
        retired_before_its_start_is_replayed_reference,
        start_while_the_gate_installs,
        finaliser_during_the_install,
        finaliser_during_the_install_reference,
        omitted_finaliser_before_the_forward,
        finaliser_during_a_drain,
        finaliser_during_a_drain_reference,
        drain_during_exit_finish,
        first_hits_during_a_reset,
        untraced_code_stays_disarmed,
        disarmed_code_keeps_its_id,
        disarmed_code_keeps_its_id_reference,
    )
}

if __name__ == "__main__":
    if "--labels" in sys.argv[2:]:
        LABELS = {}
    arguments = [a for a in sys.argv[2:] if not a.startswith("--")]
    print(json.dumps(CASES[sys.argv[1]](*arguments)))
