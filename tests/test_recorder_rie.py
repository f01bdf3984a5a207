"""The init recorder's life through the real RIE, on a Python with sys.monitoring.

The rest of the RIE suite runs on the venv's Python (3.11 here: the C tracer);
these run the runtime on the newest pyenv CPython 3.12+ with the runtime's own
requirements (a venv under .local/venvs), where the init is recorded without
coverage.py and handed over when data is first needed: the first checkpoint,
a flush, the shutdown.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import FUNCTIONS_DIR
from tests.harness import REPO_ROOT, download_objects, executed_lines, line_of
from tests.test_exactness import other_pythons
from tests.test_reliability_rie import (  # noqa: F401
    invoke_quietly,
    pauses,
    release,
    wait_reached,
)

pytestmark = [pytest.mark.rie, pytest.mark.slow]

BASIC = FUNCTIONS_DIR / "basic.py"
BROKEN = FUNCTIONS_DIR / "broken_import.py"
BUSY = FUNCTIONS_DIR / "busy.py"
USES_API = FUNCTIONS_DIR / "uses_api.py"
TOOK_OVER = "coverage.py took the init over"


def sysmon_runtime(*extra: str) -> str:
    """A venv of the newest CPython 3.12+ here with requirements.txt installed, and
    the ``extra`` requirement lines (``name==version``); skips if there is none."""
    candidates = [p for p in other_pythons() if p.parent.parent.name >= "3.12"]
    if not candidates:
        pytest.skip("no CPython 3.12+ found (pyenv): the init recorder needs sys.monitoring")
    python = candidates[-1]
    suffix = "".join(f"+{line.partition('==')[0]}" for line in extra)
    venv = REPO_ROOT / ".local" / "venvs" / f"runtime-{python.parent.parent.name}{suffix}"
    wanted = "\n".join([(REPO_ROOT / "requirements.txt").read_text(), *extra])
    stamp = venv / ".wanted"
    if not (stamp.exists() and stamp.read_text() == wanted):
        subprocess.run([str(python), "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", "-r", str(REPO_ROOT / "requirements.txt"), *extra],
            check=True, timeout=600, capture_output=True,
        )  # fmt: skip
        stamp.write_text(wanted)
    return str(venv / "bin" / "python")


@pytest.fixture(scope="module")
def sysmon_python() -> str:
    return sysmon_runtime()


@pytest.fixture
def start(start_function, sysmon_python):
    def start_on_sysmon(handler: str, **env: str):
        return start_function(
            handler,
            command=[sysmon_python, "-m", "coverage_runtime", handler],
            PYTHONPATH=str(REPO_ROOT),
            **env,
        )

    return start_on_sysmon


def messages(function) -> list[str]:
    return [record["message"] for record in function.json_logs()]


def the_object(s3, bucket, tmp_path) -> Path:
    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1, sorted(objects)
    return next(iter(objects.values()))


def wait_for_message(function, message: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while message not in messages(function):
        assert time.monotonic() < deadline, f"no {message!r} record: {function.logs()[-2000:]}"
        time.sleep(0.01)


def shipping_thread_idle(directory: Path) -> None:
    """The shipping thread, started after the first response, has done what it does
    then (the pause point ``shipper-idle``, listed in COVERAGE_TEST_PAUSE_AT)."""
    wait_reached(directory, "shipper-idle")
    release(directory, "shipper-idle")


def test_the_init_is_recorded_then_handed_over_at_the_first_checkpoint(
    start,
    s3,
    bucket,
    tmp_path,
    pauses,  # noqa: F811
):
    function = start(
        "basic.handler",
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="shipper-idle",
    )
    assert function.invoke({"path": "a"}).body["result"] == "took a"
    # The shipping thread started after the response and built nothing (before the
    # hand-over, it built coverage.py and the S3 client there).
    shipping_thread_idle(pauses)
    assert TOOK_OVER not in messages(function)
    assert "S3 client ready" not in messages(function)
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    assert function.invoke({"path": "b"}).body["result"] == "took b"
    wait_for_message(function, "coverage uploaded")  # the first checkpoint hands over
    found = messages(function)
    assert found.count(TOOK_OVER) == 1
    assert found.index(TOOK_OVER) < found.index("coverage uploaded")
    assert function.terminate() == 0
    started = next(r for r in function.json_logs() if r["message"] == "coverage runtime started")
    assert started["core"] == "sysmon"
    lines = executed_lines(the_object(s3, bucket, tmp_path), BASIC)
    assert line_of(BASIC, "def handler") in lines, "module level, run at init"
    assert {line_of(BASIC, "marker: path-a"), line_of(BASIC, "marker: path-b")} <= lines


def test_an_init_error_ships_what_the_recorder_saw(start, s3, bucket, tmp_path):
    function = start("broken_import.handler")
    assert function.invoke({}).status == 502
    function.terminate()
    objects = download_objects(s3, bucket, tmp_path)
    assert objects, "the failed init's coverage is built and saved at exit"
    failing = line_of(BROKEN, "import module_that_does_not_exist")
    assert any(failing in executed_lines(path, BROKEN) for path in objects.values())


def shipped_or_said_lost(function, s3, bucket, tmp_path, source: Path, marker: str) -> None:
    """DESIGN §1: the newest data in S3 inside the window, or one record saying what
    was lost and why, written before a SIGKILL could come: never lost silently.
    Which of the two depends on the machine's speed (coverage.py and the S3 client
    are both built inside the window here); silence never does."""
    losses = [m for m in messages(function) if m.startswith("coverage upload at shutdown failed")]
    objects = download_objects(s3, bucket, tmp_path)
    if objects:
        assert not losses, function.logs()[-3000:]
        (path,) = objects.values()
        assert line_of(source, marker) in executed_lines(path, source)
    else:
        assert len(losses) == 1, function.logs()[-3000:]


def test_sigterm_while_coverage_py_is_built(start, s3, bucket, tmp_path, pauses):  # noqa: F811
    """The shipping thread is building coverage.py for the first checkpoint when
    SIGTERM comes: the shutdown waits for that build and never starts a second one."""
    function = start(
        "basic.handler",
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="coverage-build,shutdown",
    )
    assert function.invoke({"path": "b"}).status == 200
    time.sleep(1.1)  # a checkpoint is due after the next response
    assert function.invoke({"path": "a"}).status == 200
    wait_reached(pauses, "coverage-build")  # on the shipping thread, after the response
    function.signal_shutdown()
    wait_reached(pauses, "shutdown")  # the shutdown has begun, the build still held
    release(pauses, "shutdown")
    release(pauses, "coverage-build")
    assert function.wait(timeout=10) == 0
    assert messages(function).count("coverage.py took the init over") == 1
    shipped_or_said_lost(function, s3, bucket, tmp_path, BASIC, "marker: path-a")


def test_health_checks_never_build_coverage_py_and_a_flush_hands_over(
    start,
    s3,
    bucket,
    tmp_path,
    pauses,  # noqa: F811
):
    """``status()`` on every invocation (the example's health handler) counts what
    the recorder holds without building coverage.py: the ``coverage-build`` point
    is never reached; the first ``flush()`` builds it, on the invoking thread."""
    function = start(
        "uses_api.handler",
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="coverage-build,shipper-idle",
    )
    statuses = [function.invoke({"action": "status"}).body for _ in range(3)]
    shipping_thread_idle(pauses)  # the shipping thread ran meanwhile
    assert not (pauses / "coverage-build.reached").exists(), function.logs()[-2000:]
    for status in statuses:
        assert status["recorded_events_waiting"] > 0 and status["pending_checkpoint"], status
        assert status["core"] == "sysmon" and status["recorded_lines"] == 0, status
    assert TOOK_OVER not in messages(function)
    flushing = threading.Thread(target=invoke_quietly, args=(function, {"action": "flush"}))
    flushing.start()
    wait_reached(pauses, "coverage-build")
    release(pauses, "coverage-build")
    flushing.join(30)
    after = function.invoke({"action": "status"}).body
    assert after["recorded_events_waiting"] == 0 and after["recorded_lines"] > 0, after
    assert after["last_upload"]["reason"] == "flush", after
    assert function.terminate() == 0
    assert messages(function).count(TOOK_OVER) == 1
    lines = executed_lines(the_object(s3, bucket, tmp_path), USES_API)
    assert line_of(USES_API, "def handler") in lines, "module level, run at init"


def test_the_shutdown_hands_over_when_no_checkpoint_came(
    start,
    s3,
    bucket,
    tmp_path,
    pauses,  # noqa: F811
):
    """Warm invocations, no checkpoint due (the default 60 s): coverage.py and the
    S3 client are built in the shutdown window, and everything the recorder held
    ships."""
    function = start(
        "basic.handler", COVERAGE_TEST_PAUSE_DIR=str(pauses), COVERAGE_TEST_PAUSE_AT="shipper-idle"
    )
    for path in ("a", "b"):
        assert function.invoke({"path": path}).status == 200
    shipping_thread_idle(pauses)
    assert TOOK_OVER not in messages(function)
    assert "S3 client ready" not in messages(function)
    assert function.terminate() == 0
    assert messages(function).count(TOOK_OVER) == 1
    assert messages(function).count("S3 client ready") == 1
    lines = executed_lines(the_object(s3, bucket, tmp_path), BASIC)
    assert line_of(BASIC, "def handler") in lines
    assert {line_of(BASIC, "marker: path-a"), line_of(BASIC, "marker: path-b")} <= lines


def test_sigterm_during_the_first_invocation_builds_coverage_py_in_the_window(
    start, s3, bucket, tmp_path
):
    """No response yet, so the shipping thread never started: the shutdown builds
    coverage.py itself and replays the init and the running invocation."""
    function = start("busy.handler")
    invoking = threading.Thread(target=invoke_quietly, args=(function, {"seconds": 30}))
    invoking.start()
    deadline = time.monotonic() + 20
    while "INVOKE START" not in function.logs():
        assert time.monotonic() < deadline, function.logs()[-2000:]
        time.sleep(0.01)
    time.sleep(0.2)  # the handler is spinning
    function.signal_shutdown()
    assert function.wait(timeout=10) == 0
    invoking.join(10)
    assert messages(function).count("coverage.py took the init over") == 1
    shipped_or_said_lost(function, s3, bucket, tmp_path, BUSY, "marker: spinning")
