"""Managed Instances: a worker's shutdown window (`shim.workers.WorkerSession`).

The RIE's multi-concurrent mode SIGKILLs the runtime ~600 ms after SIGTERM, and
within that a replay sized to the worker's own deadline happened to publish
before the main process stopped waiting (tests/test_managed_instances_rie.py),
so the bound is checked here, on the session's own window.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from coverage_runtime.settings import load_settings
from coverage_runtime.shim.session import CoverageSession
from coverage_runtime.shim.worker_data import WORKERS_SHARE_OF_BUDGET
from coverage_runtime.shim.workers import WorkerSession


def window(cls: type[CoverageSession], budget_ms: int, reason: str) -> tuple[float, float]:
    """``cls``'s shutdown window for ``reason``, on a session not started (the window
    reads only the settings and the watcher)."""
    session = cls.__new__(cls)
    session.settings = load_settings(
        {"LAMBDA_TASK_ROOT": "/var/task", "COVERAGE_SHUTDOWN_BUDGET_MS": str(budget_ms)}
    )
    session.watcher = None
    return session._window(reason)


@pytest.mark.parametrize("budget_ms", [400, 600, 2000])
def test_a_worker_s_shutdown_work_ends_within_the_main_process_s_wait(budget_ms):
    """The main process waits for the workers' last snapshots only
    `WORKERS_SHARE_OF_BUDGET` of the budget: a worker's replay, sized to end by its
    deadline, must publish within that share, or what it replayed is not merged."""
    started, deadline = window(WorkerSession, budget_ms, "SIGTERM")
    assert deadline - started <= budget_ms / 1000 * WORKERS_SHARE_OF_BUDGET + 1e-9
    _, standard = window(CoverageSession, budget_ms, "SIGTERM")
    assert deadline < standard, "shorter than a standard environment's"
    assert started <= time.monotonic()


def test_a_worker_s_exit_keeps_the_exit_s_window():
    """At a normal exit (an init error) no SIGKILL comes and the main process waits
    for the worker's process to end: the exit's own, longer, window."""
    started, deadline = window(WorkerSession, 600, "exit")
    assert deadline - started >= 2.0


def test_the_main_process_imports_coverage_before_it_forks_the_workers(tmp_path):
    """Forked workers inherit coverage.py instead of each importing it during its init
    (bench/bench_workers.py's worker init rows: they listed coverage.control and its
    report modules among what every worker imported itself)."""
    probe = (
        "import sys\n"
        "from coverage_runtime.settings import load_settings\n"
        "from coverage_runtime.shim.workers import start_environment\n"
        "import os\n"
        "assert 'coverage.control' not in sys.modules\n"
        "start_environment(load_settings(os.environ), os.environ, '127.0.0.1:9', 2)\n"
        "found = sorted(m for m in ('coverage', 'coverage.control') if m in sys.modules)\n"
        "print('imported:', found, flush=True)\n"
    )
    env = {
        **os.environ,
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "COVERAGE_DATA_DIR": str(tmp_path / "data"),
        "AWS_LAMBDA_FUNCTION_NAME": "workers-import",
        "COVERAGE_S3_BUCKET": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.startswith("imported:")]
    assert said == ["imported: ['coverage', 'coverage.control']"], done.stdout
