"""The delta object (`layout.DELTA_SUFFIX`) against S3's reorderings, through the real
RIE, with faults from the loopback proxy: an older base's PUT landing after the base
a delta extends must never leave S3 holding less than everything measured."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coverage_runtime import layout
from coverage_runtime.shim import session
from tests import synthetic_function
from tests.harness import download_objects, executed_lines
from tests.s3_proxy import fault_proxy

pytestmark = [pytest.mark.rie, pytest.mark.slow]

# With branches, a base of ~370 kB: past `DELTA_MIN_BASE_BYTES`, so a delta extends it.
MODULES = 200
# The base a delta extends is replaced by a whole one when an older base landed after it.
WHOLE_BASE = "an older base landed after the one the delta extends: uploading a whole base"
LOST = "coverage upload at shutdown failed: data of this environment since the last upload is lost"
# A handler that flushes on request (the API, from the handler's thread).
FLUSHING = '''"""The synthetic function, with coverage_runtime.flush() on request."""

import coverage_runtime

from handler import handler as measured


def handler(event, context):
    if event.get("action") == "flush":
        return {"flushed": coverage_runtime.flush()}
    return measured(event, context)
'''


@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    root = synthetic_function.write(tmp_path_factory.mktemp("delta-reliability"), MODULES)
    (root / "flushing.py").write_text(FLUSHING)
    return root


@pytest.fixture
def proxy(s3_server):
    with fault_proxy(int(s3_server.endpoint_url.rsplit(":", 1)[1])) as running:
        yield running


def uploads(function) -> list[dict]:
    return [r for r in function.json_logs() if r["message"] == "coverage uploaded"]


def wait_logged(function, message: str, count: int = 1, timeout: float = 30, **fields) -> None:
    deadline = time.monotonic() + timeout
    while (
        len(
            [
                r
                for r in function.json_logs()
                if r["message"] == message and all(r.get(k) == v for k, v in fields.items())
            ]
        )
        < count
    ):
        assert time.monotonic() < deadline, f"{message!r} {fields} never logged"
        time.sleep(0.01)


def base_key(s3, bucket: str) -> str:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    [key] = [k for k in keys if k.endswith(layout.DATA_SUFFIX)]
    return key


def stored_generation(s3, bucket: str, key: str) -> int:
    return int(s3.head_object(Bucket=bucket, Key=key)["Metadata"][layout.GENERATION])


def wait_stored(s3, bucket: str, generation: int, timeout: float = 30) -> None:
    """Until the base object in S3 is snapshot ``generation``."""
    deadline = time.monotonic() + timeout
    while stored_generation(s3, bucket, base_key(s3, bucket)) != generation:
        assert time.monotonic() < deadline, f"generation {generation} never stored"
        time.sleep(0.02)


def module_lines(data_file: Path, root: Path, k: int) -> int:
    return len(executed_lines(data_file, root / "synthetic" / f"m{k:05d}.py"))


def union(s3, bucket: str, tmp_path: Path) -> Path:
    """The environment's data as a reader joins it (base and delta, same epoch)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    objects = download_objects(s3, bucket, tmp_path)
    [path] = objects.values()
    return path


def start(start_function, task_root: Path, proxy, handler: str = "handler.handler", **env: str):
    return start_function(
        handler,
        task_root=task_root,
        COVERAGE_BRANCH="true",
        COVERAGE_FLUSH_INTERVAL_SECONDS="2",
        COVERAGE_S3_ENDPOINT_URL=proxy.endpoint_url,
        # Room for the test to act while the shutdown is held at the proxy.
        **{"COVERAGE_SHUTDOWN_BUDGET_MS": "2000", **env},
    )


def checkpoint_after(function, k: int, count: int) -> None:
    """Invoke ``k`` once the checkpoint interval (whole seconds) has passed, then
    wait for the ``count``-th checkpoint's upload."""
    time.sleep(2.1)
    assert function.invoke({"k": k}).status == 200
    wait_logged(function, "coverage uploaded", count=count, reason="checkpoint")


