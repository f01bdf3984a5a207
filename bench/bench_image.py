"""What coverage costs in the built image (its own Python, 3.14), through the real RIE.

    bench/run_image.sh                       # build the image, run everything, print the table
    bench/run_image.sh -r 6 -n 100 --json bench/image-results.json

Side by side in one run: per round, one fresh container (a fresh execution
environment, cold start included) per configuration

  disabled      COVERAGE_ENABLED=false (the baseline)
  full          COVERAGE_MODE=full
  full+branch   COVERAGE_MODE=full, COVERAGE_BRANCH=true
  selective     COVERAGE_MODE=selective

then ``-n`` warm invocations of each sample event, interleaved round-robin
over the configurations so that machine noise spreads evenly.  The client
round trip counts: the RIE answers only when the runtime asks for the next
event, as Lambda bills.  Then, inside the image, `bench/inprocess.py --all`
(block enter+exit, the seed's every-10th-item loop).

Prints one table (metric, baseline, with coverage, ratio, target, pass/fail)
and writes the JSON with every sample.  Needs podman (scripts/container-setup.sh).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.containers import build_image, podman, start_with_local_s3, stop  # noqa: E402
from tests.harness import S3Server, post_invocation  # noqa: E402

CONFIGS: dict[str, dict[str, str]] = {
    "disabled": {"COVERAGE_ENABLED": "false"},
    "full": {"COVERAGE_MODE": "full"},
    "full+branch": {"COVERAGE_MODE": "full", "COVERAGE_BRANCH": "true"},
    "selective": {"COVERAGE_MODE": "selective"},
}
EVENTS = ("business-process-data.json", "admin-batch-process.json", "health.json")
INIT_REPORT_RE = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")

# Targets: ratio against disabled (warm), added ms (init), µs and ratios (in process).
WARM_TARGETS = {"full": 1.05, "full+branch": 1.10, "selective": 1.05}
BATCH_TARGETS = {"full": 1.10, "full+branch": 1.20, "selective": 1.10}
INIT_TARGET_MS = 30.0


@dataclass
class Environment:
    config: str
    round: int
    name: str
    port: int = 0
    init_report_ms: float | None = None
    first_ms: float = 0.0
    warm_ms: dict[str, list[float]] = field(default_factory=dict)
    exit_code: int | None = None


def start(config: str, round_: int, image: str, s3: S3Server, bucket: str) -> Environment:
    env = Environment(config, round_, f"lc-bench-{uuid.uuid4().hex[:8]}")
    env.port, _ = start_with_local_s3(
        env.name,
        image,
        s3,
        bucket,
        AWS_LAMBDA_FUNCTION_NAME="bench-image",
        COVERAGE_FLUSH_INTERVAL_SECONDS="0",
        ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN="true",  # the batch event is an admin request
        **CONFIGS[config],
    )
    return env


def invoke(env: Environment, body: bytes) -> float:
    started = time.perf_counter()
    result = post_invocation(env.port, body, timeout=60)
    elapsed = (time.perf_counter() - started) * 1000
    if result.status != 200:
        raise RuntimeError(f"{env.config}: invoke returned {result.status}: {result.raw[:300]!r}")
    return elapsed


def one_round(
    round_: int, image: str, s3: S3Server, bucket: str, bodies: dict[str, bytes], n: int
) -> list[Environment]:
    order = list(CONFIGS)
    order = order[round_ % len(order) :] + order[: round_ % len(order)]
    envs = []
    try:
        for config in order:
            env = start(config, round_, image, s3, bucket)
            envs.append(env)
            env.first_ms = invoke(env, bodies["health.json"])  # the cold start
        for _ in range(n):
            for event, body in bodies.items():
                for env in envs:
                    env.warm_ms.setdefault(event, []).append(invoke(env, body))
    finally:
        for env in envs:
            try:
                env.exit_code, logs, _ = stop(env.name)
                found = INIT_REPORT_RE.search(logs)
                env.init_report_ms = float(found.group(1)) if found else None
            finally:
                podman("rm", "--force", "--time", "0", env.name, check=False)
    return envs


def in_image(image: str, repeats: int) -> dict[str, Any]:
    result = podman(
        "run", "--rm", "--network=host", "--read-only", "--tmpfs", "/tmp",
        "-v", f"{REPO_ROOT / 'bench'}:/var/task/bench:ro", "--workdir", "/var/task",
        "--env", "PYTHONDONTWRITEBYTECODE=1", "--entrypoint", "python", image,
        "bench/inprocess.py", "--all", "-r", str(repeats),
        timeout=1800,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    return statistics.median(values)


def rows(envs: list[Environment], inproc: dict[str, Any]) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []

    def by(config: str) -> list[Environment]:
        return [e for e in envs if e.config == config]

    for event in EVENTS:
        base = median([v for e in by("disabled") for v in e.warm_ms[event]])
        for config, default_target in WARM_TARGETS.items():
            value = median([v for e in by(config) for v in e.warm_ms[event]])
            target = BATCH_TARGETS[config] if "batch" in event else default_target
            table.append(
                {
                    "metric": f"warm {event} ({config}), ms",
                    "baseline": base,
                    "value": value,
                    "ratio": value / base,
                    "target": f"<= {target:.2f}x",
                    "pass": value / base <= target,
                }
            )
    base_init = median([e.init_report_ms for e in by("disabled") if e.init_report_ms])
    for config in ("full", "full+branch", "selective"):
        value = median([e.init_report_ms for e in by(config) if e.init_report_ms])
        table.append(
            {"metric": f"cold start INIT REPORT ({config}), ms", "baseline": base_init,
             "value": value, "ratio": value / base_init,
             "target": f"+{INIT_TARGET_MS:.0f} ms", "pass": value - base_init <= INIT_TARGET_MS}
        )  # fmt: skip
    configs = inproc["configs"]
    off = configs["off"]
    table.append(
        {"metric": "block enter+exit, switching (selective), µs", "baseline": off["block_us"],
         "value": configs["selective"]["block_us"], "ratio": None, "target": "<= 5 µs",
         "pass": configs["selective"]["block_us"] <= 5}
    )  # fmt: skip
    table.append(
        {"metric": "block enter+exit, not switching (full), µs", "baseline": off["block_us"],
         "value": configs["full"]["block_us"], "ratio": None, "target": "<= 1 µs",
         "pass": configs["full"]["block_us"] <= 1}
    )  # fmt: skip
    for config, target in (("selective", 1.10), ("selective+branch", 1.20),
                           ("full", 1.10), ("full+branch", 1.20)):  # fmt: skip
        for key, where in (("loop_ms", "loop in measured code"),
                           ("loop_unmeasured_ms", "loop outside the source")):  # fmt: skip
            value = configs[config][key]
            table.append(
                {"metric": f"every-10th-item loop, {where} ({config}), ms",
                 "baseline": off[key], "value": value, "ratio": value / off[key],
                 "target": f"<= {target:.2f}x", "pass": value / off[key] <= target}
            )  # fmt: skip
    return table


def print_table(table: list[dict[str, Any]], header: str) -> None:
    print(header)
    print(f"| {'metric':<62} | baseline | with coverage | ratio | target | pass |")
    print(f"|{'-' * 64}|---:|---:|---:|---|---|")
    for row in table:
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        print(
            f"| {row['metric']:<62} | {row['baseline']:.3f} | {row['value']:.3f} | {ratio} "
            f"| {row['target']} | {'pass' if row['pass'] else 'FAIL'} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="an image already built (default: build one)")
    parser.add_argument("-r", "--rounds", type=int, default=6, help="fresh environments each")
    parser.add_argument("-n", "--invocations", type=int, default=100, help="warm, per event")
    parser.add_argument("--inprocess-repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()

    image = args.image or build_image("localhost/lambda-coverage-bench")
    bodies = {name: (REPO_ROOT / "events" / name).read_bytes() for name in EVENTS}
    s3 = S3Server()
    envs: list[Environment] = []
    try:
        client = s3.client()
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
            envs += one_round(round_, image, s3, bucket, bodies, args.invocations)
    finally:
        s3.stop()
    print("in process, inside the image", file=sys.stderr)
    inproc = in_image(image, args.inprocess_repeats)
    table = rows(envs, inproc)
    python = inproc["configs"]["full"]["python"]
    print_table(
        table,
        f"bench_image: {image}, Python {python}; {args.rounds} fresh environments per "
        f"configuration, {args.invocations} warm invocations per event each; medians",
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"image": image, "python": python, "table": table,
                 "environments": [e.__dict__ for e in envs], "inprocess": inproc},
                indent=1,
            )
        )  # fmt: skip
    failed = [e for e in envs if e.exit_code != 0]
    if failed:
        print(f"{len(failed)} environments did not exit 0", file=sys.stderr)
    return 0 if all(row["pass"] for row in table) and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
