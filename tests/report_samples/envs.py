"""Simulated execution environments for the report tests.

Each environment really runs the sample package under coverage.py in its own
process (`run_env`), so the data files are exactly what coverage.py writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from coverage import CoverageData

from coverage_runtime.layout import DEFAULT_PREFIX, ObjectKey
from tests.harness import REPO_ROOT

SAMPLES = Path(__file__).resolve().parent
SAMPLE_PACKAGE = SAMPLES / "sampleapp"
IMAGE_ROOT = "/var/task"


@dataclass
class Env:
    """One environment: what it ran, where its data file is, and where it goes in S3."""

    name: str
    calls: list[list[Any]]
    branch: bool = False
    selective: bool = False
    init_label: str | None = None
    task_root: str | None = IMAGE_ROOT
    function: str = "orders-fn"
    version: str = "$LATEST"
    date: str = "2026-11-25"
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def key(self) -> str:
        return ObjectKey(self.function, self.version, self.date, self.name).format(DEFAULT_PREFIX)

    def data(self) -> CoverageData:
        data = CoverageData(basename=str(self.path))
        data.read()
        return data


def run_all(envs: list[Env], directory: Path) -> None:
    """Run every environment (in parallel processes) and record its data file."""
    directory.mkdir(parents=True, exist_ok=True)
    processes = []
    for env in envs:
        env.path = directory / f"{env.name}.coverage"
        spec = directory / f"{env.name}.json"
        spec.write_text(
            json.dumps(
                {
                    "data_file": str(env.path),
                    "branch": env.branch,
                    "selective": env.selective,
                    "init_label": env.init_label,
                    "task_root": env.task_root,
                    "calls": env.calls,
                }
            )
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.report_samples.run_env", str(spec)],
                cwd=REPO_ROOT,
                stderr=subprocess.PIPE,
            )
        )
    for env, process in zip(envs, processes, strict=True):
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, f"{env.name}: {stderr.decode()}"


def upload(s3: Any, bucket: str, envs: list[Env]) -> None:
    for env in envs:
        assert env.path is not None
        s3.put_object(Bucket=bucket, Key=env.key, Body=env.path.read_bytes(), Metadata=env.metadata)


def local_path(recorded: str) -> str:
    """Where a recorded /var/task path lives in this checkout."""
    if recorded.startswith(IMAGE_ROOT + "/"):
        return str(SAMPLES / recorded[len(IMAGE_ROOT) + 1 :])
    return recorded


def union_lines(envs: list[Env]) -> dict[str, set[int]]:
    """The oracle: every env's lines read through coverage.py's API, unioned, remapped."""
    merged: dict[str, set[int]] = {}
    for env in envs:
        data = env.data()
        for recorded in data.measured_files():
            merged.setdefault(local_path(recorded), set()).update(data.lines(recorded) or ())
    return merged


def union_arcs(envs: list[Env]) -> dict[str, set[tuple[int, int]]]:
    merged: dict[str, set[tuple[int, int]]] = {}
    for env in envs:
        data = env.data()
        for recorded in data.measured_files():
            merged.setdefault(local_path(recorded), set()).update(data.arcs(recorded) or ())
    return merged


def lines_of(data_file: Path) -> dict[str, set[int]]:
    """The files that ran, and their lines (files never run are `never_run_of`)."""
    data = CoverageData(basename=str(data_file))
    data.read()
    found = {f: set(data.lines(f) or ()) for f in data.measured_files()}
    return {f: lines for f, lines in found.items() if lines}


def never_run_of(data_file: Path) -> set[str]:
    """The files recorded with no line: the checkout's files no environment ran."""
    data = CoverageData(basename=str(data_file))
    data.read()
    return {f for f in data.measured_files() if not data.lines(f)}


def arcs_of(data_file: Path) -> dict[str, set[tuple[int, int]]]:
    data = CoverageData(basename=str(data_file))
    data.read()
    found = {f: set(data.arcs(f) or ()) for f in data.measured_files()}
    return {f: arcs for f, arcs in found.items() if arcs}


def line_of(module: str, marker: str) -> int:
    source = (SAMPLE_PACKAGE / f"{module}.py").read_text().splitlines()
    for number, text in enumerate(source, start=1):
        if f"# marker: {marker}" in text:
            return number
    raise AssertionError(f"no marker {marker!r} in {module}.py")


# -- the environments of the report tests ---------------------------------------------

