"""The whole path: shim -> awslambdaric -> AWS RIE -> SIGTERM -> S3 object -> coverage report."""

from __future__ import annotations

import contextlib
import datetime
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import FUNCTIONS_DIR
from tests.harness import download_objects, executed_lines, line_of

pytestmark = pytest.mark.rie

BASIC = FUNCTIONS_DIR / "basic.py"
SELECTIVE = FUNCTIONS_DIR / "selective.py"
KEY_RE = re.compile(r"^coverage/test-fn/\$LATEST/(\d{4}-\d{2}-\d{2})/([0-9a-f]{32})\.coverage$")


def only_object(s3, bucket, tmp_path: Path) -> tuple[str, Path]:
    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1, f"expected one environment object, got {sorted(objects)}"
    return next(iter(objects.items()))


def wait_for_object(s3, bucket: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = s3.list_objects_v2(Bucket=bucket)
        if listing.get("KeyCount"):
            return listing["Contents"][0]
        time.sleep(0.1)
    raise AssertionError("no object appeared in S3")


def test_sigterm_while_idle_uploads_what_ran(start_function, s3, bucket, tmp_path):
    function = start_function("basic.handler")
    first = function.invoke({"path": "a"})
    assert first.status == 200
    assert first.body["result"] == "took a"
    assert function.invoke({"path": "a"}).status == 200
    time.sleep(0.5)  # the runtime is idle, blocked waiting for the next event

    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0, "no checkpoint is due yet"
    assert function.terminate() == 0
    logs = function.logs()
    assert "did not exit after deadline" not in logs, "the runtime was SIGKILLed"

    key, path = only_object(s3, bucket, tmp_path)
    match = KEY_RE.match(key)
    assert match, key
    assert match.group(1) == datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")

    lines = executed_lines(path, BASIC)
    assert line_of(BASIC, "marker: module-level") in lines, "import-time lines are measured"
    assert line_of(BASIC, "marker: path-a") in lines
    assert line_of(BASIC, "marker: path-b") not in lines
    assert line_of(BASIC, "marker: raise") not in lines

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    meta = head["Metadata"]
    assert meta["mode"] == "full"
    assert meta["branch"] == "false"
    assert meta["invocations"] == "2"
    assert meta["coverage-version"].startswith("7.")
    assert meta["python-version"] == ".".join(map(str, sys.version_info[:3]))
    assert meta["environment-id"] == match.group(2)
    assert meta["init-time"] <= meta["snapshot-time"]

    uploads = [r for r in function.json_logs() if r["message"] == "coverage uploaded"]
    assert [r["reason"] for r in uploads] == ["SIGTERM"]


def test_coverage_report_reads_the_object_unchanged(start_function, s3, bucket, tmp_path):
    function = start_function("basic.handler")
    function.invoke({"path": "b"})
    assert function.terminate() == 0
    _, path = only_object(s3, bucket, tmp_path)
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "report",
            "-m",
            f"--data-file={path}",
            "--include=*/basic.py",
        ],
        cwd=FUNCTIONS_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    row = next(line for line in report.stdout.splitlines() if line.startswith("basic.py"))
    missing = row.split("%", 1)[1]
    assert str(line_of(BASIC, "marker: path-a")) in missing
    assert str(line_of(BASIC, "marker: path-b")) not in missing


def test_handler_exception_is_returned_and_its_coverage_kept(start_function, s3, bucket, tmp_path):
    function = start_function("basic.handler")
    failed = function.invoke({"raise": True})
    assert failed.status == 200  # the RIE reports function errors in the body
    assert failed.body["errorType"] == "ValueError"
    assert failed.body["errorMessage"] == "deliberate failure"
    after = function.invoke({"path": "b"})
    assert after.body["result"] == "took b", "the runtime stays warm after a handler error"
    assert function.terminate() == 0
    _, path = only_object(s3, bucket, tmp_path)
    lines = executed_lines(path, BASIC)
    assert line_of(BASIC, "marker: raise") in lines
    assert line_of(BASIC, "marker: path-b") in lines


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("broken_import.handler", "Runtime.ImportModuleError"),
        ("broken_syntax.handler", "Runtime.UserCodeSyntaxError"),
    ],
)
def test_init_errors_reach_lambda_unchanged(start_function, handler, error_type):
    function = start_function(handler)
    result = function.invoke({})
    assert result.status == 502
    assert result.body["errorType"] == error_type
    assert function.terminate() == 0


def test_import_error_coverage_is_still_uploaded(start_function, s3, bucket, tmp_path):
    function = start_function("broken_import.handler")
    assert function.invoke({}).status == 502
    function.terminate()
    objects = download_objects(s3, bucket, tmp_path)
    assert objects, "the failed init's coverage is saved at exit"
    source = FUNCTIONS_DIR / "broken_import.py"
    failing_line = line_of(source, "import module_that_does_not_exist")
    assert any(failing_line in executed_lines(path, source) for path in objects.values())


