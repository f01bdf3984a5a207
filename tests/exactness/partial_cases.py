"""The shutdown's partial replay (`partial_replay`) against the whole replay.

    python -m tests.exactness.partial_cases full|partial|cut [--labels] [--branch]
        -> one JSON document: each measured file's lines and arcs per context
    python -m tests.exactness.partial_cases --matrix
        -> each cell (labels on/off; branches where sysmon measures them) compared

The same workload runs in each process: synthetic modules imported at "init"
(before coverage.py is built), a checkpoint-like snapshot after the first
invocations (with labels: a drain and its write, so those files are begun and must be
completed; without: a catch-up no write followed, so they may be left out), then more
invocations under other labels calling new functions and importing new
modules (with labels, a drain no write followed between them: those new
files are begun but may be left out).  ``full`` ends with
`Measurement.finish()` (everything replayed);
``partial`` with ``finish(deadline)`` and a budget that admits only
`ADMITTED` new files; ``cut`` with one that runs out in the middle of a file
(its group is dropped).  `tests/test_partial_replay.py` compares: every file
a partial run holds must hold exactly what the full run holds for it.

Runs on the host's 3.12/3.13 (lines) and in the image's 3.14 (branches too).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from typing import Any, ClassVar

MODULES = 24
ADMITTED = 5  # new files the `partial` budget admits
CUT_AFTER = 10  # `expired` calls before the `cut` budget runs out

MODULE = """
TABLE = {{}}
for _i in range({n} % 3 + 2):
    TABLE[_i] = _i * 2


def classify(x):
    if x > {n}:
        return "big"
    elif x < 0:
        return "negative"
    return "small"


def loop(items):
    total = 0
    for item in items:
        if item % 2:
            total += item
        else:
            total -= 1
    return total


def later(x):
    while x > 0:
        x -= 3
    return x