def start_put_rule(start_function, task_root: Path, proxy):
    """A function whose re-bases only `DELTA_PUT_SHARE` decides (the share alone
    never re-bases), against a 400 ms shutdown budget."""
    return start(
        start_function,
        task_root,
        proxy,
        COVERAGE_BENCH_DELTA_SHARE="50",
        COVERAGE_SHUTDOWN_BUDGET_MS="400",
    )


def shipped_sizes(function) -> list[tuple[bool | None, int, float]]:
    """Each upload: a delta's?, its bytes, its ms."""
    return [(u.get("delta"), u["bytes"], u["upload_ms"]) for u in uploads(function)]


def older_base_landed_after_the_newer(start_function, task_root, proxy, s3, bucket):
    """A checkpoint's base A whose first attempt the proxy holds: its client gives
    up on it (read timeout) and its retries are refused (500), so the checkpoint
    fails; new code runs (modules 3, 13, ... in full) and the next checkpoint's
    base B, past `DELTA_MIN_BASE_BYTES`, is confirmed; then the held attempt of A
    reaches S3, after B, as S3 may still complete a request whose client gave up.
    Returns the function and A's generation (S3 holds it)."""
    function = start(start_function, task_root, proxy)
    assert function.invoke({"k": 0}).status == 200
    time.sleep(2.1)  # the checkpoint interval (whole seconds) passes
    proxy.set("PUT", "stall", times=1)
    assert function.invoke({"k": 0}).status == 200  # then a checkpoint: base A
    [held] = proxy.wait_for("PUT")
    proxy.set("PUT", "status", 500, times=2)  # its retries, after the read timeout
    wait_logged(function, "coverage checkpoint failed")
    assert not uploads(function)
    # (The failed checkpoint was over 5 s ago: the next one is due at once.)
    assert function.invoke({"k": 3}).status == 200  # new code, then a checkpoint: base B
    wait_logged(function, "coverage uploaded", reason="checkpoint")
    [newer] = uploads(function)
    assert not newer.get("delta") and newer["bytes"] > session.DELTA_MIN_BASE_BYTES, newer
    older = int(held.headers["x-amz-meta-" + layout.GENERATION])
    assert older < newer["generation"]
    proxy.release()  # A's held attempt reaches S3 now, over B
    wait_stored(s3, bucket, older)
    return function, older, newer["generation"]


def test_an_older_base_landing_after_the_base_a_shutdowns_delta_extends_is_replaced(
    start_function, task_root, proxy, s3, bucket, tmp_path
):
    """S3 holds base A, older than the confirmed base B, when the shutdown sends its
    delta (what ran since B): A and that delta lack what B added (modules 3, 13, ...
    in full).  The shutdown reads the base's generation back, finds A, and sends a
    whole base; S3 then holds everything (before `_make_sure_base_is_stored`:
    module 3 had its first function only)."""
    function, older, newer = older_base_landed_after_the_newer(
        start_function, task_root, proxy, s3, bucket
    )
    assert function.invoke({"k": 1}).status == 200  # new code: the shutdown's delta
    assert function.terminate() == 0
    # The union of what S3 holds is everything; its base is the whole one, the newest.
    path = union(s3, bucket, tmp_path)
    ran = {k: module_lines(path, task_root, k) for k in (1, 3, 4)}
    assert ran[3] > 60 and ran[1] > 60, f"the growth of B (k=3) and of the delta (k=1): {ran}"
    assert ran[4] < ran[3] - 30, f"module 4 ran its first function only: {ran}"
    whole = uploads(function)[-1]["generation"]
    assert stored_generation(s3, bucket, base_key(s3, bucket)) == whole
    records = function.json_logs()
    shipped = [(r["reason"], r.get("delta")) for r in uploads(function)]
    assert shipped == [("checkpoint", None), ("SIGTERM", True), ("SIGTERM", None)], shipped
    [warning] = [r for r in records if r["message"] == WHOLE_BASE]
    assert (warning["stored_generation"], warning["generation"]) == (older, newer), warning
    assert not [r for r in records if r["message"] == LOST], records
    assert [r["message"] for r in records if r["level"] == "ERROR"] == [
        "coverage checkpoint failed"  # (base A's)
    ], records


