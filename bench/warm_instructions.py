"""Instructions a warm invocation executes, counted by callgrind: the labels rows without the noise.

`bench_image.py`'s labels section times warm round trips of ~1.5 ms; on this
project's shared two-core VM the same configuration's median moves by more
than the 5-10% its targets allow between runs.  This counts instead, as
`bench/instructions.py` counts the init: each environment's runtime runs under
callgrind and `bench/init_cpu`'s hook ends it when awslambdaric asks for an
event after the last invocation.  Two environments per configuration and
event, one given ``--warm-up`` invocations of the event and one given
``--warm-up + --invocations``: their difference over ``--invocations`` is one
warm invocation's instructions, every thread included (the shipping thread's
work after each response too: a label's pre-arm, maintenance, which Lambda
bills only when it overlaps an invocation).  Each thread is counted apart
(callgrind's ``--separate-threads``): the rows judge the main thread's, the
invocation path from the event to the response and the wait for the next,
and show every thread's beside it, an upper bound of what an environment
frozen right after ``/next`` would be billed.  Not ``health.json`` first, as
the timed rows do: its checks build a boto3 client on a pool thread that
outlives the response, and that work would land in whichever window it ends
in.  The shim's one-time work after the first response
(the hand-over to coverage.py) is waited for at its pause point, so both
environments of a pair have done it before the warm-up; the warm-up (70) runs
past the maintenance passes' ramp (4, 8, ... 64) and the counted 64 hold one
steady-state pass.

The configurations and targets are the labels section's (`LABEL_CONFIGS`,
the batch event's blocks per item at `BATCH_TARGETS`); the ratio is against
coverage off's count for the same event given the same requests: a labelled
row's baseline is coverage off sent the same ``ClientContext`` headers
(awslambdaric parses them whether coverage is on or not; the timed rows'
baseline sends none).  ``--gap-ms`` waits between invocations, as a caller
does between tests: under callgrind the runtime runs ~50x slower than the
driver, so without a gap the next event arrives before the shipping thread's
pre-arm of a new label is done, and the switch re-arms on the main thread.

    python bench/warm_instructions.py --image IMAGE [--events a.json,b.json] [-r 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.bench_image import BATCH_TARGETS, CONFIGS, EVENTS, LABEL_CONFIGS  # noqa: E402
from bench.instructions import (  # noqa: E402
    IMAGE_PYTHON,
    Function,
    count_environment,
    perf_map_of,
    python_names_env,
    wrapper_script,
)
from coverage_runtime import env as shim_env  # noqa: E402
from tests.containers import build_image  # noqa: E402
from tests.harness import S3Server, client_context  # noqa: E402

EVENTS_DIR = REPO_ROOT / "events"
# The shim's pause point after the work that follows the first response (the
# hand-over to coverage.py): the counted invocations start after it is done.
IDLE = "shipper-idle"
PAUSES = "/bench-pauses"
IDLE_WAIT_SECONDS = 600


def wait_idle(pauses: Path) -> None:
    """Wait for the runtime's shipping thread to reach `IDLE`, then let it go on."""
    deadline = time.monotonic() + IDLE_WAIT_SECONDS
    while not (pauses / f"{IDLE}.reached").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the shipping thread never reached {IDLE}")
        time.sleep(0.05)
    (pauses / f"{IDLE}.go").touch()


@dataclass
class WarmCount:
    config: str
    event: str
    round: int
    invocations: int
    instructions: int | None  # every thread
    main: int | None  # the main thread: the invocation path


def label_headers(labelling: str | None, index: int) -> dict[str, str] | None:
    """The i-th invocation's ``X-Amz-Client-Context``, as the labels section sends it."""
    if labelling == "same":
        return client_context({"coverage-label": "tests/test_it.py::test_same"})
    if labelling == "new":
        return client_context({"coverage-label": f"tests/test_it.py::test_case[{index}]"})
    return None


