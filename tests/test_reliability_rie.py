"""Nothing lost at any moment of an environment's life, through the real RIE, with S3
faults from a loopback proxy and signals sent at chosen moments (pause points)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from coverage_runtime import layout
from coverage_runtime.settings import DEFAULT_SHUTDOWN_BUDGET_MS
from coverage_runtime.shim import session
from tests.conftest import FUNCTIONS_DIR
from tests.harness import download_objects, executed_lines, line_of, logged_at
from tests.s3_proxy import Fault, fault_proxy

pytestmark = pytest.mark.rie

USES_API = FUNCTIONS_DIR / "uses_api.py"
ASYNC = FUNCTIONS_DIR / "asyncio_signals.py"


@pytest.fixture
def proxy(s3_server):
    with fault_proxy(int(s3_server.endpoint_url.rsplit(":", 1)[1])) as running:
        yield running


@pytest.fixture
def pauses(tmp_path: Path) -> Path:
    directory = tmp_path / "pauses"
    directory.mkdir()
    return directory


def wait_reached(pauses: Path, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not (pauses / f"{name}.reached").exists():
        assert time.monotonic() < deadline, f"pause point {name} never reached"
        time.sleep(0.01)


def release(pauses: Path, name: str) -> None:
    (pauses / f"{name}.go").touch()


def invoke_quietly(function, event: dict) -> None:
    """An invoke the shutdown cuts short: the RIE drops its connection."""
    with contextlib.suppress(OSError):
        function.invoke(event)


def object_lines(s3, bucket, tmp_path, source: Path) -> set[int]:
    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1, sorted(objects)
    return executed_lines(next(iter(objects.values())), source)


def uploads(function) -> list[dict]:
    return [r for r in function.json_logs() if r["message"] == "coverage uploaded"]


def wait_logged(function, message: str, timeout: float = 20, **fields: object) -> None:
    deadline = time.monotonic() + timeout
    while not any(
        r["message"] == message and all(r.get(k) == v for k, v in fields.items())
        for r in function.json_logs()
    ):
        assert time.monotonic() < deadline, f"{message!r} {fields} never logged"
        time.sleep(0.01)


def through_proxy(start_function, proxy, *, checkpoint_seconds: int, **env: str):
    """`uses_api` with its S3 requests through the fault proxy."""
    return start_function(
        "uses_api.handler",
        COVERAGE_S3_ENDPOINT_URL=proxy.endpoint_url,
        COVERAGE_FLUSH_INTERVAL_SECONDS=str(checkpoint_seconds),
        **env,
    )


def sigterm_inside_a_checkpoints_snapshot(function, pauses) -> threading.Thread:
    """Hold the shipping thread in a checkpoint's snapshot (the second invocation's
    data in it), and start the shutdown while it is held."""
    assert function.invoke({"n": 1}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    invoking = threading.Thread(target=invoke_quietly, args=(function, {"n": 5}))
    invoking.start()
    wait_reached(pauses, "snapshot")
    function.signal_shutdown()
    wait_reached(pauses, "shutdown")  # the shutdown has begun, the snapshot still held
    release(pauses, "shutdown")
    release(pauses, "snapshot")
    return invoking


def test_sigterm_while_a_checkpoint_takes_its_snapshot(
    start_function, s3, bucket, tmp_path, pauses
):
    """The signal lands while the shipping thread writes a checkpoint's snapshot and the
    shutdown overtakes the checkpoint's upload: the shutdown waits for the snapshot, then
    takes and uploads its own; the newest data is in S3, no SIGKILL."""
    function = start_function(
        "uses_api.handler",
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="snapshot,shutdown,checkpoint-upload",
    )
    invoking = sigterm_inside_a_checkpoints_snapshot(function, pauses)
    wait_reached(pauses, "checkpoint-upload")  # held until the process exits
    invoking.join(10)
    assert function.wait(timeout=10) == 0
    assert "did not exit after deadline" not in function.logs()
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)
    assert [r["reason"] for r in uploads(function)] == ["SIGTERM"]


def test_sigterm_while_a_checkpoint_takes_its_snapshot_that_goes_on(
    start_function, s3, bucket, tmp_path, pauses
):
    """The same signal, but the checkpoint goes on from its snapshot while the
    shutdown is held after taking its own: it finds the shutdown begun and sends
    nothing (its PUT would race the shutdown's, of the same key), and says so; the
    shutdown uploads the newest data alone, and nothing is called lost."""
    function = start_function(
        "uses_api.handler",
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
        # Room for the checkpoint to go on while the shutdown is held.
        COVERAGE_SHUTDOWN_BUDGET_MS="2000",
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="snapshot,shutdown,shutdown-snapshot",
    )
    invoking = sigterm_inside_a_checkpoints_snapshot(function, pauses)
    wait_reached(pauses, "shutdown-snapshot")
    wait_logged(function, session.CoverageSession.CHECKPOINT_NOT_SENT)
    release(pauses, "shutdown-snapshot")
    invoking.join(10)
    assert function.wait(timeout=10) == 0
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)
    assert [r["reason"] for r in uploads(function)] == ["SIGTERM"]
    records = function.json_logs()
    assert not [r for r in records if r["level"] == "ERROR"]


def test_sigterm_while_the_s3_client_is_built(start_function, s3, bucket, tmp_path, pauses):
    """The first checkpoint builds the S3 client on the shipping thread; SIGTERM
    lands during that build: the shutdown waits for it (or builds its own), and
    the newest data is in S3."""
    function = start_function(
        "uses_api.handler",
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="client-build,shutdown",
    )
    assert function.invoke({"n": 1}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    invoking = threading.Thread(target=invoke_quietly, args=(function, {"n": 5}))
    invoking.start()
    wait_reached(pauses, "client-build")  # on the shipping thread, for the checkpoint
    function.signal_shutdown()
    wait_reached(pauses, "shutdown")
    release(pauses, "shutdown")
    release(pauses, "client-build")
    invoking.join(10)
    assert function.wait(timeout=10) == 0
    assert "did not exit after deadline" not in function.logs()
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


def test_a_stalled_s3_never_turns_an_invocation_into_a_timeout(
    start_function, function_env, proxy, s3, bucket, tmp_path
):
    """Checkpoints upload on the shipping thread: with every PUT stalled and a 3 s
    timeout, each invocation still answers at once; shutdown reports what was lost."""
    proxy.set("PUT", "stall")
    function = start_function(
        "uses_api.handler",
        COVERAGE_S3_ENDPOINT_URL=proxy.endpoint_url,
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
        AWS_LAMBDA_FUNCTION_TIMEOUT="3",
    )
    assert function.invoke({"n": 1}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    for n in range(6):
        started = time.monotonic()
        result = function.invoke({"n": n + 2})
        assert result.status == 200 and result.body == {"sum": sum(range(n + 2))}, result.raw
        assert time.monotonic() - started < 1.5, "coverage work delayed the response"
    assert "Task timed out" not in function.logs()
    proxy.wait_for("PUT")
    assert function.terminate() == 0
    lost = [r for r in function.json_logs() if "lost" in r["message"]]
    assert lost and lost[0]["lost_bytes"] > 0 and lost[0]["invocations_since_last_upload"] == 7


def test_flush_is_bounded_by_the_invocations_remaining_time(start_function, proxy, s3, bucket):
    proxy.set("PUT", "stall")
    function = start_function(
        "uses_api.handler",
        COVERAGE_S3_ENDPOINT_URL=proxy.endpoint_url,
        AWS_LAMBDA_FUNCTION_TIMEOUT="3",
    )
    assert function.invoke({"n": 3}).status == 200
    started = time.monotonic()
    result = function.invoke({"action": "flush"})
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, "flush() waited past the invocation's timeout"
    assert "Task timed out" not in result.raw.decode()
    assert "UploadError" in result.raw.decode()
    proxy.clear()
    assert function.terminate() == 0


def test_a_retry_of_an_older_snapshot_never_lands_after_a_newer_one(
    start_function, proxy, s3, bucket, tmp_path
):
    """The first checkpoint's PUT is held, then refused with 503 (botocore retries it);
    meanwhile shutdown uploads the newest snapshot.  The older retry is never sent."""
    proxy.set("PUT", "stall_503", times=1)
    function = through_proxy(start_function, proxy, checkpoint_seconds=1)
    assert function.invoke({"n": 2}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    assert function.invoke({"n": 9}).status == 200
    proxy.wait_for("PUT")  # the checkpoint's first attempt, held
    assert function.invoke({"action": "status"}).status == 200
    function.signal_shutdown()
    assert function.wait(timeout=10) == 0
    proxy.release()  # the held attempt answers 503 now: botocore would retry it
    time.sleep(1.5)
    generations = [
        int(seen.headers.get("x-amz-meta-snapshot-generation", 0)) for seen in proxy.requests("PUT")
    ]
    assert generations == sorted(generations), f"an older snapshot was sent later: {generations}"
    head = s3.head_object(Bucket=bucket, Key=download_key(s3, bucket))
    assert int(head["Metadata"]["snapshot-generation"]) == max(generations)


def download_key(s3, bucket: str) -> str:
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return key


def test_an_async_handler_that_takes_sigterm_does_not_lose_the_upload(
    start_function, s3, bucket, tmp_path
):
    function = start_function("asyncio_signals.handler")
    assert function.invoke({"n": 4}).body == {"result": 8}
    assert function.invoke({"n": 5}).body == {"result": 10}
    time.sleep(0.3)  # idle, blocked waiting for the next event
    assert function.terminate() == 0
    assert "did not exit after deadline" not in function.logs()
    assert line_of(ASYNC, "marker: async-result") in object_lines(s3, bucket, tmp_path, ASYNC)
    assert [r["reason"] for r in uploads(function)] == ["SIGTERM"]


def test_a_timeout_under_the_rie_sends_sigterm_and_the_data_is_uploaded(
    start_function, s3, bucket, tmp_path
):
    """The RIE resets a timed-out invocation with SIGTERM first when an extension is
    registered (Lambda documents the reset as a shutdown, but may SIGKILL: README)."""
    busy = FUNCTIONS_DIR / "busy.py"
    function = start_function("busy.handler", AWS_LAMBDA_FUNCTION_TIMEOUT="1")
    result = function.invoke({"seconds": 5})
    assert b"Task timed out" in result.raw
    assert "Reset initiated: Timeout" in function.logs()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not uploads(function):
        time.sleep(0.05)
    assert [r["reason"] for r in uploads(function)] == ["SIGTERM"]
    assert line_of(busy, "marker: spinning") in object_lines(s3, bucket, tmp_path, busy)
    function.terminate()


def test_a_first_upload_at_shutdown_is_one_put_without_a_read_back(
    start_function, proxy, s3, bucket, tmp_path
):
    """Shut down before any checkpoint: no older snapshot was ever sent, so none
    can land after the shutdown's upload; the window is spent on one PUT, no HEAD."""
    function = through_proxy(start_function, proxy, checkpoint_seconds=3600)
    assert function.invoke({"n": 5}).status == 200
    assert function.terminate() == 0
    assert [r["reason"] for r in uploads(function)] == ["SIGTERM"]
    assert len(proxy.requests("PUT")) == 1
    assert proxy.requests("HEAD") == []
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


def test_the_shutdown_reads_back_once_a_checkpoint_was_sent(
    start_function, proxy, s3, bucket, tmp_path
):
    """After a checkpoint's upload, the shutdown's may be overtaken by a late
    attempt of it: the stored generation is read back (one HEAD)."""
    function = through_proxy(start_function, proxy, checkpoint_seconds=1)
    assert function.invoke({"n": 1}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    assert function.invoke({"n": 5}).status == 200
    wait_logged(function, "coverage uploaded", reason="checkpoint")
    assert function.invoke({"n": 7}).status == 200
    assert function.terminate() == 0
    assert [r["reason"] for r in uploads(function)][-1] == "SIGTERM"
    assert len(proxy.requests("HEAD")) == 1
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


LOST = "coverage upload at shutdown failed: data of this environment since the last upload is lost"
NOTHING_LOST = (
    "coverage upload at shutdown failed, but a checkpoint confirmed meanwhile holds "
    "everything it held: nothing is lost"
)


def test_a_snapshot_held_past_the_budget_is_said_lost_inside_the_budget(
    start_function, tmp_path, pauses
):
    """The shutdown's snapshot never ends (held at a pause point): the loss record
    is written before the budget (400 ms, Lambda's SIGKILL at 500), not after it:
    the shutdown's own work stops `RECORD_MARGIN_SECONDS` early."""
    function = start_function(
        "uses_api.handler",
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="snapshot",
    )
    assert function.invoke({"n": 3}).status == 200
    signalled = time.time()
    function.signal_shutdown()
    wait_reached(pauses, "snapshot")  # never released
    assert function.wait(timeout=10) == 0
    [lost] = [r for r in function.json_logs() if r["message"] == LOST]
    budget_ms = DEFAULT_SHUTDOWN_BUDGET_MS
    margin_ms = session.RECORD_MARGIN_SECONDS * 1000
    assert budget_ms - margin_ms <= lost["elapsed_ms"] < budget_ms, lost
    assert logged_at(lost) - signalled < budget_ms / 1000, (lost, signalled)


def checkpoint_snapshot_taken(start_function, proxy, pauses, *points: str, **env: str):
    """`uses_api` through the proxy (``env`` added), held after its first
    checkpoint's snapshot (``checkpoint-upload``); the shutdown will stop at
    ``points`` (``older-upload``: where it waits for the checkpoint's PUT)."""
    function = through_proxy(
        start_function,
        proxy,
        checkpoint_seconds=1,
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT=",".join(["checkpoint-upload", *points]),
        **env,
    )
    assert function.invoke({"n": 1}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    assert function.invoke({"n": 5}).status == 200
    wait_reached(pauses, "checkpoint-upload")
    return function


def checkpoint_put_held_while_the_shutdown_puts(
    start_function, proxy, pauses, then: dict | None = None
):
    """A checkpoint's PUT on the wire (held by the proxy) when the shutdown, with
    its own snapshot taken, gives up waiting for it and sends its own PUT, which
    S3 refuses; then the checkpoint's PUT goes through.  ``then``: an event
    invoked after the checkpoint's snapshot.  The function, shutting down.

    The refusal is a 403, which is not retried: a 5xx is, after a random pause,
    and a last attempt started just before the deadline ended the upload with
    the deadline instead of the refusal.  The proxy itself lets the checkpoint's
    PUT through once the refusal is answered, and the shutdown is not paused: the
    checkpoint's answer must come inside the shutdown's window (~160 ms are left
    after the refusal), and a test thread woken up to release it (or a pause
    point) may not be scheduled in time under load."""
    function = checkpoint_snapshot_taken(start_function, proxy, pauses)
    if then is not None:
        assert function.invoke(then).status == 200
    proxy.set("PUT", "stall", times=1)
    release(pauses, "checkpoint-upload")
    proxy.wait_for("PUT")  # the checkpoint's, held (on the wire before the signal)
    # Every PUT from now on is the shutdown's, refused; then the checkpoint's reaches S3.
    proxy.set("PUT", "status", 403, then_release=True)
    function.signal_shutdown()
    return function


ALONGSIDE = "a checkpoint's upload is still running: uploading alongside it"


def messages_after_alongside(records: list[dict]) -> list[str]:
    """What the shutdown logged after it gave up waiting for the checkpoint's PUT
    on the wire (it was held there, then, until the shutdown's own was refused)."""
    messages = [r["message"] for r in records]
    assert ALONGSIDE in messages, messages
    return messages[messages.index(ALONGSIDE) + 1 :]


def test_a_refused_shutdown_put_with_a_checkpoint_holding_everything_loses_nothing(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """Nothing new after the checkpoint's snapshot; its upload is confirmed after
    the shutdown's own PUT was refused: the shutdown waits for that answer and
    says the failure lost nothing (a warning), not a loss; S3 holds everything."""
    function = checkpoint_put_held_while_the_shutdown_puts(start_function, proxy, pauses)
    assert function.wait(timeout=10) == 0
    records = function.json_logs()
    assert [r["reason"] for r in uploads(function)] == ["checkpoint"]
    assert not [r for r in records if r["message"] == LOST]
    [warning] = [r for r in records if r["message"] == NOTHING_LOST]
    assert warning["level"] == "WARN" and "403" in warning["error_message"], warning
    assert NOTHING_LOST in messages_after_alongside(records)
    assert [seen.action for seen in proxy.requests("PUT")] == ["stall", "status"]
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


def test_a_refused_shutdown_put_with_a_checkpoint_holding_less_is_a_loss(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """The same order, but an invocation ran new code after the checkpoint's
    snapshot: the confirmed checkpoint holds less than the refused snapshot, so
    the shutdown writes the loss record, with what S3 holds."""
    function = checkpoint_put_held_while_the_shutdown_puts(
        start_function,
        proxy,
        pauses,
        then={"action": "status"},  # code that never ran before
    )
    assert function.wait(timeout=10) == 0
    records = function.json_logs()
    assert [r["reason"] for r in uploads(function)] == ["checkpoint"]
    assert not [r for r in records if r["message"] == NOTHING_LOST]
    [lost] = [r for r in records if r["message"] == LOST]
    assert LOST in messages_after_alongside(records)
    assert 0 < lost["recorded_lines_in_s3"] < lost["recorded_lines"], lost


def test_the_shutdown_waits_for_a_checkpoints_put_instead_of_racing_it(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """SIGTERM while a checkpoint's PUT is on the wire, with nothing new since its
    snapshot: the shutdown waits for its answer and, the checkpoint holding
    everything, sends no PUT of its own (two PUTs of one key at once: which
    lands last is S3's choice, and the local S3 answers one of them 500)."""
    function = checkpoint_snapshot_taken(start_function, proxy, pauses, "older-upload")
    proxy.set("PUT", "stall", times=1)
    release(pauses, "checkpoint-upload")
    proxy.wait_for("PUT")  # the checkpoint's PUT, held
    function.signal_shutdown()
    wait_reached(pauses, "older-upload")  # the shutdown's snapshot is taken; it waits
    proxy.release()
    release(pauses, "older-upload")
    assert function.wait(timeout=10) == 0
    records = function.json_logs()
    assert len(proxy.requests("PUT")) == 1
    assert [r["reason"] for r in uploads(function)] == ["checkpoint"]
    assert any(
        r["message"] == "coverage unchanged since last upload" and r["reason"] == "SIGTERM"
        for r in records
    )
    assert not [r for r in records if r["level"] == "ERROR"]
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


NOT_SENT = session.CoverageSession.CHECKPOINT_NOT_SENT


def test_a_checkpoint_between_its_snapshot_and_its_put_never_races_the_shutdown(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """SIGTERM in the gap between a checkpoint's snapshot and its PUT: the shutdown
    sees no upload on the wire and sends its own; the checkpoint, going on, finds
    the shutdown begun and sends nothing (before: its PUT of the same key ran
    beside the shutdown's, and an older snapshot could land last).  One PUT, the
    shutdown's, with the invocation served after the checkpoint's snapshot."""
    function = checkpoint_snapshot_taken(
        start_function, proxy, pauses, "older-upload", "shutdown-snapshot", "shutdown-upload"
    )
    assert function.invoke({"action": "status"}).status == 200  # new code, after it
    function.signal_shutdown()
    wait_reached(pauses, "shutdown-snapshot")
    release(pauses, "shutdown-snapshot")
    wait_reached(pauses, "shutdown-upload")  # it found no older upload on the wire
    proxy.set("PUT", "stall", times=1)
    release(pauses, "checkpoint-upload")  # the checkpoint goes on: its PUT, or none
    deadline = time.monotonic() + 20
    while not proxy.requests("PUT") and not any(
        r["message"] == NOT_SENT for r in function.json_logs()
    ):
        assert time.monotonic() < deadline, "the checkpoint neither sent nor gave up"
        time.sleep(0.01)
    release(pauses, "shutdown-upload")
    proxy.wait_for("PUT")
    proxy.release()
    assert function.wait(timeout=10) == 0
    records = function.json_logs()
    assert len(proxy.requests("PUT")) == 1, proxy.requests("PUT")
    assert [r["reason"] for r in uploads(function)] == ["SIGTERM"]
    assert not [r for r in records if r["level"] == "ERROR"], records
    status_line = line_of(USES_API, "return coverage_runtime.status()")
    assert status_line in object_lines(s3, bucket, tmp_path, USES_API)


def test_a_checkpoints_retry_never_starts_once_the_shutdown_has_begun(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """A checkpoint's PUT on the wire when SIGTERM comes, answered 503 while the
    shutdown waits for it: its retry is not sent (it would race the shutdown's PUT
    of the same key), nor waited for through its backoff; the shutdown's wait ends
    with the 503, and the shutdown uploads the newest data alone.  (Before: the
    retry went out after its backoff and the checkpoint's upload stood for the
    shutdown's, or the shutdown gave up waiting and sent its PUT alongside.)"""
    function = checkpoint_snapshot_taken(
        start_function,
        proxy,
        pauses,
        "older-upload",
        # The shutdown's wait for the checkpoint (half the window, ~0.9 s) is
        # most of its backoff's range (under 1 s).
        COVERAGE_SHUTDOWN_BUDGET_MS="2000",
    )
    proxy.set("PUT", "stall_503", times=1)
    release(pauses, "checkpoint-upload")
    proxy.wait_for("PUT")  # the checkpoint's, on the wire
    function.signal_shutdown()
    wait_reached(pauses, "older-upload")  # the shutdown waits for it
    release(pauses, "older-upload")
    proxy.release()  # answered 503: retryable
    assert function.wait(timeout=15) == 0
    records = function.json_logs()
    assert [seen.action for seen in proxy.requests("PUT")] == ["stall_503", "pass"]
    assert [r["reason"] for r in uploads(function)] == ["SIGTERM"]
    assert not [r for r in records if r["level"] == "ERROR"], records
    assert not [r for r in records if "uploading alongside it" in r["message"]], records
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


def test_an_older_put_landing_after_the_shutdowns_is_read_back_once_it_ends(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """A checkpoint's PUT held on the wire past the shutdown's wait for it: the
    shutdown sends its own alongside, then reads the stored generation back only
    once the checkpoint's has ended; that one lands last (older data over the
    newest), so the shutdown uploads again.  (Before: the read-back came at once,
    saw the newest, and the older landed after it: S3 kept it, nothing said.)"""
    function = checkpoint_snapshot_taken(start_function, proxy, pauses)
    assert function.invoke({"action": "status"}).status == 200  # new code, after it
    proxy.set("PUT", "stall", times=1)
    release(pauses, "checkpoint-upload")
    proxy.wait_for("PUT")  # the checkpoint's, held
    function.signal_shutdown()
    wait_logged(function, "coverage uploaded", reason="SIGTERM")  # its PUT went alongside
    proxy.release()  # the checkpoint's lands now, over the newest
    assert function.wait(timeout=15) == 0
    status_line = line_of(USES_API, "return coverage_runtime.status()")
    assert status_line in object_lines(s3, bucket, tmp_path, USES_API)  # the newest
    records = function.json_logs()
    # Ours, the checkpoint's landing after it, ours again.
    assert [r["reason"] for r in uploads(function)] == ["SIGTERM", "checkpoint", "SIGTERM"]
    assert any(
        r["message"] == "an older snapshot landed after the newest: uploading it again"
        for r in records
    )
    assert not [r for r in records if r["level"] == "ERROR"], records


COUNT_BEHIND = session.CoverageSession.COUNT_BEHIND


def checkpoint_confirmed(start_function, proxy, pauses, put_delay: float = 0.0):
    """`uses_api` through the proxy, with one checkpoint confirmed (its PUT held
    ``put_delay`` seconds by the proxy) and nothing measured since; the shutdown
    marks its own snapshot (``shutdown-snapshot.reached``) without waiting."""
    function = through_proxy(
        start_function,
        proxy,
        checkpoint_seconds=1,
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="shutdown-snapshot",
    )
    release(pauses, "shutdown-snapshot")  # (marked only: never held)
    assert function.invoke({"n": 1}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    if put_delay:
        proxy.set("PUT", "delay", put_delay, times=1)
    assert function.invoke({"n": 5}).status == 200  # new code, then a checkpoint
    wait_logged(function, "coverage uploaded", reason="checkpoint")
    return function


def test_a_shutdown_with_nothing_new_writes_and_reads_no_data_file(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """Everything measured is in S3, its count included: the shutdown decides so
    from its counts and takes no snapshot (at 8,000 modules with branches the data
    file is ~60 MB: its write and read were most of such an exit), sends nothing,
    and leaves the object as the checkpoint put it."""
    function = checkpoint_confirmed(start_function, proxy, pauses)
    assert function.terminate() == 0
    records = function.json_logs()
    assert not (pauses / "shutdown-snapshot.reached").exists()
    assert any(
        r["message"] == "coverage unchanged since last upload" and r["reason"] == "SIGTERM"
        for r in records
    )
    assert len(proxy.requests("PUT")) == 1
    assert not [r for r in records if r["level"] in ("ERROR", "WARN")], records
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


def test_a_count_only_reupload_that_cannot_fit_the_budget_is_not_sent(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """Nothing new since the checkpoint but one more invocation: the object's count
    is behind.  The checkpoint's PUT took longer than the whole shutdown budget
    (held 0.5 s against 400 ms), so the same body again cannot make it: no
    snapshot, no PUT, an immediate exit, and one warning that S3 holds all the
    coverage data with the count it has (before: the PUT ran into the deadline
    and its failure was logged as a loss of data).  When the PUT fits, it is sent
    (`test_exact_counts_rie`)."""
    function = checkpoint_confirmed(start_function, proxy, pauses, put_delay=0.5)
    assert function.invoke({"n": 5}).status == 200  # nothing new: the count alone
    assert function.terminate() == 0
    records = function.json_logs()
    assert not (pauses / "shutdown-snapshot.reached").exists()
    assert len(proxy.requests("PUT")) == 1
    assert [r["reason"] for r in uploads(function)] == ["checkpoint"]
    [behind] = [r for r in records if r["message"] == COUNT_BEHIND]
    assert behind["level"] == "WARN", behind
    assert (behind["invocations"], behind["invocations_in_s3"]) == (3, 2), behind
    assert not [r for r in records if r["message"] == LOST], records
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


def test_a_refused_count_only_reupload_is_said_as_the_count_behind_not_a_loss(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """Nothing new since the checkpoint, one more invocation, and S3 refuses the
    re-upload for the count (403): S3 holds all the coverage data, so the record
    says the count is behind (a warning), not that data was lost."""
    function = checkpoint_confirmed(start_function, proxy, pauses)
    assert function.invoke({"n": 5}).status == 200  # nothing new: the count alone
    proxy.set("PUT", "status", 403)
    assert function.terminate() == 0
    records = function.json_logs()
    assert (pauses / "shutdown-snapshot.reached").exists()  # it tried: the PUT fitted
    assert [seen.action for seen in proxy.requests("PUT")] == ["pass", "status"]
    [behind] = [r for r in records if r["message"] == COUNT_BEHIND]
    assert behind["level"] == "WARN" and "403" in behind["error_message"], behind
    assert (behind["invocations"], behind["invocations_in_s3"]) == (3, 2), behind
    assert not [r for r in records if r["message"] == LOST], records
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


def test_new_data_whose_put_cannot_fit_the_budget_is_said_lost_at_once(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """S3 is slow (every PUT held 0.5 s by the proxy, the checkpoint's too), and new
    code ran after the confirmed checkpoint: the shutdown's PUT of the grown file
    needs at least what the checkpoint's took (a larger body), more than its 350 ms
    of work.  Sent, it could only run into the deadline (as the ~80 MB file at
    8,000 modules with branches did: bench/README.md, "Exit after growth"), so it
    is not sent, and the loss record comes at once, saying why and what S3 holds
    (before: the PUT went out and the record came at the deadline)."""
    function = through_proxy(
        start_function,
        proxy,
        checkpoint_seconds=2,  # (the third invocation, ~0.6 s after the checkpoint, asks none)
        COVERAGE_BRANCH="true",  # (as at 8,000 modules; growth is then measured in arcs)
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="shutdown-upload",
    )
    release(pauses, "shutdown-upload")  # (marked only: never held)
    assert function.invoke({"n": 1}).status == 200
    time.sleep(2.1)  # the checkpoint interval (whole seconds) passes
    proxy.set("PUT", "delay", 0.5)  # every PUT from now on
    assert function.invoke({"n": 5}).status == 200  # then a checkpoint
    wait_logged(function, "coverage uploaded", reason="checkpoint")
    assert function.invoke({"action": "status"}).status == 200  # code that never ran before
    assert function.terminate() == 0
    records = function.json_logs()
    # (Whether before its snapshot, from the counts, or after it: on the C tracer the
    # counts see the growth at once; on sysmon the recorder's events are replayed first.)
    assert not (pauses / "shutdown-upload.reached").exists()
    assert len(proxy.requests("PUT")) == 1  # the checkpoint's
    [lost] = [r for r in records if r["message"] == LOST]
    assert "would not fit the shutdown budget" in lost["error_message"], lost
    assert lost["elapsed_ms"] < DEFAULT_SHUTDOWN_BUDGET_MS - 100, lost  # not at the deadline
    assert 0 < lost["recorded_lines_in_s3"] < lost["recorded_lines"], lost
    # What S3 holds, in the unit the record names (lines, not the size growth is
    # measured in: entries with labels, arcs with branches).
    head = s3.head_object(Bucket=bucket, Key=download_key(s3, bucket))
    assert lost["recorded_lines_in_s3"] == int(head["Metadata"][layout.RECORDED_LINES]), lost
    assert lost["invocations_since_last_upload"] == 1, lost
    assert line_of(USES_API, "marker: sum") in object_lines(s3, bucket, tmp_path, USES_API)


def test_growth_that_no_upload_can_ship_in_time_is_said_lost_before_any_replay_or_write(
    start_function, proxy, s3, bucket, tmp_path, pauses
):
    """S3 is slow (every PUT held 0.5 s), a flush's upload is confirmed, then new
    code runs and a checkpoint takes its snapshot (the counts hold the growth)
    but is held before its PUT when SIGTERM comes.  No PUT of the data file,
    at least as large as the confirmed one, can end within the shutdown's 350 ms:
    the loss record comes at once, without the shutdown's replay, write and
    read of the file first (at 8,000 modules with branches an environment that
    had fallen behind spent the whole window on them and ran into the deadline)."""
    function = through_proxy(
        start_function,
        proxy,
        checkpoint_seconds=1,
        COVERAGE_TEST_PAUSE_DIR=str(pauses),
        COVERAGE_TEST_PAUSE_AT="checkpoint-upload,shutdown-snapshot",
    )
    release(pauses, "shutdown-snapshot")  # (marked only: never held)
    proxy.set("PUT", "delay", 0.5)  # every PUT
    assert function.invoke({"action": "flush"}).status == 200  # confirmed, in 0.5 s
    assert [r["reason"] for r in uploads(function)] == ["flush"]
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    assert function.invoke({"n": 5}).status == 200  # new code, then a checkpoint
    wait_reached(pauses, "checkpoint-upload")  # its snapshot taken, its PUT not begun
    function.signal_shutdown()
    assert function.wait(timeout=10) == 0
    release(pauses, "checkpoint-upload")
    records = function.json_logs()
    assert not (pauses / "shutdown-snapshot.reached").exists()
    assert len(proxy.requests("PUT")) == 1  # the flush's
    [lost] = [r for r in records if r["message"] == LOST]
    assert "would not fit the shutdown budget" in lost["error_message"], lost
    assert lost["elapsed_ms"] < DEFAULT_SHUTDOWN_BUDGET_MS - 100, lost  # not at the deadline
    assert lost["invocations_since_last_upload"] == 1, lost
    assert line_of(USES_API, "marker: sum") not in object_lines(s3, bucket, tmp_path, USES_API)


def test_a_put_that_an_invocation_overlapped_is_no_measure_of_what_a_put_takes(
    start_function, proxy, s3, bucket, tmp_path
):
    """A checkpoint's PUT that an invocation overlapped may have spanned a freeze
    (Lambda freezes after /next, and the clock runs on), so its seconds say nothing
    of S3's rate: here it is held 0.5 s by the proxy while an invocation runs, then
    S3 is quick again.  The shutdown must not give the new data up from that
    sample (before: "would not fit the shutdown budget" at once, nothing sent); it
    sends it, and it arrives."""
    function = through_proxy(start_function, proxy, checkpoint_seconds=1)
    assert function.invoke({"n": 1}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    proxy.set("PUT", "stall")
    assert function.invoke({"n": 5}).status == 200  # then a checkpoint
    proxy.wait_for("PUT")  # its PUT on the wire, held
    assert function.invoke({"action": "status"}).status == 200  # beside it: new code
    time.sleep(0.5)  # (how long the PUT is held: what the sample would say)
    proxy.clear()
    proxy.release()
    wait_logged(function, "coverage uploaded", reason="checkpoint")
    assert function.terminate() == 0
    records = function.json_logs()
    assert not [r for r in records if r["message"] == LOST], records
    assert [r["reason"] for r in uploads(function)] == ["checkpoint", "SIGTERM"], records
    assert line_of(USES_API, "marker: status") in object_lines(s3, bucket, tmp_path, USES_API)


def test_a_refused_first_attempt_is_no_measure_of_what_a_put_takes(
    start_function, proxy, s3, bucket, tmp_path
):
    """A checkpoint's PUT whose first attempt S3 holds 0.5 s and then refuses (503);
    the client retries after its pause, answered at once: the upload took over
    0.5 s, a PUT of its size a few ms.  The shutdown's estimate of its PUT goes by
    the attempt that succeeded, so it sends the new data, and it arrives (before:
    the refused attempt and the pause counted as S3's rate, past the shutdown's
    350 ms of work: "would not fit the shutdown budget" at once, nothing sent)."""
    # (3 s: no checkpoint is due again before the shutdown, after up to 1.5 s of PUT.)
    function = through_proxy(start_function, proxy, checkpoint_seconds=3)
    assert function.invoke({"n": 1}).status == 200
    time.sleep(3.1)  # the checkpoint interval (whole seconds) passes
    proxy.set("PUT", "stall_503", times=1)
    assert function.invoke({"n": 5}).status == 200  # then a checkpoint
    proxy.wait_for("PUT")  # its first attempt, held
    time.sleep(0.5)  # (how long it is held: what the whole upload's seconds would say)
    proxy.release()  # refused: retried after the client's pause
    wait_logged(function, "coverage uploaded", reason="checkpoint")
    [checkpoint] = uploads(function)
    assert checkpoint["upload_ms"] >= 500, checkpoint
    # The record says it took a retry, and what the first attempt came to.
    assert checkpoint["attempts"] == 2, checkpoint
    assert checkpoint["retried_after"].startswith("HTTP 503 SlowDown"), checkpoint
    assert function.invoke({"action": "status"}).status == 200  # new code
    assert function.terminate() == 0
    records = function.json_logs()
    assert not [r for r in records if r["message"] == LOST], records
    assert [r["reason"] for r in uploads(function)] == ["checkpoint", "SIGTERM"], records
    assert "attempts" not in uploads(function)[1], "the shutdown's PUT was answered at once"
    assert [seen.action for seen in proxy.requests("PUT")] == ["stall_503", "pass", "pass"]
    assert line_of(USES_API, "marker: status") in object_lines(s3, bucket, tmp_path, USES_API)


def test_a_refused_put_whose_retry_the_deadline_cuts_is_said_refused_in_the_loss_record(
    start_function, proxy
):
    """New data at shutdown; S3 refuses its PUT (500) and holds the retry.  The
    client's pause (up to 1 s) fits in the 350 ms of work or finds no time left;
    either way the deadline ends the upload, and the loss record says both: the
    upload did not finish before the deadline, and S3 refused it (before: the
    deadline only, or, with no time for the retry, the refusal only, as if no
    retry were left).  (The shutdown's own deadline is the upload's: whichever
    of their errors the record reads names the refusal.)"""
    function = through_proxy(start_function, proxy, checkpoint_seconds=60)
    assert function.invoke({"n": 3}).status == 200
    proxy.set("PUT", "status", 500, times=1, then=Fault("stall"))
    assert function.terminate() == 0
    records = function.json_logs()
    assert not uploads(function), records
    [lost] = [r for r in records if r["message"] == LOST]
    message = lost["error_message"]
    assert "did not finish before the deadline" in message, lost
    assert "S3 refused s3://" in message and "HTTP 500 InternalError" in message, lost
    assert proxy.requests("PUT")[0].action == "status"


def test_a_snapshot_from_before_a_reset_confirmed_after_it_never_holds_back_what_follows(
    start_function, proxy, s3, bucket, tmp_path
):
    """A checkpoint's PUT is on the wire (held) when the handler calls reset(), and
    is confirmed after it: its size is of data the reset dropped, so it must not
    stand for what S3 holds of the new epoch.  The next checkpoint ships what ran
    after the reset, and S3 then holds the new epoch's data, not the dropped
    (before: the checkpoint saw nothing "new" until the new data outgrew the
    dropped, and S3 kept the data the reset dropped)."""
    function = through_proxy(start_function, proxy, checkpoint_seconds=1)
    assert function.invoke({"n": 1}).status == 200
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    proxy.set("PUT", "stall", times=1)
    assert function.invoke({"action": "status"}).status == 200  # then a checkpoint, held
    proxy.wait_for("PUT")
    assert function.invoke({"action": "reset"}).body == {"reset": True}
    proxy.release()
    wait_logged(function, "coverage uploaded", reason="checkpoint")  # from before the reset
    time.sleep(1.1)  # the checkpoint interval passes
    assert function.invoke({"n": 2}).status == 200  # after the reset, then a checkpoint
    deadline = time.monotonic() + 10
    while len([r for r in uploads(function) if r["reason"] == "checkpoint"]) < 2:
        assert time.monotonic() < deadline, "what ran after the reset was never shipped"
        time.sleep(0.02)
    head = s3.head_object(Bucket=bucket, Key=download_key(s3, bucket))
    assert layout.epoch(head["Metadata"]) == 1, head["Metadata"]
    lines = object_lines(s3, bucket, tmp_path, USES_API)
    assert line_of(USES_API, "marker: sum") in lines
    assert line_of(USES_API, "marker: status") not in lines  # dropped by the reset
    assert function.terminate() == 0
