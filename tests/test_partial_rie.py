"""An early SIGTERM whose replay of the recorded init cannot finish in the window
ships an exact subset, through the real RIE and local S3 (issue 18): the
object holds, for each file it holds, exactly what the whole replay holds for
it under each label, its metadata says it is partial, and one loss record names
how many files and events were left out.  The replay is made slow per file by
``COVERAGE_TEST_REPLAY_DELAY_MS`` (tests only), so that a function CI affords
outgrows the window as a large one does; the large sizes: bench/sizes.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from coverage_runtime import layout
from tests import synthetic_function
from tests.harness import (
    REPO_ROOT,
    client_context,
    line_of,
    runtime_records,
    shut_down_and_download,
)
from tests.test_recorder_rie import sysmon_python  # noqa: F401
from tests.test_reliability_rie import pauses, release, wait_reached  # noqa: F401

pytestmark = [pytest.mark.rie, pytest.mark.slow]

# Few enough events that the shipping thread leaves the stream to the shutdown
# (below `measurement.HAND_OVER_AT_EVENTS`), enough files to leave some out.
MODULES = 30
DELAY_MS = "40"  # per file first seen at shutdown: 30 files, 1.2 s against 550 ms


@pytest.fixture(scope="module")
def task_root(tmp_path_factory) -> Path:
    return synthetic_function.write(tmp_path_factory.mktemp("synthetic"), MODULES)


def first_response(
    start_function, python, task_root, base: dict[str, str] | None = None, **env: str
) -> Any:
    """The synthetic function under the RIE (a 550 ms shutdown budget), after its
    first response (``base``: its environment instead of the tests' own)."""
    function = start_function(
        "handler.handler",
        task_root=task_root,
        env=base,
        command=[python, "-m", "coverage_runtime", "handler.handler"],
        PYTHONPATH=str(REPO_ROOT),
        COVERAGE_SHUTDOWN_BUDGET_MS="550",
        **env,
    )
    assert function.invoke({"k": 1}).status == 200
    return function


def early_sigterm(
    start_function, python, task_root, s3, bucket, tmp_path, *, keep: bool = False, **env: str
) -> Any:
    """SIGTERM right after the first response; the object's data, metadata and the
    runtime's log records."""
    function = first_response(start_function, python, task_root, **env)
    key, path, logs = shut_down_and_download(function, s3, bucket, tmp_path)
    s3_object = s3.head_object(Bucket=bucket, Key=key)
    if not keep:
        s3.delete_object(Bucket=bucket, Key=key)  # (the next run's object alone in the bucket)
    metadata = s3_object["Metadata"]
    from coverage import CoverageData

    data = CoverageData(basename=str(path))
    data.read()
    by_file = {}
    for name in data.measured_files():
        contexts = {}
        for context in sorted(data.measured_contexts()):
            data.set_query_contexts([f"^{context}$"])
            contexts[context] = sorted(data.lines(name) or ())
        data.set_query_contexts(None)
        by_file[name] = contexts
    return by_file, metadata, runtime_records(logs)


def test_an_early_sigterm_that_cannot_replay_everything_ships_whole_files_exactly(
    start_function,
    task_root,
    s3_server,
    s3,
    bucket,
    tmp_path,
    report_credentials,
    sysmon_python,  # noqa: F811
):
    run = (start_function, sysmon_python, task_root, s3, bucket)
    for name in ("whole", "partial"):
        (tmp_path / name).mkdir()
    whole, whole_metadata, whole_records = early_sigterm(*run, tmp_path / "whole")
    assert layout.PARTIAL not in whole_metadata
    assert len(whole) > MODULES  # (the handler module and the package too)
    assert not [r for r in whole_records if r.get("partial")], whole_records

    held, metadata, records = early_sigterm(
        *run, tmp_path / "partial", keep=True, COVERAGE_TEST_REPLAY_DELAY_MS=DELAY_MS
    )
    assert 0 < len(held) < len(whole), sorted(held)
    for name, contexts in held.items():
        assert contexts == whole[name], name  # each label's lines, as the whole replay's
    assert metadata[layout.PARTIAL] == "true"
    left = len(whole) - len(held)
    assert metadata[layout.FILES_NOT_REPLAYED] == str(left)
    losses = [r for r in records if r["level"] == "ERROR"]
    assert len(losses) == 1, records
    loss = losses[0]
    assert loss["message"].startswith("coverage uploaded partially at shutdown"), loss
    assert loss["partial"] is True and loss["files_not_replayed"] == left, loss
    assert loss["events_not_replayed"] > 0 and loss["events_replayed"] > 0, loss
    assert loss["elapsed_ms"] < 550, loss

    # The report CLI says that an environment's object is partial.
    import io

    from coverage_runtime.report.cli import main

    where = ["--bucket", bucket, "--endpoint-url", s3_server.endpoint_url]
    out, err = io.StringIO(), io.StringIO()
    assert main(["list", *where], out=out, err=err) == 0, err.getvalue()
    assert "partial: 1 objects hold only the source files" in out.getvalue(), out.getvalue()
    out, err = io.StringIO(), io.StringIO()
    report = ["-o", str(tmp_path / "report"), "--cache-dir", str(tmp_path / "cache")]
    report += ["--source-root", str(task_root), "--no-progress"]
    assert main(["report", *where, *report], out=out, err=err) == 0, err.getvalue()
    assert "1 environment(s) uploaded partially at shutdown" in err.getvalue(), err.getvalue()


def test_an_early_sigterm_that_replays_no_file_in_time_says_everything_is_lost(
    start_function,
    task_root,
    s3,
    bucket,
    sysmon_python,  # noqa: F811
):
    """The first file's replay (made slow: 350 ms of a 550 ms budget) outlasts the
    replay's share of the window, so no file is replayed and S3 gets nothing; the
    record must say that this environment's data is lost, not that nothing was
    measured nor that it was uploaded.  (Found on a real Django function at
    ``--cpus=0.15``, lines: 2 of 3 early SIGTERMs; before the fix it said "nothing
    was measured" and "coverage uploaded partially" with no object in S3.)"""
    function = first_response(
        start_function, sysmon_python, task_root, COVERAGE_TEST_REPLAY_DELAY_MS="350"
    )
    function.signal_shutdown()
    assert function.wait(timeout=15) == 0
    every = runtime_records(function.logs())
    records = [r for r in every if r.get("reason") == "SIGTERM"]
    assert not s3.list_objects_v2(Bucket=bucket).get("Contents"), records
    replayed = [r for r in every if r.get("at_shutdown") and r.get("partial")]
    assert replayed and replayed[0]["files_replayed"] == 0, every  # (the case this is)
    messages = [r["message"] for r in records]
    assert "nothing was measured" not in messages, records
    losses = [r for r in records if r["level"] == "ERROR"]
    assert len(losses) == 1, records
    assert not losses[0]["message"].startswith("coverage uploaded"), losses[0]


def test_a_partial_replay_with_no_bucket_is_never_said_uploaded(
    start_function,
    function_env,
    task_root,
    sysmon_python,  # noqa: F811
):
    """Without ``COVERAGE_S3_BUCKET`` the shutdown still replays what fits (the
    data file is kept), and its one record says that nothing is uploaded, not
    that it "uploaded partially" (before: both, one after the other)."""
    base = {k: v for k, v in function_env.items() if k != "COVERAGE_S3_BUCKET"}
    function = first_response(
        start_function, sysmon_python, task_root, base, COVERAGE_TEST_REPLAY_DELAY_MS=DELAY_MS
    )
    function.signal_shutdown()
    assert function.wait(timeout=15) == 0
    every = runtime_records(function.logs())
    replayed = [r for r in every if r.get("at_shutdown") and r.get("partial")]
    assert replayed and replayed[0]["files_replayed"] > 0, every  # (the case this is)
    assert replayed[0]["files_not_replayed"] > 0, every
    records = [r for r in every if r.get("reason") == "SIGTERM"]
    errors = [r["message"] for r in records if r["level"] == "ERROR"]
    assert errors == ["coverage not uploaded at shutdown"], records


# A function that flushes in every invocation, then runs the plugin its event names
# (imported on first use), under the caller's label (ClientContext).
FLUSHING = {
    "handler.py": '''"""Flushes in every invocation, then runs the plugin the event names."""

import importlib

import coverage_runtime


@coverage_runtime.coverage_handler
def handler(event, context):
    if event.get("grow"):
        event["grown"] = True  # marker: grow
    coverage_runtime.flush()  # marker: flush
    plugin = importlib.import_module(event["plugin"])  # marker: after
    return {"plugin": plugin.run()}  # marker: return
''',
    "early.py": 'def run():\n    return "early"\n',
    "late.py": 'def run():\n    return "late"\n',
}
BUDGET_MS = 550  # (the RIE's SIGKILL comes ~600 ms after its SIGTERM)
# The late plugin's replay, the one new file at shutdown, outlasts the replay's end
# (`partial_replay.Budget.stop_at`: the record's margin and `RESERVE_SECONDS` before
# the end of the budget, less the write's share of the replay: from
# (1 + share) x replay >= 550 - 50 - 40 ms on, 318 ms with lines, 368 ms with
# branches), and leaves the rest of the shutdown ~150 / ~100 ms before its deadline
# (it took ~6 ms).  By branch:
LATE_DELAY_MS = {False: "350", True: "400"}
FLUSHING_ENV = {
    "COVERAGE_LABELS": "client-context",
    "COVERAGE_FLUSH_INTERVAL_SECONDS": "0",  # no checkpoint: the flushes alone
    "COVERAGE_SHUTDOWN_BUDGET_MS": str(BUDGET_MS),
    "COVERAGE_TEST_PAUSE_AT": "prearm,shutdown-snapshot",
}


def write_flushing(root: Path) -> Path:
    root.mkdir()
    for name, text in FLUSHING.items():
        (root / name).write_text(text)
    return root


class Flushed(NamedTuple):
    """The environment's object as the last flush left it."""

    key: str
    body: bytes
    etag: str


def flush_then_run(
    invoke: Callable[..., None], directory: Path, s3: Any, bucket: str, plugin: str
) -> Flushed:
    """Three invocations of `FLUSHING` (``invoke(label, **event)``): under label A,
    then B (the pre-arm after it re-arms what ran: pause point ``prearm`` in
    ``directory``, so that it runs before the third invocation, whose measured code
    waits for the measurement lock it holds), then B again: a new line before the
    flush (the flush ships it), after it lines B's run already holds, then
    ``plugin``'s (``early``: re-armed code B's run holds too; ``late``: a new file).
    The shutdown's snapshot, if it takes one, only marks pause point
    ``shutdown-snapshot``."""
    release(directory, "shutdown-snapshot")  # (marked only: never held)
    invoke("A", plugin="early")
    invoke("B", plugin="early")
    wait_reached(directory, "prearm")  # (after the response: the switch from A is readied)
    release(directory, "prearm")
    invoke("B", plugin=plugin, grow=True)
    [key] = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    flushed = s3.get_object(Bucket=bucket, Key=key)
    return Flushed(key, flushed["Body"].read(), flushed["ETag"])


def check_nothing_new_sent(
    logs: str,
    directory: Path,
    flushed: Flushed,
    s3: Any,
    bucket: str,
    sources: Path,
    measured: str,
    tmp_path: Path,
    *,
    branch: bool,
    partial: bool,
) -> None:
    """After `flush_then_run` and SIGTERM: the shutdown found nothing new from its
    counts (no snapshot: the data file neither written nor read) and sent nothing,
    and S3 holds exactly the last flush's object (``sources``: `FLUSHING` here,
    ``measured``: the directory the runtime saw).  ``partial``: its replay left the
    late plugin out, and the one record says so; else there is no record of a loss."""
    assert "did not exit after deadline" not in logs, "SIGKILLed: " + logs[-3000:]
    every = runtime_records(logs)
    shipped = [r["reason"] for r in every if r["message"] == "coverage uploaded"]
    assert shipped == ["flush", "flush", "flush"], every
    records = [r for r in every if r.get("reason") == "SIGTERM"]
    assert "coverage unchanged since last upload" in [r["message"] for r in records], records
    assert not (directory / "shutdown-snapshot.reached").exists(), records
    errors = [r for r in every if r["level"] in ("ERROR", "WARN")]
    assert len(errors) == int(partial), every
    if partial:
        check_partial_unsent_record(errors[0], flushed)

    # S3 holds exactly the last flush's object: nothing of the shutdown's.
    [stored] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert (stored["Key"], stored["ETag"]) == (flushed.key, flushed.etag)
    assert s3.get_object(Bucket=bucket, Key=flushed.key)["Body"].read() == flushed.body
    held = tmp_path / "held.coverage"
    held.write_bytes(flushed.body)
    from coverage import CoverageData

    data = CoverageData(basename=str(held))
    data.read()
    assert data.has_arcs() is branch
    assert f"{measured}/early.py" in data.measured_files()
    assert f"{measured}/late.py" not in data.measured_files()
    by_line = data.contexts_by_lineno(f"{measured}/handler.py")
    handler = sources / "handler.py"
    assert by_line[line_of(handler, "marker: grow")] == ["B"], by_line
    for marker in ("flush", "after", "return"):
        assert sorted(by_line[line_of(handler, f"marker: {marker}")]) == ["A", "B"], marker


def check_partial_unsent_record(record: dict[str, Any], flushed: Flushed) -> None:
    """`CoverageSession.PARTIAL_UNSENT`'s record: the handler's file (its lines after
    the flush) replayed, the late plugin left out, nothing sent."""
    assert record["level"] == "ERROR" and record["message"].startswith(
        "coverage replayed partially at shutdown, nothing new to upload"
    ), record
    assert record["reason"] == "SIGTERM" and record["partial"] is True, record
    assert (record["files_replayed"], record["files_not_replayed"]) == (1, 1), record
    assert record["events_replayed"] > 0 and record["events_not_replayed"] > 0, record
    assert record["shipped_bytes"] == 0 and "recorded_lines" not in record, record  # (None)
    assert record["s3_uri"].endswith(flushed.key), record
    assert record["last_upload"]["reason"] == "flush", record
    assert record["last_upload"]["etag"] == flushed.etag.strip('"'), record
    assert record["elapsed_ms"] < BUDGET_MS, record


def start_flushing(
    start_function: Callable[..., Any], python: str, tmp_path: Path, directory: Path, **env: str
) -> tuple[Any, Path, Callable[..., None]]:
    """`FLUSHING` under the RIE on ``python`` (pause points in ``directory``): the
    function, its task root, and ``invoke(label, **event)``."""
    root = write_flushing(tmp_path / "task")
    function = start_function(
        "handler.handler",
        task_root=root,
        command=[python, "-m", "coverage_runtime", "handler.handler"],
        PYTHONPATH=str(REPO_ROOT),
        COVERAGE_TEST_PAUSE_DIR=str(directory),
        **FLUSHING_ENV,
        **env,
    )

    def invoke(label: str, **event: object) -> None:
        done = function.invoke(event, headers=client_context({"coverage-label": label}))
        assert done.status == 200 and done.body["plugin"], (done.body, function.logs()[-3000:])

    return function, root, invoke


@pytest.mark.parametrize("plugin", ["late", "early"], ids=["partial", "whole"])
def test_a_replay_with_nothing_new_sends_nothing(
    start_function,
    sysmon_python,  # noqa: F811
    s3,
    bucket,
    tmp_path,
    pauses,  # noqa: F811
    plugin,
):
    """Labels (the default): what the recorder holds at SIGTERM is re-armed code
    re-running lines the last flush shipped, under the same label, and (``late``) a
    new file whose replay is made slow (``COVERAGE_TEST_REPLAY_DELAY_MS``).  Nothing
    new to send, so no snapshot (the data file neither written nor read: at 8,000
    modules with branches ~60 MB), nothing sent, and S3 keeps exactly the last
    flush's object.  With the new file left out, the one record says so
    (`CoverageSession.PARTIAL_UNSENT`, not "uploaded partially"); without it, no
    record of a loss, as when nothing ran at all (`test_reliability_rie`: the C
    tracer).  Before, the events the replay had taken still counted as waiting, and
    the shutdown wrote and read the data file to find nothing new.

    How it comes about: labels (the init recorder stays the receiver, drained when
    data is needed), and a ``flush()`` in the handler, so that the confirmed upload
    counts the current invocation (after a checkpoint between invocations, the next
    one's events come with an invocation count behind, and the shutdown uploads again
    for the count: "uploaded partially"); see `flush_then_run`.  (In the image with
    branches: `test_container.py`.)"""
    partial = plugin == "late"
    delay = {"COVERAGE_TEST_REPLAY_DELAY_MS": LATE_DELAY_MS[False]} if partial else {}
    function, root, invoke = start_flushing(
        start_function, sysmon_python, tmp_path, pauses, **delay
    )
    flushed = flush_then_run(invoke, pauses, s3, bucket, plugin)
    function.signal_shutdown()
    assert function.wait(timeout=15) == 0
    logs = function.logs()
    check_nothing_new_sent(
        logs, pauses, flushed, s3, bucket, root, str(root), tmp_path, branch=False, partial=partial
    )
