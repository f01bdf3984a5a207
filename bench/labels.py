"""In-process costs of labels (#20), one configuration per process.

    python bench/labels.py --all -r 5          # every config, interleaved; a table
    python bench/labels.py --config labels     # one JSON line

Measures, with the runtime installed as the shim installs it:

  switch_us        one label switch to a new label (`CoverageSession.label`:
                   admission and the switch), target <= 20 µs;
  relabel_line_us  what each distinct line costs on the invocation path when it
                   runs for the first time under a new label (the re-arming of
                   its code object, its first hit, and counting what was
                   taken, as the runtime does after the response), over a
                   module of 2,000 lines in 100 functions;
  replay_line_us   what each such line costs off the invocation path: with
                   labels on sysmon the init recorder stays the receiver and
                   the shipping thread replays its stream into coverage.py
                   (`Measurement.materialize`, at a checkpoint or the stream's
                   bound); 0 where coverage.py receives the events itself;
  call_ns          a call of a small measured function, steady state (the
                   PY_START check that labels keep armed), against
                   ``COVERAGE_LABELS=none`` in the same run.

Configurations: ``none`` (labels off) and ``labels`` (the default sources),
each with and without branches where the Python measures them on sysmon.
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
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.inprocess import timed  # noqa: E402

FUNCTIONS = 100
LINES_PER_FUNCTION = 20
SWITCH_TARGET_US = 20.0


def module_source() -> str:
    parts = ["def tiny(x):\n    return x + 1\n\n\ndef calls(n):\n"]
    parts.append("    for i in range(n):\n        tiny(i)\n\n\n")
    for f in range(FUNCTIONS):
        body = "".join(f"    x = x + {k}\n" for k in range(LINES_PER_FUNCTION - 2))
        parts.append(f"def f{f}(x):\n{body}    return x\n\n\n")
    names = ", ".join(f"f{f}" for f in range(FUNCTIONS))
    parts.append(f"ALL = [{names}]\n\n\ndef run_all():\n    for fn in ALL:\n        fn(1)\n")
    return "".join(parts)


def run_one(config: str) -> dict[str, Any]:
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import api
    from coverage_runtime.shim.session import CoverageSession

    work = Path(tempfile.mkdtemp())
    source = work / "src"
    source.mkdir()
    (source / "labelled_bench.py").write_text(module_source())
    sys.path.insert(0, str(source))
    labels, _, branch = config.partition("+")
    env = {
        "LAMBDA_TASK_ROOT": str(source),
        "COVERAGE_BRANCH": "true" if branch else "false",
        "COVERAGE_LABELS": "none" if labels == "none" else "client-context",
        "COVERAGE_DATA_DIR": str(work / "data"),
        "COVERAGE_S3_BUCKET": "bench-bucket",
        "COVERAGE_FLUSH_INTERVAL_SECONDS": "0",
        "COVERAGE_MAX_LABELS": "100000",
    }
    runtime = CoverageSession.start(load_settings(env))
    api.install(runtime)
    import labelled_bench as module

    measurement = runtime.measurement
    module.run_all()
    module.calls(10)
    measurement.materialize()  # coverage.py built (with labels: fed, as at a checkpoint)
    measurement.counts()
    runtime.label("steady")
    module.run_all()
    module.calls(10)
    measurement.counts()

    # One call of a small measured function, steady state.
    n = 200_000
    call_ns = timed(module.calls, n, repeat=15) / n * 1e9

    # A switch to a new label: admission and the switch.
    switches = []
    for index in range(2000):
        started = time.perf_counter()
        runtime.label(f"switch-{index}")
        switches.append(time.perf_counter() - started)
    switch_us = statistics.median(switches) * 1e6

    # Each distinct line, the first time it runs under a new label (and taking it
    # out, as the next checkpoint does), against the same lines already seen.
    lines = FUNCTIONS * LINES_PER_FUNCTION
    firsts, steadies, replays = [], [], []
    for index in range(15):
        runtime.label(f"lines-{index}")
        started = time.perf_counter()
        module.run_all()
        measurement.counts()
        firsts.append(time.perf_counter() - started)
        started = time.perf_counter()
        module.run_all()
        measurement.counts()
        steadies.append(time.perf_counter() - started)
        started = time.perf_counter()
        measurement.materialize()  # (the shipping thread's replay, if any)
        measurement.counts()
        replays.append(time.perf_counter() - started)
    relabel_line_us = (statistics.median(firsts) - statistics.median(steadies)) / lines * 1e6
    replay_line_us = statistics.median(replays) / lines * 1e6
    result = {
        "config": config,
        "python": ".".join(map(str, sys.version_info[:3])),
        "core": measurement.core_name(),
        "call_ns": call_ns,
        "switch_us": switch_us if labels != "none" else None,
        "relabel_line_us": relabel_line_us if labels != "none" else None,
        "replay_line_us": replay_line_us if labels != "none" else None,
    }
    measurement.finish()
    return result


def configs() -> list[str]:
    from coverage_runtime.settings import sysmon_supports

    found = ["none", "labels"]
    if sysmon_supports(branch=True):
        found += ["none+branch", "labels+branch"]
    return found


def run_all(repeats: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in configs()}
    for round_ in range(repeats):
        order = list(samples)
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for config in order:
            done = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--config", config],
                capture_output=True, text=True, check=True, timeout=600,
            )  # fmt: skip
            samples[config].append(json.loads(done.stdout.strip().splitlines()[-1]))

    def med(config: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[config])

    rows = []
    for suffix in ("", "+branch"):
        on, off = f"labels{suffix}", f"none{suffix}"
        if on not in samples:
            continue
        switch = med(on, "switch_us")
        rows.append({"metric": f"label switch ({on}), µs", "baseline": None, "value": switch,
                     "ratio": None, "target": f"<= {SWITCH_TARGET_US:.0f} µs",
                     "pass": switch <= SWITCH_TARGET_US})  # fmt: skip
        rows.append({"metric": f"per distinct line after a switch ({on}), µs", "baseline": None,
                     "value": med(on, "relabel_line_us"), "ratio": None, "target": "stated",
                     "pass": True})  # fmt: skip
        rows.append({"metric": f"  replayed off the invocation path ({on}), µs per line",
                     "baseline": None, "value": med(on, "replay_line_us"), "ratio": None,
                     "target": "stated", "pass": True})  # fmt: skip
        base, value = med(off, "call_ns"), med(on, "call_ns")
        rows.append({"metric": f"measured call, steady state ({on} vs {off}), ns",
                     "baseline": base, "value": value, "ratio": value / base,
                     "target": "stated", "pass": True})  # fmt: skip
    return {
        "python": samples["labels"][0]["python"],
        "core": samples["labels"][0]["core"],
        "rows": rows,
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--all", action="store_true")
    parser.add_argument("-r", "--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.all:
        result = run_all(args.repeats)
        print(f"python {result['python']}, core {result['core']}", file=sys.stderr)
        for row in result["rows"]:
            base = "-" if row["baseline"] is None else f"{row['baseline']:.3f}"
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
            verdict = "pass" if row["pass"] else "FAIL"
            print(f"| {row['metric']} | {base} | {row['value']:.3f} | {ratio} | {row['target']} "
                  f"| {verdict} |", file=sys.stderr)  # fmt: skip
        print(json.dumps(result))
        return 0 if all(row["pass"] for row in result["rows"]) else 1
    print(json.dumps(run_one(args.config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
