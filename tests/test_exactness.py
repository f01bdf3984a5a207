"""The exactness matrix (`tests.exactness.check`) on this Python and on every
other CPython 3.12+ that pyenv has here; the image's 3.14 runs it in
`test_container`.  Each cell is a fresh process: coverage.py is process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.exactness import check
from tests.harness import REPO_ROOT, pinned_version


def run_check(python: str, *args: str) -> Any:
    done = subprocess.run(
        [python, "-m", "tests.exactness.check", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_exact(result: dict) -> None:
    """One cell of `check.matrix`: exact, on the core asked for, without restarts."""
    assert result["gate"] == "gate", f"coverage.py internals changed (coverage_adapter): {result}"
    assert result["missing"] == [], f"lines run while measured but not recorded: {result}"
    assert result["unexpected"] == [], f"lines recorded that ran only unmeasured: {result}"
    assert result["measured_only_lines_equal"], result
    assert result["measured_only_arcs_equal"], result
    # Module-level code run at init, and what it runs later: as plain coverage.py records it.
    assert result["init_equal"], result
    assert result["after_init_equal"], result
    assert result["init_gate"] == ("recorder" if result["core"] == "sysmon" else "gate"), result
    assert result["checked_lines"] > 20
    assert result["exact"]


@pytest.mark.parametrize("cell", check.matrix(), ids=" ".join)
def test_exact_on_this_python(cell):
    result = run_check(sys.executable, *cell)
    assert result["core"] == cell[cell.index("--core") + 1]
    assert_exact(result)


def other_pythons() -> list[Path]:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for candidate in sorted(root.glob("3.1[2-9]*")):
        python = candidate / "bin" / "python"
        if python.exists() and candidate.name.split(".")[:2] != list(
            map(str, sys.version_info[:2])
        ):
            found.append(python)
    return found


def venv_for(python: Path) -> str:
    """A small venv with the pinned coverage.py, kept under .local/ between runs."""
    name = f"exactness-{python.parent.parent.name}"
    venv = REPO_ROOT / ".local" / "venvs" / name
    wanted = f"coverage=={pinned_version('coverage')}"
    stamp = venv / ".wanted"
    if not (stamp.exists() and stamp.read_text() == wanted):
        subprocess.run([str(python), "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        installed = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", wanted],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if installed.returncode != 0:
            pytest.skip(f"cannot install {wanted} for {python}: {installed.stderr[-300:]}")
        stamp.write_text(wanted)
    return str(venv / "bin" / "python")


@pytest.mark.slow
@pytest.mark.parametrize("python", other_pythons(), ids=lambda p: p.parent.parent.name)
def test_exact_on_other_pythons(python):
    results = run_check(venv_for(python), "--matrix")
    assert len(results) >= 7
    for result in results:
        assert_exact(result)


def run_labels(python: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [python, "-m", "tests.exactness.labels", "--matrix"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_labels_exact(results: list[dict[str, Any]], *, sysmon: bool) -> None:
    """Every label recorded what plain coverage.py records running that label's
    invocations, lines and arcs, before and after the init's hand-over."""
    assert any(r["core"] == "sysmon" for r in results) is sysmon, results
    for result in results:
        assert result["labels"] == ["", "init", "t1", "t2", "t3", "tests/test_x.py::test_y[1-2]"]
        assert result["differences"] == {}, result
        assert result["exact"], result
        if "--other-tool" in result["cell"]:
            # Another tool's disabled events stay disabled: no restart_events() then.
            assert result["other_tool_saw"] > 10 and result["other_tool_refired"] == 0, result
        if "--handover late" in result["cell"]:
            # The maintenance pass ran on the recorder, and each label still got its own.
            assert result["retired"]["recorder"] > 0, result
    assert any("--other-tool" in r["cell"] for r in results) is sysmon


def test_labels_exact_on_this_python():
    assert_labels_exact(run_labels(sys.executable), sysmon=sys.version_info >= (3, 12))


@pytest.mark.slow
@pytest.mark.parametrize("python", other_pythons(), ids=lambda p: p.parent.parent.name)
def test_labels_exact_on_other_pythons(python):
    assert_labels_exact(run_labels(venv_for(python)), sysmon=True)