"""


def write_modules(root: str) -> None:
    package = os.path.join(root, "synthetic_partial")
    os.makedirs(package)
    with open(os.path.join(package, "__init__.py"), "w") as handle:
        handle.write("")
    for n in range(MODULES):
        with open(os.path.join(package, f"m{n:02d}.py"), "w") as handle:
            handle.write(MODULE.format(n=n))


def invocation(runtime: Any, work: Any, label: str | None) -> None:
    context = json.dumps({"custom": {"coverage-label": label}}) if label else None
    runtime.invocation_arrived(client_context=context)
    work()
    runtime.between_invocations()


def run(kind: str, labelled: bool, branch: bool) -> dict[str, Any]:
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import api, init_recorder, partial_replay
    from coverage_runtime.shim.session import CoverageSession

    root = tempfile.mkdtemp()
    write_modules(root)
    sys.path.insert(0, root)
    env = {
        "LAMBDA_TASK_ROOT": root,
        "COVERAGE_SOURCE": root,
        "COVERAGE_CORE": "sysmon",
        "COVERAGE_BRANCH": str(branch).lower(),
        "COVERAGE_DATA_DIR": tempfile.mkdtemp(),
        "COVERAGE_FLUSH_INTERVAL_SECONDS": "0",
        "COVERAGE_LABELS": "client-context" if labelled else "none",
    }
    runtime = CoverageSession.start(load_settings(env))
    api.install(runtime)
    measurement = runtime.measurement
    # The init: the first half of the modules, a little of each run.
    modules = [importlib.import_module(f"synthetic_partial.m{n:02d}") for n in range(MODULES // 2)]
    for n, module in enumerate(modules):
        module.classify(n % 5)
    invocation(runtime, lambda: [m.loop([1, 2, 3]) for m in modules[::2]], "a")
    if labelled:
        measurement.snapshot()  # a checkpoint: the recorder feeds coverage.py what it holds
    else:
        # What the shipping thread does with a long stream: build coverage.py and
        # replay the stream in slices (a prefix of it), the hand-over still to come.
        init_recorder.REPLAY_SLICE = 16
        measurement._build_once(measurement._recorder)
    # Either way some files are begun: the partial replay completes them first.

    def second() -> None:
        for n in range(MODULES // 2, MODULES):
            module = importlib.import_module(f"synthetic_partial.m{n:02d}")
            module.classify(-1)
            module.loop([n])
        for module in modules[1::3]:
            module.later(7)
            module.classify(100)

    invocation(runtime, second, "b")
    later = [sys.modules[f"synthetic_partial.m{n:02d}"] for n in range(MODULES // 2, MODULES)]
    if labelled:
        # A drain no snapshot followed (the shipping thread's, for a long stream): the
        # second invocation's new files are begun, but none of their data is written.
        measurement.materialize()

    def third() -> None:
        for module in modules[:4]:
            module.classify(-5)
        for module in later:
            module.later(4)

    invocation(runtime, third, "a")
    recorder = measurement._recorder
    assert recorder is not None
    begun = {os.path.basename(name) for name in recorder._fed_files}  # (before the shutdown)
    outcome: dict[str, Any] = {}
    if kind == "full":
        measurement.finish()
    else:

        class Limited(partial_replay.Budget):
            admitted = 0
            looks = 0
            earlier = 0  # lines or arcs an earlier replay took of files completed
            made: ClassVar[list[partial_replay.Budget]] = []

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                Limited.made.append(self)

            def replayed(self, events: int, *, new: bool, earlier: int = 0) -> float:
                Limited.earlier += earlier
                return super().replayed(events, new=new, earlier=earlier)

            def admits(self) -> bool:
                Limited.admitted += 1
                return kind == "cut" or Limited.admitted <= ADMITTED

            def expired(self) -> bool:
                Limited.looks += 1
                return kind == "cut" and Limited.looks > CUT_AFTER

        # What earlier replays fed, in the data to write when the shutdown's replay
        # first asks (`Measurement._held`, once its first settle took it), by file.
        pending: dict[str, int] = {}
        held = measurement._held

        def held_first(*args: Any) -> Any:
            if not pending:
                for recorded in measurement._outbox.values():
                    for name, items in recorded.items():
                        pending[name] = pending.get(name, 0) + len(items)
            return held(*args)

        measurement._held = held_first  # type: ignore[method-assign]
        partial_replay.CLOCK_EVERY = 4  # (a look at the clock every 4 events: cut mid-file)
        partial_replay.GROUP_SECONDS = 0.0  # (what each file replayed is taken at once)
        partial_replay.Budget = Limited  # type: ignore[misc]
        measurement.finish(10**9)
        result = measurement.replay_outcome
        assert result is not None
        outcome = {**result._asdict(), "partial": result.partial, "earlier": Limited.earlier}
        # Of that, what the shutdown's write still holds (its files not left out),
        # against what the budget counted to be written beyond the replayed events.
        kept = {name for recorded in measurement._outbox.values() for name in recorded}
        outcome["earlier_kept"] = sum(count for name, count in pending.items() if name in kept)
        outcome["earlier_counted"] = Limited.made[-1]._events - result.events_replayed
    data = measurement.data()
    files: dict[str, Any] = {}
    contexts = sorted(data.measured_contexts())
    for name in sorted(data.measured_files()):
        per_context = {}
        for context in contexts:
            data.set_query_contexts([f"^{context}$"])
            arcs = data.arcs(name) if data.has_arcs() else None
            per_context[context] = {
                "lines": sorted(data.lines(name) or ()),
                "arcs": sorted(list(a) for a in arcs or ()),
            }
        data.set_query_contexts(None)
        files[os.path.basename(name)] = per_context
    # Files an earlier replay began that the data lacks: left out whole (never written).
    outcome["begun_not_held"] = len(begun - files.keys())
    return {"files": files, "outcome": outcome, "contexts": contexts}


def compare(full: dict[str, Any], partial: dict[str, Any]) -> dict[str, Any]:
    """A partial run's files against the full run's: each one it holds equal, and
    the files it lacks are the ones it says it left out."""
    outcome = partial["outcome"]
    held = partial["files"]
    return {
        "outcome": outcome,
        "files_full": len(full["files"]),
        "files_held": len(held),
        "unequal": sorted(name for name in held if held[name] != full["files"].get(name)),
        "missing_said": len(full["files"]) - len(held) == outcome["files_left"],
        "contexts_equal": full["contexts"] == partial["contexts"],
        "arcs": any(c["arcs"] for f in held.values() for c in f.values()),
    }


def matrix() -> list[dict[str, Any]]:
    import subprocess

    cells = []
    for labels in ((), ("--labels",)):
        for branch in ((), ("--branch",)) if sys.version_info >= (3, 14) else ((),):
            runs = {}
            for kind in ("full", "partial", "cut"):
                done = subprocess.run(
                    [sys.executable, "-m", "tests.exactness.partial_cases", kind, *labels, *branch],
                    capture_output=True, text=True, timeout=300, check=True,
                )  # fmt: skip
                runs[kind] = json.loads(done.stdout.strip().splitlines()[-1])
            for kind in ("partial", "cut"):
                cell = compare(runs["full"], runs[kind])
                cells.append({"cell": [kind, *labels, *branch], **cell})
    return cells


if __name__ == "__main__":
    if sys.argv[1] == "--matrix":
        result: Any = {"python": sys.version.split()[0], "cells": matrix()}
    else:
        result = run(sys.argv[1], "--labels" in sys.argv, "--branch" in sys.argv)
    print(json.dumps(result))