def test_disabled_runs_plain_awslambdaric_and_uploads_nothing(start_function, s3, bucket):
    function = start_function("basic.handler", COVERAGE_ENABLED="false")
    assert function.invoke({"path": "a"}).body["result"] == "took a"
    assert function.terminate() == 0
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    logs = function.logs()
    assert "coverage_runtime" not in logs
    assert "Internal agent lambda-coverage" not in logs, "no extension when disabled"


def test_disabled_loads_nothing_but_the_entry_point(start_function):
    function = start_function("loaded_modules.handler", COVERAGE_ENABLED="false")
    loaded = function.invoke({}).body
    assert loaded == ["coverage_runtime", "coverage_runtime.env"], (
        "only the package itself and the switch's reader, none of the runtime"
    )
    assert function.terminate() == 0


def test_selective_mode_measures_only_blocks(start_function, s3, bucket, tmp_path):
    function = start_function("selective.plain_handler", COVERAGE_MODE="selective")
    assert function.invoke({}).body == {"ok": True}
    assert function.terminate() == 0
    _, path = only_object(s3, bucket, tmp_path)
    lines = executed_lines(path, SELECTIVE)
    assert line_of(SELECTIVE, "marker: in-block") in lines
    assert line_of(SELECTIVE, "marker: block-line") in lines, "the block's own lines"
    assert line_of(SELECTIVE, "marker: after-block") not in lines
    assert line_of(SELECTIVE, "marker: unmeasured") not in lines
    assert line_of(SELECTIVE, "def unmeasured_helper") not in lines, "imports are not measured"


def test_selective_decorator_measures_invocation_minus_excluded(
    start_function, s3, bucket, tmp_path
):
    function = start_function("selective.decorated_handler", COVERAGE_MODE="selective")
    assert function.invoke({}).body == {"ok": True, "kind": "decorated"}
    assert function.terminate() == 0
    _, path = only_object(s3, bucket, tmp_path)
    lines = executed_lines(path, SELECTIVE)
    assert line_of(SELECTIVE, "marker: decorated-body") in lines
    assert line_of(SELECTIVE, "marker: excluded") not in lines
    assert line_of(SELECTIVE, "marker: unmeasured") not in lines


def test_checkpoints_upload_only_when_coverage_grew(start_function, s3, bucket):
    function = start_function("basic.handler", COVERAGE_FLUSH_INTERVAL_SECONDS="1")
    function.invoke({"path": "a"})
    time.sleep(1.2)
    function.invoke({"path": "a"})  # a checkpoint is due after this response
    first = wait_for_object(s3, bucket)
    head = s3.head_object(Bucket=bucket, Key=first["Key"])
    assert head["Metadata"]["invocations"] == "2"

    time.sleep(1.2)
    function.invoke({"path": "a"})  # due again, but nothing new ran
    time.sleep(0.3)
    assert s3.head_object(Bucket=bucket, Key=first["Key"])["ETag"] == head["ETag"]

    time.sleep(1.2)
    function.invoke({"path": "b"})  # new lines: the next checkpoint uploads
    deadline = time.monotonic() + 10
    while s3.head_object(Bucket=bucket, Key=first["Key"])["ETag"] == head["ETag"]:
        assert time.monotonic() < deadline, "grown coverage was not checkpointed"
        time.sleep(0.1)

    assert function.terminate() == 0
    reasons = [r["reason"] for r in function.json_logs() if r["message"] == "coverage uploaded"]
    assert reasons == ["checkpoint", "checkpoint"], "shutdown had nothing new to upload"
    assert any(r["message"] == "coverage unchanged since last upload" for r in function.json_logs())


def test_public_api_inside_the_function(start_function, s3, bucket):
    function = start_function("uses_api.handler")
    assert function.invoke({"n": 4}).body == {"sum": 6}
    status = function.invoke({"action": "status"}).body
    assert status["enabled"] is True
    assert status["mode"] == "full"
    assert status["invocations"] == 2
    assert status["recorded_lines"] > 0
    assert status["uploads_enabled"] is True
    assert status["last_upload"] is None
    assert status["pending_checkpoint"] is True

    flushed = function.invoke({"action": "flush"}).body["flushed"]
    assert flushed["key"].endswith(".coverage")
    assert flushed["reason"] == "flush"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1

    again = function.invoke({"action": "flush"}).body["flushed"]
    assert again is None or again["key"] == flushed["key"]

    before = function.invoke({"action": "status"}).body["recorded_lines"]
    assert function.invoke({"action": "reset"}).body == {"reset": True}
    after = function.invoke({"action": "status"}).body["recorded_lines"]
    assert after < before
    assert function.terminate() == 0


