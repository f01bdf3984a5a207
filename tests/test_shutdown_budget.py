"""The shutdown's loss record lands inside its budget even when the GIL is held
across the moment the shutdown stops waiting (`tests.shutdown_probe`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT, clean_environment, runtime_records

LOST = "coverage upload at shutdown failed: data of this environment since the last upload is lost"


def probe(tmp_path: Path, *options: str) -> tuple[dict, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.shutdown_probe", str(tmp_path), *options],
        cwd=REPO_ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    [lost] = [r for r in runtime_records(done.stdout) if r["message"] == LOST]
    return summary, lost


def test_a_held_shutdown_says_so_inside_its_budget(tmp_path):
    summary, lost = probe(tmp_path)
    budget_ms, margin_ms = summary["budget"] * 1000, summary["margin"] * 1000
    assert budget_ms - margin_ms <= lost["elapsed_ms"] < budget_ms, lost
    assert summary["returned"] < summary["budget"], summary


@pytest.mark.skipif(sys.platform != "linux", reason="libc's usleep through ctypes.PyDLL")
def test_a_c_step_holding_the_gil_past_the_deadline_does_not_push_the_record_past_the_budget(
    tmp_path,
):
    """One C call keeps the GIL from before the shutdown's work deadline until
    after it: the record waits for the GIL (it comes after the call) and still
    lands inside the budget."""
    summary, lost = probe(tmp_path, "--hold")
    budget, margin = summary["budget"], summary["margin"]
    began, ended = summary["held"]
    assert began < budget - margin < ended, summary  # across the work's deadline
    assert summary["returned"] >= ended, summary  # the record needed the GIL back
    assert lost["elapsed_ms"] < budget * 1000, lost
    assert summary["returned"] < budget, summary