# Coverage off given a labelled row's requests: that row's baseline.
OFF_CONFIGS: dict[str, tuple[str, str | None, float]] = {
    "disabled, same label": ("disabled", "same", 1.0),
    "disabled, new label each": ("disabled", "new", 1.0),
}
ALL_CONFIGS = {**LABEL_CONFIGS, **OFF_CONFIGS}


def baseline_of(config: str) -> str:
    labelling = ALL_CONFIGS[config][1]
    return next((off for off, (_, how, _) in OFF_CONFIGS.items() if how == labelling), "disabled")


def variables_of(config: str) -> dict[str, str]:
    core, _, _ = ALL_CONFIGS[config]
    return {**CONFIGS[core], **({"COVERAGE_LABELS": "none"} if "labels off" in config else {})}


def target_of(config: str, event: str) -> float:
    core, labelling, target = LABEL_CONFIGS[config]
    if "batch" in event and labelling != "new":  # blocks per item: as the timed rows
        return BATCH_TARGETS["full+branch" if "branch" in core else "full"]
    return target


def rows(counts: list[WarmCount], warm_up: int, invocations: int) -> list[dict[str, Any]]:
    """Per event and configuration: one warm invocation's median count (the long
    environment's minus the short one's, per invocation) against coverage off's."""

    def per_invocation(config: str, event: str, thread: str = "main") -> list[float]:
        found = []
        for round_ in sorted({c.round for c in counts}):
            by = {
                c.invocations: getattr(c, thread)
                for c in counts
                if (c.config, c.event, c.round) == (config, event, round_)
            }
            short, long_ = by.get(warm_up), by.get(warm_up + invocations)
            if short is not None and long_ is not None:
                found.append((long_ - short) / invocations)
        return found

    table = []
    for event in dict.fromkeys(c.event for c in counts):
        for config in LABEL_CONFIGS:
            values = per_invocation(config, event)
            base = per_invocation(baseline_of(config), event)
            if config == "disabled" or not values or not base:
                continue
            off = statistics.median(base)
            off_every = per_invocation(baseline_of(config), event, "instructions")
            off_all = statistics.median(off_every or [off])
            value = statistics.median(values)
            every = per_invocation(config, event, "instructions")
            value_all = statistics.median(every) if every else None
            target = target_of(config, event)
            table.append(
                {"event": event, "config": config, "off": off, "value": value,
                 "ratio": value / off, "added": value - off,
                 "spread": (max(values) - min(values)) / value,
                 # every thread: the shipping thread's work after responses as well
                 "off_all": off_all, "value_all": value_all,
                 "ratio_all": value_all / off_all if value_all else None,
                 "target": f"<= {target:.2f}x", "pass": value / off <= target}
            )  # fmt: skip
    return table


def print_table(table: list[dict[str, Any]]) -> None:
    print(
        "| event | config | off, k instr | on, k instr | added, k | ratio | target | pass "
        "| every thread: ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|---:|")
    for r in table:
        every = f"{r['ratio_all']:.3f}" if r.get("ratio_all") else "-"
        print(
            f"| {r['event']} | {r['config']} | {r['off'] / 1e3:.1f} | {r['value'] / 1e3:.1f} "
            f"| {r['added'] / 1e3:+.1f} | {r['ratio']:.3f} | {r['target']} "
            f"| {'pass' if r['pass'] else 'FAIL'} | {every} |"
        )


