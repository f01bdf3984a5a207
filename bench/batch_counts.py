"""Instructions per warm batch invocation, by part (issue 20's batch row), counted.

    # in the image, under callgrind, twice per configuration (K and K+M invocations):
    python -X perf -m bench.batch_counts run --config new-prearm --branch --count 4
    # on the host, the two output files (and their perf maps) into a table:
    python -m bench.batch_counts attribute A.cg A.map B.cg B.map --invocations 4

Timings on this shared machine move 30-50%; instruction counts do not.  ``run``
drives the example's own handler (`app.handler.lambda_handler`) on the
``admin-batch-process`` event in process, as `bench/prearm.py` does: warm
invocations first (the maintenance pass after the 4th and the 8th, coverage.py
fed, as the shipping thread does), then ``--count`` measured ones, then
``os._exit`` (no shutdown: its cost grows with what was recorded).  Run twice
with different counts, the difference is what ``M`` warm invocations cost, all
else equal (``PYTHONHASHSEED=0``; labels of one length).

``-X perf`` gives each Python function a trampoline of its own (written to
``/tmp/perf-PID.map``), which callgrind counts as a function: ``attribute``
names them from the map, so our Python functions (the block's ``enter`` and
``exit``, the recorder's callbacks, the switch) have inclusive counts of their
own.  The image's binary is stripped: CPython's internal C functions (the
event dispatch, ``_Py_Instrument``) show as addresses; what they cost per event
and per re-arming is counted apart, by `bench/event_costs.py`.  A trampoline
adds a C call and an evaluation loop to every Python call (+15-40% on call-heavy
code): the totals of the table come from runs without ``-X perf``.

Configurations: ``off`` (no coverage session: the API is a no-op, as with
``COVERAGE_ENABLED=false``), ``labels-off`` (``COVERAGE_LABELS=none``),
``none`` (labels on, no label), ``same`` (one label throughout), ``new`` (a
new label each invocation), ``new-prearm`` (the same, `Measurement.prearm`
between invocations: the shipping thread's work, subtracted as off the path).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("off", "labels-off", "none", "same", "new", "new-prearm")
WARM = 10
# Off the invocation path: the driver's own calls between invocations.
OFF_PATH = ("measured_prearm",)


def _label(config: str, index: int) -> str | None:
    if config in ("off", "labels-off", "none"):
        return None
    return "same-label" if config == "same" else f"label-{index:04d}"


def run(config: str, branch: bool, count: int) -> None:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from bench.labels_example import Context, start_example

    environment = {"ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN": "true"}
    if config == "off":
        os.environ.update(environment, AWS_LAMBDA_FUNCTION_NAME="bench")
        os.environ.update(POWERTOOLS_SERVICE_NAME="bench", LAMBDA_TASK_ROOT=str(REPO_ROOT))
        from app import handler as module  # (the API is a no-op: no session)

        runtime = None
    else:
        if config == "labels-off":
            environment["COVERAGE_LABELS"] = "none"
        runtime, module = start_example(branch, **environment)
    event = json.loads((REPO_ROOT / "events" / "admin-batch-process.json").read_text())
    context = Context()

    def arrive(index: int) -> None:
        if runtime is not None:
            label = _label(config, index)
            custom = None if label is None else json.dumps({"custom": {"coverage-label": label}})
            runtime.invocation_arrived(client_context=custom)

    # Distinct functions for the warm and the measured invocations: each its own
    # trampoline, so the table can tell them apart.
    def warm_invocation(index: int) -> None:
        arrive(index)
        module.lambda_handler(event, context)

    def measured_invocation(index: int) -> None:
        arrive(index)
        module.lambda_handler(event, context)

    def measured_prearm() -> None:
        if runtime is not None:
            runtime.measurement.prearm()

    for index in range(WARM):
        warm_invocation(index)
        if runtime is not None:
            if index + 1 in (4, 8):
                runtime.measurement.maintain()
            if config == "new-prearm":
                runtime.measurement.prearm()
    if runtime is not None:
        runtime.measurement.materialize()  # coverage.py fed, as the shipping thread does
    for index in range(WARM, WARM + count):
        measured_invocation(index)
        if config == "new-prearm":
            measured_prearm()
    sys.stdout.flush()
    os._exit(0)


# -- attribution ---------------------------------------------------------------


def perf_map(path: Path) -> dict[str, str]:
    """Trampoline addresses (as callgrind names them) -> ``py::qualname:file``."""
    names = {}
    for line in path.read_text().splitlines():
        address, _, name = line.split(" ", 2)
        names[f"0x{int(address, 16):016x}"] = name
    return names


class Function(NamedTuple):
    """One function's counts in a callgrind profile."""

    self_cost: int
    inclusive: int
    calls: int  # how many times it was called


