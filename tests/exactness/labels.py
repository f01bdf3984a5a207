"""Labels recorded exactly: what each label ran, against plain coverage.py.

    python -m tests.exactness.labels shim --core sysmon [--branch] [--handover early|late|each]
    python -m tests.exactness.labels plain --core sysmon [--branch] --label LABEL
    python -m tests.exactness.labels --matrix

``shim`` runs `SCRIPT` in one environment, switching labels as invocations do,
and prints what each label recorded.  The truth for one label is plain
coverage.py in fresh processes: ``plain`` runs one *run* of the label (the
consecutive invocations under it: no switch between them), started before
the import for ``init`` and after it otherwise; the label's truth is the
union of its runs.  (coverage.py's own dynamic contexts cannot be the truth
on ``sysmon``: it has none.  And on ``sysmon`` with branches one process per
run is the truth: each location reports once per run, so the sequential arcs
coverage.py draws from its first hits depend on what ran before in the same
process.)  ``--matrix`` runs every cell this Python can, and compares.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FILE = HERE / "labelled.py"

# (label, segment): None is an invocation without a label.  Labels come back,
# segments run under several labels, and "a" runs twice under "t1".
SCRIPT: list[tuple[str | None, str]] = [
    ("t1", "a"),
    (None, "b"),
    ("t2", "a"),
    ("t2", "c"),
    ("t1", "b"),
    ("t3", "thread"),
    (None, "c"),
    ("t1", "a"),
    ("tests/test_x.py::test_y[1-2]", "c"),
]


def runs(label: str) -> list[list[str]]:
    """The segments of each run of ``label`` (None in `SCRIPT` is "")."""
    found: list[list[str]] = []
    previous: str | None = None
    for given, segment in SCRIPT:
        name = given or ""
        if name == label:
            if previous != label:
                found.append([])
            found[-1].append(segment)
        previous = name
    return found


def file_data(data: Any) -> dict[str, list[Any]]:
    return {
        "lines": sorted(data.lines(str(FILE)) or []),
        "arcs": sorted(map(list, data.arcs(str(FILE)) or [])),
    }


class OtherTool:
    """Another ``sys.monitoring`` tool (a profiler, say): PY_START everywhere, each
    code object disabled after its first call.  Labels must never re-arm it."""

    TOOL = 2  # sys.monitoring.PROFILER_ID

    def __init__(self) -> None:
        monitoring = sys.monitoring  # type: ignore[attr-defined]
        self.calls: dict[Any, int] = {}  # (by code object: kept alive, no id reused)
        monitoring.use_tool_id(self.TOOL, "other-profiler")
        monitoring.register_callback(self.TOOL, monitoring.events.PY_START, self.on_start)
        monitoring.set_events(self.TOOL, monitoring.events.PY_START)

    def on_start(self, code: Any, offset: int) -> Any:
        self.calls[code] = self.calls.get(code, 0) + 1
        return sys.monitoring.DISABLE  # type: ignore[attr-defined]

    def refired(self) -> int:
        return sum(1 for count in list(self.calls.values()) if count > 1)


def shim(args: argparse.Namespace) -> dict[str, Any]:
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import api
    from coverage_runtime.shim.session import CoverageSession

    env = {
        "LAMBDA_TASK_ROOT": str(HERE),
        "COVERAGE_SOURCE": str(HERE),
        "COVERAGE_CORE": args.core,
        "COVERAGE_BRANCH": str(args.branch).lower(),
        "COVERAGE_DATA_DIR": tempfile.mkdtemp(),
    }
    other = OtherTool() if args.other_tool else None
    runtime = CoverageSession.start(load_settings(env))
    api.install(runtime)
    from tests.exactness import labelled

    measurement = runtime.measurement
    retired = {"recorder": 0, "gate": 0}
    prearmed = 0
    for index, (label, segment) in enumerate(SCRIPT):
        if args.handover == "early" and index == 0:
            measurement.materialize()
        if args.handover == "middle" and index == len(SCRIPT) // 2:
            measurement.materialize()
        before = measurement.label
        runtime.label(label)
        labelled.SEGMENTS[segment]()
        if args.prearm and before not in (measurement.label, "init"):
            # Labels changing: the next switch is readied after the response, as
            # the shipping thread does (`CoverageSession.between_invocations`);
            # wrong when the next label is the same ("t2" twice): reported again.
            prearmed += measurement.prearm()
        if args.handover == "each":  # coverage.py fed after every invocation
            measurement.materialize()
        # The maintenance pass after each invocation: fully run code loses its
        # events (the recorder's own pass before the hand-over, the gate's after),
        # and must report again under the next label.
        retired["recorder" if measurement.receiving == "recorder" else "gate"] += (
            measurement.maintain()
        )
    data = measurement.data()
    by_label = {}
    for context in sorted(data.measured_contexts()):
        data.set_query_contexts([f"^{re.escape(context)}$"])
        by_label[context] = file_data(data)
    result = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "core": measurement.core_name(),
        "gate": measurement.gate_kind,
        "labels": by_label,
        "retired": retired,
        "prearmed": prearmed,
        "other_tool_refired": other.refired() if other else None,
        "other_tool_saw": len(list(other.calls)) if other else None,
    }
    measurement.finish()
    return result


def plain(args: argparse.Namespace) -> dict[str, Any]:
    import coverage

    cov = coverage.Coverage(
        data_file=None, source=[str(HERE)], branch=args.branch, config_file=False
    )
    cov.set_option("run:core", args.core)
    if args.label == "init":
        cov.start()
        from tests.exactness import labelled
    else:
        from tests.exactness import labelled

        cov.start()
        for segment in runs(args.label)[args.run]:
            labelled.SEGMENTS[segment]()
    cov.stop()
    return file_data(cov.get_data())


def cells(version: tuple[int, int] | None = None) -> list[list[str]]:
    from coverage_runtime.settings import sysmon_supports

    version = version or sys.version_info[:2]
    found = []
    for branch in (False, True):
        flags = ["--branch"] if branch else []
        found.append(["--core", "ctrace", *flags])
        if sysmon_supports(branch=branch, version=version):
            for handover in ("early", "middle", "late", "each"):
                found.append(["--core", "sysmon", *flags, "--handover", handover])
            # Beside another sys.monitoring tool: re-armed code object by code object.
            found.append(["--core", "sysmon", *flags, "--handover", "middle", "--other-tool"])
            # Each switch readied after the invocation before it (labels changing).
            for handover in ("late", "each"):
                found.append(["--core", "sysmon", *flags, "--handover", handover, "--prearm"])
            prearmed_beside = ["--handover", "middle", "--prearm", "--other-tool"]
            found.append(["--core", "sysmon", *flags, *prearmed_beside])
    return found


def run(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "tests.exactness.labels", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise RuntimeError(f"{args}: {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def compare(cell: list[str]) -> dict[str, Any]:
    """One cell: the shim's labels against plain coverage.py, label by label."""
    got = run("shim", *cell)
    handovers = ("--handover", "early", "middle", "late", "each", "--other-tool", "--prearm")
    flags = [a for a in cell if a not in handovers]
    expected_labels = ["init", *sorted({label or "" for label, _ in SCRIPT})]
    differences = {}
    for label in expected_labels:
        truth: dict[str, set[Any]] = {"lines": set(), "arcs": set()}
        for index in range(max(1, len(runs(label)))):
            one = run("plain", *flags, "--label", label, "--run", str(index))
            truth["lines"].update(one["lines"])
            truth["arcs"].update(map(tuple, one["arcs"]))
        plain = {"lines": sorted(truth["lines"]), "arcs": sorted(map(list, truth["arcs"]))}
        mine = got["labels"].get(label, {"lines": [], "arcs": []})
        if mine != plain:
            differences[label] = {"shim": mine, "plain": plain}
    extra = sorted(set(got["labels"]) - set(expected_labels))
    return {
        "cell": " ".join(cell),
        "python": got["python"],
        "core": got["core"],
        "gate": got["gate"],
        "labels": sorted(got["labels"]),
        "differences": differences,
        "extra_labels": extra,
        "other_tool_refired": got["other_tool_refired"],
        "other_tool_saw": got["other_tool_saw"],
        "retired": got.get("retired"),
        "prearmed": got.get("prearmed"),
        "exact": not differences
        and not extra
        and got["gate"] == "gate"
        and not got["other_tool_refired"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["shim", "plain"])
    parser.add_argument("--core", choices=["sysmon", "ctrace"], default="sysmon")
    parser.add_argument("--branch", action="store_true")
    parser.add_argument("--handover", choices=["early", "middle", "late", "each"], default="late")
    parser.add_argument("--label", default="")
    parser.add_argument("--run", type=int, default=0)
    parser.add_argument("--other-tool", action="store_true")
    parser.add_argument("--prearm", action="store_true")
    parser.add_argument("--matrix", action="store_true")
    args = parser.parse_args(argv)
    if args.matrix:
        results = [compare(cell) for cell in cells()]
        print(json.dumps(results))
        return 0 if all(r["exact"] for r in results) else 1
    result = shim(args) if args.what == "shim" else plain(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
