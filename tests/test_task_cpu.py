"""`task_cpu`: the shipping thread's CPU per task and step, for benchmarks only.

Run in a fresh process: the switch is read once, at import, as the other
bench/test-only switches (`pause_points`, `partial_replay`) are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.harness import REPO_ROOT

SCRIPT = """
import importlib, os, sys
from coverage_runtime.settings import load_settings
from coverage_runtime.shim import task_cpu
from coverage_runtime.shim.measurement import Measurement

root = sys.argv[1]
sys.path.insert(0, root)
settings = load_settings({"LAMBDA_TASK_ROOT": root, "COVERAGE_DATA_DIR": root + "/data"})
m = Measurement(settings, root + "/data/x.coverage")
m.begin()
importlib.import_module("sample").f(3)
task_cpu.step("outside any task")  # (nothing: no task on this thread)
with task_cpu.Task("checkpoint", invocation=1):
    m.snapshot()
m.finish()
print("enabled", task_cpu.ENABLED)
"""


def run(tmp_path: Path, **env: str) -> list[dict]:
    (tmp_path / "sample.py").write_text("def f(x):\n    return x * 2\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env={**environ, "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_a_task_logs_its_cpu_and_the_steps_its_code_marks(tmp_path: Path) -> None:
    records = run(tmp_path, COVERAGE_BENCH_TASK_CPU="1")
    tasks = [r for r in records if r["message"] == "coverage shipping task"]
    assert len(tasks) == 1
    task = tasks[0]
    assert task["level"] == "DEBUG"
    assert task["task"] == "checkpoint"
    assert task["invocation"] == 1
    # The snapshot's own steps, in its order: take what is new, write it, read the file.
    assert list(task["steps"])[:3] == ["take", "write", "read"]
    assert task["cpu_ms"] >= sum(task["steps"].values()) - 0.01
    assert task["wall_ms"] > 0


def test_unset_the_steps_record_nothing(tmp_path: Path) -> None:
    records = run(tmp_path)
    # (The script times its task itself; what the shim's code marks inside it is not.)
    task = next(r for r in records if r["message"] == "coverage shipping task")
    assert task["steps"] == {}


def test_the_shipper_times_nothing_when_the_switch_is_off() -> None:
    from coverage_runtime.shim import shipping, task_cpu

    assert task_cpu.ENABLED is False  # (the test run does not set it)
    session = type("S", (), {"invocations": 0})()
    shipper = shipping.Shipper(session)  # type: ignore[arg-type]
    assert shipper._task("checkpoint") is shipping._UNTIMED
