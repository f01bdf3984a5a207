"""Where an early shutdown of a large function goes, step by step, in one process (issue 18).

    python bench/shutdown_profile.py --size 2000 --branch            # the shim
    python bench/shutdown_profile.py --size 2000 --branch --plain    # plain coverage.py
    python bench/shutdown_profile.py --size 2000 --branch --off      # no coverage
    python bench/shutdown_profile.py --size 2000 --branch --profile  # + cProfile split
    python bench/shutdown_profile.py --size 2000 --branch --gil      # + GIL wake delays

The function is `tests/synthetic_function` with ``--size`` modules, written
under ``--root`` (kept between runs).  Each run is one fresh process: the
handler's import (the init), one invocation, then what an environment shut
down right after its first response does before the upload:

* the shim: building coverage.py, replaying the recorded init into it
  (``materialize``), ``finish`` (taking what the gate holds, stopping), the
  snapshot (the tally, coverage.py's SQLite write, reading the bytes back);
* plain coverage.py (``--plain``): ``Coverage(...).start()`` before the
  import, then ``stop()`` and ``save()`` (its SQLite write) and the read;
  with ``--growth 10`` after ten invocations instead of one (the function's
  whole coverage: what a shutdown after growth with nothing shipped before
  would have to write);
* ``--off``: the import and the invocation alone.

So (shim's init + shutdown) against (plain's init + save) says what of the
shutdown is ours and what is coverage.py's own cost of the same data.
``--profile`` adds cProfile's split of the replay and the snapshot by
module: coverage.py's callbacks and data layer, ours, SQLite.  ``--gil``
adds how late a thread that waits with a timeout (as the shutdown's deadline
is waited on) wakes while the shutdown runs: the longest GIL hold of one C
step, which sizes `session.RECORD_MARGIN_SECONDS`.  Prints one
JSON document; `bench/README.md` has the figures.  Run it with the
function's Python, e.g. in the image with the checkout mounted:
``podman run --rm --network=host -v $PWD:/src:ro -w /src --entrypoint python IMAGE
bench/shutdown_profile.py --root /tmp/sizes ...``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

clock = time.perf_counter


def timed(steps: dict[str, float], name: str, call: Callable[[], Any]) -> Any:
    mark = clock()
    result = call()
    steps[name] = steps.get(name, 0.0) + clock() - mark
    return result


def by_module(profile: Any) -> dict[str, float]:
    """cProfile's own time (tottime) summed by where the code lives."""
    import pstats

    totals: dict[str, float] = {}
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (filename, _, name), (_, _, tottime, _, _) in stats.items():
        if "coverage_runtime" in filename:
            where = "ours: " + os.path.basename(filename)
        elif f"{os.sep}coverage{os.sep}" in filename:
            where = "coverage.py: " + os.path.basename(filename)
        elif filename == "~":
            where = "C: " + name.split(" of ")[0].strip("<>{}")[:60]
        else:
            where = "other: " + os.path.basename(filename)
        totals[where] = totals.get(where, 0.0) + tottime
    top = sorted(totals.items(), key=lambda item: -item[1])[:16]
    return {where: round(seconds * 1000, 1) for where, seconds in top}