def keep(main_thread_file: Path, into: Path) -> None:
    """Copy an environment's callgrind files (and perf map) for ``callgrind_annotate``."""
    into.mkdir(parents=True, exist_ok=True)
    process = main_thread_file.name.rsplit("-", 1)[0]
    for found in main_thread_file.parent.glob(f"{process}-*"):
        shutil.copy(found, into / found.name)
    perf_map = perf_map_of(main_thread_file.with_name(process))
    if perf_map is not None:
        shutil.copy(perf_map, into / perf_map.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", help="the example's image (default: build one)")
    parser.add_argument("--events", default=",".join(EVENTS), help="event files in events/")
    parser.add_argument(
        "--config", action="append", default=[],
        help="a LABEL_CONFIGS name (repeatable; default all); its baseline is counted too",
    )  # fmt: skip
    parser.add_argument(
        "--warm-up", type=int, default=70,
        help="invocations before the counted (70: past the shim's maintenance at 4, 8, ... 64)",
    )  # fmt: skip
    parser.add_argument(
        "--invocations", type=int, default=64,
        help="counted invocations (64: one steady-state maintenance pass among them)",
    )  # fmt: skip
    parser.add_argument("-r", "--rounds", type=int, default=1, help="environment pairs each")
    parser.add_argument("--keep", type=Path, help="keep each environment's callgrind files here")
    parser.add_argument(
        "--python-names", action="store_true",
        help="PYTHONPERFSUPPORT=1 in every environment; --keep keeps each runtime's perf map",
    )  # fmt: skip
    parser.add_argument(
        "--gap-ms", type=float, default=0.0,
        help="wait between invocations (wall time, under callgrind's ~50x slowdown)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configs = list(ALL_CONFIGS)
    if args.config:
        configs = list(dict.fromkeys([*map(baseline_of, args.config), *args.config]))
    unknown = [c for c in configs if c not in ALL_CONFIGS]
    if unknown:
        parser.error(f"--config {unknown}: not one of {list(LABEL_CONFIGS)}")
    events = args.events.split(",")
    missing = [e for e in events if not (EVENTS_DIR / e).is_file()]
    if missing:
        parser.error(f"--events: not in events/: {missing}")
    if args.warm_up < 0 or args.invocations < 1:
        parser.error("--warm-up >= 0 and --invocations >= 1")
    image = args.image or build_image("localhost/lambda-coverage-bench")

    scratch = Path(tempfile.mkdtemp(prefix="lc-wcount-"))
    scratch.chmod(0o755)
    (scratch / "wrapper").mkdir(mode=0o755)
    wrapper = scratch / "wrapper" / "python"
    wrapper.write_text(wrapper_script(IMAGE_PYTHON, separate_threads=True))
    wrapper.chmod(0o755)
    counts: list[WarmCount] = []
    bucket = f"wcount-{uuid.uuid4().hex[:8]}"
    s3 = S3Server()
    try:
        s3.client().create_bucket(Bucket=bucket)
        for round_ in range(args.rounds):
            for event in events:
                body = (EVENTS_DIR / event).read_bytes()
                function = Function("example", image, body)
                order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
                for config in order:
                    labelling = ALL_CONFIGS[config][1]
                    for n in (args.warm_up, args.warm_up + args.invocations):
                        sent = [(body, label_headers(labelling, i)) for i in range(n + 1)]
                        label = f"{event}-{config}-{n}-{round_}"
                        pauses = scratch / f"{label}-pauses"
                        pauses.mkdir(mode=0o777)
                        pauses.chmod(0o777)  # the runtime runs as the image's lambda user
                        enabled = ALL_CONFIGS[config][0] != "disabled"
                        variables = variables_of(config) | python_names_env(args.python_names) | (
                            {shim_env.TEST_PAUSE_DIR: PAUSES, shim_env.TEST_PAUSE_AT: IDLE}
                            if enabled else {}
                        )  # fmt: skip
                        counted = count_environment(
                            function, label, variables, s3, bucket, scratch, sent,
                            extra=("--volume", f"{pauses}:{PAUSES}"), gap=args.gap_ms / 1000,
                            after_first=(lambda p=pauses: wait_idle(p)) if enabled else None,
                        )  # fmt: skip
                        if args.keep and counted.file:
                            kept = args.keep / label.replace(" ", "").replace(",", "_")
                            keep(Path(counted.file), kept)
                        total, main_ = counted.total, counted.main
                        counts.append(WarmCount(config, event, round_, n, total, main_))
                        print(f"  {event} {config} n={n} r{round_}: {main_} {total}")
    finally:
        s3.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    table = rows(counts, args.warm_up, args.invocations)
    print_table(table)
    if args.json:
        args.json.write_text(
            json.dumps({"counts": [asdict(c) for c in counts], "rows": table}, indent=2)
        )
    return 0 if all(c.instructions and c.main for c in counts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
