"""The merge state machine's steps at scale: plan, map children, reduce, on local S3.

For each size N (default 10,000 and 100,000 environments) it uploads N
synthetic environment files (tests/report_samples/synthetic.py: a function of
--modules modules of ~150 lines, run once under coverage.py; each environment
keeps a random ~90% of three quarters of the lines or arcs plus one rare one)
to a local moto S3 (scripts/local_s3.py, 127.0.0.1), under the runtime's key
layout; --distinct bodies are made and reused round robin, so moto holds N
objects but the bench writes only that many files. Then it runs the combiner
handler's three state machine events, each in a fresh process (as a cold
Lambda environment: its own /tmp, its own peak RSS):

  plan     {"action": "plan"}: list and filter N keys, write the batches and
           their manifest;
  batches  {"action": "batch"} for every batch, --workers processes at once
           (standing in for the map's concurrent children);
  reduce   {"action": "reduce"}: merge the shards, write the reports.

It prints the time and peak RSS of each step (batches: median and max over
all batches), the map's wall time with that many workers, and checks the
reduce against ``lambda-coverage report --format none`` of the same
selection for sizes up to --check-up-to (the "same" column). Targets: a
batch well inside Lambda's 15 minutes (<= 60 s) and its memory inside the
template's default 1,024 MB (<= 512 MB RSS); the plan and the reduce <= 300 s;
per environment, the largest size no slower than 1.5 times the smallest.

    bench/run_scale_bench.sh                               # 10,000 and 100,000, line data
    bench/run_scale_bench.sh --sizes 10000 --kind branch
    bench/run_scale_bench.sh --sizes 10000 --modules 200 --json /tmp/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import FAKE_CREDENTIALS, S3Server  # noqa: E402
from tests.report_samples.envs import arcs_of, lines_of  # noqa: E402
from tests.report_samples.synthetic import Synthetic, env_keys  # noqa: E402

FUNCTION = "synth-fn"
BATCH_SECONDS = 60.0
BATCH_RSS_MB = 512.0
STEP_SECONDS = 300.0
PER_ENV_RATIO = 1.5


def _environment(bucket: str, endpoint: str, task_root: str) -> dict[str, str]:
    return {
        **FAKE_CREDENTIALS,
        "COVERAGE_S3_BUCKET": bucket,
        "COVERAGE_S3_ENDPOINT_URL": endpoint,
        "COVERAGE_ENABLED": "false",
        "LAMBDA_TASK_ROOT": task_root,
    }


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which a new program starts afresh (getrusage's
    ru_maxrss is kept across exec, so a spawned worker would report its parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _invoke(environment: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    """One handler call in this (fresh) process: as a cold Lambda environment."""
    os.environ.update(environment)
    os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="bench-scale-env-")
    tempfile.tempdir = None
    from coverage_runtime.report import combiner

    combiner.CACHE_DIR = os.path.join(os.environ["TMPDIR"], "cache")
    combiner.WORK_DIR = os.path.join(os.environ["TMPDIR"], "work")
    started = time.perf_counter()
    cpu = time.process_time()
    result = combiner.lambda_handler(event, None)
    return {
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "rss_mb": peak_rss_mb(),
        "result": result,
    }


def in_fresh_process(environment: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    with ProcessPoolExecutor(1, max_tasks_per_child=1) as pool:
        return pool.submit(_invoke, environment, event).result()


def upload(server: S3Server, bucket: str, bodies: list[bytes], count: int) -> float:
    client = server.client()
    started = time.perf_counter()

    def put(numbered: tuple[int, str]) -> None:
        number, key = numbered
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=bodies[number % len(bodies)],
            Metadata={"invocations": "3", "mode": "full"},
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, enumerate(env_keys(count, FUNCTION)), chunksize=256))
    return time.perf_counter() - started


def run_size(
    args: argparse.Namespace,
    server: S3Server,
    synthetic: Synthetic,
    bodies: list[bytes],
    size: int,
    work: Path,
) -> dict[str, Any]:
    bucket = f"bench-scale-{size}-{int(time.time())}"
    server.client().create_bucket(Bucket=bucket)
    uploaded = upload(server, bucket, bodies, size)
    print(f"  {size:,} objects uploaded in {uploaded:.1f} s", file=sys.stderr)
    environment = _environment(bucket, server.endpoint_url, str(synthetic.root))
    selection = {"function": FUNCTION}
    run_id = f"bench-{size}"
    defaults = {
        "batch_size": args.batch_size,
        "max_concurrency": args.workers,
        "tolerated_failure_percentage": 0,
    }
    plan = in_fresh_process(
        environment,
        {"action": "plan", "run_id": run_id, "selection": selection, "defaults": defaults},
    )
    planned = plan["result"]
    manifest = json.loads(
        server.client().get_object(Bucket=bucket, Key=planned["manifest"])["Body"].read()
    )
    print(f"  plan: {len(manifest)} batches in {plan['seconds']:.1f} s", file=sys.stderr)
    events = [
        {
            "action": "batch",
            "run_id": run_id,
            "batch": item["batch"],
            "selection": planned["selection"],
        }
        for item in manifest
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, max_tasks_per_child=1) as pool:
        batches = list(pool.map(_invoke, [environment] * len(events), events))
    map_wall = time.perf_counter() - started
    print(f"  map: {len(batches)} batches in {map_wall:.1f} s", file=sys.stderr)
    reduce = in_fresh_process(
        environment,
        {
            "action": "reduce",
            "run_id": run_id,
            "selection": planned["selection"],
            "tolerated_failure_percentage": 0,
        },
    )
    merged = reduce["result"]["environments"]["merged"]
    same = None
    if size <= args.check_up_to:
        same = check(server, bucket, synthetic, work / f"check-{size}")
    seconds = [b["seconds"] for b in batches]
    rss = [b["rss_mb"] for b in batches]
    return {
        "size": size,
        "kind": "branch" if synthetic.branch else "line",
        "modules": args.modules,
        "object_kb": round(statistics.mean(len(b) for b in bodies) / 1024, 1),
        "batches": len(batches),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "merged": merged,
        "plan_s": plan["seconds"],
        "plan_rss_mb": plan["rss_mb"],
        "batch_s_median": statistics.median(seconds),
        "batch_s_max": max(seconds),
        "batch_cpu_s_median": statistics.median(b["cpu"] for b in batches),
        "batch_rss_mb_median": statistics.median(rss),
        "batch_rss_mb_max": max(rss),
        "map_wall_s": map_wall,
        "reduce_s": reduce["seconds"],
        "reduce_rss_mb": reduce["rss_mb"],
        "total_s": plan["seconds"] + map_wall + reduce["seconds"],
        "same": same,
        "reduce_summary": {k: reduce["result"].get(k) for k in ("percent", "batches", "complete")},
        "_bucket": bucket,
    }


def check(server: S3Server, bucket: str, synthetic: Synthetic, out: Path) -> bool:
    """The reduce's merged data against ``lambda-coverage report``'s, exactly."""
    from coverage_runtime.report.cli import main

    reduced = out / "reduced.coverage"
    out.mkdir(parents=True)
    key = f"coverage/combined/{FUNCTION}/all/latest/merged.coverage"
    reduced.write_bytes(server.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    code = main(
        [
            "report",
            "--bucket",
            bucket,
            "--endpoint-url",
            server.endpoint_url,
            "--function",
            FUNCTION,
            "--source-root",
            str(synthetic.root),
            "--format",
            "none",
            "-o",
            str(out / "report"),
            "-q",
            "--no-progress",
        ]
    )
    read = arcs_of if synthetic.branch else lines_of
    return code == 0 and read(reduced) == read(out / "report" / "merged.coverage")


def print_table(results: list[dict[str, Any]]) -> None:
    def row(metric: str, value: float, unit: str, target: str, ok: bool) -> None:
        print(f"| {metric} | {value:,.2f} {unit} | {target} | {'pass' if ok else 'FAIL'} |")

    print(
        "| size | data | object | batches | plan | batch median / max | batch RSS median / max"
        " | map wall | reduce | reduce RSS | total | envs/min | same |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['size']:,} | {r['kind']}, {r['modules']} modules | {r['object_kb']} KB "
            f"| {r['batches']} x {r['batch_size']} | {r['plan_s']:.1f} s "
            f"| {r['batch_s_median']:.2f} / {r['batch_s_max']:.2f} s "
            f"| {r['batch_rss_mb_median']:.0f} / {r['batch_rss_mb_max']:.0f} MB "
            f"| {r['map_wall_s']:.1f} s ({r['workers']} workers) | {r['reduce_s']:.1f} s "
            f"| {r['reduce_rss_mb']:.0f} MB | {r['total_s']:.1f} s "
            f"| {60 * r['size'] / r['total_s']:,.0f} "
            f"| {'-' if r['same'] is None else 'identical' if r['same'] else 'DIFFERENT'} |"
        )
    print()
    print("| metric | value | target | pass |")
    print("|---|---|---|---|")
    for r in results:
        tag = f"{r['size']:,} {r['kind']}"
        row(
            f"{tag}: slowest batch",
            r["batch_s_max"],
            "s",
            f"<= {BATCH_SECONDS:g} s",
            r["batch_s_max"] <= BATCH_SECONDS,
        )
        row(
            f"{tag}: batch peak RSS",
            r["batch_rss_mb_max"],
            "MB",
            f"<= {BATCH_RSS_MB:g} MB",
            r["batch_rss_mb_max"] <= BATCH_RSS_MB,
        )
        row(f"{tag}: plan", r["plan_s"], "s", f"<= {STEP_SECONDS:g} s", r["plan_s"] <= STEP_SECONDS)
        row(
            f"{tag}: reduce",
            r["reduce_s"],
            "s",
            f"<= {STEP_SECONDS:g} s",
            r["reduce_s"] <= STEP_SECONDS,
        )
        row(
            f"{tag}: environments merged",
            r["merged"],
            "",
            f"= {r['size']:,}",
            r["merged"] == r["size"],
        )
        if r["same"] is not None:
            row(
                f"{tag}: same as lambda-coverage report",
                float(r["same"]),
                "",
                "identical",
                bool(r["same"]),
            )
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratio = (large["total_s"] / large["size"]) / (small["total_s"] / small["size"])
        row(
            f"time per environment, {large['size']:,} / {small['size']:,}",
            ratio,
            "x",
            f"<= {PER_ENV_RATIO:g}x",
            ratio <= PER_ENV_RATIO,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--kind", choices=("line", "branch"), default="line")
    parser.add_argument("--modules", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="map children at once")
    parser.add_argument("--distinct", type=int, default=1000, help="distinct environment files")
    parser.add_argument("--check-up-to", type=int, default=20000)
    parser.add_argument("--json", help="write every result here")
    args = parser.parse_args()
    os.environ.update(FAKE_CREDENTIALS)  # the local S3's, for the check's report
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        synthetic = Synthetic(work / "task", args.modules, args.kind == "branch")
        bodies = []
        for number in range(args.distinct):
            path = synthetic.write_env(work / "env.coverage", seed=number)
            bodies.append(path.read_bytes())
            path.unlink()
        server = S3Server()
        try:
            for size in sizes:
                print(
                    f"{size:,} environments ({args.kind}, {args.modules} modules)", file=sys.stderr
                )
                result = run_size(args, server, synthetic, bodies, size, work)
                results.append(result)
                client = server.client()  # free moto's memory before the next size
                paginator = client.get_paginator("list_objects_v2")
                for page in paginator.paginate(Bucket=result.pop("_bucket")):
                    keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
                    if keys:
                        client.delete_objects(Bucket=page["Name"], Delete={"Objects": keys})
        finally:
            server.stop()
    print(
        f"\n{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
