"""Exact counts (#21 item 4) through the RIE: the object's ``invocations`` says how
many invocations the environment served by its last upload, also when the last
ones added no line after a checkpoint, so the report's totals are the real
count; and the data file leaves ``COVERAGE_DATA_DIR`` once it is in S3, never
before."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest

from coverage_runtime.report.cli import main as report_main
from tests.conftest import FUNCTIONS_DIR
from tests.harness import download_objects, executed_lines, line_of

pytestmark = pytest.mark.rie

BASIC = FUNCTIONS_DIR / "basic.py"


def uploads(function) -> list[str]:
    return [r["reason"] for r in function.json_logs() if r["message"] == "coverage uploaded"]


def wait_for_uploads(function, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while len(uploads(function)) < count:
        assert time.monotonic() < deadline, function.logs()
        time.sleep(0.05)


def data_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.coverage*")) if directory.exists() else []


def test_the_count_is_exact_after_a_checkpoint_with_nothing_new_since(
    start_function, function_env, s3_server, s3, bucket, tmp_path, report_credentials
):
    data_dir = Path(function_env["COVERAGE_DATA_DIR"])
    task = tmp_path / "task"  # the function alone, for the report's never-imported files
    task.mkdir()
    shutil.copy(BASIC, task / BASIC.name)
    served = []
    for extra in (3, 0):  # invocations after the checkpoint that add no line
        function = start_function(
            "basic.handler", task_root=task, COVERAGE_FLUSH_INTERVAL_SECONDS="1"
        )
        assert function.invoke({"path": "a"}).status == 200
        time.sleep(1.1)
        assert function.invoke({"path": "b"}).status == 200  # new lines, then a checkpoint
        wait_for_uploads(function, 1)
        for _ in range(extra):
            assert function.invoke({"path": "a"}).status == 200
        assert data_files(data_dir), "the data file is there while the environment runs"
        assert function.terminate() == 0, function.logs()
        messages = [r["message"] for r in function.json_logs()]
        if extra:
            assert uploads(function) == ["checkpoint", "SIGTERM"]
            assert (
                "coverage unchanged since last upload: uploading it again for the "
                "invocation count" in messages
            )
        else:  # the checkpoint's count is already exact: nothing to send
            assert uploads(function) == ["checkpoint"]
            assert "coverage unchanged since last upload" in messages
        assert data_files(data_dir) == [], "uploaded data files leave COVERAGE_DATA_DIR"
        served.append(2 + extra)

    objects = download_objects(s3, bucket, tmp_path)
    counts = sorted(
        int(s3.head_object(Bucket=bucket, Key=key)["Metadata"]["invocations"]) for key in objects
    )
    assert counts == sorted(served)
    for path in objects.values():
        lines = executed_lines(path, task / BASIC.name)
        assert {line_of(BASIC, "path-a"), line_of(BASIC, "path-b")} <= lines

    out, err = io.StringIO(), io.StringIO()
    code = report_main(
        ["report", "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
         "-o", str(tmp_path / "report"), "--cache-dir", str(tmp_path / "cache"),
         "--task-root", str(task), "--source-root", str(task),
         "--no-progress", "--format", "json"],
        out=out, err=err,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    assert f"from 2 environment(s), {sum(served)} invocation(s)" in out.getvalue()


def test_a_failed_upload_keeps_the_data_file(start_function, function_env, hanging_endpoint):
    data_dir = Path(function_env["COVERAGE_DATA_DIR"])
    function = start_function(
        "basic.handler",
        COVERAGE_S3_ENDPOINT_URL=hanging_endpoint,
        COVERAGE_SHUTDOWN_BUDGET_MS="300",
    )
    assert function.invoke({"path": "a"}).status == 200
    assert function.terminate() == 0, function.logs()
    (loss,) = [r for r in function.json_logs() if r["level"] == "ERROR" and "lost" in r["message"]]
    (kept,) = data_files(data_dir)
    assert loss["data_file"] == str(kept)
    assert line_of(BASIC, "path-a") in executed_lines(kept, BASIC)
