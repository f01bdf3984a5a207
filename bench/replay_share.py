"""What the first hand-over's replay is made of, on the synthetic function (issue 18).

    python bench/replay_share.py --size 2000 [--branch] [--root DIR]
    # in the image, the checkout mounted:
    podman run --rm -v $PWD:/src:ro -w /src --entrypoint python IMAGE \\
        bench/replay_share.py --root /tmp/sizes --size 2000 --branch

Frozen between invocations, as in Lambda, the shipping thread's first hand-over
(build coverage.py, replay the recorded init into it) runs beside the next
invocations and is billed there (bench/README.md, "Frozen between
invocations").  Before caching any of coverage.py's first sight of a file
across environments (e.g. from the image's build), this says how much of the
replay each part is, in one process, CPU time of the thread (`time.thread_time`):
importing coverage.py, building it, the replay in all, and inside the replay
coverage.py's multiline maps (``sysmon.compute_multiline_map``: tokenizing each
file, branches only) and its ``bytes_to_lines`` per code object (branches
only), each timed by a wrapper around coverage.py's own function.  Prints one
JSON document.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests import synthetic_function  # noqa: E402

clock = time.thread_time


def timed(function: Any, spent: dict[str, float], name: str) -> Any:
    def wrapper(*args: Any) -> Any:
        started = clock()
        try:
            return function(*args)
        finally:
            spent[name] = spent.get(name, 0.0) + clock() - started

    wrapper.fast = getattr(function, "fast", False)  # type: ignore[attr-defined]
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--branch", action="store_true")
    parser.add_argument("--root", default=tempfile.gettempdir() + "/replay-share")
    args = parser.parse_args()
    root = synthetic_function.write(Path(args.root) / f"n{args.size}", args.size)
    compileall.compile_dir(str(root), quiet=1)
    os.environ.update(
        LAMBDA_TASK_ROOT=str(root),
        AWS_LAMBDA_FUNCTION_NAME="replay-share",
        COVERAGE_DATA_DIR=tempfile.mkdtemp(),
        COVERAGE_BRANCH=str(args.branch).lower(),
    )
    sys.path.insert(0, str(root))
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import coverage_adapter
    from coverage_runtime.shim.measurement import Measurement

    settings = load_settings(os.environ)
    measurement = Measurement(settings, os.path.join(os.environ["COVERAGE_DATA_DIR"], "x.cov"))
    measurement.begin()
    handler = importlib.import_module("handler")
    handler.handler({"k": 1}, None)
    recorder = measurement._recorder
    events = len(recorder.events) if recorder is not None else None
    spent: dict[str, float] = {}
    started = clock()
    coverage_adapter.import_coverage()
    spent["import coverage.py"] = clock() - started
    from coverage import sysmon

    sysmon.compute_multiline_map = timed(sysmon.compute_multiline_map, spent, "multiline maps")
    sysmon.bytes_to_lines = timed(sysmon.bytes_to_lines, spent, "bytes_to_lines")
    started = clock()
    measurement.materialize()
    spent["build and replay, in all"] = clock() - started
    started = clock()
    snapshot = measurement.snapshot()
    spent["first snapshot (take, SQLite write, read)"] = clock() - started
    measurement.finish()
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "size": args.size,
                "branch": args.branch,
                "recorded_events": events,
                "data_file_bytes": len(snapshot.body),
                "cpu_ms": {name: round(seconds * 1000, 1) for name, seconds in spent.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