def profile(cg: Path, names: dict[str, str]) -> dict[str, Function]:
    """Per function (recursion levels merged), its self and inclusive
    instructions and how often it was called; trampolines named from the perf
    map (the binary's unnamed functions keep their addresses).  Read from callgrind's
    own format (``fn=``, ``cfn=``, ``calls=`` and cost lines; positions are
    lines, one event: Ir)."""
    ids: dict[str, str] = {}

    def name_of(text: str) -> str:
        text = text.strip()
        if text.startswith("("):
            key, _, rest = text.partition(")")
            if rest.strip():
                ids[key] = rest.strip()
            text = ids[key]
        base = text.split("'")[0]
        return names.get(base, base)

    own: dict[str, int] = defaultdict(int)
    outgoing: dict[str, int] = defaultdict(int)  # calls to other functions (inclusive)
    called: dict[str, int] = defaultdict(int)
    current = callee = ""
    pending_call = False
    with cg.open() as lines:
        for line in lines:
            if line.startswith("fn="):
                current = name_of(line[3:])
            elif line.startswith("cfn="):
                callee = name_of(line[4:])
            elif line.startswith("calls="):
                called[callee] += int(line[6:].split()[0])
                pending_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    if callee != current:  # (recursion: already in the outer level)
                        outgoing[current] += cost
                    pending_call = False
                else:
                    own[current] += cost
    return {
        name: Function(own[name], own[name] + outgoing[name], called[name])
        for name in set(own) | set(called)
    }


def total(cg: Path) -> int:
    for line in cg.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError(f"no totals in {cg}")


def attribute(args: argparse.Namespace) -> dict[str, Any]:
    """The difference of two runs, per function, per invocation."""
    (a, profile_a), (b, profile_b) = (
        (total(cg), profile(cg, perf_map(mapped)))
        for cg, mapped in ((args.a_cg, args.a_map), (args.b_cg, args.b_map))
    )
    per = args.invocations
    empty = Function(0, 0, 0)
    rows = {}
    for name in set(profile_a) | set(profile_b):
        before, after = profile_a.get(name, empty), profile_b.get(name, empty)
        rows[name] = Function(*((y - x) / per for x, y in zip(before, after, strict=True)))
    return {"total": (b - a) / per, "functions": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    running = commands.add_parser("run")
    running.add_argument("--config", choices=CONFIGS, required=True)
    running.add_argument("--branch", action="store_true")
    running.add_argument("--count", type=int, default=4)
    attributing = commands.add_parser("attribute")
    for name in ("a_cg", "a_map", "b_cg", "b_map"):
        attributing.add_argument(name, type=Path)
    attributing.add_argument("--invocations", type=int, required=True)
    attributing.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    if args.command == "run":
        out, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - the function's logs
        try:
            run(args.config, args.branch, args.count)
        finally:
            sys.stdout = out
        return 0
    result = attribute(args)
    rows = result["functions"]
    print(f"total per invocation: {result['total']:,.0f}")
    for title, key in (("inclusive", "inclusive"), ("self", "self_cost")):
        print(f"-- by {title}: inclusive, self, calls per invocation")
        ranked = sorted(rows.items(), key=lambda item: -abs(getattr(item[1], key)))
        for name, row in ranked[: args.top]:
            print(f"{row.inclusive:12,.0f} {row.self_cost:12,.0f} {row.calls:8,.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
