"""What coverage costs a function of N measured modules (issue 18), through the real RIE.

    bench/sizes.py                                   # the venv's Python, N = 50,500,2000
    bench/sizes.py --python .local/venvs/runtime-3.13.0/bin/python --sizes 50,500,2000,8000
    bench/sizes.py --image localhost/lambda-coverage-bench:current   # the image's 3.14

The function is `tests/synthetic_function` (N modules of 142 statements,
imported at init; coverage grows over events 0-9, the first twenty invocations).  Per size,
per configuration (``disabled``, ``lines``, ``branches``), ``-r`` fresh
environments, one at a time in a rotating order:

* init: the RIE's INIT REPORT, and the runtime process's CPU time when its
  init was done (`bench/init_cpu`: steadier on a shared machine), against
  ``disabled`` (target 1.25x at N=2000);
* checkpoints: ``COVERAGE_FLUSH_INTERVAL_SECONDS=1``; a pause of a second
  before every odd invocation, so it is followed by a checkpoint, while the
  even one after it (0.4 s later, once the shipping thread has written and
  uploaded) does the same work without: the difference of their
  RIE REPORT Durations (Lambda bills until the runtime asks for the next
  event) is what a checkpoint adds to its invocation: the first (the init's
  data; target 20 ms), while coverage grows (target 5 ms at N=2000 with
  branches), once nothing is new (target 0.1 ms);
* shutdown after growth: SIGTERM once the invocations are done; from the
  RIE's "Received signal" to the runtime's "coverage runtime exiting" record
  (target 300 ms at N=8000 with branches);
* early SIGTERM: ``--early`` more environments per configuration get SIGTERM
  right after their first response: how many shipped everything, how many
  shipped partially (the whole files whose recorded events the shutdown could
  replay in time, with a loss record naming the rest), how many said what they
  lost, how many lost silently (targets: all shipped; none silent).

``--freeze`` (with ``--image``): the container is frozen (its cgroup freezer) from
each response, once the runtime has asked for the next event, until the next
invocation is sent, as Lambda freezes an idle environment (`bench/freeze.py`).
The shipping thread's checkpoint then runs when the next invocation does, so
the checkpoint rows compare, over invocations in threes running the same event
(`frozen_schedule`), the invocation after a checkpoint with the same work after
none: what a checkpoint adds to the next invocation, as Lambda bills it.

``--task-cpu``: the runtime logs the shipping thread's own CPU per task and step
(`coverage_runtime.shim.task_cpu`), and a second table sums it per size,
configuration and task kind (medians over environments): how much of what
the invocations after the first are billed beyond coverage off is the shipping
thread's, and how much their own first hits.

Prints one table with a target and pass/fail per row; ``--json`` keeps every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import init_cpu  # noqa: E402
from bench.freeze import Freezer  # noqa: E402
from coverage_runtime.shim.session import CoverageSession, maintenance_due  # noqa: E402
from tests import synthetic_function  # noqa: E402
from tests.containers import podman, start_with_local_s3, stop  # noqa: E402
from tests.harness import (  # noqa: E402
    LambdaUnderRIE,
    S3Server,
    clean_environment,
    post_invocation,
)

CONFIGS = {
    "disabled": {"COVERAGE_ENABLED": "false"},
    "lines": {},
    "branches": {"COVERAGE_BRANCH": "true"},
}
INIT_RE = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
REPORT_RE = re.compile(r"^REPORT .*?\tDuration: ([0-9.]+) ms", re.MULTILINE)
LOSS = "coverage upload at shutdown failed"
# The loss record of a shutdown that shipped only the files it could replay in time.
PARTIAL = CoverageSession.PARTIAL
PARTIAL_UNSENT = CoverageSession.PARTIAL_UNSENT  # (the replayed files held nothing new)
# What a shutdown ends with, worst first (`shutdown_outcome`), and the records that say it.
OUTCOMES = ("silent", "said-lost", "partial", "count-behind", "unchanged", "shipped")
UNCHANGED = "coverage unchanged since last upload"
COUNT_BEHIND = CoverageSession.COUNT_BEHIND
TASK_RECORD = "coverage shipping task"  # `coverage_runtime.shim.task_cpu.RECORD`


@dataclass
class Sample:
    size: int
    config: str
    init_ms: float | None = None
    init_cpu_ms: float | None = None  # the runtime process's, when init was done
    durations_ms: list[float] = field(default_factory=list)
    exit_ms: float | None = None
    # After growth: how the shutdown ended (`shutdown_outcome`): a shutdown that
    # runs out of time exits at its deadline (~350 ms) too, with a loss record.
    exit_outcome: str | None = None
    early: str | None = None  # shipped | partial | said-lost | silent
    # Early SIGTERM: the loss record's reason and when it was written (ms after the
    # signal), or the upload's milliseconds.
    early_detail: dict[str, Any] | None = None
    # --task-cpu: the shipping thread's task records (`task_cpu.RECORD`), in order.
    tasks: list[dict[str, Any]] = field(default_factory=list)


class HostFunction:
    """The function under the RIE on this machine, with ``python``."""

    def __init__(self, python: str, root: Path, env: dict[str, str], log: Path) -> None:
        command = [python, "-m", "coverage_runtime", "handler.handler"]
        self._function = LambdaUnderRIE(root, "handler.handler", env, log, command=command)

    def invoke(self, event: dict[str, Any]) -> None:
        result = self._function.invoke(event)
        if result.status != 200:
            raise RuntimeError(f"invoke returned {result.status}: {result.raw[:300]!r}")

    def shut_down(self) -> tuple[float, str]:
        started = time.perf_counter()
        self._function.terminate(timeout=30)
        return (time.perf_counter() - started) * 1000, self._function.logs()


class ImageFunction:
    """The function in the image, its task root mounted at /var/task."""

    def __init__(
        self,
        image: str,
        root: Path,
        s3: S3Server,
        bucket: str,
        env: dict[str, str],
        freeze: bool = False,
        mounts: tuple[str, ...] = (),
    ):
        self.name = f"lc-sizes-{uuid.uuid4().hex[:8]}"
        self.port, _ = start_with_local_s3(
            self.name, image, s3, bucket, "--volume", f"{root}:/var/task:ro",
            *init_cpu.container_args(), *mounts, command=("handler.handler",),
            PYTHONPATH=init_cpu.MOUNT, **env,
        )  # fmt: skip
        self.freezer = Freezer(self.name, freeze)

    def invoke(self, event: dict[str, Any]) -> None:
        self.freezer.thaw()
        result = post_invocation(self.port, json.dumps(event).encode(), timeout=120)
        if result.status != 200:
            raise RuntimeError(f"invoke returned {result.status}: {result.raw[:300]!r}")
        self.freezer.freeze()

    def shut_down(self) -> tuple[float, str]:
        try:
            self.freezer.thaw()  # SIGTERM reaches a paused container's processes only then
            _, logs, seconds = stop(self.name)
        finally:
            podman("rm", "--force", "--time", "0", self.name, check=False)
        return seconds * 1000, logs


def start(
    args: argparse.Namespace, root: Path, config: str, s3: S3Server, bucket: str, scratch: Path
) -> Any:
    env = {
        "COVERAGE_FLUSH_INTERVAL_SECONDS": "1",
        "AWS_LAMBDA_FUNCTION_NAME": "bench-sizes",
        **CONFIGS[config],
    }
    if args.task_cpu:
        env["COVERAGE_BENCH_TASK_CPU"] = "1"
    env.update(item.split("=", 1) for item in args.env)
    if args.image:
        return ImageFunction(args.image, root, s3, bucket, env, args.freeze, args.mounts)
    host_env = clean_environment(
        {
            **env,
            "LAMBDA_TASK_ROOT": str(root),
            "COVERAGE_S3_BUCKET": bucket,
            "COVERAGE_S3_ENDPOINT_URL": s3.endpoint_url,
            "COVERAGE_DATA_DIR": str(scratch / uuid.uuid4().hex),
            "PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(init_cpu.DIR))),
        }
    )
    return HostFunction(args.python, root, host_env, scratch / f"{uuid.uuid4().hex}.log")


def runtime_mount(image: str) -> tuple[str, ...]:
    """``podman run`` arguments that put this checkout's `coverage_runtime` over
    the image's (read-only): a change measured without building an image."""
    found = podman(
        "run", "--rm", "--entrypoint", "python", image, "-c",
        "import coverage_runtime, os; print(os.path.dirname(coverage_runtime.__file__))",
    )  # fmt: skip
    return ("--volume", f"{REPO_ROOT / 'coverage_runtime'}:{found.stdout.strip()}:ro")


