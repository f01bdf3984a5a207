"""Instructions a cold start executes, counted by callgrind: the init's cost without the noise.

On this project's shared two-core VM the same configuration's INIT REPORT
moves by 30-50% between environments, and CPU time with it (a guest's CPU
time includes what the host takes): no timing resolves a 5 ms target.
``valgrind --tool=callgrind`` counts the instructions a process executes, the
same for the same binary, inputs and environment whatever else the machine
does.  So this runs each configuration's fresh environment under the RIE as
`bench_image.py`'s cold section does, with the runtime process under
callgrind (a ``python`` first on ``PATH`` that executes valgrind), and
`bench/init_cpu`'s hook ending the process when awslambdaric first asks for
an event: the count is the process's from ``exec`` to the end of its init,
every thread included (the extension's registration among them).

The rows: instructions per configuration, the added share against coverage
off, and that share as ms of coverage off's INIT REPORT median (``--off-ms``,
from `bench_image.py`'s cold rows: this assumes the added instructions run
at the same rate as the rest of the init, which the note on each run says).

Valgrind comes from the host (``/usr/bin/valgrind``, ``/usr/libexec/valgrind``,
Debian's package), mounted read-only; the image is not changed.  Each
environment's callgrind file is kept under ``--keep DIR`` for
``callgrind_annotate``, which attributes the difference to C functions; with
``--python-names`` each runtime also runs with ``PYTHONPERFSUPPORT=1`` and its
perf map is kept beside (``NAME.perf-map``), naming the Python function behind
each of callgrind's ``???:0x...`` entries (the trampolines add ~7% to every
configuration's count: compare such runs only with each other).

    python bench/instructions.py --image IMAGE [--heavy-image IMAGE] [--synthetic 2000]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import init_cpu  # noqa: E402
from bench.bench_image import CONFIGS, INIT_REPORT_RE, build_heavy  # noqa: E402
from tests import synthetic_function  # noqa: E402
from tests.containers import build_image, podman, start_with_local_s3, stop  # noqa: E402
from tests.harness import S3Server, post_invocation  # noqa: E402

VALGRIND_MOUNTS = (
    ("/usr/bin/valgrind", "/usr/bin/valgrind"),
    ("/usr/bin/valgrind.bin", "/usr/bin/valgrind.bin"),
    ("/usr/libexec/valgrind", "/usr/libexec/valgrind"),
)
WRAPPER_DIR = "/opt/bench-callgrind"
OUT_DIR = "/out"
IMAGE_PYTHON = "/opt/venv/bin/python"
PATH = f"{WRAPPER_DIR}:/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXAMPLE_EVENT = REPO_ROOT / "events" / "business-process-data.json"
HEAVY_EVENT = REPO_ROOT / "bench" / "heavy" / "event.json"
# Issue 17's targets (the example: added ms; bench/heavy: a ratio) and issue 18's
# (2,000 measured modules: a ratio; used for every synthetic size).
TARGETS: dict[str, tuple[str, float]] = {
    "example": ("+ms", 5.0),
    "heavy": ("x", 1.05),
    "synthetic": ("x", 1.25),
}
# Rows of the init with the first invocation: issue 17's "first invocations" target.
FIRST = " + invocation 1"
FIRST_TARGET = 1.05
TOTAL_RE = re.compile(r"^(?:summary|totals):\s*([0-9]+)", re.MULTILINE)


@dataclass
class Count:
    function: str
    config: str
    round: int
    instructions: int | None
    file: str | None


def wrapper_script(python: str, separate_threads: bool = False) -> str:
    """The ``python`` the entrypoint finds first: the image's, under callgrind
    (``separate_threads``: a file per thread, ``callgrind.PID-NN``, 01 the main one)."""
    out = f"--callgrind-out-file={OUT_DIR}/callgrind.%p"
    threads = " --separate-threads=yes" if separate_threads else ""
    return f'#!/bin/sh\nexec valgrind --tool=callgrind{threads} {out} -q "{python}" "$@"\n'


def instructions(path: Path) -> int | None:
    found = TOTAL_RE.search(path.read_text(errors="replace"))
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Function:
    name: str
    image: str
    event: bytes
    extra: tuple[str, ...] = ()  # podman run arguments (the synthetic task root's volume)
    command: tuple[str, ...] = ()  # the handler, when not the image's CMD


def python_names_env(enabled: bool) -> dict[str, str]:
    """The environment that names Python functions in the count (see the module's doc)."""
    if not enabled:
        return {}
    return {"PYTHONPERFSUPPORT": "1", init_cpu.PERF_MAP_VARIABLE: OUT_DIR}


def perf_map_of(callgrind_file: Path) -> Path | None:
    """The perf map the process that wrote ``callgrind.PID`` left, if any."""
    found = callgrind_file.with_name(f"perf-{callgrind_file.suffix.lstrip('.')}.map")
    return found if found.exists() else None


def count_one(
    function: Function,
    config: str,
    round_: int,
    s3: S3Server,
    bucket: str,
    scratch: Path,
    through_first: bool = False,
    python_names: bool = False,
) -> Count:
    """One fresh environment of ``config``: the instructions of its runtime's init
    (``through_first``: and of its first invocation, up to the next request for an event)."""
    name_in_rows = f"{function.name}{FIRST}" if through_first else function.name
    counted = count_environment(
        function, f"{name_in_rows}-{config}-{round_}", CONFIGS[config], s3, bucket, scratch,
        [(function.event, None)] if through_first else [],
        # Unset, as in Lambda: its check imports urllib.parse (and ipaddress), a cost of
        # local testing only; nothing is uploaded before the process ends.
        blank_endpoint=True, python_names=python_names,
    )  # fmt: skip
    return Count(name_in_rows, config, round_, counted.total, counted.file)


def count_environment(
    function: Function,
    label: str,
    variables: Mapping[str, str],
    s3: S3Server,
    bucket: str,
    scratch: Path,
    invocations: Sequence[tuple[bytes, Mapping[str, str] | None]],
    blank_endpoint: bool = False,
    python_names: bool = False,
    extra: Sequence[str] = (),
    after_first: Callable[[], None] | None = None,
    gap: float = 0.0,
) -> Counted:
    """A fresh environment of ``function`` with ``variables``, its runtime under
    callgrind, given ``invocations`` (body, headers) in turn: the instructions of its
    process from ``exec`` to its next request for an event after the last of them
    (bench/init_cpu's hook ends it there), as `counted_process` reads them.
    ``extra``: more ``podman run`` arguments; ``after_first``: called once the
    first invocation has answered; ``gap``: seconds between invocations."""
    out = scratch / label
    out.mkdir(mode=0o777)
    out.chmod(0o777)  # the runtime runs as the image's lambda user
    name = f"lc-icount-{uuid.uuid4().hex[:8]}"
    mounts = [a for src, dst in VALGRIND_MOUNTS for a in ("--volume", f"{src}:{dst}:ro")]
    endpoint = {"COVERAGE_S3_ENDPOINT_URL": ""} if blank_endpoint else {}
    port, _ = start_with_local_s3(
        name, function.image, s3, bucket,
        *mounts, "--volume", f"{scratch / 'wrapper'}:{WRAPPER_DIR}:ro",
        "--volume", f"{out}:{OUT_DIR}", *init_cpu.container_args(), *function.extra, *extra,
        command=function.command,
        AWS_LAMBDA_FUNCTION_NAME=f"icount-{function.name}", PYTHONPATH=init_cpu.MOUNT,
        PATH=PATH, PYTHONHASHSEED="0", BENCH_EXIT_AT_NEXT=str(len(invocations) + 1),
        AWS_LAMBDA_FUNCTION_TIMEOUT="900", **endpoint, **python_names_env(python_names),
        **variables,
    )  # fmt: skip
    try:
        for index, (body, headers) in enumerate(invocations, 1):
            if index > 1 and gap > 0:
                time.sleep(gap)  # a caller's pace between requests, not a synchronization
            result = post_invocation(port, body, timeout=900, headers=headers)
            # The last one's runtime ends at /next, which the RIE may answer with a 502.
            if result.status != 200 and index < len(invocations):
                said = result.raw[:300]
                raise RuntimeError(f"{label}: invoke returned {result.status}: {said!r}")
            if index == 1 and after_first is not None:
                after_first()
        if not invocations:  # the first request starts the runtime, which ends at /next
            post_invocation(port, function.event, timeout=900)
    except OSError:
        pass
    finally:
        stop(name)
        podman("rm", "--force", "--time", "0", name, check=False)
    return counted_process(out)


class Counted(NamedTuple):
    """A runtime process's instructions: every thread's, its main thread's (the
    same with one file for the process), and the (main thread's) callgrind file."""

    total: int | None
    main: int | None
    file: str | None


def counted_process(out: Path) -> Counted:
    """The runtime's count in ``out``: the process that counted most (setpriv and
    shells exec, not fork); with a file per thread (``callgrind.PID-NN``, 01 the
    main one), their sum."""
    by_process: dict[str, list[tuple[Path, int | None]]] = {}
    for found in sorted(out.glob("callgrind.*")):
        process, _, thread = found.name.partition("-")
        if not thread and any(out.glob(f"{process}-*")):
            continue  # a file per thread: the process's own stays empty
        by_process.setdefault(process, []).append((found, instructions(found)))
    if not by_process:
        return Counted(None, None, None)
    files = max(by_process.values(), key=lambda fs: sum(n or 0 for _, n in fs))
    (main_file, main), *_ = files
    total = None if any(n is None for _, n in files) else sum(n or 0 for _, n in files)
    return Counted(total, main, str(main_file))


def native_off_ms(function: Function, s3: S3Server, bucket: str, rounds: int) -> float | None:
    """Coverage off's INIT REPORT median for ``function``, without valgrind: what
    turns an added share of instructions into ms."""
    found = []
    for _ in range(rounds):
        name = f"lc-icount-off-{uuid.uuid4().hex[:8]}"
        port, _ = start_with_local_s3(
            name, function.image, s3, bucket, *function.extra, command=function.command,
            AWS_LAMBDA_FUNCTION_NAME=f"icount-{function.name}", **CONFIGS["disabled"],
        )  # fmt: skip
        try:
            post_invocation(port, function.event, timeout=120)
        finally:
            _, logs, _ = stop(name)
            podman("rm", "--force", "--time", "0", name, check=False)
        report = INIT_REPORT_RE.search(logs)
        if report:
            found.append(float(report.group(1)))
    return statistics.median(found) if found else None


def target_of(function: str) -> tuple[str, float]:
    """A function of the user's (``--function``) has bench/heavy's target."""
    if function.endswith(FIRST):
        return ("x", FIRST_TARGET)
    return TARGETS.get(function.split("-", maxsplit=1)[0], TARGETS["heavy"])


def rows(counts: list[Count], off_ms: dict[str, float]) -> list[dict[str, Any]]:
    """Per function and configuration: the median count against coverage off's,
    as a ratio and, given coverage off's INIT REPORT, as ms; and the target."""
    table = []
    for function in dict.fromkeys(c.function for c in counts):
        by = {
            config: [
                c.instructions
                for c in counts
                if c.function == function and c.config == config and c.instructions
            ]
            for config in CONFIGS
        }
        if not by["disabled"]:
            continue
        base = statistics.median(by["disabled"])
        for config in ("full", "full+branch", "selective"):
            if not by[config]:
                continue
            value = statistics.median(by[config])
            spread = (max(by[config]) - min(by[config])) / value if len(by[config]) > 1 else 0.0
            row: dict[str, Any] = {
                "function": function, "config": config, "off": base, "value": value,
                "ratio": value / base, "spread": spread,
            }  # fmt: skip
            if function.removesuffix(FIRST) in off_ms and not function.endswith(FIRST):
                row["added_ms"] = (value - base) / base * off_ms[function]
            kind, limit = target_of(function)
            if kind == "x":
                row["target"], row["pass"] = f"<= {limit:.2f}x", value / base <= limit
            else:
                row["target"] = f"+{limit:g} ms"
                row["pass"] = row["added_ms"] <= limit if "added_ms" in row else None
            table.append(row)
    return table


def print_table(table: list[dict[str, Any]]) -> None:
    print(
        "| function | config | off, M instr | on, M instr | ratio | ~ms at off's INIT REPORT "
        "| target | pass |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|")
    for r in table:
        ms = f"+{r['added_ms']:.1f}" if "added_ms" in r else "-"
        verdict = {True: "pass", False: "FAIL", None: "-"}[r["pass"]]
        print(
            f"| {r['function']} | {r['config']} | {r['off'] / 1e6:.1f} | {r['value'] / 1e6:.1f} "
            f"| {r['ratio']:.3f} | {ms} | {r['target']} | {verdict} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", help="the example's image (default: build one)")
    parser.add_argument("--heavy", action="store_true", help="bench/heavy too, built on the image")
    parser.add_argument("--heavy-image", help="bench/heavy already built on the image")
    parser.add_argument("--synthetic", type=int, action="append", default=[], help="N modules")
    parser.add_argument(
        "--function", action="append", default=[], metavar="NAME=IMAGE,EVENT[,HANDLER]",
        help="another function's image (built FROM this one, its code in /var/task), its event "
        "file and, if not the image's CMD, its handler",
    )  # fmt: skip
    parser.add_argument("-r", "--rounds", type=int, default=2, help="environments each")
    parser.add_argument(
        "--off-rounds", type=int, default=5,
        help="native coverage-off environments per function, for the ms column (0: none)",
    )  # fmt: skip
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument(
        "--first-invocation", action="store_true",
        help="also count each function's init with its first invocation (issue 17's first "
        "invocations: <= 1.05x)",
    )  # fmt: skip
    parser.add_argument(
        "--off-ms", action="append", default=[], metavar="FUNCTION=MS",
        help="coverage off's INIT REPORT median for FUNCTION (example, heavy, synthetic-N)",
    )  # fmt: skip
    parser.add_argument("--keep", type=Path, help="keep the callgrind files here")
    parser.add_argument(
        "--python-names", action="store_true",
        help="PYTHONPERFSUPPORT=1 in every environment; --keep keeps each runtime's perf map",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configs = args.configs.split(",")
    off_ms = {k: float(v) for k, v in (item.split("=", 1) for item in args.off_ms)}
    image = args.image or build_image("localhost/lambda-coverage-bench")
    heavy = args.heavy_image or (build_heavy(image) if args.heavy else None)

    scratch = Path(tempfile.mkdtemp(prefix="lc-icount-"))
    scratch.chmod(0o755)
    (scratch / "wrapper").mkdir(mode=0o755)
    wrapper = scratch / "wrapper" / "python"
    wrapper.write_text(wrapper_script(IMAGE_PYTHON))
    wrapper.chmod(0o755)
    functions = [Function("example", image, EXAMPLE_EVENT.read_bytes())]
    if heavy:
        functions.append(Function("heavy", heavy, HEAVY_EVENT.read_bytes()))
    for spec in args.function:
        name, _, rest = spec.partition("=")
        other_image, event, *handler = rest.split(",")
        if not (name and other_image and event) or name.split("-")[0] in TARGETS:
            parser.error(f"--function {spec!r}: NAME=IMAGE,EVENT[,HANDLER], NAME not ours")
        command = tuple(handler[:1])
        functions.append(Function(name, other_image, Path(event).read_bytes(), (), command))
    for size in args.synthetic:
        root = synthetic_function.write(scratch / f"n{size}", size)
        root.chmod(0o755)
        # Bytecode, as a deployed function has it, for the Python that runs it (as sizes.py).
        podman(
            "run", "--rm", "--volume", f"{root}:/var/task", "--entrypoint", "python",
            image, "-m", "compileall", "-q", "/var/task", timeout=600,
        )  # fmt: skip
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        volume = ("--volume", f"{root}:/var/task:ro")
        functions.append(Function(f"synthetic-{size}", image, b"{}", volume, ("handler.handler",)))
    counts: list[Count] = []
    bucket = f"icount-{uuid.uuid4().hex[:8]}"
    s3 = S3Server()
    try:
        s3.client().create_bucket(Bucket=bucket)
        for function in functions:
            if function.name not in off_ms and args.off_rounds > 0:
                found = native_off_ms(function, s3, bucket, args.off_rounds)
                if found is not None:
                    off_ms[function.name] = found
                print(f"  {function.name} off, INIT REPORT median: {found} ms", flush=True)
        for round_ in range(args.rounds):
            for function in functions:
                order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
                for config in order:
                    for through_first in (False, True) if args.first_invocation else (False,):
                        counted = count_one(
                            function,
                            config,
                            round_,
                            s3,
                            bucket,
                            scratch,
                            through_first,
                            args.python_names,
                        )
                        counts.append(counted)
                        line = f"  {counted.function} {config} r{round_}: {counted.instructions}"
                        print(line, flush=True)
    finally:
        s3.stop()
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for c in counts:
                if c.file:
                    kept = f"{c.function}-{c.config}-{c.round}"
                    shutil.copy(c.file, args.keep / f"{kept}.callgrind")
                    perf_map = perf_map_of(Path(c.file))
                    if perf_map is not None:
                        shutil.copy(perf_map, args.keep / f"{kept}.perf-map")
        shutil.rmtree(scratch, ignore_errors=True)
    table = rows(counts, off_ms)
    print_table(table)
    if args.json:
        args.json.write_text(
            json.dumps({"counts": [asdict(c) for c in counts], "rows": table}, indent=2)
        )
    return 0 if all(c.instructions for c in counts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
