"""What coverage costs per worker with Lambda Managed Instances, through the real RIE.

    sudo-less machines cannot run it (see tests/managed_instances.py); here:
    .venv/bin/python bench/bench_workers.py                    # 4 workers, 5 rounds
    .venv/bin/python bench/bench_workers.py -w 8 -r 6 -n 200 --json /tmp/bench-workers.json

Configurations, side by side in each round (fresh environments, started in a
rotating order), against the first:

  disabled    COVERAGE_ENABLED=false (the baseline)
  full        COVERAGE_MODE=full
  selective   COVERAGE_MODE=selective (the handler measures one block)

Metrics (medians over rounds):

  ready       from the RIE's start until ``-w`` invocations are served at once,
              one per worker (each worker's init, in parallel): the init the
              shim adds to every worker (target +30 ms, as a cold start in the
              standard mode);
  warm        ``-w`` callers at once, after ``--warmup`` invocations each
              (the workers build coverage.py after their init), ``-n`` each (a loop of
              measured code per invocation): the median round trip of the
              answered attempts under concurrent load (target 1.05x, as warm
              invocations in the standard mode);
  refused     attempts refused with ``Runtime.Unavailable`` per invocation
              (no worker waiting for work at that moment: the time a worker
              spends between its response and its next poll), retried after
              1 ms as a caller would (target +0.05).

The runtime is the newest pyenv CPython 3.12+ with requirements.txt (the RIE
tests' venv); the machine's other load moves the numbers: compare the rows of
one run, not runs.
"""

from __future__ import annotations

import argparse
import json
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

from bench_image import print_table  # noqa: E402

from tests.harness import S3Server, clean_environment, post_invocation  # noqa: E402
from tests.managed_instances import ManagedInstance, can_run, unavailable  # noqa: E402
from tests.test_recorder_rie import sysmon_runtime  # noqa: E402

FUNCTION = REPO_ROOT / "tests" / "functions" / "many_workers.py"
CONFIGS = {
    "disabled": ("many_workers.handler", {"COVERAGE_ENABLED": "false"}),
    "full": ("many_workers.handler", {"COVERAGE_MODE": "full"}),
    "selective": ("many_workers.selective_handler", {"COVERAGE_MODE": "selective"}),
}
WORK = 2000  # loop rounds of measured code per warm invocation


def start(config: str, work: Path, python: str, s3: S3Server, bucket: str, workers: int):
    handler, extra = CONFIGS[config]
    env = clean_environment(
        {
            "COVERAGE_S3_BUCKET": bucket,
            "COVERAGE_S3_ENDPOINT_URL": s3.endpoint_url,
            "AWS_LAMBDA_FUNCTION_NAME": f"bench-{config}",
            **extra,
        }
    )
    env.pop("PYTHONPATH", None)
    started = time.monotonic()
    instance = ManagedInstance(work, python, handler, [FUNCTION], env, workers)
    answers = instance.invoke_together([{"path": "a", "gather": workers}] * workers)
    ready = time.monotonic() - started
    assert all(a.status == 200 for a in answers), [a.body for a in answers]
    return instance, ready * 1000


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
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args()
    reason = can_run()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    python = sysmon_runtime()
    s3 = S3Server()
    client = s3.client()
    samples: dict[str, dict[str, list[float]]] = {
        c: {"ready": [], "warm": [], "refused": []} for c in CONFIGS
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as scratch:
            for round_ in range(args.rounds):
                shift = round_ % len(CONFIGS)
                order = list(CONFIGS)[shift:] + list(CONFIGS)[:shift]
                for config in order:
                    bucket = f"bench-{uuid.uuid4().hex[:12]}"
                    client.create_bucket(Bucket=bucket)
                    work = Path(scratch) / f"{config}-{round_}"
                    instance, ready = start(config, work, python, s3, bucket, args.workers)
                    try:
                        samples[config]["ready"].append(ready)
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
    table = rows(samples, args.workers)
    print_table(table, f"Managed Instances, {args.workers} workers, {args.rounds} rounds")
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "rows": table}, indent=1))
    return 0


def rows(samples: dict[str, dict[str, list[float]]], workers: int) -> list[dict[str, Any]]:
    base_ready = statistics.median(samples["disabled"]["ready"])
    base_warm = statistics.median(samples["disabled"]["warm"])
    base_refused = statistics.mean(samples["disabled"]["refused"])
    table = []
    for config in ("full", "selective"):
        ready = statistics.median(samples[config]["ready"])
        table.append(
            {"metric": f"{workers} workers ready ({config}), ms", "baseline": base_ready,
             "value": ready, "ratio": ready / base_ready, "target": "+30 ms",
             "pass": ready - base_ready <= 30}
        )  # fmt: skip
        value = statistics.median(samples[config]["warm"])
        table.append(
            {"metric": f"warm under {workers} concurrent callers ({config}), ms",
             "baseline": base_warm, "value": value, "ratio": value / base_warm,
             "target": "<= 1.05x", "pass": value / base_warm <= 1.05}
        )  # fmt: skip
        refused = statistics.mean(samples[config]["refused"])
        table.append(
            {"metric": f"refused attempts per invocation ({config})", "baseline": base_refused,
             "value": refused, "ratio": None, "target": "+0.05",
             "pass": refused - base_refused <= 0.05}
        )  # fmt: skip
    return table


if __name__ == "__main__":
    raise SystemExit(main())