def test_a_base_confirmed_beside_an_older_base_on_the_wire_is_never_extended_by_deltas(
    start_function, task_root, proxy, s3, bucket, tmp_path
):
    """A checkpoint's base A is on the wire (held by the proxy) when the handler's
    flush() sends base B, with new code (k=3) in it, and B is confirmed first; then
    A lands, over B.  The next checkpoint's delta must not extend B, which S3 no
    longer holds: its union with A would lack B's growth, and the shutdown, with
    nothing new to send, would never read the base back (before: module 3 had its
    first function only, for good).  S3's union holds everything after the
    checkpoint and after the shutdown."""
    function = start(start_function, task_root, proxy, handler="flushing.handler")
    assert function.invoke({"k": 0}).status == 200
    time.sleep(2.1)  # the checkpoint interval (whole seconds) passes
    proxy.set("PUT", "stall", times=1)
    assert function.invoke({"k": 0}).status == 200  # then a checkpoint: base A, held
    [held] = proxy.wait_for("PUT")
    assert function.invoke({"k": 3}).status == 200  # new code
    flushed = function.invoke({"action": "flush"})  # base B, confirmed while A is held
    assert flushed.status == 200 and flushed.body["flushed"], flushed.raw
    proxy.release()  # A lands now, over B
    wait_logged(function, "coverage uploaded", reason="checkpoint")
    older = int(held.headers["x-amz-meta-" + layout.GENERATION])
    wait_stored(s3, bucket, older)
    checkpoint_after(function, 1, count=2)  # new code, then a checkpoint
    path = union(s3, bucket, tmp_path / "checkpoint")
    ran = {k: module_lines(path, task_root, k) for k in (1, 3, 4)}
    assert ran[3] > 60 and ran[1] > 60, f"B's growth (k=3) and the checkpoint's (k=1): {ran}"
    assert function.terminate() == 0
    path = union(s3, bucket, tmp_path / "shutdown")
    ran = {k: module_lines(path, task_root, k) for k in (1, 3, 4)}
    assert ran[3] > 60 and ran[1] > 60, f"after the shutdown: {ran}"
    assert ran[4] < ran[3] - 30, ran
    records = function.json_logs()
    assert not [r for r in records if r["level"] == "ERROR"], records


def test_an_older_base_the_shutdown_cannot_replace_is_said_lost(
    start_function, task_root, proxy, s3, bucket, tmp_path
):
    """As in the test above, S3 holds base A, older than the base B the shutdown's
    delta extends, but S3 refuses the whole base (403): what B added over A is not
    in S3, so the shutdown writes the loss record (before: a warning that only the
    read-back had not finished, as if the delta had shipped everything)."""
    function, older, _ = older_base_landed_after_the_newer(
        start_function, task_root, proxy, s3, bucket
    )
    assert function.invoke({"k": 1}).status == 200  # new code: the shutdown's delta
    proxy.set("HEAD", "stall")
    function.signal_shutdown()
    proxy.wait_for("HEAD")  # the read-back, after the delta was confirmed
    proxy.set("PUT", "status", 403)  # the whole base, refused
    proxy.release()
    assert function.wait(timeout=15) == 0
    records = function.json_logs()
    shipped = [(r["reason"], r.get("delta")) for r in uploads(function)]
    assert shipped == [("checkpoint", None), ("SIGTERM", True)], shipped
    assert [r for r in records if r["message"] == WHOLE_BASE], records
    [lost] = [r for r in records if r["message"] == LOST]
    assert "403" in lost["error_message"] and lost["stored_base_generation"] == older, lost
    assert lost.get("recorded_lines_in_s3") is None, lost  # (unknown: an older base)
    assert not [r for r in records if "read-back" in r["message"] or "checking" in r["message"]]
    assert stored_generation(s3, bucket, base_key(s3, bucket)) == older  # (what S3 holds)


