"""The shutdown's loss record lands inside its budget even when the GIL is held
across the moment the shutdown stops waiting, and the budget counts from the
signal's arrival even when the GIL is held as it arrives (`tests.shutdown_probe`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coverage_runtime.settings import DEFAULT_SHUTDOWN_BUDGET_MS
from tests.harness import REPO_ROOT, clean_environment, logged_at, runtime_records

LOST = "coverage upload at shutdown failed: data of this environment since the last upload is lost"


def run_probe(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.shutdown_probe", str(tmp_path), *options],
        cwd=REPO_ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def probe(tmp_path: Path, *options: str) -> tuple[dict, dict]:
    done = run_probe(tmp_path, *options)
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
    written = logged_at(lost) - summary["called_at"]  # (the stamp is cut to milliseconds)
    assert written >= ended - 0.002, (written, summary)  # the record needed the GIL back
    assert lost["elapsed_ms"] < budget * 1000, lost
    assert summary["returned"] < budget, summary


@pytest.mark.skipif(sys.platform != "linux", reason="SO_TIMESTAMPNS, libc's usleep")
def test_the_watcher_knows_when_sigterm_arrived_while_another_thread_held_the_gil(tmp_path):
    """SIGTERM arrives while the main thread holds the GIL in C for 300 ms: the
    watcher runs only after that, but the kernel's stamp on the wakeup socket's
    byte says when the signal came, and the shutdown's window counts from it."""
    from tests.shutdown_probe import HOLD_SECONDS

    done = run_probe(tmp_path, "--watch")
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[0])
    assert seen["ran"] >= HOLD_SECONDS, seen  # the watcher needed the GIL
    assert seen["signalled"] is not None, seen
    assert 0 <= seen["signalled"] < seen["ran"] - HOLD_SECONDS / 2, seen


@pytest.mark.skipif(sys.platform != "linux", reason="SO_TIMESTAMPNS, libc's usleep")
def test_a_shutdown_run_by_the_late_main_thread_handler_counts_from_the_arrival(tmp_path):
    """SIGTERM arrives while the main thread holds the GIL in C for 300 ms, in code
    of its own: the Python handler runs first, on the main thread, 300 ms late.
    The shutdown's window still counts from the arrival (the kernel's stamp), so
    the loss record of its held work lands inside the budget after the signal,
    not 300 ms past it (before: ~650 ms after it, with SIGKILL at 500)."""
    from tests.shutdown_probe import HOLD_SECONDS

    done = run_probe(tmp_path, "--late-handler")
    assert done.returncode == 0, done.stderr[-3000:]
    asked = json.loads(done.stdout.splitlines()[0])["asked"]
    [lost] = [r for r in runtime_records(done.stdout) if r["message"] == LOST]
    budget = DEFAULT_SHUTDOWN_BUDGET_MS / 1000
    written = logged_at(lost) - asked  # (the stamp is cut to milliseconds)
    assert HOLD_SECONDS - 0.002 <= written < budget, (written, lost)
    assert lost["elapsed_ms"] >= HOLD_SECONDS * 1000, (
        lost
    )  # from the arrival, before the hold's end


@pytest.mark.skipif(sys.platform != "linux", reason="libc's usleep, real-time signals")
def test_sigterm_after_a_flood_of_other_signals_still_reaches_the_watcher(tmp_path):
    """2,000 signals with a Python handler (each a byte on the wakeup socket) come
    while the GIL is held, then SIGTERM: its byte still finds room (an AF_UNIX
    datagram is charged a whole buffer, ~280 fit the default), and the watcher runs."""
    done = run_probe(tmp_path, "--watch", "--flood", "2000")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "the watcher never ran: SIGTERM's byte was dropped"
    assert json.loads(done.stdout.splitlines()[0])["ran"] > 0
