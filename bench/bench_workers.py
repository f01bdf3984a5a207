"""What coverage costs per worker with Lambda Managed Instances, through the real RIE.

    .venv/bin/python bench/bench_workers.py                     # host: 4 workers, 5 rounds
    .venv/bin/python bench/bench_workers.py --image localhost/lambda-coverage-bench:latest \
        -w 4 -r 8 -n 100 --json /tmp/bench-workers-image.json   # in the image (Python 3.14)
    .venv/bin/python bench/bench_workers.py --in-image           # builds the image first

On the host the RIE runs in a private mount namespace (needs root; see
tests/managed_instances.py) on the newest pyenv CPython 3.12+ with
requirements.txt; with ``--image``/``--in-image`` in the project image by podman
(its Python and installed shim; tests/managed_instances.py's `ImageInstance`).

Configurations, side by side in each round (fresh environments, started in a
rotating order), against the first (bench/bench_image.py's):

  disabled      COVERAGE_ENABLED=false (the baseline)
  full          COVERAGE_MODE=full
  full+branch   COVERAGE_MODE=full, COVERAGE_BRANCH=true
  selective     COVERAGE_MODE=selective (the handler measures one block)

Metrics (medians over every worker of every round; the same targets as the
standard mode's, bench/bench_image.py's ``INIT_TARGET_MS`` and ``WARM_TARGETS``):

  worker init  each worker's init, from its fork to its first request for an event
               (bench/worker_init_probe.py: the shim's start, the handler's import,
               the shim's end of init), as the INIT REPORT times a standard
               environment's, and the worker's CPU time meanwhile (all its threads:
               steadier on a shared machine): target +5 ms per worker;
  ready        from the environment's start until ``-w`` invocations are served at
               once, one per worker (the main process, then every worker's init,
               ``-w`` of them sharing the machine's CPUs): target +5 ms per worker
               that shares a CPU (``ceil(w / CPUs)`` x 5 ms);
  warm         ``-w`` callers at once, after ``--warmup`` invocations each (the
               workers build coverage.py after their init), ``-n`` each (a loop of
               measured code per invocation): the median round trip of the
               answered attempts under concurrent load (target as the standard
               mode's warm invocations: 1.05x, 1.10x with branches);
  refused      attempts refused with ``Runtime.Unavailable`` per invocation (no
               worker waiting for work at that moment: the time a worker spends
               between its response and its next poll), retried after 1 ms as a
               caller would (target +0.05).

The machine's other load moves the numbers: compare the rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.bench_image import CONFIGS as STANDARD_CONFIGS  # noqa: E402
from bench.bench_image import INIT_TARGET_MS, WARM_TARGETS, print_table  # noqa: E402
from tests.containers import build_image  # noqa: E402
from tests.harness import S3Server, clean_environment, post_invocation  # noqa: E402
from tests.managed_instances import (  # noqa: E402
    ImageInstance,
    ManagedInstance,
    can_run,
    image_environment,
    unavailable,
)
from tests.test_recorder_rie import sysmon_runtime  # noqa: E402

FUNCTION = REPO_ROOT / "tests" / "functions" / "many_workers.py"
PROBE = REPO_ROOT / "bench" / "worker_init_probe.py"
HANDLERS = {"selective": "many_workers.selective_handler"}  # else many_workers.handler
CONFIGS = list(STANDARD_CONFIGS)
WORK = 2000  # loop rounds of measured code per warm invocation
REFUSED_TARGET = 0.05


class Runner:
    """Starts one environment of a configuration, on the host or in the image."""

    def __init__(self, s3: S3Server, image: str | None) -> None:
        self.s3 = s3
        self.image = image
        self.python = ImageInstance.PYTHON if image else sysmon_runtime()
        # What a worker of each configuration imported during its own init (not
        # inherited from the main process): where its init time goes.
        self.imported: dict[str, list[str]] = {}

    def start(
        self, config: str, work: Path, bucket: str, workers: int
    ) -> tuple[ManagedInstance, float, list[dict[str, Any]]]:
        """The environment once every worker served one invocation, the time that
        took (ms) and each worker's probe (bench/worker_init_probe.py)."""
        handler = HANDLERS.get(config, "many_workers.handler")
        explicit = {
            "COVERAGE_S3_BUCKET": bucket,
            "COVERAGE_S3_ENDPOINT_URL": self.s3.endpoint_url,
            "AWS_LAMBDA_FUNCTION_NAME": f"bench-{config.replace('+', '-')}",
            **STANDARD_CONFIGS[config],
        }
        bootstrap = f"exec {self.python} {PROBE.name} {handler}"
        arguments = (work, self.python, handler, [FUNCTION, PROBE])
        started = time.monotonic()
        if self.image:
            env = image_environment(explicit)
            instance: ManagedInstance = ImageInstance(
                *arguments, env, workers, bootstrap, image=self.image
            )
        else:
            env = clean_environment(explicit)
            env.pop("PYTHONPATH", None)  # the bootstrap sets it
            instance = ManagedInstance(*arguments, env, workers, bootstrap)
        answers = instance.invoke_together([{"path": "a", "gather": workers}] * workers)
        ready = (time.monotonic() - started) * 1000
        assert all(a.status == 200 for a in answers), [a.body for a in answers]
        probes = [
            json.loads(path.read_text())
            for path in sorted((instance.tmp / "worker-init").glob("*.json"))
        ]
        assert len(probes) == workers, (probes, instance.logs()[-2000:])
        self.imported[config] = probes[0]["imported"]
        return instance, ready, probes