LINE = [
    Env(
        "line-a",
        [[None, "shapes", "area", ["square", 2]], [None, "shapes", "classify", [-1]]],
        metadata={"invocations": "4", "code-revision": "abc123", "mode": "full"},
    ),
    Env(
        "line-b",
        [[None, "shapes", "area", ["circle", 1]], [None, "shapes", "classify", [0]]],
        date="2026-11-24",
        selective=True,
        metadata={"invocations": "2", "code-revision": "abc123", "mode": "selective"},
    ),
    Env(
        "line-c",
        [[None, "orders", "total", [[1, 2]]]],
        date="2026-11-20",
        metadata={"invocations": "1", "code-revision": "def456"},
    ),
    Env(
        "line-d",
        [[None, "shapes", "area", ["square", 3]]],
        version="3",
        metadata={"invocations": "5"},
    ),
]
BRANCH = [
    Env(
        "branch-a",
        [[None, "shapes", "classify", [5]], [None, "orders", "total", [[-1, 2]]]],
        branch=True,
        version="7",
        metadata={"invocations": "3", "branch": "true"},
    ),
    Env(
        "branch-b",
        [[None, "shapes", "area", ["triangle", 1]], [None, "orders", "total", [[]]]],
        branch=True,
        version="7",
        metadata={"invocations": "1", "branch": "true"},
    ),
]
CONTEXTS = [
    Env(
        "ctx-a",
        [["health", "shapes", "area", ["square", 1]], ["business", "orders", "total", [[1]]]],
        function="ctx-fn",
    ),
    Env("ctx-b", [["business", "shapes", "classify", [3]]], function="ctx-fn"),
]
# Labels as the shim records them: "init" for the imports, "" for an invocation with
# no label, pytest node ids (with [params]) for the others; one line under several.
CREATE_A = "tests/test_api.py::test_create[a]"
CREATE_B = "tests/test_api.py::test_create[b]"
LIST = "tests/test_api.py::test_list"
TOTAL = "tests/test_orders.py::test_total"
ODD = "odd <b>label</b> & 'quotes'"  # a caller's label is anyone's text


def _labelled(name: str, branch: bool) -> list[Env]:
    function = f"{name}-fn"
    return [
        Env(
            f"{name}-a",
            [
                [CREATE_A, "shapes", "area", ["square", 2]],
                ["", "shapes", "classify", [1]],
                [LIST, "shapes", "classify", [1]],
                [LIST, "shapes", "area", ["circle", 1]],
                [ODD, "shapes", "classify", [-4]],
            ],
            branch=branch,
            init_label="init",
            function=function,
            metadata={"invocations": "5"},
        ),
        Env(
            f"{name}-b",
            [
                [TOTAL, "orders", "total", [[1, -2]]],
                [CREATE_A, "shapes", "area", ["square", 3]],
                [CREATE_B, "shapes", "classify", [0]],
            ],
            branch=branch,
            init_label="init",
            function=function,
            metadata={"invocations": "3"},
        ),
    ]


LABELS = _labelled("labels", branch=False)
LABELS_BRANCH = _labelled("labels-branch", branch=True)
LOCAL = [
    Env("local-a", [[None, "shapes", "area", ["circle", 2]]], task_root=None, function="local-fn")
]


def run_envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Env]]:
    """Run every environment above (for a module-scoped ``envs`` fixture)."""
    run_all(LINE + BRANCH + CONTEXTS + LOCAL, tmp_path_factory.mktemp("envs"))
    return {"line": LINE, "branch": BRANCH, "contexts": CONTEXTS, "local": LOCAL}


# -- the oracle of the label tests: coverage.py's own reading of contexts ---------------

ByLabel = dict[str, dict[str, set[int]]]


def lines_by_label(data_files: list[Path]) -> ByLabel:
    """Per label, per (local) file, the lines: coverage.py's ``contexts_by_lineno`` of
    every data file, unioned."""
    found: ByLabel = {}
    for data_file in data_files:
        data = CoverageData(basename=str(data_file))
        data.read()
        for recorded in data.measured_files():
            for line, labels in data.contexts_by_lineno(recorded).items():
                for label in labels:
                    found.setdefault(label, {}).setdefault(local_path(recorded), set()).add(line)
    return found


def arcs_by_label(data_files: list[Path]) -> dict[str, dict[str, set[tuple[int, int]]]]:
    """Per label, per (local) file, the arcs: coverage.py's ``set_query_context``."""
    found: dict[str, dict[str, set[tuple[int, int]]]] = {}
    for data_file in data_files:
        data = CoverageData(basename=str(data_file))
        data.read()
        for label in data.measured_contexts():
            data.set_query_context(label)
            for recorded in data.measured_files():
                arcs = set(data.arcs(recorded) or ())
                if arcs:
                    found.setdefault(label, {}).setdefault(local_path(recorded), set()).update(arcs)
    return found


def selected_lines(by_label: ByLabel, labels: set[str]) -> dict[str, set[int]]:
    """The union of what ``labels`` ran, per file."""
    union: dict[str, set[int]] = {}
    for label in labels:
        for path, lines in by_label.get(label, {}).items():
            union.setdefault(path, set()).update(lines)
    return union
