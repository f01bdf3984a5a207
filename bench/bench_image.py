"""What coverage costs in the built image (its own Python, 3.14), through the real RIE.

    bench/run_image.sh                       # build the images, run every section, print the table
    bench/run_image.sh --sections cold,heavy --cold-rounds 12
    bench/run_image.sh -r 6 -n 100 --json bench/image-results.json

Configurations, side by side in one run, against the first:

  disabled      COVERAGE_ENABLED=false (the baseline)
  full          COVERAGE_MODE=full
  full+branch   COVERAGE_MODE=full, COVERAGE_BRANCH=true
  selective     COVERAGE_MODE=selective

Sections (``--sections``):

  warm   per round one fresh container per configuration, then ``-n`` warm
         invocations of each sample event, interleaved round-robin; then,
         inside the image, `bench/inprocess.py --all` (blocks, the loop);
  cold   ``--cold-rounds`` fresh environments per configuration, one at a
         time, in a rotating order: the RIE's INIT REPORT (target +5 ms);
  heavy  the same for bench/heavy (30+ distributions `pip install --target`
         into the task root, imported at init; target 1.05x);
  labels like ``warm``, with per-invocation labels from the caller's
         ClientContext (#20): none, the same label on every invocation, a
         new label on every invocation (an integration-test run), full and
         full + branch (targets 1.05x, 1.05x, 1.30x against disabled);
         then `bench/labels.py --all` inside the image (the switch, the cost
         per line after it, a measured call between switches);
  small  a third of a CPU (``podman run --cpus 0.33``, what Lambda gives a
         512 MB function): the round trips of the first three invocations,
         while the shipping thread builds coverage.py and the S3 client
         (target 1.05x each), and the runtime's RSS after them and after
         ``--long-run`` more (target +10 MB).

The client round trip counts: the RIE answers only when the runtime asks for
the next event, as Lambda bills.

``--freeze``: each environment is frozen (its cgroup freezer, as ``podman pause``)
from each response, once the runtime has asked for the next event, until its
next invocation is sent, as Lambda freezes an idle environment
(`bench/freeze.py`); the shipping thread's work (checkpoints, maintenance, the
first hand-over, the label pre-arm) then runs during the next invocations, as
in Lambda.  The warm and labels rows are then the RIE's REPORT Durations (what
Lambda bills); the small section is frozen between its first three
invocations; the cold section (one invocation: its init) is not affected.

Prints one table (metric, baseline, with coverage, ratio, target, pass/fail)
and writes the JSON with every sample.
Needs podman (scripts/container-setup.sh).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import init_cpu  # noqa: E402
from bench.freeze import Freezer  # noqa: E402
from tests.containers import (  # noqa: E402
    build_image,
    podman,
    script,
    start_with_local_s3,
    stop,
)
from tests.harness import S3Server, client_context, post_invocation  # noqa: E402

CONFIGS: dict[str, dict[str, str]] = {
    "disabled": {"COVERAGE_ENABLED": "false"},
    "full": {"COVERAGE_MODE": "full"},
    "full+branch": {"COVERAGE_MODE": "full", "COVERAGE_BRANCH": "true"},
    "selective": {"COVERAGE_MODE": "selective"},
}
EVENTS = ("business-process-data.json", "admin-batch-process.json", "health.json")
INIT_REPORT_RE = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
REPORT_RE = re.compile(r"^REPORT .*?\tDuration: ([0-9.]+) ms", re.MULTILINE)

# Targets: ratio against disabled (warm), added ms (init), µs and ratios (in process).
WARM_TARGETS = {"full": 1.05, "full+branch": 1.10, "selective": 1.05}
BATCH_TARGETS = {"full": 1.10, "full+branch": 1.20, "selective": 1.10}
INIT_TARGET_MS = 5.0


@dataclass
class Environment:
    config: str
    round: int
    name: str
    port: int = 0
    init_report_ms: float | None = None
    init_cpu_ms: float | None = None  # the runtime process's, when init was done
    first_ms: float = 0.0
    warm_ms: dict[str, list[float]] = field(default_factory=dict)
    # With --freeze: the warm invocations' RIE REPORT Durations (what Lambda bills), per event.
    billed_ms: dict[str, list[float]] = field(default_factory=dict)
    exit_code: int | None = None


def start(
    name: str, round_: int, image: str, s3: S3Server, bucket: str, variables: dict[str, str]
) -> Environment:
    """A fresh environment of configuration ``name`` (its coverage ``variables``)."""
    env = Environment(name, round_, f"lc-bench-{uuid.uuid4().hex[:8]}")
    env.port, _ = start_with_local_s3(
        env.name,
        image,
        s3,
        bucket,
        AWS_LAMBDA_FUNCTION_NAME="bench-image",
        COVERAGE_FLUSH_INTERVAL_SECONDS="0",
        ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN="true",  # the batch event is an admin request
        **variables,
    )
    return env


def invoke(
    env: Environment, body: bytes, label: str | None = None, freezer: Freezer | None = None
) -> float:
    """The round trip of one invocation; ``freezer`` (``--freeze``) thaws the
    environment just before and freezes it once the runtime asks for the next event."""
    headers = client_context({"coverage-label": label}) if label else None
    if freezer is not None:
        freezer.thaw()
    started = time.perf_counter()
    try:
        result = post_invocation(env.port, body, timeout=60, headers=headers)
    except OSError as exc:
        raise RuntimeError(f"{env.config} ({env.name}): invoke failed: {exc!r}") from exc
    elapsed = (time.perf_counter() - started) * 1000
    if result.status != 200:
        raise RuntimeError(f"{env.config}: invoke returned {result.status}: {result.raw[:300]!r}")
    if freezer is not None:
        freezer.freeze()
    return elapsed


def billed_by_event(logs: str, events: list[str]) -> dict[str, list[float]]:
    """The warm invocations' REPORT Durations per event: the first REPORT (the cold
    start) is left out, then each environment ran ``events`` in turn (`one_round`)."""
    found: dict[str, list[float]] = {}
    for index, duration in enumerate(REPORT_RE.findall(logs)[1:]):
        found.setdefault(events[index % len(events)], []).append(float(duration))
    return found


def one_round(
    round_: int,
    image: str,
    s3: S3Server,
    bucket: str,
    bodies: dict[str, bytes],
    n: int,
    configs: dict[str, dict[str, str]] | None = None,
    label: Callable[[str, int], str | None] | None = None,
    freeze: bool = False,
) -> list[Environment]:
    """One fresh environment per configuration (``configs``: name -> its `CONFIGS`
    entry's variables, by default `CONFIGS` itself), then ``n`` warm invocations of
    each event, round-robin; ``label(name, i)`` labels the i-th invocation.
    ``freeze``: each environment frozen between its invocations (`bench/freeze.py`)."""
    configs = configs if configs is not None else CONFIGS
    order = list(configs)
    order = order[round_ % len(order) :] + order[: round_ % len(order)]
    envs = []
    freezers: dict[str, Freezer] = {}
    counter = 0
    try:
        for name in order:
            env = start(name, round_, image, s3, bucket, configs[name])
            envs.append(env)
            freezers[env.name] = Freezer(env.name, freeze)
            env.first_ms = invoke(env, bodies["health.json"], freezer=freezers[env.name])
        for _ in range(n):
            for event, body in bodies.items():
                for env in envs:
                    counter += 1
                    chosen = label(env.config, counter) if label is not None else None
                    elapsed = invoke(env, body, chosen, freezers[env.name])
                    env.warm_ms.setdefault(event, []).append(elapsed)
    finally:
        failing = sys.exc_info()[0] is not None
        for env in envs:
            try:
                freezers[env.name].thaw()  # a paused container's processes get no SIGTERM
                env.exit_code, logs, _ = stop(env.name)
                found = INIT_REPORT_RE.search(logs)
                env.init_report_ms = float(found.group(1)) if found else None
                if freeze:
                    env.billed_ms = billed_by_event(logs, list(bodies))
                if failing:  # what the environments said, before they are removed
                    sys.stderr.write(f"--- {env.config} ({env.name}): exit {env.exit_code}\n")
                    sys.stderr.write(logs[-4000:] + "\n")
            finally:
                podman("rm", "--force", "--time", "0", env.name, check=False)
    return envs


# The labels section: (configuration, how invocations are labelled) -> its target.
LABEL_CONFIGS: dict[str, tuple[str, str | None, float]] = {
    "disabled": ("disabled", None, 1.0),
    "full, labels off": ("full", None, 1.05),  # COVERAGE_LABELS=none: as before labels
    "full, no labels": ("full", None, 1.05),
    "full, same label": ("full", "same", 1.05),
    "full, new label each": ("full", "new", 1.30),
    "full+branch, no labels": ("full+branch", None, 1.10),
    "full+branch, same label": ("full+branch", "same", 1.10),
    "full+branch, new label each": ("full+branch", "new", 1.30),
}


def labels_round(
    round_: int,
    image: str,
    s3: S3Server,
    bucket: str,
    bodies: dict[str, bytes],
    n: int,
    freeze: bool = False,
) -> list[Environment]:
    """One fresh environment per labels configuration, invoked round-robin."""
    configs = {
        name: {**CONFIGS[config], **({"COVERAGE_LABELS": "none"} if "labels off" in name else {})}
        for name, (config, _, _) in LABEL_CONFIGS.items()
    }

    def label(name: str, counter: int) -> str | None:
        labelling = LABEL_CONFIGS[name][1]
        if labelling == "same":
            return "tests/test_it.py::test_same"
        if labelling == "new":
            return f"tests/test_it.py::test_case[{counter}]"
        return None

    return one_round(round_, image, s3, bucket, bodies, n, configs, label, freeze)


def warm(env: Environment, frozen: bool) -> dict[str, list[float]]:
    """The warm invocations per event: round trips, or frozen (``--freeze``) the
    RIE's REPORT Durations, what Lambda bills (the shipping thread's work spills
    into them, as it does in Lambda)."""
    return env.billed_ms if frozen else env.warm_ms


def warm_metric(event: str, config: str, frozen: bool) -> str:
    if frozen:
        return f"warm {event} ({config}), REPORT ms, frozen"
    return f"warm {event} ({config}), ms"


def labels_rows(
    envs: list[Environment], inproc: dict[str, Any], frozen: bool = False
) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []
    for event in EVENTS:
        base = median([v for e in envs if e.config == "disabled" for v in warm(e, frozen)[event]])
        for name, (config, labelling, label_target) in LABEL_CONFIGS.items():
            if name == "disabled":
                continue
            target = label_target
            if "batch" in event and labelling != "new":  # blocks per item: as the warm rows
                target = BATCH_TARGETS["full+branch" if "branch" in config else "full"]
            value = median([v for e in envs if e.config == name for v in warm(e, frozen)[event]])
            table.append(
                {"metric": warm_metric(event, name, frozen), "baseline": base, "value": value,
                 "ratio": value / base, "target": f"<= {target:.2f}x",
                 "pass": value / base <= target}
            )  # fmt: skip
    for row in inproc.get("rows", []):
        table.append(row)
    return table


def labels_in_image(image: str, repeats: int) -> dict[str, Any]:
    result = podman(
        "run", "--rm", "--network=host", "--read-only", "--tmpfs", "/tmp",
        "-v", f"{REPO_ROOT / 'bench'}:/var/task/bench:ro", "--workdir", "/var/task",
        "--entrypoint", "python", image, "bench/labels.py", "--all", "-r", str(repeats),
        timeout=1800, check=False,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


RSS_PROBE = """
import os
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            command = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"coverage_runtime" in command:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    print(int(line.split()[1]))
"""
SMALL_CPUS = "0.33"  # what Lambda gives a 512 MB function
SMALL_LONG_RUN = 1000


@dataclass
class SmallEnvironment:
    """A cold start on a third of a CPU: the first invocations and the memory."""

    config: str
    round: int
    init_report_ms: float | None = None
    first_ms: list[float] = field(default_factory=list)  # invocations 1-3, round trips
    rss_after_init_kb: int | None = None
    rss_after_long_run_kb: int | None = None


def rss_kb(name: str) -> int | None:
    found = podman("exec", name, "python", "-c", RSS_PROBE, check=False).stdout.split()
    return int(found[0]) if found else None


def small_round(
    round_: int,
    image: str,
    s3: S3Server,
    bucket: str,
    body: bytes,
    long_run: int,
    freeze: bool = False,
) -> list[SmallEnvironment]:
    """One fresh environment per configuration, one after the other (a third
    of a CPU each, never two at once), in a rotating order.  ``freeze``: frozen
    between the first three invocations (the shipping thread's start then runs
    during the second and third, as in Lambda); the long run is not."""
    order = list(CONFIGS)
    order = order[round_ % len(order) :] + order[: round_ % len(order)]
    found = []
    for config in order:
        env = Environment(config, round_, f"lc-bench-{uuid.uuid4().hex[:8]}")
        small = SmallEnvironment(config, round_)
        env.port, _ = start_with_local_s3(
            env.name, image, s3, bucket, "--cpus", SMALL_CPUS,
            AWS_LAMBDA_FUNCTION_NAME="bench-small", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
            **CONFIGS[config],
        )  # fmt: skip
        freezer = Freezer(env.name, freeze)
        try:
            for _ in range(3):
                small.first_ms.append(invoke(env, body, freezer=freezer))
            freezer.thaw()
            small.rss_after_init_kb = rss_kb(env.name)
            for _ in range(long_run):
                invoke(env, body)
            small.rss_after_long_run_kb = rss_kb(env.name)
        finally:
            try:
                freezer.thaw()
                _, logs, _ = stop(env.name)
            finally:
                podman("rm", "--force", "--time", "0", env.name, check=False)
        report = INIT_REPORT_RE.search(logs)
        small.init_report_ms = float(report.group(1)) if report else None
        found.append(small)
    return found


def small_rows(envs: list[SmallEnvironment], frozen: bool = False) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []

    def by(config: str) -> list[SmallEnvironment]:
        return [e for e in envs if e.config == config]

    base = by("disabled")
    for config in ("full", "full+branch", "selective"):
        for index in range(3):
            baseline = median([e.first_ms[index] for e in base])
            value = median([e.first_ms[index] for e in by(config)])
            table.append(
                {"metric": f"{SMALL_CPUS} CPU: invocation {index + 1} round trip ({config}), ms"
                 + (", frozen" if frozen else ""),
                 "baseline": baseline, "value": value, "ratio": value / baseline,
                 "target": "<= 1.05x", "pass": value / baseline <= 1.05}
            )  # fmt: skip
        for key, label in (("rss_after_init_kb", "after init (3 invocations)"),
                           ("rss_after_long_run_kb", "after 1,003 invocations")):  # fmt: skip
            baseline = median([getattr(e, key) / 1024 for e in base if getattr(e, key)])
            value = median([getattr(e, key) / 1024 for e in by(config) if getattr(e, key)])
            table.append(
                {"metric": f"{SMALL_CPUS} CPU: RSS {label} ({config}), MB", "baseline": baseline,
                 "value": value, "ratio": None, "target": "+10 MB",
                 "pass": value - baseline <= 10}
            )  # fmt: skip
    return table


def cold_round(
    round_: int, image: str, s3: S3Server, bucket: str, body: bytes, label: str
) -> list[Environment]:
    """One fresh environment per configuration, one at a time: its INIT REPORT."""
    order = list(CONFIGS)
    order = order[round_ % len(order) :] + order[: round_ % len(order)]
    found = []
    for config in order:
        env = Environment(config, round_, f"lc-bench-{uuid.uuid4().hex[:8]}")
        env.port, _ = start_with_local_s3(
            env.name, image, s3, bucket, *init_cpu.container_args(),
            AWS_LAMBDA_FUNCTION_NAME=f"bench-{label}", PYTHONPATH=init_cpu.MOUNT,
            **CONFIGS[config],
        )  # fmt: skip
        try:
            env.first_ms = invoke(env, body)
        finally:
            env.exit_code, logs, _ = stop(env.name)
            podman("rm", "--force", "--time", "0", env.name, check=False)
        report = INIT_REPORT_RE.search(logs)
        env.init_report_ms = float(report.group(1)) if report else None
        env.init_cpu_ms = init_cpu.cpu_ms(logs)
        found.append(env)
    return found


def cold_rows(envs: list[Environment], label: str, target: str) -> list[dict[str, Any]]:
    """``target``: ``+N`` ms added, or ``N x`` of the baseline's init.  Per
    configuration, the INIT REPORT (wall) and the runtime process's CPU time at
    the end of init (steadier on a shared machine), against the same target."""
    table = []
    for what, attribute in (("INIT REPORT", "init_report_ms"), ("CPU", "init_cpu_ms")):
        found = {
            config: [v for e in envs if e.config == config and (v := getattr(e, attribute))]
            for config in CONFIGS
        }
        if not found["disabled"]:
            continue  # (an image without the bench's sitecustomize: no CPU line)
        base = median(found["disabled"])
        for config in ("full", "full+branch", "selective"):
            value = median(found[config])
            if target.startswith("+"):
                passed = value - base <= float(target[1:])
                shown = f"+{float(target[1:]):g} ms"
            else:
                passed = value / base <= float(target)
                shown = f"<= {float(target):.2f}x"
            table.append(
                {"metric": f"cold start {what}, {label} ({config}), ms", "baseline": base,
                 "value": value, "ratio": value / base, "target": shown, "pass": passed}
            )  # fmt: skip
    return table


def build_heavy(image: str) -> str:
    """bench/heavy on top of ``image``, by AWS's recipe (pip install --target)."""
    base = script("container-setup.sh", timeout=1200).stdout.strip().splitlines()[-1]
    name = "localhost/lambda-coverage-heavy:current"
    podman(
        "build", "--network=host", "--pull=never", "--build-arg", f"BASE_IMAGE={base}",
        "--build-arg", f"FUNCTION_IMAGE={image}", "-t", name, str(REPO_ROOT / "bench" / "heavy"),
        timeout=1800,
    )  # fmt: skip
    return name


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