def warm(
    instance: ManagedInstance, workers: int, invocations: int, warmup: int
) -> tuple[list[float], int]:
    """Round trips of the answered attempts, and how many attempts were refused
    (``Runtime.Unavailable``: no worker was waiting for work at that moment)."""
    samples: list[float] = []
    refused = 0
    lock = threading.Lock()
    event = json.dumps({"path": "b", "work": WORK}).encode()

    def caller() -> None:
        nonlocal refused
        mine, turned_away = [], 0
        for _ in range(warmup):  # past the workers' coverage.py build after their init
            while unavailable(post_invocation(instance.port, event)):
                time.sleep(0.001)
        for _ in range(invocations):
            while True:
                began = time.perf_counter()
                answer = post_invocation(instance.port, event)
                if not unavailable(answer):
                    break
                turned_away += 1
                time.sleep(0.001)
            mine.append((time.perf_counter() - began) * 1000)
            assert answer.status == 200, answer.body
        with lock:
            samples.extend(mine)
            refused += turned_away

    threads = [threading.Thread(target=caller) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--workers", type=int, default=4, help="AWS_LAMBDA_MAX_CONCURRENCY")
    parser.add_argument("-r", "--rounds", type=int, default=5, help="fresh environments each")
    parser.add_argument("-n", "--invocations", type=int, default=100, help="per caller")
    parser.add_argument("--warmup", type=int, default=30, help="per caller, not counted")
    parser.add_argument("--image", help="run in this image (built already)")
    parser.add_argument(
        "--in-image", action="store_true", help="run in the image, built first unless --image"
    )
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()
    image = args.image
    if args.in_image and not image:
        image = build_image("localhost/lambda-coverage-bench")
    if not image:
        reason = can_run()
        if reason:
            print(f"cannot run: {reason}", file=sys.stderr)
            return 2
    s3 = S3Server()
    client = s3.client()
    samples: dict[str, dict[str, list[float]]] = {
        c: {"init": [], "init_cpu": [], "ready": [], "warm": [], "refused": []} for c in CONFIGS
    }
    try:
        runner = Runner(s3, image)
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as scratch:
            for round_ in range(args.rounds):
                shift = round_ % len(CONFIGS)
                for config in CONFIGS[shift:] + CONFIGS[:shift]:
                    bucket = f"bench-{uuid.uuid4().hex[:12]}"
                    client.create_bucket(Bucket=bucket)
                    work = Path(scratch) / f"{config.replace('+', '-')}-{round_}"
                    instance, ready, probes = runner.start(config, work, bucket, args.workers)
                    try:
                        samples[config]["ready"].append(ready)
                        samples[config]["init"].extend(p["init_ms"] for p in probes)
                        samples[config]["init_cpu"].extend(p["init_cpu_ms"] for p in probes)
                        answered, refused = warm(
                            instance, args.workers, args.invocations, args.warmup
                        )
                        samples[config]["warm"].extend(answered)
                        samples[config]["refused"].append(refused / len(answered))
                        instance.terminate()
                    finally:
                        instance.kill()
    finally:
        s3.stop()
    table = rows(samples, args.workers, os.cpu_count() or 1)
    where = f"image {image}" if image else "host"
    print_table(table, f"Managed Instances ({where}), {args.workers} workers, {args.rounds} rounds")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "where": where,
                    "samples": samples,
                    "rows": table,
                    "worker_imports": runner.imported,
                },
                indent=1,
            )
        )
    return 0


