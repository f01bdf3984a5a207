"""Run the exactness scenarios under the runtime and compare with the truth.

    python -m tests.exactness.check --mode selective --core sysmon [--branch] [--contexts]

Two truths are checked, and the result is one JSON document on stdout:

* the markers of `workload` (a line that must or must not be recorded, per
  mode);
* `measured_only` (called only inside blocks) recorded exactly as plain
  coverage.py records it for the same calls: lines, and arcs when measuring
  branches.  Plain coverage.py runs in a child process (``--reference``), on
  the same Python and core, with the API a no-op as outside the shim.

It needs only coverage.py and this checkout, so it runs the same on the
host's Pythons and inside the image.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MARKER = re.compile(r"#\s*sel:(in|out)\s+full:(in|out)")
INIT_TIME = HERE / "init_time.py"


def expected(mode: str) -> dict[int, bool]:
    """Line -> must be recorded, from the markers of `workload`."""
    wanted: dict[int, bool] = {}
    text = (HERE / "workload.py").read_text().splitlines()
    for number, line in enumerate(text, start=1):
        found = MARKER.search(line)
        if found:
            wanted[number] = (found.group(1) if mode == "selective" else found.group(2)) == "in"
    return wanted


def module_level_lines(path: Path) -> set[int]:
    """Lines of top-level statements: they run at import, which `reset` drops
    in the scenarios while plain coverage.py keeps them."""
    return {node.lineno for node in ast.parse(path.read_text()).body}


def file_data(data: Any, path: Path) -> dict[str, list[Any]]:
    """The lines and arcs of the function bodies of ``path``."""
    name = str(path)
    top = module_level_lines(path)
    lines = sorted(set(data.lines(name) or ()) - top)
    arcs = sorted(
        arc
        for arc in (data.arcs(name) or () if data.has_arcs() else ())
        if -1 not in arc and not any(n > 0 and n in top for n in arc)
    )
    return {"lines": lines, "arcs": [list(arc) for arc in arcs]}


def whole_file(data: Any, path: Path) -> dict[str, list[Any]]:
    """Every line and arc of ``path``, module level included."""
    name = str(path)
    arcs = data.arcs(name) or () if data.has_arcs() else ()
    return {"lines": sorted(data.lines(name) or ()), "arcs": sorted(list(a) for a in arcs)}


def reference(args: argparse.Namespace) -> dict[str, Any]:
    import coverage

    data_file = os.path.join(tempfile.mkdtemp(), "reference.coverage")
    cov = coverage.Coverage(
        data_file=data_file, source=[str(HERE)], branch=args.branch, config_file=False
    )
    cov.set_option("run:core", args.core)
    cov.start()
    from tests.exactness import init_time

    init = whole_file(cov.get_data(), INIT_TIME)
    init_time.after_init()
    after = whole_file(cov.get_data(), INIT_TIME)
    from tests.exactness import workload

    workload.run_all(lambda: None)
    cov.stop()
    measured = file_data(cov.get_data(), HERE / "measured_only.py")
    return {"measured_only": measured, "init": init, "after_init": after}


def gated(args: argparse.Namespace) -> dict[str, Any]:
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim import api
    from coverage_runtime.shim.session import CoverageSession

    env = {
        "LAMBDA_TASK_ROOT": str(HERE),
        "COVERAGE_SOURCE": str(HERE),
        "COVERAGE_MODE": args.mode,
        "COVERAGE_CORE": args.core,
        "COVERAGE_BRANCH": str(args.branch).lower(),
        "COVERAGE_CONTEXTS": str(args.contexts).lower(),
        "COVERAGE_DATA_DIR": tempfile.mkdtemp(),
        **({"COVERAGE_LABELS": "none"} if args.no_labels else {}),
    }
    runtime = CoverageSession.start(load_settings(env))
    api.install(runtime)
    measurement = runtime.measurement
    from tests.exactness import init_time  # the environment's init

    init_gate = measurement.gate_kind
    init = whole_file(measurement.data(), INIT_TIME)  # builds coverage.py, if it was deferred
    init_time.after_init()
    after = whole_file(measurement.data(), INIT_TIME)
    from tests.exactness import workload

    if args.late_handover:
        # A second environment: the whole workload runs before coverage.py is built,
        # and its events are replayed in slices of a few (`InitRecorder.catch_up`).
        from coverage_runtime.shim import init_recorder

        init_recorder.REPLAY_SLICE = 5
        runtime.measurement.finish()
        runtime = CoverageSession.start(load_settings(env))
        api.install(runtime)
        measurement = runtime.measurement
        workload.run_all(measurement.compact, measurement.maintain, reset=False)
        late_gate = measurement.gate_kind
    else:
        workload.run_all(measurement.compact, measurement.maintain)
        late_gate = None
    data = measurement.data()
    recorded = set(data.lines(str(HERE / "workload.py")) or ())
    marks = expected(args.mode)
    result = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "core": runtime.measurement.core_name(),
        "gate": runtime.measurement.gate_kind,
        "missing": sorted(n for n, must in marks.items() if must and n not in recorded),
        "unexpected": sorted(n for n, must in marks.items() if not must and n in recorded),
        "checked_lines": len(marks),
        "measured_only": file_data(data, HERE / "measured_only.py"),
        "init_gate": init_gate,
        "late_gate": late_gate,
        "init": init,
        "after_init": after,
    }
    runtime.measurement.finish()
    return result


def matrix(version: tuple[int, int] | None = None) -> list[list[str]]:
    """The cells (arguments of this command) that this Python can run."""
    from coverage_runtime.settings import sysmon_supports

    version = version or sys.version_info[:2]
    cells = []
    for mode in ("full", "selective"):
        for branch in (False, True):
            flags = ["--branch"] if branch else []
            cells.append(["--mode", mode, "--core", "ctrace", *flags])
            if sysmon_supports(branch=branch, version=version):
                cells.append(["--mode", mode, "--core", "sysmon", *flags])
                cells.append(["--mode", mode, "--core", "sysmon", *flags, "--late-handover"])
                # Labels (on by default) keep the recorder as the receiver, fed to
                # coverage.py when data is needed; without them it hands over.
                late = ["--late-handover", "--no-labels"]
                cells.append(["--mode", mode, "--core", "sysmon", *flags, *late])
        cells.append(["--mode", mode, "--core", "ctrace", "--contexts"])
    cells.append(["--mode", "selective", "--core", "pytrace", "--branch"])
    return cells


def run_matrix() -> list[dict[str, Any]]:
    """Every cell in its own process (coverage.py is process-wide)."""
    results = []
    for cell in matrix():
        done = subprocess.run(
            [sys.executable, "-m", "tests.exactness.check", *cell],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {"exact": False, "stderr": done.stderr[-2000:]}
        result["cell"] = " ".join(cell)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["full", "selective"], default="selective")
    parser.add_argument("--core", choices=["sysmon", "ctrace", "pytrace"], default="sysmon")
    parser.add_argument("--branch", action="store_true")
    parser.add_argument("--contexts", action="store_true")
    parser.add_argument(
        "--late-handover",
        action="store_true",
        help="run the workload before coverage.py is built (sysmon: the init recorder)",
    )
    parser.add_argument(
        "--no-labels", action="store_true", help="COVERAGE_LABELS=none (sysmon: a hand-over)"
    )
    parser.add_argument("--matrix", action="store_true", help="run every cell; a JSON list")
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.matrix:
        results = run_matrix()
        print(json.dumps(results))
        return 0 if all(r.get("exact") for r in results) else 1
    if args.reference:
        print(json.dumps(reference(args)))
        return 0
    result = gated(args)
    flags = ["--reference", "--core", args.core] + (["--branch"] if args.branch else [])
    child = subprocess.run(
        [sys.executable, "-m", "tests.exactness.check", *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    reference_run = json.loads(child.stdout)
    truth = reference_run["measured_only"]
    ours = result.pop("measured_only")
    init, after = result.pop("init"), result.pop("after_init")
    if args.mode == "full":
        result["init_equal"] = init == reference_run["init"]
        result["after_init_equal"] = after == reference_run["after_init"]
    else:  # nothing is measured outside blocks
        result["init_equal"] = not init["lines"]
        result["after_init_equal"] = not after["lines"]
    result["init_lines"] = len(reference_run["init"]["lines"])
    result["init_arcs"] = len(reference_run["init"]["arcs"])
    if not (result["init_equal"] and result["after_init_equal"]):
        result["init_diff"] = {"ours": [init, after], "reference": reference_run}
    result["measured_only_lines_equal"] = ours["lines"] == truth["lines"]
    result["measured_only_arcs_equal"] = ours["arcs"] == truth["arcs"]
    result["measured_only_lines"] = len(truth["lines"])
    result["measured_only_arcs"] = len(truth["arcs"])
    if ours != truth:
        result["measured_only_diff"] = {
            "lines_missing": sorted(set(truth["lines"]) - set(ours["lines"])),
            "lines_extra": sorted(set(ours["lines"]) - set(truth["lines"])),
            "arcs_missing": sorted(
                {tuple(a) for a in truth["arcs"]} - {tuple(a) for a in ours["arcs"]}
            ),
            "arcs_extra": sorted(
                {tuple(a) for a in ours["arcs"]} - {tuple(a) for a in truth["arcs"]}
            ),
        }
    result["exact"] = (
        result["init_equal"]
        and result["after_init_equal"]
        and not result["missing"]
        and not result["unexpected"]
        and result["measured_only_lines_equal"]
        and result["measured_only_arcs_equal"]
    )
    print(json.dumps(result))
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