def shim(args: argparse.Namespace, data_file: str, result: dict[str, Any]) -> None:
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim.measurement import Measurement

    init: dict[str, float] = {}
    measurement = timed(
        init, "Measurement()", lambda: Measurement(load_settings(os.environ), data_file)
    )
    timed(init, "start", measurement.begin)
    handler = timed(init, "import the handler", lambda: importlib.import_module("handler"))
    if args.switch:
        from coverage_runtime.shim import labels

        measurement.switch_label(labels.UNLABELLED)  # as the runtime does at an invocation
    timed(init, "first invocation", lambda: handler.handler({"k": 0}, None))
    recorder = measurement._recorder
    recorded = list(recorder.events) if recorder is not None else []
    result["recorded_events"] = len(recorded) if recorder is not None else None
    result["init_ms"] = {k: round(v * 1000, 2) for k, v in init.items()}

    steps: dict[str, float] = {}
    build = measurement._build
    measurement._build = lambda r: timed(steps, "build coverage.py", lambda: build(r))
    write = measurement._write_outbox
    measurement._write_outbox = lambda o, **kw: timed(steps, "SQLite write", lambda: write(o, **kw))
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    probe = WakeProbe() if args.gil else None
    spans: dict[str, tuple[float, float]] = {}

    def step(name: str, call: Callable[[], Any]) -> Any:
        start = clock()
        try:
            return timed(steps, name, call)
        finally:
            spans[name] = (start, clock())

    if args.gc_off or args.deadline_ms is not None:
        import gc

        # As `CoverageSession.shutdown` does at SIGTERM: with the GC on, the shutdown's
        # plan at 8,000 modules took 436 ms where it takes 178 ms (bench/README.md).
        gc.disable()
    if probe is not None:
        probe.__enter__()
    mark = clock()
    if args.deadline_ms is not None:
        # The shutdown's own path: the replay file by file under its budget.
        deadline = time.monotonic() + args.deadline_ms / 1000
        step("finish (build, replay within the budget, stop)", lambda: measurement.finish(deadline))
        outcome = measurement.replay_outcome
        result["replay_outcome"] = outcome.as_fields() if outcome is not None else None
    else:
        step("materialize (build + replay)", measurement.materialize)
        step("finish (take, stop)", measurement.finish)
    snapshot = step("snapshot (tally + write + read)", measurement.snapshot)
    total = clock() - mark
    if probe is not None:
        probe.__exit__()
        result["gil"] = probe.summary(spans)
    if profile is not None:
        profile.disable()
        result["profile_tottime_ms"] = by_module(profile)
    if args.deadline_ms is None:
        steps["replay"] = steps["materialize (build + replay)"] - steps.get("build coverage.py", 0)
    steps["snapshot minus the write"] = (
        steps["snapshot (tally + write + read)"] - steps["SQLite write"]
    )
    result["shutdown_ms"] = {k: round(v * 1000, 2) for k, v in steps.items()}
    result["shutdown_total_ms"] = round(total * 1000, 2)
    result["bytes"] = len(snapshot.body)
    result["lines"], result["arcs"] = snapshot.lines, snapshot.arcs
    if recorded and args.deadline_ms is None:
        result["replay_again_ms"] = replay_split(measurement, recorded)


class WakeProbe:
    """A thread that waits with a timeout in a loop, as `uploader.call_before`
    waits for the shutdown's deadline, and notes how late each wait returns:
    the thread needs the GIL back, and a C step (tokenizing, SQLite, a set over
    a million items, a garbage collection) does not give it up until it ends,
    whatever `sys.setswitchinterval` says."""

    TICK = 0.001
    NOTED = 0.015  # later wakes are noted with the line that held the GIL

    def __init__(self) -> None:
        import threading

        self.late: list[tuple[float, float]] = []  # (when, how late), seconds
        self.collections: list[tuple[int, float]] = []  # (generation, seconds)
        self.noted: list[tuple[float, str]] = []  # (ms late, the main thread's lines)
        self._collecting = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._collecting = clock()
        else:
            self.collections.append((info["generation"], clock() - self._collecting))

    def _run(self) -> None:
        import threading

        never = threading.Lock()
        never.acquire()
        main = threading.main_thread().ident
        while not self._stop.is_set():
            mark = clock()
            never.acquire(timeout=self.TICK)
            late = clock() - mark - self.TICK
            self.late.append((mark, late))
            if late > self.NOTED:
                # The main thread's line: the one whose C call just gave the GIL back.
                frame = sys._current_frames().get(main)
                where = []
                while frame is not None and len(where) < 3:
                    code = frame.f_code
                    where.append(f"{os.path.basename(code.co_filename)}:{frame.f_lineno}")
                    frame = frame.f_back
                self.noted.append((round(late * 1000, 1), " < ".join(where)))

    def __enter__(self) -> WakeProbe:
        import gc

        gc.callbacks.append(self._gc)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        self._stop.set()
        self._thread.join()
        gc.callbacks.remove(self._gc)

    def summary(self, steps: dict[str, tuple[float, float]]) -> dict[str, Any]:
        """The latest wakes (ms), the worst in each step."""
        late = sorted(seconds for _, seconds in self.late)
        worst: dict[str, float] = {}
        for when, seconds in self.late:
            for name, (start, end) in steps.items():
                if start <= when < end:
                    worst[name] = max(worst.get(name, 0.0), seconds)
        return {
            "waits": len(late),
            "late_max_ms": round(late[-1] * 1000, 2) if late else None,
            "late_p99_ms": round(late[int(len(late) * 0.99)] * 1000, 2) if late else None,
            "late_max_ms_by_step": {k: round(v * 1000, 2) for k, v in worst.items()},
            "late_wakes_noted": sorted(self.noted, reverse=True)[:8],
            "gc_max_ms_by_generation": {
                generation: round(max(s for g, s in self.collections if g == generation) * 1000, 2)
                for generation in sorted({g for g, _ in self.collections})
            },
        }