def rows(
    samples: dict[str, dict[str, list[float]]], workers: int, cpus: int
) -> list[dict[str, Any]]:
    """One row per metric and configuration: medians (refusals: means) against
    the disabled baseline's, with the target and whether it is met."""
    base = {
        "init": statistics.median(samples["disabled"]["init"]),
        "init_cpu": statistics.median(samples["disabled"]["init_cpu"]),
        "ready": statistics.median(samples["disabled"]["ready"]),
        "warm": statistics.median(samples["disabled"]["warm"]),
        "refused": statistics.mean(samples["disabled"]["refused"]),
    }
    sharing = math.ceil(workers / cpus)  # workers per CPU, their inits one after another
    table = []
    for config in CONFIGS[1:]:
        value = statistics.median(samples[config]["init"])
        table.append(
            {"metric": f"worker init, each of {workers} ({config}), ms", "baseline": base["init"],
             "value": value, "ratio": value / base["init"], "target": f"+{INIT_TARGET_MS:g} ms",
             "pass": value - base["init"] <= INIT_TARGET_MS}
        )  # fmt: skip
        value = statistics.median(samples[config]["init_cpu"])
        table.append(
            {"metric": f"worker init CPU, each of {workers} ({config}), ms",
             "baseline": base["init_cpu"], "value": value, "ratio": value / base["init_cpu"],
             "target": f"+{INIT_TARGET_MS:g} ms",
             "pass": value - base["init_cpu"] <= INIT_TARGET_MS}
        )  # fmt: skip
        value = statistics.median(samples[config]["ready"])
        allowed = INIT_TARGET_MS * sharing
        table.append(
            {"metric": f"{workers} workers ready ({config}), ms", "baseline": base["ready"],
             "value": value, "ratio": value / base["ready"], "target": f"+{allowed:g} ms",
             "pass": value - base["ready"] <= allowed}
        )  # fmt: skip
        value = statistics.median(samples[config]["warm"])
        target = WARM_TARGETS[config]
        table.append(
            {"metric": f"warm under {workers} concurrent callers ({config}), ms",
             "baseline": base["warm"], "value": value, "ratio": value / base["warm"],
             "target": f"<= {target:.2f}x", "pass": value / base["warm"] <= target}
        )  # fmt: skip
        value = statistics.mean(samples[config]["refused"])
        table.append(
            {"metric": f"refused attempts per invocation ({config})",
             "baseline": base["refused"], "value": value, "ratio": None,
             "target": f"+{REFUSED_TARGET:g}", "pass": value - base["refused"] <= REFUSED_TARGET}
        )  # fmt: skip
    return table


if __name__ == "__main__":
    raise SystemExit(main())