def measure(args, root, size, config, s3, bucket, scratch) -> Sample:
    sample = Sample(size, config)
    function = start(args, root, config, s3, bucket, scratch)
    for k in range(args.invocations):
        pause, event = frozen_schedule(k) if args.freeze else schedule(k)
        time.sleep(pause)  # (with --freeze, the environment is frozen meanwhile)
        function.invoke(event)
    _, logs = function.shut_down()
    keep_logs(args, sample, logs, "growth")
    sample.exit_ms = signal_to_exit_ms(logs)
    if config != "disabled":
        sample.exit_outcome = shutdown_outcome(logs)
    found = INIT_RE.search(logs)
    sample.init_ms = float(found.group(1)) if found else None
    sample.init_cpu_ms = init_cpu.cpu_ms(logs)
    durations = [float(d) for d in REPORT_RE.findall(logs)]
    sample.durations_ms = durations[1:]  # the first REPORT includes init
    sample.tasks = [r for r in json_records(logs) if r.get("message") == TASK_RECORD]
    return sample


def keep_logs(args: argparse.Namespace, sample: Sample, logs: str, run: str) -> None:
    """``--logs DIR``: the environment's whole log (the RIE's and the runtime's
    records), one file per environment, named by size, configuration, run
    (``growth``, ``early``) and order: what the shutdown's records said, beyond
    the outcome kept in the sample."""
    if args.logs is None:
        return
    args.logs.mkdir(parents=True, exist_ok=True)
    stem = f"n{sample.size}-{sample.config}-{run}"
    count = len(list(args.logs.glob(f"{stem}-*.log")))
    (args.logs / f"{stem}-{count + 1}.log").write_text(logs)