def test_an_older_base_landing_late_is_replaced_also_when_the_shutdown_has_nothing_new(
    start_function, task_root, proxy, s3, bucket, tmp_path
):
    """As above, S3 holds base A over the confirmed base B, and a checkpoint's delta
    (what ran since B) is confirmed; the shutdown has nothing new to send.  A base
    attempt went unanswered (A's, retried after its read timeout), so the shutdown
    still reads the base back, finds A, and sends a whole base (before: nothing was
    read, and S3 kept A and a delta lacking B's growth for good, said by nothing)."""
    function, older, newer = older_base_landed_after_the_newer(
        start_function, task_root, proxy, s3, bucket
    )
    checkpoint_after(function, 1, count=2)  # new code, then a checkpoint: a delta
    assert uploads(function)[-1].get("delta"), uploads(function)
    assert function.terminate() == 0
    path = union(s3, bucket, tmp_path)
    ran = {k: module_lines(path, task_root, k) for k in (1, 3, 4)}
    assert ran[3] > 60 and ran[1] > 60, f"the growth of B (k=3) and of the delta (k=1): {ran}"
    records = function.json_logs()
    [warning] = [r for r in records if r["message"] == WHOLE_BASE]
    assert (warning["stored_generation"], warning["generation"]) == (older, newer), warning
    shipped = [(r["reason"], r.get("delta")) for r in uploads(function)]
    assert shipped == [("checkpoint", None), ("checkpoint", True), ("SIGTERM", None)], shipped
    assert not [r for r in records if r["message"] == LOST], records


def test_the_shutdowns_delta_does_not_wait_for_a_base_on_the_wire(
    start_function, task_root, proxy, s3, bucket, tmp_path
):
    """A checkpoint's base B is on the wire (held by the proxy) when SIGTERM comes,
    and code ran since.  The shutdown's delta extends the confirmed base A: B is
    another object, and whether it lands before or after the delta, S3's union
    holds everything (B holds A).  So the shutdown sends the delta at once and
    reads back only the delta's generation (an older delta was attempted).
    Before: it waited half its window for B ("uploading alongside it"), then,
    for the read-back, for B again until the deadline ("checking that no older
    snapshot landed after it did not finish"): at 8,000 modules with branches
    an 81 MB base on the wire made that exit 351 ms, against 300."""
    # A delta file past 0.05 of the base's makes the checkpoint after the first delta
    # a base (the first delta: ~200 kB against a ~370 kB base).
    function = start(start_function, task_root, proxy, COVERAGE_BENCH_DELTA_SHARE="0.05")
    assert function.invoke({"k": 0}).status == 200
    for count, k in enumerate((0, 3), start=1):  # base A, then a delta
        checkpoint_after(function, k, count)
    assert [u.get("delta") for u in uploads(function)] == [None, True], uploads(function)
    time.sleep(2.1)
    proxy.set("PUT", "stall", times=1)
    assert function.invoke({"k": 1}).status == 200  # new code, then a checkpoint: base B
    held = proxy.wait_for("PUT", count=3)[-1]
    assert held.path.endswith(layout.DATA_SUFFIX), held.path
    assert function.invoke({"k": 2}).status == 200  # new code: the shutdown's delta
    assert function.terminate() == 0  # (B still held)
    records = function.json_logs()
    shipped = [(r["reason"], r.get("delta")) for r in uploads(function)]
    assert shipped == [("checkpoint", None), ("checkpoint", True), ("SIGTERM", True)], shipped
    assert not [r for r in records if "alongside" in r["message"]], records
    assert not [r for r in records if r["level"] in ("WARN", "ERROR")], records
    for moment in ("before B", "after B"):
        if moment == "after B":
            proxy.release()  # B lands now, after the delta that extends A
            wait_stored(s3, bucket, int(held.headers["x-amz-meta-" + layout.GENERATION]))
        path = union(s3, bucket, tmp_path / moment.replace(" ", "-"))
        ran = {k: module_lines(path, task_root, k) for k in (1, 2, 3, 4)}
        assert min(ran[1], ran[2], ran[3]) > 60, f"{moment}: {ran}"
        assert ran[4] < ran[3] - 30, f"{moment}: module 4 ran its first function only: {ran}"


