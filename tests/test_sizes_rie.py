"""A function of a hundred measured modules, through the RIE (issue 18): SIGTERM
right after the first response (an environment that served one request and is
reaped) still ships everything, in lines and in branch mode, on the C tracer and
on the init recorder (sysmon).  The large sizes are in bench/sizes.py."""

from __future__ import annotations

from pathlib import Path

import pytest

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
