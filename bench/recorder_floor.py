"""What recording the init costs per event, against the floor of `sys.monitoring` (issue 18).

    python bench/recorder_floor.py [--size 2000] [--branch] [--rounds 7]

Imports the synthetic function of ``--size`` measured modules (tests/synthetic_function.py)
in fresh interpreters, interleaved round by round, and times the import (CPU time) in
three ways:

- ``off``: nothing listens;
- ``floor``: the least an exact recorder can do on ``sys.monitoring``: a PY_START callback
  that arms LINE (and, with ``--branch``, BRANCH_LEFT/RIGHT) on the code objects of the
  measured files, and callbacks that keep each event as a tuple and return ``DISABLE``;
- ``shim``: the shim's own start (`Measurement.begin`: the init recorder) before the import.

``floor - off`` is what CPython charges for delivering each first event to Python; ``shim -
floor`` is ours.  Prints one JSON document; bench/README.md has the figures.  Run it with the
function's Python, e.g. in the image:
``podman run --rm -v $PWD:/src:ro -w /src --entrypoint python IMAGE bench/recorder_floor.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests import synthetic_function  # noqa: E402

PROBE = r"""
import os, sys, time
root, mode, branch = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
sys.path.insert(0, root)
events = []
if mode == "floor":
    mon = sys.monitoring
    E, D, tool = mon.events, mon.DISABLE, 4
    local = E.LINE | ((E.BRANCH_LEFT | E.BRANCH_RIGHT) if branch else 0)
    prefix = root + os.sep
    def start(code, offset):
        if code.co_filename.startswith(prefix):
            events.append((code, offset))
            mon.set_local_events(tool, code, local)
        return D
    def line(code, number):
        events.append((code, number))
        return D
    def jump(code, source, destination):
        events.append((code, source, destination))
        return D
    mon.use_tool_id(tool, "floor")
    mon.register_callback(tool, E.PY_START, start)
    mon.register_callback(tool, E.LINE, line)
    if branch:
        mon.register_callback(tool, E.BRANCH_LEFT, jump)
        mon.register_callback(tool, E.BRANCH_RIGHT, jump)
    mon.set_events(tool, E.PY_START)
elif mode == "shim":
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim.measurement import Measurement
    settings = load_settings({"LAMBDA_TASK_ROOT": root, "COVERAGE_BRANCH": str(branch).lower(),
                              "COVERAGE_DATA_DIR": sys.argv[4]})
    measurement = Measurement(settings, os.path.join(sys.argv[4], "floor.coverage"))
    measurement.begin()
    events = measurement._recorder.events
started = time.process_time()
import handler
spent = time.process_time() - started
print(spent * 1000, len(events))
"""

MODES = ("off", "floor", "shim")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--branch", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if sys.version_info < (3, 12) or (args.branch and sys.version_info < (3, 14)):
        raise SystemExit("sys.monitoring records this from 3.12 (branches from 3.14)")
    scratch = Path(tempfile.mkdtemp())
    root = str(synthetic_function.write(scratch / "task", args.size))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # Compiled once, as in an image: what is timed is running the code, not compiling it.
    subprocess.run([sys.executable, "-m", "compileall", "-q", root], check=True)
    spent: dict[str, list[float]] = {mode: [] for mode in MODES}
    events: dict[str, int] = {}
    for _ in range(args.rounds):
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, "-c", PROBE, root, mode, "1" if args.branch else "0",
                 tempfile.mkdtemp(dir=scratch)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            spent[mode].append(float(out[0]))
            events[mode] = int(out[1])
    median = {mode: statistics.median(values) for mode, values in spent.items()}
    per_event = {
        mode: round((median[mode] - median["off"]) * 1000 / events[mode], 3)
        for mode in ("floor", "shim")
        if events[mode]
    }
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "size": args.size,
                "branch": args.branch,
                "import_cpu_ms": {mode: round(value, 1) for mode, value in median.items()},
                "events": events,
                "added_us_per_event": per_event,
                "shim_over_floor_ms": round(median["shim"] - median["floor"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
