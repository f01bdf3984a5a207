"""Callbacks and re-instrumentations per invocation of the batch event (issue 20's last row).

    python bench/sticky_counts.py                      # every config, a table (stderr) + JSON
    python bench/sticky_counts.py --config new+branch  # one config, one JSON line

Timings on this shared machine are noise; what paused code costs is counted
instead, deterministically: how many ``sys.monitoring`` callbacks of the
measurement's tool run, by event, per warm invocation of the example's
``batch_process`` loop (200 items, every 10th measured, the rest each inside
its own ``without_coverage()`` block), and how many ``set_local_events``
(each a re-instrumentation of one code object), ``restart_events`` and
``register_callback`` calls (O(1): a pointer swap) it makes.

Configurations: ``off`` (``COVERAGE_LABELS=none``), ``none`` (labels on, the
invocation carries none), ``same`` (one label throughout), ``new`` (a new
label each invocation), ``selective`` (``COVERAGE_MODE=selective``, labels off:
only the sampled items' blocks measure, the loop runs paused), each
``+branch`` where sysmon measures branches.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

WARM, COUNTED = 6, 4  # invocations before counting, and counted

# The loop of `app.admin.batch_process` (which imports Powertools, missing from the
# exactness venvs), around the example's own `process_item`.
BATCH_LOOP = """\
from coverage_runtime import CoverageContext, without_coverage

from app.workloads import process_item


def batch_process(count):
    items = [i if i % 2 == 0 else f"  Item {i} " for i in range(count)]
    kinds = {}
    for index, item in enumerate(items):
        sampled = index % 10 == 0
        block = CoverageContext(label="batch_process:sampled") if sampled else without_coverage()
        with block:
            result = process_item(item)
        kinds[result["kind"]] = kinds.get(result["kind"], 0) + 1
    return kinds
"""


class Counting:
    """Wraps every callback registered on ``sys.monitoring`` with a counter, and
    counts ``set_local_events`` and ``restart_events``.  A callback taken back off
    (``register_callback`` returns the previous one) is returned unwrapped, so a
    gate wrapping coverage.py's callback counts once."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        monitoring: Any = getattr(sys, "monitoring")  # noqa: B009
        self._monitoring = monitoring
        names = {getattr(monitoring.events, n): n for n in dir(monitoring.events) if n.isupper()}
        self._names = names
        self._register = monitoring.register_callback
        self._set_local = monitoring.set_local_events
        self._restart = monitoring.restart_events
        self._originals: dict[int, Callable[..., Any]] = {}
        monitoring.register_callback = self.register_callback
        monitoring.set_local_events = self.set_local_events
        monitoring.restart_events = self.restart_events

    def register_callback(self, tool: int, event: int, func: Any) -> Any:
        self.counts["register_callback"] += 1
        wrapped = None if func is None else self._wrap(event, func)
        previous = self._register(tool, event, wrapped)
        return self._originals.get(id(previous), previous)

    def _wrap(self, event: int, func: Callable[..., Any]) -> Callable[..., Any]:
        counts, name = self.counts, self._names.get(event, str(event))

        def counted(*args: Any) -> Any:
            counts[name] += 1
            return func(*args)

        self._originals[id(counted)] = func
        return counted

    def set_local_events(self, tool: int, code: Any, events: int) -> Any:
        self.counts["set_local_events"] += 1
        return self._set_local(tool, code, events)

    def restart_events(self) -> Any:
        self.counts["restart_events"] += 1
        return self._restart()


def run_one(config: str) -> dict[str, Any]:
    counting = Counting()
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import api
    from coverage_runtime.shim.session import CoverageSession

    labelling, _, branch = config.partition("+")
    work = Path(tempfile.mkdtemp())
    source = work / "src"
    (source / "app").mkdir(parents=True)
    (source / "app" / "__init__.py").write_text("")
    shutil.copy(REPO_ROOT / "app" / "workloads.py", source / "app" / "workloads.py")
    (source / "batch_loop.py").write_text(BATCH_LOOP)
    sys.path.insert(0, str(source))
    env = {
        "LAMBDA_TASK_ROOT": str(source),
        "COVERAGE_SOURCE": str(source),
        "COVERAGE_CORE": "sysmon",
        "COVERAGE_BRANCH": "true" if branch else "false",
        "COVERAGE_LABELS": "none" if labelling in ("off", "selective") else "client-context",
        "COVERAGE_MODE": "selective" if labelling == "selective" else "full",
        "COVERAGE_DATA_DIR": str(work / "data"),
        "COVERAGE_FLUSH_INTERVAL_SECONDS": "0",
        "COVERAGE_MAX_LABELS": "100000",
    }
    runtime = CoverageSession.start(load_settings(env))
    api.install(runtime)
    from batch_loop import batch_process  # type: ignore[import-not-found]

    items = json.loads((REPO_ROOT / "events" / "admin-batch-process.json").read_text())["items"]
    per: list[dict[str, int]] = []
    for index in range(WARM + COUNTED):
        label = {"off": None, "selective": None, "none": None, "same": "same"}.get(
            labelling, f"label-{index}"
        )
        context = None if label is None else json.dumps({"custom": {"coverage-label": label}})
        before = Counter(counting.counts)
        runtime.invocation_arrived(client_context=context)
        batch_process(items)
        runtime.between_invocations()
        if index >= WARM:
            per.append(dict(counting.counts - before))
    measurement = runtime.measurement
    measurement.finish()
    keys = sorted({key for counts in per for key in counts})
    return {
        "config": config,
        "python": ".".join(map(str, sys.version_info[:3])),
        "per_invocation": {key: max(c.get(key, 0) for c in per) for key in keys},
        "spread": {key: sorted({c.get(key, 0) for c in per}) for key in keys},
    }


def configs() -> list[str]:
    base = ["off", "none", "same", "new", "selective"]
    if sys.version_info >= (3, 14):
        base += [f"{c}+branch" for c in base]
    return base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    args = parser.parse_args()
    if args.config:
        print(json.dumps(run_one(args.config)))
        return 0
    results = []
    for config in configs():
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--config", config],
            capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for result in results:
        counts = result["per_invocation"]
        callbacks = sum(v for k, v in counts.items() if k.isupper())
        print(f"{result['python']} {result['config']:>12}: callbacks {callbacks:5d} "
              f"{json.dumps(counts)}", file=sys.stderr)  # fmt: skip
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