def test_a_delta_whose_put_would_outgrow_the_shutdown_makes_a_new_base(
    start_function, task_root, proxy, s3, bucket, tmp_path
):
    """A checkpoint sends a new base once the delta's PUT, at the rate the base went
    at, would take more than `DELTA_PUT_SHARE` of the shutdown budget, whatever its
    share of the base: here base A's PUT is slow (the proxy delays it 400 ms) and
    the share alone would never re-base (`COVERAGE_BENCH_DELTA_SHARE=50`).  The first
    delta (~200 kB) would go in ~210 ms at A's rate, past 100 ms of the 400 ms
    budget: the next checkpoint is a base (before: another delta, and so on until
    the shutdown's delta could not be sent in its window)."""
    function = start_put_rule(start_function, task_root, proxy)
    assert function.invoke({"k": 0}).status == 200
    proxy.set("PUT", "delay", 0.4, times=1)
    for count, k in enumerate((0, 3, 1), start=1):  # base A (slow), a delta, then?
        checkpoint_after(function, k, count)
    shipped = shipped_sizes(function)
    (_, base, base_ms), (_, delta, _), _ = shipped
    assert base_ms >= 400 and delta * base_ms / base > 0.25 * 400, shipped
    assert [kind for kind, _, _ in shipped] == [None, True, None], shipped
    assert function.terminate() == 0
    path = union(s3, bucket, tmp_path)
    ran = {k: module_lines(path, task_root, k) for k in (1, 3, 4)}
    assert ran[1] > 60 and ran[3] > 60 and ran[4] < ran[3] - 30, ran


def test_a_base_put_an_invocation_overlapped_is_no_measure_of_a_deltas_put(
    start_function, task_root, proxy, s3, bucket, tmp_path
):
    """Base A's PUT is held 0.5 s by the proxy while an invocation runs beside it:
    in Lambda such a PUT may have spanned a freeze (Lambda freezes after /next and
    the clock runs on), so its seconds say nothing of S3's rate, as for the
    shutdown's estimate (`_put_rate`).  The delta that follows (~200 kB) would take
    ~270 ms at A's "rate", past `DELTA_PUT_SHARE` of the 400 ms budget, though it
    went in a few ms: the next checkpoint is still a delta (before: a whole base,
    and in a frozen environment, where most checkpoints' PUTs span a freeze, a
    whole base at nearly every checkpoint)."""
    function = start_put_rule(start_function, task_root, proxy)
    assert function.invoke({"k": 0}).status == 200
    time.sleep(2.1)  # the checkpoint interval (whole seconds) passes
    proxy.set("PUT", "stall", times=1)
    assert function.invoke({"k": 0}).status == 200  # then a checkpoint: base A, held
    proxy.wait_for("PUT")
    assert function.invoke({"k": 0}).status == 200  # beside it (nothing new)
    time.sleep(0.5)  # (how long the PUT is held: what its seconds would say)
    proxy.release()
    wait_logged(function, "coverage uploaded", count=1, reason="checkpoint")
    for count, k in enumerate((3, 1), start=2):  # a delta, then?
        checkpoint_after(function, k, count)
    shipped = shipped_sizes(function)
    (_, base, base_ms), (_, delta, _), _ = shipped
    assert base_ms >= 500 and delta * base_ms / base > 0.25 * 400, shipped
    assert [kind for kind, _, _ in shipped] == [None, True, True], shipped
    assert function.terminate() == 0
    path = union(s3, bucket, tmp_path)
    ran = {k: module_lines(path, task_root, k) for k in (1, 3)}
    assert ran[1] > 60 and ran[3] > 60, ran
