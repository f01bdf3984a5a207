"""Where the shim's init goes, step by step, in one fresh process (issue 17, item 1).

    python bench/init_profile.py [--branch] [--eager] [--task-root DIR --handler MODULE]

Times each step the shim takes before the handler runs and what the handler's
import costs under it, then what the first response leaves to the shipping
thread (building coverage.py and handing the recorded init over, the first
snapshot).  ``--eager`` times coverage.py built at init instead (what the
shim did before the init recorder, and still does on the C tracer).  Prints
one JSON document; `bench/README.md` has the figures.  Run it with the
function's Python, e.g. inside the image:
``podman run --rm -v $PWD/bench:/bench:ro --entrypoint python IMAGE /bench/init_profile.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time

clock = time.perf_counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branch", action="store_true")
    parser.add_argument("--eager", action="store_true", help="build coverage.py at init")
    parser.add_argument("--task-root", default=os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
    parser.add_argument("--handler", default="app.handler")
    args = parser.parse_args()
    os.environ.update(
        LAMBDA_TASK_ROOT=args.task_root,
        AWS_LAMBDA_FUNCTION_NAME="profile",
        COVERAGE_DATA_DIR=tempfile.mkdtemp(),
        COVERAGE_BRANCH=str(args.branch).lower(),
    )
    sys.path.insert(0, args.task_root)
    steps: dict[str, float] = {}
    started = clock()
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import distributions
    from coverage_runtime.shim.measurement import Measurement

    steps["import the shim's modules"] = clock() - started
    mark = clock()
    settings = load_settings(os.environ)
    steps["read the settings"] = clock() - mark
    mark = clock()
    distributions.installed_paths(settings.source)
    steps["scan the installed distributions"] = clock() - mark
    mark = clock()
    measurement = Measurement(settings, os.path.join(os.environ["COVERAGE_DATA_DIR"], "p.cov"))
    steps["Measurement() (Coverage() when eager)"] = clock() - mark
    if args.eager and measurement.cov is None:
        mark = clock()
        measurement.cov = measurement._new_coverage()
        steps["import coverage.py + Coverage()"] = clock() - mark
    mark = clock()
    measurement.begin()
    steps["start (the recorder, or coverage.py's start)"] = clock() - mark
    mark = clock()
    importlib.import_module(args.handler)
    steps["import the handler, measured"] = clock() - mark
    init = clock() - started
    recorder = measurement._recorder
    events = len(recorder.events) if recorder is not None else None
    after: dict[str, float] = {}
    mark = clock()
    measurement.materialize()
    after["build coverage.py and replay the init"] = clock() - mark
    mark = clock()
    snapshot = measurement.snapshot()
    after["first snapshot (SQLite write + read)"] = clock() - mark
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "core": measurement.core_name(),
                "branch": args.branch,
                "init_gate": "recorder" if events is not None else "coverage.py",
                "recorded_events": events,
                "init_ms": {k: round(v * 1000, 2) for k, v in steps.items()},
                "init_total_ms": round(init * 1000, 2),
                "after_first_response_ms": {k: round(v * 1000, 2) for k, v in after.items()},
                "snapshot_bytes": len(snapshot.body),
                "recorded_lines": snapshot.lines,
                "recorded_arcs": snapshot.arcs,
            }
        )
    )


if __name__ == "__main__":
    main()
