"""A function of a hundred measured modules, through the RIE (issue 18): SIGTERM
right after the first response (an environment that served one request and is
reaped) still ships everything, in lines and in branch mode, on the C tracer and
on the init recorder (sysmon).  The large sizes are in bench/sizes.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coverage_runtime.report.cli import main as report_main
from coverage_runtime.shim import session
from tests import synthetic_function
from tests.harness import REPO_ROOT, shut_down_and_download
from tests.test_recorder_rie import sysmon_python  # noqa: F401

pytestmark = [pytest.mark.rie, pytest.mark.slow]

# What CI affords under the load of a shared machine: the window holds writing the data
# file and, on sysmon, building coverage.py with the replay of the recorded init (~0.3 ms
# per module of this size); the S3 client is built in it too, but costs ~0.1 ms
# (s3.ObjectClient). The large sizes: bench/sizes.py.
MODULES = 100


@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    return synthetic_function.write(tmp_path_factory.mktemp("synthetic"), MODULES)


def early_sigterm(start_function, task_root, command, s3, bucket, tmp_path, **env) -> None:
    # The whole window the RIE gives (600 ms) less a margin: what is asserted is that
    # nothing is lost at this size, not the default budget's speed (bench/sizes.py).
    env.setdefault("COVERAGE_SHUTDOWN_BUDGET_MS", "550")
    function = start_function("handler.handler", task_root=task_root, command=command, **env)
    assert function.invoke({"k": 1}).status == 200
    _, path, _ = shut_down_and_download(function, s3, bucket, tmp_path)  # right after
    from coverage import CoverageData  # the first response

    data = CoverageData(basename=str(path))
    data.read()
    measured = [f for f in data.measured_files() if "/synthetic/m" in f]
    assert len(measured) == MODULES, "every module's import-time lines"
    called = str(task_root / "synthetic" / "m00001.py")
    assert len(data.lines(called) or ()) > 60, "module 1 ran all its functions"


@pytest.mark.parametrize("branch", ["false", "true"], ids=["lines", "branches"])
def test_early_sigterm_ships_everything(start_function, task_root, s3, bucket, tmp_path, branch):
    early_sigterm(start_function, task_root, None, s3, bucket, tmp_path, COVERAGE_BRANCH=branch)


def test_early_sigterm_ships_everything_recorded_at_init(
    start_function,
    task_root,
    s3,
    bucket,
    tmp_path,
    sysmon_python,  # noqa: F811
):
    command = [sysmon_python, "-m", "coverage_runtime", "handler.handler"]
    early_sigterm(
        start_function, task_root, command, s3, bucket, tmp_path, PYTHONPATH=str(REPO_ROOT)
    )


# -- deltas: growth after a large base ships alone (`layout.DELTA_SUFFIX`) ------------

# Bases past `DELTA_MIN_BASE_BYTES`: ~370 kB with branches, ~330 kB with lines.
DELTA_MODULES = {"host": 200, "sysmon": 1500}


def _uploads(function) -> list[dict]:
    return [r for r in function.json_logs() if r["message"] == "coverage uploaded"]


def _wait_uploads(function, count: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(found := _uploads(function)) < count:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


@pytest.mark.parametrize("python", ["host", "sysmon"])
def test_growth_after_a_large_base_ships_as_a_delta(
    start_function,
    tmp_path_factory,
    s3_server,
    s3,
    bucket,
    tmp_path,
    python,
    report_credentials,
    sysmon_python,  # noqa: F811
):
    """A base of the whole measured set is confirmed by a checkpoint; later
    checkpoints and the shutdown send only what ran since (the delta object), a
    fraction of the base's bytes, and the base and the delta together hold
    everything: each module's import-time code, all of the modules the events
    ran in full, the first function only of the others."""
    modules = DELTA_MODULES[python]
    root = synthetic_function.write(tmp_path_factory.mktemp("delta"), modules)
    env: dict[str, str] = {"COVERAGE_BRANCH": "true", "COVERAGE_FLUSH_INTERVAL_SECONDS": "1"}
    command = None
    if python == "sysmon":  # (lines on sysmon before 3.14: branches are the C tracer's)
        command = [sysmon_python, "-m", "coverage_runtime", "handler.handler"]
        env = {**env, "PYTHONPATH": str(REPO_ROOT), "COVERAGE_BRANCH": "false"}
    function = start_function("handler.handler", task_root=root, command=command, **env)
    assert function.invoke({"k": 0}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    assert function.invoke({"k": 0}).status == 200
    [base] = _wait_uploads(function, 1)
    time.sleep(1.1)
    assert function.invoke({"k": 1}).status == 200  # new code, then a checkpoint
    _wait_uploads(function, 2)
    assert function.invoke({"k": 2}).status == 200  # new code, shipped at shutdown
    _, path, _ = shut_down_and_download(function, s3, bucket, tmp_path)
    shipped = _uploads(function)
    assert [(r["reason"], r.get("delta")) for r in shipped] == [
        ("checkpoint", None),
        ("checkpoint", True),
        ("SIGTERM", True),
    ], shipped
    assert base["bytes"] > session.DELTA_MIN_BASE_BYTES
    # (Each event here runs a tenth of the modules in full: a large growth.)
    assert all(r["bytes"] < base["bytes"] for r in shipped[1:]), shipped
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(k.rsplit(".coverage", 1)[1] for k in keys) == ["", ".delta"], keys

    from coverage import CoverageData

    data = CoverageData(basename=str(path))  # (base and delta, as the contract joins them)
    data.read()
    measured = [f for f in data.measured_files() if "/synthetic/m" in f]
    assert len(measured) == modules
    ran = {k: len(data.lines(str(root / "synthetic" / f"m{k:05d}.py")) or ()) for k in range(4)}
    assert ran[1] > 60 and ran[2] > 60 and ran[0] > 60, ran
    assert ran[3] < ran[1] - 30, ran

    # The report tool reads the two objects as one environment, with the delta's count.
    out, err = io.StringIO(), io.StringIO()
    code = report_main(
        ["report", "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
         "-o", str(tmp_path / "report"), "--cache-dir", str(tmp_path / "cache"),
         "--task-root", str(root), "--source-root", str(root),
         "--no-progress", "--format", "json"],
        out=out, err=err,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    assert "from 1 environment(s), 4 invocation(s)" in out.getvalue(), out.getvalue()
    report = json.loads((tmp_path / "report" / "coverage.json").read_text())
    joined = tmp_path / "joined.json"  # coverage.py's own report of the harness's union
    subprocess.run(
        [sys.executable, "-m", "coverage", "json", f"--data-file={path}", "-o", str(joined)],
        cwd=root,
        check=True,
        capture_output=True,
    )
    expected = json.loads(joined.read_text())["files"]
    for k in (1, 2, 3):
        name = str(root / "synthetic" / f"m{k:05d}.py")
        mine = expected[f"synthetic/m{k:05d}.py"]["executed_lines"]
        assert report["files"][name]["executed_lines"] == mine, k