class Receiver:
    """Takes replayed events: coverage.py's own callbacks (``callbacks``), or none."""

    paused = False

    def __init__(self, callbacks: dict[int, Callable[..., Any]], traced: Any) -> None:
        self._callbacks = callbacks
        self.traced = traced

    def callbacks(self) -> dict[int, Callable[..., Any]]:
        return self._callbacks

    def cut(self, code: Any) -> None:
        pass

    def relabel(self, label: str) -> None:
        pass


def replay_split(measurement: Any, events: list[Any]) -> dict[str, float]:
    """The same events replayed again, once coverage.py knows every code object
    (so its first-sight work -- should_trace, tokenizing each file for the branch
    resolver -- is not counted): into callbacks that do nothing (our loop), into
    coverage.py's own callbacks, and into the gate's (ours around them).  The
    differences split a replay's per-event cost into ours and coverage.py's."""
    from coverage_runtime.shim import coverage_adapter, init_recorder

    gate = measurement._gate
    tracer = coverage_adapter.collector(measurement.cov).tracers[0]
    originals = coverage_adapter._tracer_callbacks(tracer)
    gated = dict(gate.callbacks())
    own = {kind: originals[event] for kind, event in gate_events(gated, gate).items()}
    # The same PY_START for both: on a second pass the gate's would treat every code
    # object as a first call under a new label, which a first replay never does.
    own[init_recorder.START] = gated[init_recorder.START] = tracer.sysmon_py_start

    def nothing(*args: Any) -> None:
        return None

    receivers = {
        "our loop alone (callbacks do nothing)": Receiver(
            dict.fromkeys(gated, nothing), gate.traced
        ),
        "coverage.py's callbacks": Receiver(own, gate.traced),
        "the gate's callbacks (ours around coverage.py's)": Receiver(gated, gate.traced),
    }
    gate.paused = False
    split: dict[str, float] = {}

    def replay(receiver: Receiver) -> float:
        recorder = init_recorder.InitRecorder(["/nowhere"])
        recorder.events = events
        mark = clock()
        recorder._replay(receiver, len(events))  # type: ignore[arg-type]
        return clock() - mark

    # A first pass refills the live sets the snapshot drained, so that every
    # measured pass finds the same state; then the best of three of each, interleaved.
    replay(receivers["coverage.py's callbacks"])
    for _ in range(3):
        for name, receiver in receivers.items():
            seconds = round(replay(receiver) * 1000, 2)
            split[name] = min(split.get(name, seconds), seconds)
    return split


def gate_events(gated: dict[int, Any], gate: Any) -> dict[int, int]:
    """The recorder's event kinds with the sys.monitoring events they stand for."""
    from coverage_runtime.shim import init_recorder

    events = gate._monitoring.events
    kinds = {
        init_recorder.LINE: events.LINE,
        init_recorder.RETURN: events.PY_RETURN,
        init_recorder.BRANCH_LEFT: getattr(events, "BRANCH_LEFT", -1),
        init_recorder.BRANCH_RIGHT: getattr(events, "BRANCH_RIGHT", -1),
    }
    return {kind: event for kind, event in kinds.items() if kind in gated}