def schedule(k: int) -> tuple[float, dict[str, int]]:
    """Invocation ``k`` (from 0): the pause before it, and its event.  Odd: the
    checkpoint interval has passed, so a checkpoint follows.  Even: the same work
    as the odd one after it, no checkpoint, and the shipping thread idle again
    (0.4 s later)."""
    return (1.05 if k % 2 else 0.4), {"k": k // 2}


def frozen_schedule(k: int) -> tuple[float, dict[str, int]]:
    """With ``--freeze``: invocations in threes running the same event.  The
    first of three comes after the checkpoint interval has passed, so a
    checkpoint follows it; frozen, its shipping thread writes and uploads it
    while the second runs (the spill); the third (0.4 s later, no checkpoint
    due) does the second's work after none."""
    return (1.05 if k % 3 == 0 else 0.4), {"k": k // 3}


# --freeze: which groups of three the checkpoint rows take (event k is new data for
# k < 10, tests/synthetic_function.py), and the invocations they need.
FROZEN_GROUPS = (
    ("the first checkpoint (the init's data)", range(0, 1), 20.0),
    ("a checkpoint with new data", range(1, 10), 5.0),
    ("a checkpoint with nothing new", range(10, 13), 0.1),
)
FROZEN_INVOCATIONS = 3 * 13
# Unfrozen: events 0-9 twice each (growth), then six events that add nothing: the
# "nothing new" rows, and the shipping thread's time to catch up before "after
# growth"'s SIGTERM (at 8,000 modules with branches a checkpoint of the last
# events' data is seconds of its CPU).
UNFROZEN_INVOCATIONS = 2 * 16
# --freeze: the REPORT Durations summed against coverage off's, by invocation index
# (the same schedule in both): the work the shipping thread does between invocations
# (the first hand-over, checkpoints, maintenance) runs beside the invocations that
# thaw it, however many it takes; the pairs above see only what one invocation holds.
SPILL_SPANS = (("invocations 2-6", slice(0, 5)), ("every invocation", slice(None)))


def maintained_before(invocation: int) -> bool:
    """Whether invocation ``invocation`` (from 0) follows one after which the
    session asks for a maintenance pass: frozen, the pass spills into it too."""
    return invocation > 0 and maintenance_due(invocation)


def frozen_pairs(durations: list[float], groups: range) -> tuple[list[float], list[float]]:
    """Per group of three (`frozen_schedule`): the second invocation's REPORT
    Duration (after a checkpoint) and the third's (after none), for the groups
    whose two invocations follow no maintenance pass.  ``durations[i]`` is
    invocation ``i + 1`` (the first, with init, is left out)."""
    after, without = [], []
    for group in groups:
        second, third = 3 * group + 1, 3 * group + 2
        if third - 1 >= len(durations) or maintained_before(second):
            continue
        if maintained_before(third):
            continue
        after.append(durations[second - 1])
        without.append(durations[third - 1])
    return after, without


SIGNAL_RE = re.compile(r"^(\d\d \w{3} \d{4} [\d:]+,\d{3}) \[INFO\] \(rapid\) Received signal", re.M)


def signal_to_exit_ms(logs: str) -> float | None:
    """From the RIE's "Received signal" to the runtime's "coverage runtime exiting"
    record (or to the RIE's end of the runtime, coverage disabled): the shutdown
    itself, without the container engine's own stop time."""
    received = SIGNAL_RE.search(logs)
    if received is None:
        return None
    start = datetime.strptime(received.group(1), "%d %b %Y %H:%M:%S,%f").replace(tzinfo=UTC)
    for line in logs.splitlines():
        if '"coverage runtime exiting"' in line:
            record = json.loads(line)
            end = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
            return (end - start).total_seconds() * 1000
    return 0.0  # no coverage: nothing to do at shutdown


def early(args, root, size, config, s3, bucket, scratch) -> Sample:
    sample = Sample(size, config)
    function = start(args, root, config, s3, bucket, scratch)
    function.invoke({"k": 1})
    _, logs = function.shut_down()  # SIGTERM right after the first response
    keep_logs(args, sample, logs, "early")
    sample.early = shutdown_outcome(logs)
    for record in json_records(logs):
        message = record.get("message", "")
        said = (LOSS, PARTIAL, PARTIAL_UNSENT)
        if message == "coverage uploaded" or any(part in message for part in said):
            keys = ("reason", "error_message", "elapsed_ms", "upload_ms", "bytes", "lost_bytes")
            keys += ("files_replayed", "files_not_replayed", "events_not_replayed")
            sample.early_detail = {k: record[k] for k in keys if record.get(k) is not None}
    return sample


def shutdown_outcome(logs: str) -> str:
    """How the shutdown ended, from its records (reason ``SIGTERM``): ``partial``
    (whole files shipped, a loss record naming the rest; its object is uploaded
    too), ``shipped``, ``said-lost``, ``unchanged`` (S3 held everything),
    ``count-behind`` (S3 held all the data, its invocation count was not brought
    up to date), else ``silent``."""
    said = [
        str(r.get("message", ""))
        for r in json_records(logs)
        if r.get("reason") == "SIGTERM" and r.get("message")
    ]
    if any(PARTIAL in m or PARTIAL_UNSENT in m for m in said):
        return "partial"
    if "coverage uploaded" in said:
        return "shipped"
    if any(LOSS in m for m in said):
        return "said-lost"
    if COUNT_BEHIND in said:
        return "count-behind"
    if UNCHANGED in said:
        return "unchanged"
    return "silent"


def json_records(logs: str) -> list[dict[str, Any]]:
    """The runtime's JSON log records among the RIE's lines."""
    found = []
    for line in logs.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def checkpoint_rows(
    got: list[Sample], frozen: bool
) -> list[tuple[str, float | None, float | None, float]]:
    """What a checkpoint costs: (what, the invocations without, the difference,
    target).  Unfrozen (the RIE), the invocation a checkpoint follows against the
    same work followed by none: the shipping thread runs while the runtime waits
    for the next event, so this shows only what it overlaps.  Frozen
    (``--freeze``), as in Lambda the shipping thread runs when the next
    invocation does: the invocation after a checkpoint against the same work
    after none (`frozen_schedule`)."""
    found = []
    if frozen:
        for what, groups, target in FROZEN_GROUPS:
            pairs = [frozen_pairs(s.durations_ms, groups) for s in got]
            after = median([d for pair in pairs for d in pair[0]])
            without = median([d for pair in pairs for d in pair[1]])
            added = after - without if after is not None and without is not None else None
            label = f"{what}, added to the next invocation (frozen)"
            found.append((label, without, added, target))
        return found
    # Invocation 2k+1 is followed by a checkpoint, 2k+2 (the same work) is not.
    # durations_ms[i] is invocation i + 1: even i were followed by a checkpoint.
    # Events 0-9 (invocations 0-19) are new data, the ones after nothing new.
    for label, first, last, target in (
        ("the first checkpoint (the init's data)", 0, 2, 20.0),
        ("a checkpoint with new data", 2, 18, 5.0),
        ("a checkpoint with nothing new", 20, None, 0.1),
    ):
        with_cp = median([d for s in got for d in s.durations_ms[first:last:2]])
        without = median([d for s in got for d in s.durations_ms[first + 1 : last : 2]])
        added = with_cp - without if with_cp is not None and without is not None else None
        found.append((f"{label}, added to its invocation", without, added, target))
    return found


def rows(samples: list[Sample], sizes: list[int], frozen: bool = False) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []

    def pick(size: int, config: str) -> list[Sample]:
        return [s for s in samples if s.size == size and s.config == config and s.early is None]

    def add(metric, baseline, value, target, passed) -> None:
        table.append({"metric": metric, "baseline": baseline, "value": value,
                      "target": target, "pass": passed})  # fmt: skip

    for size in sizes:
        base = pick(size, "disabled")
        base_init = median([s.init_ms for s in base])
        for config in ("lines", "branches"):
            got = pick(size, config)
            init = median([s.init_ms for s in got])
            ratio = init / base_init if init and base_init else None
            add(f"N={size} {config}: init (INIT REPORT), ms", base_init, init, "<= 1.25x (N=2000)",
                ratio is not None and (size != 2000 or ratio <= 1.25))  # fmt: skip
            base_cpu = median([s.init_cpu_ms for s in base])
            cpu = median([s.init_cpu_ms for s in got])
            ratio = cpu / base_cpu if cpu and base_cpu else None
            add(f"N={size} {config}: init (CPU), ms", base_cpu, cpu, "<= 1.25x (N=2000)",
                ratio is not None and (size != 2000 or ratio <= 1.25))  # fmt: skip
            if frozen:  # what the shipping thread's work costs the invocations it thaws with
                for label, span in SPILL_SPANS:
                    spent = median([sum(s.durations_ms[span]) for s in got])
                    base_spent = median([sum(s.durations_ms[span]) for s in base])
                    added = None if spent is None or base_spent is None else spent - base_spent
                    add(f"N={size} {config}: {label} after the first, summed, billed beyond "
                        "coverage off (frozen), ms", base_spent, added, "stated", True)  # fmt: skip
            for label, without, added, target in checkpoint_rows(got, frozen):
                add(f"N={size} {config}: {label}, ms", without, added, f"<= {target:g} ms",
                    added is not None and added <= target)  # fmt: skip
            most = most_in_an_invocation(got, "maintenance")
            if most is not None:  # (--task-cpu)
                add(f"N={size} {config}: maintenance, the shipping thread's CPU in one "
                    "invocation at most, ms", None, most, f"<= {MAINTENANCE_TARGET_MS:g} ms",
                    most <= MAINTENANCE_TARGET_MS)  # fmt: skip
            exit_ms = median([s.exit_ms for s in got])
            ended = [s.exit_outcome for s in got]
            lost = sum(outcome in ("silent", "said-lost", "partial") for outcome in ended)
            add(f"N={size} {config}: SIGTERM to exit after growth, ms",
                median([s.exit_ms for s in base]), exit_ms, "<= 300 ms, nothing lost",
                exit_ms is not None and exit_ms <= 300 and not lost)  # fmt: skip
            add(f"N={size} {config}: after growth, the shutdown " + " / ".join(OUTCOMES),
                None, " / ".join(str(ended.count(outcome)) for outcome in OUTCOMES),
                "silent, said lost, partial: 0", bool(ended) and not lost)  # fmt: skip
            tries = [s for s in samples if s.size == size and s.config == config and s.early]
            if tries:
                shipped = sum(s.early == "shipped" for s in tries)
                partial = sum(s.early == "partial" for s in tries)
                said = sum(s.early == "said-lost" for s in tries)
                silent = sum(s.early == "silent" for s in tries)
                add(f"N={size} {config}: early SIGTERM shipped / partially / said lost / "
                    f"silent, of {len(tries)}", None, f"{shipped} / {partial} / {said} / {silent}",
                    "all / 0 / 0 / 0", shipped == len(tries) and not silent)  # fmt: skip
    return table


# A maintenance pass (`coverage_runtime.shim.pacing.MAINTENANCE_SHARE_SECONDS`) may
# add this much of the shipping thread's CPU to one invocation (#18).
MAINTENANCE_TARGET_MS = 1.0


def most_in_an_invocation(samples: list[Sample], kind: str) -> float | None:
    """--task-cpu: the most CPU the shipping thread spent in one invocation on
    ``kind``'s tasks, over every environment (`pacing.Pacer.take_most`); None
    without task records."""
    found = [
        t["most_in_an_invocation_ms"]
        for s in samples
        for t in s.tasks
        if t["task"] == kind and t.get("most_in_an_invocation_ms") is not None
    ]
    return max(found) if found else None


def task_rows(samples: list[Sample], sizes: list[int]) -> list[str]:
    """--task-cpu: per size, configuration and task kind, the shipping thread's CPU
    summed over an environment's life (median over environments), how many such
    tasks ran, how often they waited for an invocation to end (`pacing`), and the
    steps summed likewise: one Markdown table."""
    lines = [
        "| N | config | task | count | CPU ms | wall ms | waits | most in one invocation, ms "
        "| steps, CPU ms |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for size in sizes:
        for config in ("lines", "branches"):
            got = [s for s in samples if s.size == size and s.config == config and s.tasks]
            if not got:
                continue
            kinds = dict.fromkeys(t["task"] for s in got for t in s.tasks)
            for kind in [*kinds, "all"]:

                def of(sample: Sample, kind: str = kind) -> list[dict[str, Any]]:
                    return [t for t in sample.tasks if kind in ("all", t["task"])]

                count = median([len(of(s)) for s in got])
                cpu = median([sum(t["cpu_ms"] for t in of(s)) for s in got])
                wall = median([sum(t["wall_ms"] for t in of(s)) for s in got])
                waits = median([sum(t.get("waits") or 0 for t in of(s)) for s in got])
                names = dict.fromkeys(n for s in got for t in of(s) for n in t.get("steps", {}))

                def step_ms(sample: Sample, name: str, kind: str = kind) -> float:
                    return sum(t.get("steps", {}).get(name, 0.0) for t in of(sample, kind))

                steps = ", ".join(
                    f"{name} {median([step_ms(s, name) for s in got]):.1f}" for name in names
                )
                most = most_in_an_invocation(got, kind) if kind != "all" else None
                shown = "" if most is None else f"{most:.2f}"
                lines.append(f"| {size} | {config} | {kind} | {count:g} | {cpu:.1f} | {wall:.1f} "
                             f"| {waits:g} | {shown} | {steps} |")  # fmt: skip
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the function's Python (host)")
    parser.add_argument("--image", help="run in this image instead (its own Python)")
    parser.add_argument("--sizes", default="50,500,2000")
    parser.add_argument("-r", "--repeats", type=int, default=3)
    parser.add_argument("-n", "--invocations", type=int, help="24; with --freeze 39")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"which of {','.join(CONFIGS)} (all: the ratios need disabled)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="more of the function's environment (e.g. COVERAGE_SHUTDOWN_BUDGET_MS=2000)",
    )
    parser.add_argument("--early", type=int, default=5, help="early-SIGTERM tries per config")
    parser.add_argument("--logs", type=Path, help="keep each environment's log in this directory")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--freeze",
        action="store_true",
        help="freeze the container between invocations, as Lambda does (needs --image)",
    )
    parser.add_argument(
        "--this-runtime",
        action="store_true",
        help="with --image: this checkout's coverage_runtime over the image's",
    )
    parser.add_argument(
        "--no-maps-cache",
        action="store_true",
        help="(--image) no multiline maps from the build: coverage.py tokenizes each file live",
    )
    parser.add_argument(
        "--task-cpu",
        action="store_true",
        help="log and sum the shipping thread's CPU per task (coverage_runtime.shim.task_cpu)",
    )
    args = parser.parse_args()
    if args.this_runtime and not args.image:
        parser.error("--this-runtime needs --image")
    args.mounts = runtime_mount(args.image) if args.this_runtime else ()
    if args.freeze and not args.image:
        parser.error("--freeze needs --image (it freezes the container)")
    if args.invocations is None:
        args.invocations = FROZEN_INVOCATIONS if args.freeze else UNFROZEN_INVOCATIONS
    sizes = [int(s) for s in args.sizes.split(",")]
    configs = set(args.configs.split(","))
    if not configs <= CONFIGS.keys():
        parser.error(f"--configs: one of {', '.join(CONFIGS)} each")
    args.python = os.path.abspath(args.python)  # the RIE runs it from the task root
    if not args.image:  # the runtime's bytecode too (the machine may not write it)
        subprocess.run(
            [args.python, "-m", "compileall", "-q", "coverage_runtime"],
            cwd=REPO_ROOT, check=True, capture_output=True,
        )  # fmt: skip
    s3 = S3Server()
    samples: list[Sample] = []
    try:
        bucket = f"bench-sizes-{uuid.uuid4().hex[:8]}"
        s3.client().create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory(prefix="bench-sizes-") as scratch_dir:
            scratch = Path(scratch_dir)
            for size in sizes:
                root = synthetic_function.write(scratch / f"n{size}", size)
                # Bytecode, as a deployed function has it, for the Python that runs it.
                # And coverage.py's multiline maps, as the Dockerfile's step writes them
                # (`coverage_runtime.shim.maps_cache`; --no-maps-cache: tokenized live).
                if args.image:
                    build = "python -m compileall -q /var/task"
                    if not args.no_maps_cache:
                        build += " && python -m coverage_runtime.shim.maps_cache /var/task"
                    podman(
                        "run", "--rm", "--volume", f"{root}:/var/task", "--entrypoint",
                        "sh", args.image, "-c", build, timeout=600,
                    )  # fmt: skip
                else:
                    subprocess.run([args.python, "-m", "compileall", "-q", str(root)], check=True)
                order = [c for c in CONFIGS if c in configs]
                for repeat in range(args.repeats):
                    for config in order[repeat % 3 :] + order[: repeat % 3]:
                        samples.append(measure(args, root, size, config, s3, bucket, scratch))
                    print(f"N={size}: round {repeat + 1}/{args.repeats}", file=sys.stderr)
                for _ in range(args.early):
                    for config in [c for c in ("lines", "branches") if c in configs]:
                        samples.append(early(args, root, size, config, s3, bucket, scratch))
    finally:
        s3.stop()
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in samples], indent=1))
    table = rows(samples, sizes, args.freeze)
    where = args.image or args.python
    print(f"bench/sizes.py: {where}; {args.repeats} environments per size and configuration, "
          f"{args.invocations} invocations each, {args.early} early SIGTERMs"
          f"{', frozen between invocations' if args.freeze else ''}; medians")  # fmt: skip
    print("| metric | disabled | with coverage | target | pass |")
    print("|---|---:|---:|---|---|")
    for row in table:

        def cell(value: Any) -> str:
            return (
                f"{value:.1f}"
                if isinstance(value, float)
                else str(value if value is not None else "-")
            )

        print(f"| {row['metric']} | {cell(row['baseline'])} | {cell(row['value'])} "
              f"| {row['target']} | {'pass' if row['pass'] else 'FAIL'} |")  # fmt: skip
    if args.task_cpu:
        print("\nThe shipping thread's CPU per task, summed over each environment (medians):")
        print("\n".join(task_rows(samples, sizes)))
    return 0 if all(row["pass"] for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