def rows(
    envs: list[Environment], inproc: dict[str, Any], frozen: bool = False
) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []

    def by(config: str) -> list[Environment]:
        return [e for e in envs if e.config == config]

    for event in EVENTS:
        base = median([v for e in by("disabled") for v in warm(e, frozen)[event]])
        for config, default_target in WARM_TARGETS.items():
            value = median([v for e in by(config) for v in warm(e, frozen)[event]])
            target = BATCH_TARGETS[config] if "batch" in event else default_target
            table.append(
                {
                    "metric": warm_metric(event, config, frozen),
                    "baseline": base,
                    "value": value,
                    "ratio": value / base,
                    "target": f"<= {target:.2f}x",
                    "pass": value / base <= target,
                }
            )
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
        base = f"{row['baseline']:.3f}" if row["baseline"] is not None else "-"
        print(
            f"| {row['metric']:<62} | {base} | {row['value']:.3f} | {ratio} "
            f"| {row['target']} | {'pass' if row['pass'] else 'FAIL'} |"
        )


SECTIONS = ("warm", "labels", "cold", "heavy", "small")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="an image already built (default: build one)")
    parser.add_argument("-r", "--rounds", type=int, default=6, help="fresh environments each")
    parser.add_argument("-n", "--invocations", type=int, default=100, help="warm, per event")
    parser.add_argument("--cold-rounds", type=int, default=8, help="cold starts per config")
    parser.add_argument("--small-rounds", type=int, default=3, help="small environments each")
    parser.add_argument("--long-run", type=int, default=SMALL_LONG_RUN)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma list")
    parser.add_argument("--inprocess-repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument(
        "--freeze",
        action="store_true",
        help="freeze each environment between invocations, as Lambda does (warm, labels, small)",
    )
    args = parser.parse_args()
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")

    image = args.image or build_image("localhost/lambda-coverage-bench")
    heavy = build_heavy(image) if "heavy" in sections else None
    bodies = {name: (REPO_ROOT / "events" / name).read_bytes() for name in EVENTS}
    heavy_body = (REPO_ROOT / "bench" / "heavy" / "event.json").read_bytes()
    s3 = S3Server()
    envs: list[Environment] = []
    cold: dict[str, list[Environment]] = {"example": [], "heavy": []}
    small: list[SmallEnvironment] = []
    labelled: list[Environment] = []
    try:
        client = s3.client()
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        if "warm" in sections:
            for round_ in range(args.rounds):
                print(f"warm round {round_ + 1}/{args.rounds}", file=sys.stderr)
                envs += one_round(
                    round_, image, s3, bucket, bodies, args.invocations, freeze=args.freeze
                )
        if "labels" in sections:
            for round_ in range(args.rounds):
                print(f"labels round {round_ + 1}/{args.rounds}", file=sys.stderr)
                labelled += labels_round(
                    round_, image, s3, bucket, bodies, args.invocations, args.freeze
                )
        for round_ in range(args.cold_rounds):
            if "cold" in sections:
                print(f"cold round {round_ + 1}/{args.cold_rounds}", file=sys.stderr)
                cold["example"] += cold_round(
                    round_, image, s3, bucket, bodies["health.json"], "example"
                )
            if heavy is not None:
                cold["heavy"] += cold_round(round_, heavy, s3, bucket, heavy_body, "heavy")
        if "small" in sections:
            for round_ in range(args.small_rounds):
                print(f"small round {round_ + 1}/{args.small_rounds}", file=sys.stderr)
                small += small_round(
                    round_, image, s3, bucket, bodies["business-process-data.json"],
                    args.long_run, args.freeze,
                )  # fmt: skip
    finally:
        s3.stop()
    table: list[dict[str, Any]] = []
    inproc: dict[str, Any] = {}
    if "warm" in sections:
        print("in process, inside the image", file=sys.stderr)
        inproc = in_image(image, args.inprocess_repeats)
        table += rows(envs, inproc, args.freeze)
    if labelled:
        print("labels in process, inside the image", file=sys.stderr)
        inproc_labels = labels_in_image(image, args.inprocess_repeats)
        table += labels_rows(labelled, inproc_labels, args.freeze)
    if cold["example"]:
        table += cold_rows(cold["example"], "example", f"+{INIT_TARGET_MS:g}")
    if cold["heavy"]:
        table += cold_rows(cold["heavy"], "heavy function (bench/heavy)", "1.05")
    if small:
        table += small_rows(small, args.freeze)
    python = podman("run", "--rm", "--entrypoint", "python", image, "-V").stdout.split()[-1]
    print_table(
        table,
        f"bench_image: {image}, Python {python}; warm: {args.rounds} environments per "
        f"configuration x {args.invocations} invocations per event; cold: {args.cold_rounds} "
        f"per configuration; small: {args.small_rounds} per configuration"
        f"{'; frozen between invocations (--freeze)' if args.freeze else ''}; medians",
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"image": image, "python": python, "table": table,
                 "environments": [e.__dict__ for e in envs],
                 "labels": [e.__dict__ for e in labelled],
                 "cold": {k: [e.__dict__ for e in v] for k, v in cold.items()},
                 "small": [e.__dict__ for e in small], "inprocess": inproc},
                indent=1,
            )
        )  # fmt: skip
    everything = [*envs, *labelled, *cold["example"], *cold["heavy"]]
    failed = [e for e in everything if e.exit_code != 0]
    if failed:
        print(f"{len(failed)} environments did not exit 0", file=sys.stderr)
    return 0 if all(row["pass"] for row in table) and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
