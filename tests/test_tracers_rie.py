"""Through the RIE: a function that calls the X-Ray SDK's ``patch_all()`` at init
sees its own subsegments and none of the shim's (checkpoint and shutdown uploads,
coverage.py's SQLite writes), and its logs carry no X-Ray warning.

On the venv's Python (the C tracer) coverage.py exists before the function patches;
on a 3.12+ (``sysmon``) the shim builds coverage.py and its S3 client after the
first response, long after ``patch_all()``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT
from tests.test_recorder_rie import sysmon_runtime

pytestmark = pytest.mark.rie

FUNCTION_OWN = ["s3 ListObjectsV2", ":memory:"]


def wait_for_upload(function, reason: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(
            r["message"] == "coverage uploaded" and r["reason"] == reason
            for r in function.json_logs()
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {reason} upload:\n{function.logs()}")


def xray_pin() -> str:
    for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.startswith("aws-xray-sdk=="):
            return line
    raise LookupError("aws-xray-sdk is not pinned in requirements-dev.txt")


@pytest.mark.parametrize("core", ["venv", pytest.param("sysmon", marks=pytest.mark.slow)])
def test_patch_all_records_the_function_and_nothing_of_the_shim(
    core: str, start_function, tmp_path: Path
):
    sent = tmp_path / "xray-sent.jsonl"
    handler = "xray_traced.handler"
    command = None
    env = {}
    if core == "sysmon":
        command = [sysmon_runtime(xray_pin()), "-m", "coverage_runtime", handler]
        env["PYTHONPATH"] = str(REPO_ROOT)
    function = start_function(
        handler,
        command=command,
        XRAY_SENT_FILE=str(sent),
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
        **env,
    )
    assert function.invoke({}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    assert function.invoke({}).status == 200
    wait_for_upload(function, "checkpoint")
    assert function.invoke({"late": True}).status == 200  # new lines for shutdown
    assert function.terminate() == 0
    uploads = [r["reason"] for r in function.json_logs() if r["message"] == "coverage uploaded"]
    assert uploads == ["checkpoint", "SIGTERM"]

    recorded = [json.loads(line) for line in sent.read_text().splitlines()]
    assert recorded == FUNCTION_OWN * 3
    logs = function.logs()
    assert "aws_xray_sdk" not in logs and "discarded" not in logs, logs
    messages = [r["message"] for r in function.json_logs()]
    started = next(r for r in function.json_logs() if r["message"] == "coverage runtime started")
    if core == "sysmon":  # coverage.py was built for the first checkpoint, after patch_all()
        assert started["core"] == "sysmon"
        assert "coverage.py took the init over" in messages
