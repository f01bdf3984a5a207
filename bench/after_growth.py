"""What a shutdown after growth has to do, step by step, unbounded, in one process (issue 18).

    python bench/after_growth.py --size 8000 --last-checkpoint 22   # caught up
    python bench/after_growth.py --size 8000 --last-checkpoint 12   # growth since
    # in the image, the checkout mounted:
    podman run --rm -v $PWD:/src:ro -v /tmp/sizes:/tmp/sizes -w /src --entrypoint python IMAGE \\
        bench/after_growth.py --root /tmp/sizes --size 8000 --last-checkpoint 22

`bench/sizes.py` sees an after-growth shutdown from outside, bounded by its
budget: one that runs out of time exits at its deadline with a loss record.
This runs the same synthetic function (`tests/synthetic_function`) with the
shim's `Measurement` in one process: the init, ``--invocations`` invocations
as `sizes.py` schedules their events, a snapshot (what a checkpoint writes)
after the second invocation and after ``--last-checkpoint``, then the
shutdown's steps without a deadline: ``finish`` (replaying what the init
recorder still holds, taking, stopping), the snapshot (coverage.py's SQLite
write of what is new, reading the file back), and, for the upload, reading
the file and its SHA-256 (SigV4's payload hash).  Prints one JSON document;
`bench/README.md` ("Exit after growth") has the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.shutdown_profile import clock, timed  # noqa: E402
from tests import synthetic_function  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "sizes")
    parser.add_argument("--invocations", type=int, default=24)
    parser.add_argument("--last-checkpoint", type=int, default=22, help="after this invocation")
    parser.add_argument("--lines", action="store_true", help="lines only (default: branches)")
    args = parser.parse_args()
    root = synthetic_function.write(args.root / f"n{args.size}", args.size)
    sys.path.insert(0, str(root))
    os.environ.update(
        LAMBDA_TASK_ROOT=str(root),
        COVERAGE_SOURCE=str(root),
        COVERAGE_BRANCH=str(not args.lines).lower(),
        COVERAGE_DATA_DIR=tempfile.mkdtemp(),
        COVERAGE_FLUSH_INTERVAL_SECONDS="0",
    )
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim.session import CoverageSession

    result: dict[str, Any] = {"size": args.size, "branch": not args.lines}
    runtime = CoverageSession.start(load_settings(os.environ))
    measurement = runtime.measurement
    mark = clock()
    handler = importlib.import_module("handler")
    result["init_ms"] = round((clock() - mark) * 1000, 1)
    checkpoints = {2, args.last_checkpoint}
    for number in range(1, args.invocations + 1):
        runtime.invocation_arrived()
        handler.handler({"k": (number - 1) // 2}, None)  # as `sizes.schedule` has them
        if number in checkpoints:
            mark = clock()
            taken = measurement.snapshot()
            result[f"checkpoint after invocation {number}"] = {
                "ms": round((clock() - mark) * 1000, 1),
                "MB": round(len(taken.body) / 1e6, 1),
            }
    recorder = measurement._recorder
    result["events left to replay"] = len(recorder.events) if recorder is not None else None
    steps: dict[str, float] = {}
    write = measurement._write_outbox
    measurement._write_outbox = lambda outbox: timed(  # type: ignore[method-assign]
        steps, "SQLite write", lambda: write(outbox)
    )
    timed(steps, "finish (replay the rest, take, stop)", measurement.finish)
    snapshot = timed(steps, "snapshot (write + read)", measurement.snapshot)
    body = timed(steps, "read the file", Path(measurement.data_file).read_bytes)
    timed(steps, "SHA-256 of the body", lambda: hashlib.sha256(body).hexdigest())
    result["shutdown_ms"] = {name: round(seconds * 1000, 1) for name, seconds in steps.items()}
    result["data file MB"] = round(len(snapshot.body) / 1e6, 1)
    result["arcs"], result["lines"] = snapshot.arcs, snapshot.lines
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
