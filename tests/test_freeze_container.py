"""`--freeze` of the image benchmarks (`bench/freeze.py`) on a real container: an
environment paused between its invocations, as Lambda freezes an idle one, still
serves the next invocation, the RIE reports both invocations' Durations, and the
thaw before the stop lets SIGTERM reach the runtime, which ships."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bench.sizes import REPORT_RE, ImageFunction
from tests import synthetic_function
from tests.containers import TEST_IMAGE, build_image, podman
from tests.harness import S3Server

pytestmark = [pytest.mark.container, pytest.mark.slow]

IMAGE_NAME = TEST_IMAGE  # (tests/containers.py)


@pytest.fixture(scope="module")
def image() -> str:
    return build_image(IMAGE_NAME)


def frozen(function: ImageFunction) -> bool:
    """What the kernel says: the container's cgroup freezer, else podman's state."""
    if function.freezer.cgroup is not None:
        return function.freezer.cgroup.frozen()
    status = podman("inspect", "--format", "{{.State.Status}}", function.name).stdout
    return status.strip() == "paused"


def test_a_frozen_environment_serves_two_invocations_and_ships(
    image: str, s3_server: S3Server, s3: Any, bucket: str, tmp_path: Path
) -> None:
    root = synthetic_function.write(tmp_path / "function", 10)
    env = {"AWS_LAMBDA_FUNCTION_NAME": "freeze-test", "COVERAGE_FLUSH_INTERVAL_SECONDS": "1"}
    function = ImageFunction(image, root, s3_server, bucket, env, freeze=True)
    try:
        function.invoke({"k": 0})
        assert frozen(function), "frozen once the runtime asked for /next"
        time.sleep(1.05)  # frozen while the checkpoint interval passes
        function.invoke({"k": 1})  # thawed first; a checkpoint is due after it
        assert frozen(function)
        _, logs = function.shut_down()  # thawed, then SIGTERM
    finally:
        podman("rm", "--force", "--time", "0", function.name, check=False)
    assert len(REPORT_RE.findall(logs)) == 2, logs[-3000:]
    assert '"coverage runtime exiting"' in logs, "SIGTERM reached the thawed runtime"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) > 0, "its coverage shipped"
