"""What CPython charges per ``sys.monitoring`` event and per re-instrumentation, counted.

    # in the image, under callgrind (bench/run_batch_counts.sh --calibrate runs them):
    python -X perf -m bench.event_costs MODE N

The calibration of `bench/batch_counts.py`'s table: one loop of ``N``
iterations (3 lines, 2 branch directions and nothing else each), run in a
mode, and the difference of two ``N`` per function says what one event costs
in CPython's C (the dispatch to a callback, an armed location with no
callback), apart from the callback's own Python frame (its trampoline), and
which of the stripped binary's unnamed functions do it.

Modes: ``plain`` (no tool), ``line`` (LINE, a callback returning None),
``branch`` (BRANCH_LEFT/RIGHT, likewise), ``muted`` (LINE and branches armed,
no callback registered), ``disabled`` (LINE and branches, each ``DISABLE``d on
first hit: the steady state of recorded code), ``rearm`` (``N`` re-armings of
the loop's code object: ``set_local_events`` to 0 and back, and one run of
it after each, so each location fires once again), ``block`` (``N`` blocks
``with without_coverage(): pass`` in full mode, labels on, branches: the
recorder receives, each block pauses and resumes it).
"""

from __future__ import annotations

import sys
from typing import Any

TOOL = 4


def loop(count: int) -> int:
    total = 0
    for index in range(count):
        if index & 1:
            total += 1
    return total


def blocks(count: int) -> None:
    """``count`` excluding blocks, as the example's batch opens one per item."""
    import json
    import os
    import tempfile

    from coverage_runtime import without_coverage
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import api
    from coverage_runtime.shim.session import CoverageSession

    source = tempfile.mkdtemp()
    environment = dict(
        os.environ,
        LAMBDA_TASK_ROOT=source,
        COVERAGE_SOURCE=source,
        COVERAGE_BRANCH="true",
        COVERAGE_DATA_DIR=tempfile.mkdtemp(),
        AWS_LAMBDA_FUNCTION_NAME="bench",
    )
    runtime = CoverageSession.start(load_settings(environment))
    api.install(runtime)
    runtime.invocation_arrived(client_context=json.dumps({"custom": {"coverage-label": "a"}}))
    for _ in range(count):
        with without_coverage():
            pass


def paused(count: int) -> None:
    """``count`` iterations of `loop` answered while the init recorder is paused."""
    import os

    from coverage_runtime.shim.init_recorder import InitRecorder

    recorder = InitRecorder(
        [os.path.dirname(os.path.abspath(__file__))], branch=True, labelled=True
    )
    recorder.start()
    loop(0)  # measured: the ``for`` line, its exit and the return are recorded
    recorder.pause()
    loop(count)


def main() -> int:
    mode, count = sys.argv[1], int(sys.argv[2])
    if mode == "block":
        blocks(count)
        return 0
    if mode == "paused":
        paused(count)
        return 0
    monitoring: Any = getattr(sys, "monitoring")  # noqa: B009
    events = monitoring.events
    monitoring.use_tool_id(TOOL, "calibration")
    code = loop.__code__
    # (3.12 and 3.13 have one BRANCH event; the image's 3.14 two directions)
    kinds = [
        getattr(events, name) for name in ("BRANCH_LEFT", "BRANCH_RIGHT") if hasattr(events, name)
    ]
    kinds = kinds or [events.BRANCH]
    branches = 0
    for kind in kinds:
        branches |= kind
    disable = monitoring.DISABLE

    def on_line(code: Any, line: int) -> Any:
        return None

    def on_branch(code: Any, offset: int, destination: int) -> Any:
        return None

    def on_line_disable(code: Any, line: int) -> Any:
        return disable

    def on_branch_disable(code: Any, offset: int, destination: int) -> Any:
        return disable

    if mode == "line":
        monitoring.register_callback(TOOL, events.LINE, on_line)
        monitoring.set_local_events(TOOL, code, events.LINE)
    elif mode == "branch":
        for event in kinds:
            monitoring.register_callback(TOOL, event, on_branch)
        monitoring.set_local_events(TOOL, code, branches)
    elif mode == "muted":
        monitoring.set_local_events(TOOL, code, events.LINE | branches)
    elif mode in ("disabled", "rearm"):
        monitoring.register_callback(TOOL, events.LINE, on_line_disable)
        for event in kinds:
            monitoring.register_callback(TOOL, event, on_branch_disable)
        monitoring.set_local_events(TOOL, code, events.LINE | branches)
    if mode == "rearm":
        for _ in range(count):
            monitoring.set_local_events(TOOL, code, 0)
            monitoring.set_local_events(TOOL, code, events.LINE | branches)
            loop(2)
        return 0
    loop(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
