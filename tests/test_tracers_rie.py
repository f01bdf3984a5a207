"""Through the RIE: a function that calls the X-Ray SDK's ``patch_all()`` at init
sees its own subsegments and none of the shim's (checkpoint and shutdown uploads,
coverage.py's SQLite writes), and its logs carry no X-Ray warning."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

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


def test_patch_all_records_the_function_and_nothing_of_the_shim(start_function, tmp_path: Path):
    sent = tmp_path / "xray-sent.jsonl"
    function = start_function(
        "xray_traced.handler",
        XRAY_SENT_FILE=str(sent),
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
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