def plain(args: argparse.Namespace, data_file: str, result: dict[str, Any]) -> None:
    init: dict[str, float] = {}

    def build() -> Any:
        import coverage

        cov = coverage.Coverage(
            data_file=data_file, source=[args.root], branch=args.branch, config_file=False
        )
        cov.start()
        return cov

    cov = timed(init, "import coverage + Coverage() + start", build)
    handler = timed(init, "import the handler", lambda: importlib.import_module("handler"))
    timed(init, "first invocation", lambda: handler.handler({"k": 0}, None))
    if args.growth > 1:  # (events 0-9 reach all the function's coverage)
        timed(
            init,
            f"invocations 2-{args.growth}",
            lambda: [handler.handler({"k": k}, None) for k in range(1, args.growth)],
        )
    result["init_ms"] = {k: round(v * 1000, 2) for k, v in init.items()}
    if args.gc_off:
        import gc

        gc.disable()  # (as the shim's shutdown at SIGTERM)
    steps: dict[str, float] = {}
    timed(steps, "stop", cov.stop)
    timed(steps, "save (SQLite write)", cov.save)
    body = timed(steps, "read", lambda: Path(data_file).read_bytes())
    result["shutdown_ms"] = {k: round(v * 1000, 2) for k, v in steps.items()}
    result["bytes"] = len(body)


def off(args: argparse.Namespace, result: dict[str, Any]) -> None:
    init: dict[str, float] = {}
    handler = timed(init, "import the handler", lambda: importlib.import_module("handler"))
    timed(init, "first invocation", lambda: handler.handler({"k": 0}, None))
    result["init_ms"] = {k: round(v * 1000, 2) for k, v in init.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--branch", action="store_true")
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "sizes-profile"))
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--plain", action="store_true", help="plain coverage.py instead")
    which.add_argument("--off", action="store_true", help="no coverage")
    parser.add_argument("--profile", action="store_true", help="cProfile the shim's shutdown")
    parser.add_argument(
        "--switch",
        action="store_true",
        help="switch from the init's label to the invocation's, as the runtime does",
    )
    parser.add_argument(
        "--deadline-ms",
        type=float,
        help="the shutdown's path: replay file by file while a deadline this far off lets",
    )
    parser.add_argument(
        "--maps-cache",
        action="store_true",
        help="the multiline maps from a build step first, as the Dockerfile has them",
    )
    parser.add_argument(
        "--gil", action="store_true", help="how late a timed wait wakes during the shutdown"
    )
    parser.add_argument(
        "--growth",
        type=int,
        default=1,
        help="(--plain) this many invocations before the save: 10 reach all the coverage",
    )
    parser.add_argument(
        "--gc-off",
        action="store_true",
        help="no garbage collection in the shutdown's part (as at SIGTERM; with --deadline-ms too)",
    )
    args = parser.parse_args()
    from tests import synthetic_function

    args.root = str(synthetic_function.write(Path(args.root) / str(args.size), args.size))
    data_dir = tempfile.mkdtemp()
    os.environ.update(
        LAMBDA_TASK_ROOT=args.root,
        AWS_LAMBDA_FUNCTION_NAME="profile",
        COVERAGE_DATA_DIR=data_dir,
        COVERAGE_BRANCH=str(args.branch).lower(),
    )
    sys.path.insert(0, args.root)
    if args.maps_cache:
        from coverage_runtime.shim import maps_cache

        maps_cache.build([args.root])
    data_file = os.path.join(data_dir, "profile.coverage")
    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "size": args.size,
        "branch": args.branch,
        "what": "off" if args.off else "plain" if args.plain else "shim",
        "maps_cache": args.maps_cache,
    }
    if args.off:
        off(args, result)
    elif args.plain:
        plain(args, data_file, result)
    else:
        shim(args, data_file, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
