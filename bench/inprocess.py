"""In-process costs of the measurement core, one configuration per process.

    python bench/inprocess.py --config selective --branch     # one JSON line
    python bench/inprocess.py --all -r 5                      # every config, interleaved

Measures, with the runtime installed as the shim installs it (or not at all
for ``off``):

  block_us      one ``with CoverageContext(): pass``: it switches collection in
                selective mode (off -> on -> off), not in full mode; the loop
                that opens it is measured code (``block_unmeasured_us``: not)
  loop_ms       the seed's pattern: 1,000 mixed items (a few µs of work each),
                every 10th processed inside ``CoverageContext()``, the loop in
                measured code
  loop_unmeasured_ms   the same loop living outside the measured source

and, with 10 and with 1,000 measured files (``--fixed-costs FILES``), the
per-invocation fixed costs: the decorator, ``between_invocations``, ``status()``.

Medians of repeated timings inside the process; `--all` runs fresh processes
round-robin and reports medians over them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

LOOP_SOURCE = """\
from coverage_runtime import CoverageContext


def score(n):
    total = 0
    for k in range(1, 40):
        total += (n * k) % 7 if k % 3 else k
    return total


def process(item):
    if isinstance(item, bool):
        return {"kind": "flag", "value": item}
    if isinstance(item, int):
        return {"kind": "number", "score": score(item)}
    if isinstance(item, str):
        words = " ".join(item.split()).lower()
        return {"kind": "text", "value": words, "score": score(len(words))}
    return {"kind": "object", "keys": sorted(item), "score": score(len(item))}


def seed_loop(items):
    results = []
    for index, item in enumerate(items):
        if index % 10 == 0:
            with CoverageContext():
                results.append(process(item))
        else:
            results.append(process(item))
    return results


def switch(n):
    for _ in range(n):
        with CoverageContext():
            pass


def empty(n):
    for _ in range(n):
        pass
