"""The example function's business event in process, a new label on every invocation.

    python -m bench.labels_example [--branch] [--events DIR] [-n 200]    # one JSON line

In the image (its Python, 3.14: sysmon with branches), with this checkout's
bench/ and events/ mounted over /var/task (see bench/README.md, "Labels").

Where `bench/labels.py` times a synthetic module, this runs the example's own
handler (`app.handler.lambda_handler`) with the runtime installed as the shim
installs it, and reports medians over ``-n`` invocations of:

  same_label_handler_us  the handler, the same label on every invocation;
  new_label_switch_us    the switch to a new label (``invocation_arrived``);
  new_label_handler_us   the handler right after it (each line's first hit
                         again, under the new label);
  new_label_count_us     counting what is new, as the runtime does after the
                         response (``Measurement.counts``);
  on_path_extra_us       switch + handler + count, less the same-label handler:
                         what a new label adds where Lambda bills it;
  replay_us              coverage.py fed what the recorder kept
                         (``Measurement.materialize``), done here after each
                         invocation; the runtime does it on the shipping thread
                         at checkpoints and when 5,000 events wait.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


class Context:
    """What the handler reads of awslambdaric's context."""

    function_name = "bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb = 512
    aws_request_id = "bench"
    client_context = None
    identity = None

    def get_remaining_time_in_millis(self) -> int:
        return 3000


def start_example(branch: bool, **environment: str) -> tuple[Any, Any]:
    """A coverage session with labels in this process, then the example's handler
    imported (its init, measured): the session and the handler's module."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import api
    from coverage_runtime.shim.session import CoverageSession

    env = dict(
        os.environ,
        LAMBDA_TASK_ROOT=str(REPO_ROOT),
        COVERAGE_SOURCE=str(REPO_ROOT / "app"),
        COVERAGE_BRANCH=str(branch).lower(),
        COVERAGE_DATA_DIR=tempfile.mkdtemp(),
        COVERAGE_MAX_LABELS="100000",
        AWS_LAMBDA_FUNCTION_NAME="bench",
        POWERTOOLS_SERVICE_NAME="bench",
        **environment,
    )
    # The function reads its own settings from the process environment (an admin
    # event needs ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN there, or it is refused: 403).
    os.environ.update(environment)
    runtime = CoverageSession.start(load_settings(env))
    api.install(runtime)
    from app import handler as module  # the init, measured

    return runtime, module


def run(branch: bool, events: Path, count: int) -> dict[str, Any]:
    runtime, module = start_example(branch)
    event = json.loads((events / "business-process-data.json").read_text())
    measurement = runtime.measurement

    def invoke(label: str) -> tuple[float, float, float]:
        started = time.perf_counter()
        runtime.invocation_arrived(client_context=json.dumps({"custom": {"coverage-label": label}}))
        switched = time.perf_counter()
        module.lambda_handler(event, Context())
        handled = time.perf_counter()
        measurement.counts()
        return switched - started, handled - switched, time.perf_counter() - handled

    for index in range(5):
        invoke(f"warm-{index}")
    measurement.materialize()
    same = [invoke("same") for _ in range(count)]
    new, replays = [], []
    for index in range(count):
        new.append(invoke(f"new-{index}"))
        started = time.perf_counter()
        measurement.materialize()
        measurement.counts()
        replays.append(time.perf_counter() - started)

    def median_us(samples: list[tuple[float, float, float]], part: int) -> float:
        return round(statistics.median(s[part] for s in samples) * 1e6, 1)

    result = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "core": measurement.core_name(),
        "branch": branch,
        "receiving": getattr(measurement, "receiving", None),
        "same_label_handler_us": median_us(same, 1),
        "new_label_switch_us": median_us(new, 0),
        "new_label_handler_us": median_us(new, 1),
        "new_label_count_us": median_us(new, 2),
        "replay_us": round(statistics.median(replays) * 1e6, 1),
    }
    result["on_path_extra_us"] = round(
        result["new_label_switch_us"]
        + result["new_label_handler_us"]
        + result["new_label_count_us"]
        - result["same_label_handler_us"],
        1,
    )
    measurement.finish()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branch", action="store_true")
    parser.add_argument("--events", type=Path, default=REPO_ROOT / "events")
    parser.add_argument("-n", "--count", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(run(args.branch, args.events, args.count)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