def test_missing_bucket_measures_but_says_so(start_function, function_env, s3, bucket):
    env = {k: v for k, v in function_env.items() if k != "COVERAGE_S3_BUCKET"}
    function = start_function("uses_api.handler", env=env)
    status = function.invoke({"action": "status"}).body
    assert status["enabled"] is True
    assert status["uploads_enabled"] is False
    assert "COVERAGE_S3_BUCKET" in status["upload_problem"]
    assert function.terminate() == 0
    errors = [r for r in function.json_logs() if r["level"] == "ERROR"]
    assert any(r.get("variable") == "COVERAGE_S3_BUCKET" for r in errors)


def test_invalid_configuration_is_reported_and_function_still_serves(start_function, s3, bucket):
    function = start_function(
        "uses_api.handler", COVERAGE_MODE="sometimes", COVERAGE_SHUTDOWN_BUDGET_MS="fast"
    )
    status = function.invoke({"action": "status"}).body
    assert status["enabled"] is False
    assert "COVERAGE_MODE" in status["reason"]
    assert function.terminate() == 0
    errors = {r["variable"]: r for r in function.json_logs() if r["level"] == "ERROR"}
    assert errors["COVERAGE_MODE"]["value"] == "sometimes"
    assert "selective" in errors["COVERAGE_MODE"]["allowed"]
    assert errors["COVERAGE_SHUTDOWN_BUDGET_MS"]["value"] == "fast"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_shutdown_upload_has_a_hard_deadline(start_function, hanging_endpoint):
    function = start_function(
        "basic.handler",
        COVERAGE_S3_ENDPOINT_URL=hanging_endpoint,
        COVERAGE_SHUTDOWN_BUDGET_MS="200",
    )
    function.invoke({"path": "a"})
    started = time.monotonic()
    assert function.terminate() == 0
    assert time.monotonic() - started < 2
    assert "did not exit after deadline" not in function.logs(), "exited before SIGKILL"
    failures = [r for r in function.json_logs() if r["level"] == "ERROR"]
    assert any("deadline" in r.get("error_message", "") for r in failures)
    assert any("lost" in r["message"] for r in failures), "the loss is logged, not silent"


OWN_SIGTERM = FUNCTIONS_DIR / "own_sigterm.py"


def test_functions_own_sigterm_handler_still_runs(start_function, s3, bucket, tmp_path):
    marker = tmp_path / "sigterm-marker"
    function = start_function("own_sigterm.handler", SIGTERM_MARKER_FILE=str(marker))
    assert function.invoke({}).body == {"ok": True}
    assert function.terminate() == 0
    assert marker.read_text() == "handled", "the function's handler ran after the upload"
    _, path = only_object(s3, bucket, tmp_path)
    assert line_of(OWN_SIGTERM, "marker: returned") in executed_lines(path, OWN_SIGTERM)


@pytest.mark.parametrize(
    "first", [True, False], ids=["during-the-first-invocation", "after-a-response"]
)
def test_sigterm_during_an_invocation_still_uploads(start_function, s3, bucket, tmp_path, first):
    """During the first invocation the S3 client does not exist yet (it is built after
    the first response), so it is built inside the shutdown window."""
    function = start_function("own_sigterm.handler", SIGTERM_MARKER_FILE=str(tmp_path / "marker"))
    if not first:
        function.invoke({})
    in_flight = threading.Thread(target=lambda: _ignore_errors(function.invoke, {"sleep": 5}))
    in_flight.start()
    time.sleep(0.5)  # the handler is sleeping: the main thread is busy in Python code
    assert function.terminate() == 0
    in_flight.join(timeout=10)
    assert "did not exit after deadline" not in function.logs()
    _, path = only_object(s3, bucket, tmp_path)
    assert line_of(OWN_SIGTERM, "marker: sleeping") in executed_lines(path, OWN_SIGTERM)


def _ignore_errors(call, *args):
    with contextlib.suppress(Exception):  # the in-flight request gets an empty reply
        call(*args)


BUSY = FUNCTIONS_DIR / "busy.py"


def test_sigterm_while_the_handler_holds_the_cpu_still_uploads(
    start_function, s3, bucket, tmp_path
):
    """A CPU-bound invocation (e.g. one hitting its timeout) must not starve the upload."""
    function = start_function("busy.handler")
    function.invoke({"seconds": 0.01})
    in_flight = threading.Thread(target=lambda: _ignore_errors(function.invoke, {"seconds": 5}))
    in_flight.start()
    time.sleep(0.5)
    assert function.terminate() == 0
    in_flight.join(timeout=10)
    assert "did not exit after deadline" not in function.logs(), "SIGKILLed: the upload starved"
    _, path = only_object(s3, bucket, tmp_path)
    assert line_of(BUSY, "marker: spinning") in executed_lines(path, BUSY)
