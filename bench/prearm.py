"""A label switch pre-armed off the invocation path, against the switch doing it all
(issue 20's batch row), in process.

    python -m bench.prearm [--branch] [--event NAME] [-n 300]    # one JSON line

In the image (its Python, 3.14: sysmon with branches), with this checkout's
bench/, events/ and coverage_runtime/ mounted (bench/README.md, "Labels: the
switch pre-armed").  The example's own handler (`app.handler.lambda_handler`)
with the runtime installed as the shim installs it; what is timed is the
invocation path: ``invocation_arrived`` (the label switch; also apart:
``*_switch_median_us``) and the handler, in
``time.thread_time`` (CPU of this thread: another session's load on the machine
does not count), min and median of ``-n`` invocations per row.  Rows alternate
invocation by invocation in one process (interleaved), each from the same state:

  new_label_switch    a new label each time, the switch re-arming what the last
                      one disabled (as before the pre-arm: none was made);
  new_label_prearmed  a new label each time, `Measurement.prearm` called after
                      the previous response (untimed: the shipping thread's
                      work while the runtime waits in /next);
  same_label          the same label each time: nothing to switch, and no
                      pre-arm (labels are not changing: `CoverageSession`);
  same_label_prearmed the same label after a pre-arm anyway: what a pre-arm that
                      guessed wrong costs (each line reports again), which the
                      prediction avoids.

The pre-arm's own CPU (``prearm_us``) is reported apart: it is not billed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.labels_example import Context, start_example

REPO_ROOT = Path(__file__).resolve().parent.parent
ROWS = ("new_label_switch", "new_label_prearmed", "same_label", "same_label_prearmed")


def run(branch: bool, event_name: str, count: int) -> dict[str, Any]:
    # (the batch event is an admin action)
    runtime, module = start_example(branch, ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN="true")
    event = json.loads((REPO_ROOT / "events" / f"{event_name}.json").read_text())
    measurement = runtime.measurement
    labels = (f"label-{n}" for n in itertools.count())
    clock = time.thread_time

    switches: dict[str, list[float]] = {row: [] for row in ROWS}
    timing: list[str] = []  # the row being timed, if any

    def invoke(label: str) -> float:
        context = json.dumps({"custom": {"coverage-label": label}})
        started = clock()
        runtime.invocation_arrived(client_context=context)
        switched = clock()
        module.lambda_handler(event, Context())
        ended = clock()
        if timing:
            switches[timing[0]].append(switched - started)
        return ended - started

    def prearm() -> float:
        started = clock()
        measurement.prearm()
        return clock() - started

    for _ in range(5):
        invoke(next(labels))
    measurement.materialize()
    same = "same"
    rows: dict[str, list[float]] = {row: [] for row in ROWS}
    prearms: list[float] = []
    # Each row's invocation starts from the state it names: a new label after an
    # invocation that was not pre-armed (the one before ran under another label),
    # and so on.  The settling invocations between are not timed.
    steps: dict[str, Callable[[], float]] = {
        "new_label_switch": lambda: invoke(next(labels)),
        "new_label_prearmed": lambda: (prearms.append(prearm()), invoke(next(labels)))[1],
        "same_label": lambda: invoke(same),
        "same_label_prearmed": lambda: (prearms.append(prearm()), invoke(same))[1],
    }
    # A tree from before the pre-arm (an A/B against it) has the rows without one.
    ran = ROWS if hasattr(measurement, "prearm") else ("new_label_switch", "same_label")
    for _ in range(count):
        for row in ran:
            invoke(same if row.startswith("same") else next(labels))  # the state before
            timing.append(row)
            rows[row].append(steps[row]())
            timing.clear()
        measurement.materialize()  # coverage.py fed off the path, as the shipping thread does
    result: dict[str, Any] = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "core": measurement.core_name(),
        "branch": branch,
        "event": event_name,
        "receiving": measurement.receiving,
        "count": count,
    }
    for row, samples in rows.items():
        if not samples:
            continue
        result[f"{row}_min_us"] = round(min(samples) * 1e6, 1)
        result[f"{row}_median_us"] = round(statistics.median(samples) * 1e6, 1)
        result[f"{row}_switch_median_us"] = round(statistics.median(switches[row]) * 1e6, 1)
    if prearms:
        result["prearm_median_us"] = round(statistics.median(prearms) * 1e6, 1)
    measurement.finish()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branch", action="store_true")
    parser.add_argument("--event", default="admin-batch-process")
    parser.add_argument("-n", "--count", type=int, default=300)
    args = parser.parse_args()
    # The function's logs (a JSON line and a metric per invocation) to /dev/null:
    # writing them to a pipe would be timed too.
    out, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - closed below
    try:
        result = run(args.branch, args.event, args.count)
    finally:
        sys.stdout.close()
        sys.stdout = out
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
