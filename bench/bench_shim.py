"""What the coverage shim costs, measured through the real AWS RIE and moto S3.

Side by side in one run, interleaved round-robin so machine noise spreads
evenly over the configurations, with a fresh RIE (fresh execution
environment) per configuration and repeat:

  plain       python -m awslambdaric <handler>                  (the baseline)
  disabled    python -m coverage_runtime <handler>, COVERAGE_ENABLED=false
  full        python -m coverage_runtime <handler>, COVERAGE_MODE=full
  full+branch the same, COVERAGE_BRANCH=true
  selective   python -m coverage_runtime <handler>, COVERAGE_MODE=selective

For each environment it measures

  (a) init: the RIE's own ``INIT REPORT(durationMs: ...)`` and the wall time
      from the first invoke request to its response (the RIE starts the
      runtime on the first invoke, so this is a cold start), and the runtime
      process's CPU time when its init was done (`bench/init_cpu`);
  (b) warm: ``--invocations`` more invokes of the same event, one at a time;
      per invoke the RIE's ``REPORT ... Duration`` and the client round trip;
  (c) shutdown: SIGTERM to the RIE -> RIE exit (the RIE exits right after
      its runtime), and the runtime's own ``upload_ms`` from its
      ``coverage uploaded`` log record.

and prints medians and minimums, with ratios against ``plain`` (init) and
``disabled`` (warm).  ``--task-root``/``--source`` run another function than
the example (the heavy one of bench/heavy: ``bench/run_heavy.sh``), and
``--init-target`` adds a pass/fail per configuration on the init ratio
against ``disabled`` (INIT REPORT / CPU time).
Run from the repository root: see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import init_cpu  # noqa: E402
from tests.harness import LambdaUnderRIE, S3Server, clean_environment  # noqa: E402

CONFIGS = ("plain", "disabled", "full", "full+branch", "selective")
INIT_REPORT_RE = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
DURATION_RE = re.compile(r"^REPORT RequestId: .*?(?<!Init )Duration: ([0-9.]+) ms")


@dataclass
class Sample:
    """One execution environment of one configuration."""

    config: str
    repeat: int
    init_report_ms: float | None = None
    init_cpu_ms: float | None = None  # the runtime process's, when init was done
    first_invoke_ms: float = 0.0
    warm_rie_ms: list[float] = field(default_factory=list)
    warm_client_ms: list[float] = field(default_factory=list)
    sigterm_to_exit_ms: float = 0.0
    upload_ms: float | None = None
    uploaded_bytes: int | None = None
    exit_code: int | None = None
    sigkilled: bool = False


def command(config: str, python: str, handler: str) -> list[str]:
    if config == "plain":
        return [python, "-m", "awslambdaric", handler]
    return [python, "-m", "coverage_runtime", handler]


def environment(
    config: str, s3: S3Server, bucket: str, data_dir: Path, args: argparse.Namespace
) -> dict[str, str]:
    task_root = Path(args.task_root).resolve()
    env = clean_environment(
        {
            "LAMBDA_TASK_ROOT": str(task_root),
            "COVERAGE_SOURCE": args.source or str(task_root),
            "COVERAGE_S3_BUCKET": bucket,
            "COVERAGE_S3_ENDPOINT_URL": s3.endpoint_url,
            "COVERAGE_DATA_DIR": str(data_dir),
            "COVERAGE_FLUSH_INTERVAL_SECONDS": "0",  # upload only at shutdown
            "AWS_LAMBDA_FUNCTION_NAME": "bench-fn",
        }
    )
    if task_root != REPO_ROOT:
        env["PYTHONPATH"] = str(REPO_ROOT)  # coverage_runtime, outside the task root
    env["PYTHONPATH"] = os.pathsep.join((env["PYTHONPATH"], str(init_cpu.DIR)))
    if config == "disabled":
        env["COVERAGE_ENABLED"] = "false"
    elif config in ("full", "selective"):
        env["COVERAGE_MODE"] = config
    elif config == "full+branch":
        env["COVERAGE_MODE"] = "full"
        env["COVERAGE_BRANCH"] = "true"
    return env


def run_one(
    config: str,
    repeat: int,
    args: argparse.Namespace,
    event: Any,
    s3: S3Server,
    bucket: str,
    scratch: Path,
) -> Sample:
    sample = Sample(config=config, repeat=repeat)
    tag = f"{config}-{repeat}"
    function = LambdaUnderRIE(
        Path(args.task_root).resolve(),
        args.handler,
        environment(config, s3, bucket, scratch / f"data-{tag}", args),
        scratch / f"rie-{tag}.log",
        command=command(config, args.python, args.handler),
    )
    try:
        started = time.perf_counter()
        first = function.invoke(event)
        sample.first_invoke_ms = (time.perf_counter() - started) * 1000
        if first.status != 200:
            raise RuntimeError(
                f"{config}: first invoke returned {first.status}: {first.raw[:300]!r}"
            )
        for _ in range(args.invocations):
            started = time.perf_counter()
            function.invoke(event)
            sample.warm_client_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)  # let the runtime park in /next: SIGTERM arrives while idle
        started = time.perf_counter()
        sample.exit_code = function.terminate(timeout=15)
        sample.sigterm_to_exit_ms = (time.perf_counter() - started) * 1000
    finally:
        function.kill()

    logs = function.logs()
    match = INIT_REPORT_RE.search(logs)
    sample.init_report_ms = float(match.group(1)) if match else None
    sample.init_cpu_ms = init_cpu.cpu_ms(logs)
    durations = [float(m.group(1)) for m in map(DURATION_RE.match, logs.splitlines()) if m]
    sample.warm_rie_ms = durations[1:]  # the first REPORT includes init
    sample.sigkilled = "did not exit after deadline" in logs
    for record in function.json_logs():
        if record.get("message") == "coverage uploaded":
            sample.upload_ms = record.get("upload_ms")
            sample.uploaded_bytes = record.get("bytes")
    if config in ("full", "selective") and sample.upload_ms is None:
        print(f"  warning: {tag}: no 'coverage uploaded' record", file=sys.stderr)
    return sample


def stats(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values)


def fmt(pair: tuple[float, float] | None, digits: int = 1) -> str:
    if pair is None:
        return "-"
    return f"{pair[0]:.{digits}f} / {pair[1]:.{digits}f}"


def ratio(a: tuple[float, float] | None, b: tuple[float, float] | None) -> str:
    if a is None or b is None or not b[0] or not b[1]:
        return "-"
    return f"{a[0] / b[0]:.2f}x / {a[1] / b[1]:.2f}x"


def diff(a: tuple[float, float] | None, b: tuple[float, float] | None) -> str:
    if a is None or b is None:
        return "-"
    return f"{a[0] - b[0]:+.1f} / {a[1] - b[1]:+.1f}"


def python_description(python: str) -> str:
    probe = (
        "import sys, coverage, awslambdaric.__init__ as a; "
        "from importlib.metadata import version; "
        "print(sys.version.split()[0], coverage.__version__, version('awslambdaric'))"
    )
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    py, cov, ric = out.stdout.split()
    return f"Python {py}, coverage {cov}, awslambdaric {ric}"


def default_core(python: str) -> str:
    probe = (
        "from coverage_runtime.settings import load_settings; "
        "print(load_settings({'LAMBDA_TASK_ROOT': '/var/task'}).core or 'ctrace')"
    )
    out = subprocess.run(
        [python, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env=clean_environment(),
    )
    return out.stdout.strip()


def report(samples: list[Sample], args: argparse.Namespace, started: float) -> str:
    by = {c: [s for s in samples if s.config == c] for c in args.configs}
    init = {c: stats([s.init_report_ms for s in by[c]]) for c in by}
    cpu = {c: stats([s.init_cpu_ms for s in by[c]]) for c in by}
    first = {c: stats([s.first_invoke_ms for s in by[c]]) for c in by}
    # Warm: per environment the median of its invokes, then median/min over environments.
    warm_rie = {
        c: stats([statistics.median(s.warm_rie_ms) for s in by[c] if s.warm_rie_ms]) for c in by
    }
    warm_cli = {
        c: stats([statistics.median(s.warm_client_ms) for s in by[c] if s.warm_client_ms])
        for c in by
    }
    term = {c: stats([s.sigterm_to_exit_ms for s in by[c]]) for c in by}
    upload = {c: stats([s.upload_ms for s in by[c] if s.upload_ms is not None]) for c in by}

    lines = [
        f"bench_shim: {python_description(args.python)}; default core {default_core(args.python)}",
        f"handler {args.handler}, event {args.event}; R={args.repeats} fresh RIEs per config, "
        f"{args.invocations} warm invokes each; interleaved; {time.monotonic() - started:.0f} s",
        f"{platform.node()} {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPUs"
        " (shared: read medians and minimums)",
        "",
        "cells are median / min (ms) over the R environments",
        "",
        "(a) init",
        "| config | INIT REPORT durationMs | vs plain (ms) | ratio | first invoke wall (ms) "
        "| vs plain (ms) | init CPU (ms) | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = "plain" if "plain" in by else args.configs[0]
    target_base = "disabled" if "disabled" in by else base  # the baseline
    if args.init_target:
        lines[-2] += " target | pass |"
        lines[-1] += "---|---|"
    for c in by:
        row = (
            f"| {c} | {fmt(init[c])} | {diff(init[c], init[base])} | {ratio(init[c], init[base])} "
            f"| {fmt(first[c])} | {diff(first[c], first[base])} "
            f"| {fmt(cpu[c])} | {ratio(cpu[c], cpu[base])} |"
        )
        if args.init_target:
            verdicts = []
            for measure in (init, cpu):  # the INIT REPORT's, then the CPU time's
                value, baseline = measure[c], measure[target_base]
                verdict = "-"
                if c not in ("plain", "disabled") and value and baseline:
                    verdict = "pass" if value[0] / baseline[0] <= args.init_target else "FAIL"
                verdicts.append(verdict)
            row += f" <= {args.init_target:.2f}x | {' / '.join(verdicts)} |"
        lines.append(row)
    warm_base = "disabled" if "disabled" in by else base
    lines += [
        "",
        f"(c) warm invocation (per environment: median of {args.invocations} invokes)",
        f"| config | RIE Duration (ms) | ratio vs {warm_base} | client round trip (ms) "
        f"| ratio vs {warm_base} |",
        "|---|---|---|---|---|",
    ]
    for c in by:
        lines.append(
            f"| {c} | {fmt(warm_rie[c], 3)} | {ratio(warm_rie[c], warm_rie[warm_base])} "
            f"| {fmt(warm_cli[c], 3)} | {ratio(warm_cli[c], warm_cli[warm_base])} |"
        )
    lines += [
        "",
        "(b) shutdown",
        "| config | SIGTERM -> RIE exit (ms) | runtime upload_ms | bytes | SIGKILLed "
        "| exit codes |",
        "|---|---|---|---|---|---|",
    ]
    for c, group in by.items():
        sizes = sorted({s.uploaded_bytes for s in group if s.uploaded_bytes})
        codes = sorted({s.exit_code for s in group}, key=str)
        killed = sum(s.sigkilled for s in group)
        lines.append(
            f"| {c} | {fmt(term[c])} | {fmt(upload[c])} | {','.join(map(str, sizes)) or '-'} "
            f"| {killed}/{len(group)} | {codes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the function's Python")
    parser.add_argument("--handler", default="app.handler.lambda_handler")
    parser.add_argument("--event", default=str(REPO_ROOT / "events" / "business-process-data.json"))
    parser.add_argument("--repeats", "-r", type=int, default=9)
    parser.add_argument("--invocations", "-n", type=int, default=300)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--json", help="also write the raw samples here")
    parser.add_argument("--task-root", default=str(REPO_ROOT), help="the function's task root")
    parser.add_argument("--source", help="COVERAGE_SOURCE (default: the task root)")
    parser.add_argument(
        "--init-target", type=float, help="pass/fail: INIT REPORT ratio vs disabled"
    )
    args = parser.parse_args(argv)
    args.python = os.path.abspath(args.python)  # the RIE runs it from the task root
    if args.source is None and Path(args.task_root).resolve() == REPO_ROOT:
        args.source = str(REPO_ROOT / "app")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    event = json.loads(Path(args.event).read_text())
    # Bytecode for the runtime and the example, as an image has it (compileall in the
    # Dockerfile): the machine may set PYTHONDONTWRITEBYTECODE, and a cold start that
    # compiles our modules from source measures the compiler, not the shim.
    subprocess.run(
        [args.python, "-m", "compileall", "-q", "coverage_runtime", "app"],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip

    started = time.monotonic()
    s3 = S3Server()
    samples: list[Sample] = []
    try:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        s3.client().create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory(prefix="bench-shim-") as scratch:
            for repeat in range(args.repeats):
                # Rotate the order each round so no config always runs first.
                shift = repeat % len(args.configs)
                order = args.configs[shift:] + args.configs[:shift]
                for config in order:
                    samples.append(run_one(config, repeat, args, event, s3, bucket, Path(scratch)))
                print(f"  round {repeat + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        s3.stop()

    print(report(samples, args, started))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(s) for s in samples], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