"""

CONFIGS = ("off", "full", "full+branch", "selective", "selective+branch")
ITEMS = [i if i % 3 else f"  Item {i} TEXT " if i % 2 else {"k": i, "j": 2} for i in range(1000)]


def timed(fn: Any, *args: Any, repeat: int = 31) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(*args)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run_one(config: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp())
    measured = work / "measured"
    unmeasured = work / "unmeasured"
    for directory, name in ((measured, "loop_measured"), (unmeasured, "loop_unmeasured")):
        directory.mkdir()
        (directory / f"{name}.py").write_text(LOOP_SOURCE)
        sys.path.insert(0, str(directory))
    runtime = None
    if config != "off":
        from coverage_runtime.settings import load_settings
        from coverage_runtime.shim import api
        from coverage_runtime.shim.session import CoverageSession

        mode, _, branch = config.partition("+")
        env = {
            "LAMBDA_TASK_ROOT": str(measured),
            "COVERAGE_MODE": mode,
            "COVERAGE_BRANCH": "true" if branch else "false",
            "COVERAGE_DATA_DIR": str(work / "data"),
            "COVERAGE_S3_BUCKET": "bench-bucket",
        }
        runtime = CoverageSession.start(load_settings(env))
        api.install(runtime)
    import loop_measured
    import loop_unmeasured

    n = 2000
    loop_measured.seed_loop(ITEMS)  # warm: first hits of every line
    loop_unmeasured.seed_loop(ITEMS)
    loop_measured.switch(100)
    if runtime is not None:
        # What the runtime does after the first response: the shipping thread builds
        # coverage.py (the init recorder hands over), then the maintenance pass.
        runtime.measurement.materialize()
        runtime.measurement.maintain()
    per_block = (timed(loop_measured.switch, n) - timed(loop_measured.empty, n)) / n
    per_block_unmeasured = (timed(loop_unmeasured.switch, n) - timed(loop_unmeasured.empty, n)) / n
    result = {
        "config": config,
        "python": ".".join(map(str, sys.version_info[:3])),
        "core": runtime.measurement.core_name() if runtime else None,
        "block_us": per_block * 1e6,
        "block_unmeasured_us": per_block_unmeasured * 1e6,
        "loop_ms": timed(loop_measured.seed_loop, ITEMS) * 1000,
        "loop_unmeasured_ms": timed(loop_unmeasured.seed_loop, ITEMS) * 1000,
    }
    if runtime is not None:
        runtime.measurement.finish()
    return result


def fixed_costs(files: int) -> dict[str, Any]:
    """Per-invocation fixed costs with ``files`` measured files: the decorator
    around a no-op handler, `between_invocations` and `status()`, in µs."""
    from coverage_runtime import coverage_handler
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import api
    from coverage_runtime.shim.session import CoverageSession

    work = Path(tempfile.mkdtemp())
    source = work / "many"
    source.mkdir()
    for index in range(files):
        (source / f"m{index}.py").write_text(f"def f(x):\n    return x + {index}\n")
    env = {
        "LAMBDA_TASK_ROOT": str(source),
        "COVERAGE_DATA_DIR": str(work / "data"),
        "COVERAGE_S3_BUCKET": "bench-bucket",
        "COVERAGE_FLUSH_INTERVAL_SECONDS": "0",
    }
    runtime = CoverageSession.start(load_settings(env))
    api.install(runtime)
    sys.path.insert(0, str(source))
    import importlib

    for index in range(files):
        importlib.import_module(f"m{index}").f(1)

    @coverage_handler
    def handler(event: Any, context: Any) -> Any:
        return event

    runtime.invocations = 3  # not a maintenance invocation (1, 2, 4, ... 64, then every 64th)
    n = 2000

    def invoke(n: int) -> None:
        for _ in range(n):
            handler(None, None)

    def between(n: int) -> None:
        for _ in range(n):
            runtime.between_invocations()

    def status(n: int) -> None:
        for _ in range(n):
            runtime.status()

    result = {
        "files": runtime.status()["files_measured"],
        "decorator_us": timed(invoke, n) / n * 1e6,
        "between_invocations_us": timed(between, n) / n * 1e6,
        "status_us": timed(status, n // 10) / (n // 10) * 1e6,
    }
    runtime.measurement.finish()
    return result


def run_all(repeats: int, python: str) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    for _ in range(repeats):
        for config in CONFIGS:
            done = subprocess.run(
                [python, str(Path(__file__).resolve()), "--config", config],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO_ROOT,
            )
            rows[config].append(json.loads(done.stdout.strip().splitlines()[-1]))
    fixed: dict[int, list[dict[str, Any]]] = {10: [], 1000: []}
    for _ in range(repeats):
        for files, samples in fixed.items():
            done = subprocess.run(
                [python, str(Path(__file__).resolve()), "--fixed-costs", str(files)],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO_ROOT,
            )
            samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    summary = {}
    for config, samples in rows.items():
        summary[config] = {
            key: statistics.median(s[key] for s in samples)
            for key in ("block_us", "block_unmeasured_us", "loop_ms", "loop_unmeasured_ms")
        }
        summary[config]["core"] = samples[0]["core"]
        summary[config]["python"] = samples[0]["python"]
    fixed_summary = {
        str(files): {
            key: statistics.median(s[key] for s in samples)
            for key in ("files", "decorator_us", "between_invocations_us", "status_us")
        }
        for files, samples in fixed.items()
    }
    return {"repeats": repeats, "configs": summary, "fixed": fixed_summary, "samples": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=CONFIGS)
    parser.add_argument("--all", action="store_true")
    parser.add_argument("-r", "--repeats", type=int, default=5)
    parser.add_argument("--fixed-costs", type=int, metavar="FILES")
    args = parser.parse_args()
    if args.fixed_costs:
        print(json.dumps(fixed_costs(args.fixed_costs)))
    elif args.all:
        print(json.dumps(run_all(args.repeats, sys.executable)))
    else:
        print(json.dumps(run_one(args.config or "off")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
