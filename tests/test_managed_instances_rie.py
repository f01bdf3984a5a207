"""Lambda Managed Instances through the real RIE in its multi-concurrent mode,
on the host and in the image (each test runs in both: `where`).

awslambdaric 4.2.2 forks ``AWS_LAMBDA_MAX_CONCURRENCY`` workers; each must
measure from its own first line, the environment must end as one S3 object
with exactly the union of what its workers ran, and shutdown, crashes and
``Runtime.Unavailable`` must lose nothing they need not.  Each environment
runs in a private mount namespace (tests/managed_instances.py).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from coverage_runtime import layout
from tests import synthetic_function
from tests.conftest import FUNCTIONS_DIR
from tests.containers import TEST_IMAGE, build_image
from tests.harness import (
    clean_environment,
    download_objects,
    executed_lines,
    line_of,
    lines_by_label,
)
from tests.managed_instances import (
    TASK_ROOT,
    ImageInstance,
    ManagedInstance,
    can_run,
    image_environment,
    unavailable,
)
from tests.test_recorder_rie import sysmon_runtime

pytestmark = [pytest.mark.rie, pytest.mark.slow]

SOURCE = FUNCTIONS_DIR / "many_workers.py"
REMOTE = Path(TASK_ROOT) / "many_workers.py"
LAUNCHER = FUNCTIONS_DIR / "other_start_method.py"  # where the workers import it from


def marker(name: str) -> int:
    return line_of(SOURCE, f"marker: {name}")


INIT = {line_of(SOURCE, "def handler("), line_of(SOURCE, "PATHS = {")}
PATH_LINE = {name: marker(f"path-{name}") for name in "abcd"}
GATHER = set(range(line_of(SOURCE, "def gather("), line_of(SOURCE, "def path_a(")))


class Where(NamedTuple):
    """Where the environments of a run of these tests run: on the host (a pyenv
    CPython 3.12+ venv, the checkout's shim) or in the image (its Python 3.14,
    its installed shim, forkserver being that Python's default start method)."""

    python: str
    instance: Callable[..., ManagedInstance]
    environment: Callable[[dict[str, str]], dict[str, str]]


def host_environment(explicit: dict[str, str]) -> dict[str, str]:
    variables = clean_environment(explicit)
    variables.pop("PYTHONPATH", None)  # the bootstrap sets it
    return variables


@pytest.fixture(scope="module", params=["host", pytest.param("image", marks=pytest.mark.container)])
def where(request) -> Where:
    if request.param == "image":
        image = build_image(TEST_IMAGE)
        return Where(
            ImageInstance.PYTHON, functools.partial(ImageInstance, image=image), image_environment
        )
    reason = can_run()
    if reason:
        pytest.skip(reason)
    return Where(sysmon_runtime(), ManagedInstance, host_environment)


@pytest.fixture
def environment(
    where: Where, s3_server, bucket: str, tmp_path: Path
) -> Iterator[Callable[..., ManagedInstance]]:
    started: list[ManagedInstance] = []

    def start(
        workers: int,
        handler: str = "many_workers.handler",
        start_method: str = "",
        sources: tuple[Path, ...] = (SOURCE,),
        measured: bool = True,
        **env: str,
    ) -> ManagedInstance:
        variables = where.environment(
            {
                "COVERAGE_S3_BUCKET": bucket,
                "COVERAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
                "AWS_LAMBDA_FUNCTION_NAME": "mi-fn",
                "COVERAGE_FLUSH_INTERVAL_SECONDS": "1",
                **env,
            }
        )
        work = tmp_path / f"environment-{len(started)}"
        bootstrap = None
        if start_method:
            bootstrap = f"exec {where.python} other_start_method.py {start_method} {handler}"
        instance = where.instance(
            work, where.python, handler, [*sources, LAUNCHER], variables, workers, bootstrap
        )
        started.append(instance)
        # The main process is ready to ship once its workers are started.
        if measured:
            instance.wait_for_log("S3 client ready")
        return instance

    yield start
    for instance in started:
        instance.kill()


def the_object(s3, bucket: str, tmp_path: Path) -> Path:
    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1, f"one object per environment: {sorted(objects)}"
    return next(iter(objects.values()))


def recorded(data_file: Path) -> set[int]:
    return executed_lines(data_file, REMOTE)


@pytest.mark.parametrize("paths", ["abc", "abcabcab"], ids=["3-workers", "8-workers"])
def test_every_worker_measures_its_own_invocations_and_the_union_is_exact(
    environment, s3, bucket, tmp_path, paths
):
    workers = len(paths)
    instance = environment(workers)
    answers = instance.invoke_together([{"path": p, "gather": workers} for p in paths])
    assert [a.status for a in answers] == [200] * workers, [a.body for a in answers]
    took = {a.body["pid"]: a.body["took"] for a in answers}
    assert len(took) == workers, "as many invocations in flight at once as workers"

    # Without another invocation, each worker's timer publishes what it ran.
    states = instance.wait_for_states(
        lambda s: len(s) == workers and all(state["invocations"] == 1 for state in s.values())
    )
    published = {}
    for worker, state in states.items():
        lines = published[worker] = recorded(instance.published(worker))
        path = took[state["pid"]]
        assert PATH_LINE[path] in lines, (worker, path)
        assert {PATH_LINE[other] for other in "abcd" if other != path}.isdisjoint(lines)
        assert lines >= INIT, "each worker measured its own init (the handler import)"
    # Per worker exact: every worker ran the same lines but its own path's (and
    # the barrier's wait, which the last to arrive skips).
    common = {
        frozenset(published[worker] - GATHER - {PATH_LINE[took[state["pid"]]]})
        for worker, state in states.items()
    }
    assert len(common) == 1, common

    assert instance.terminate() == 0
    lines = recorded(the_object(s3, bucket, tmp_path))
    assert lines == set().union(*published.values()), "the union, exactly"
    assert {PATH_LINE[p] for p in "abc"} <= lines
    assert PATH_LINE["d"] not in lines and marker("never") not in lines
    assert lines >= INIT
    assert instance.leftovers() == [instance.tmp / "lambda-coverage"]
    assert instance.runtime_processes() == []


def test_runtime_unavailable_beyond_the_limit_is_retried_by_the_caller(
    environment, s3, bucket, tmp_path
):
    instance = environment(2)
    results: list = []

    busy = [
        threading.Thread(
            target=lambda p=p: results.append(
                instance.invoke_as_lambda_caller({"path": p, "gather": 3})
            )
        )
        for p in "ab"
    ]
    for thread in busy:
        thread.start()
    instance.wait_for_barrier(2)
    refused = instance.invoke({"path": "c"})
    assert unavailable(refused), refused
    (instance.tmp / "barrier" / "release").write_text("")  # the third arrival
    for thread in busy:
        thread.join(30)
    assert sorted(r.status for r in results) == [200, 200]
    retried = instance.invoke_as_lambda_caller({"path": "c"})
    assert retried.status == 200 and retried.body["took"] == "c"
    assert instance.terminate() == 0
    lines = recorded(the_object(s3, bucket, tmp_path))
    assert {PATH_LINE[p] for p in "abc"} <= lines
    assert PATH_LINE["d"] not in lines


def test_selective_mode_under_concurrency(environment, s3, bucket, tmp_path):
    instance = environment(3, handler="many_workers.selective_handler", COVERAGE_MODE="selective")
    answers = instance.invoke_together([{"path": p, "gather": 3} for p in "abc"])
    assert len({a.body["pid"] for a in answers}) == 3
    assert instance.terminate() == 0
    lines = recorded(the_object(s3, bucket, tmp_path))
    assert {PATH_LINE[p] for p in "abc"} | {marker("block")} <= lines
    assert marker("never") not in lines, "outside any block: not measured, in no worker"
    assert PATH_LINE["d"] not in lines
    assert not INIT & lines, "selective: the init is not measured"


def test_a_crashing_worker_keeps_its_last_checkpoint_and_the_others_go_on(
    environment, s3, bucket, tmp_path
):
    instance = environment(2, COVERAGE_FLUSH_INTERVAL_SECONDS="0")
    # The RIE, like Lambda with Managed Instances, enforces no per-invocation
    # timeout: the crashed worker's invocation is never answered, so its caller
    # gives up on its own.
    with pytest.raises(TimeoutError):
        while unavailable(instance.invoke({"path": "a", "crash": True}, timeout=3)):
            time.sleep(0.02)
    states = instance.worker_states()
    assert sorted(state["generation"] for state in states.values()) == [0, 1], states
    # The other worker goes on serving (the crashed one is gone: one at a time).
    served = [instance.invoke_as_lambda_caller({"path": "b"}) for _ in range(3)]
    assert all(answer.status == 200 for answer in served), served
    assert len({answer.body["pid"] for answer in served}) == 1
    assert instance.terminate() == 0
    lines = recorded(the_object(s3, bucket, tmp_path))
    assert PATH_LINE["a"] in lines, "the crashed worker's flushed data survives"
    assert marker("crashed") not in lines, "what it ran after its last publication is lost"
    assert PATH_LINE["b"] in lines
    assert instance.runtime_processes() == []


def test_shutdown_during_concurrent_invocations_ships_every_worker(
    environment, s3, bucket, tmp_path
):
    instance = environment(4, COVERAGE_FLUSH_INTERVAL_SECONDS="0")
    events = [{"path": p, "gather": 4, "sleep": 30} for p in "abcd"]
    results: list = []

    threads = [
        threading.Thread(target=lambda e=e: results.append(instance.invoke_as_lambda_caller(e)))
        for e in events
    ]
    for thread in threads:
        thread.start()
    instance.wait_for_barrier(4)
    time.sleep(0.2)  # past the barrier, into the sleep: each worker ran its path
    started = time.monotonic()
    assert instance.terminate() == 0
    assert time.monotonic() - started < 5
    for thread in threads:
        thread.join(10)
    assert all(r.status != 200 for r in results), [r.body for r in results]
    lines = recorded(the_object(s3, bucket, tmp_path))
    assert {PATH_LINE[p] for p in "abcd"} | {marker("sleeping")} <= lines
    shipped = [r for r in instance.json_logs() if r["message"] == "coverage uploaded"]
    assert [r["reason"] for r in shipped] == ["SIGTERM"]
    published = [
        r["reason"] for r in instance.json_logs() if r["message"].startswith("coverage pub")
    ]
    assert published == ["SIGTERM"] * 4, "every worker, in the window"
    assert "Sending SIGKILL" not in instance.logs(), "every process exited before the deadline"
    assert instance.runtime_processes() == []
    assert instance.leftovers() == [instance.tmp / "lambda-coverage"]


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_workers_started_without_fork_measure_from_their_first_line(
    environment, s3, bucket, tmp_path, start_method
):
    instance = environment(2, start_method=start_method)
    answers = instance.invoke_together([{"path": p, "gather": 2} for p in "ab"])
    assert len({a.body["pid"] for a in answers}) == 2
    states = instance.wait_for_states(lambda s: len(s) == 2)
    assert instance.terminate() == 0
    lines = recorded(the_object(s3, bucket, tmp_path))
    assert lines >= INIT | {PATH_LINE["a"], PATH_LINE["b"]}
    assert PATH_LINE["c"] not in lines
    assert {state["pid"] for state in states.values()} == {a.body["pid"] for a in answers}
    assert instance.runtime_processes() == []


def test_an_init_error_in_the_workers_is_reported_and_measured(environment, s3, bucket, tmp_path):
    broken = FUNCTIONS_DIR / "broken_import.py"
    instance = environment(2, handler="broken_import.handler", sources=(broken,))
    instance.wait_for_log("coverage uploaded")  # the main process, once its workers exited
    assert "Runtime.ImportModuleError" in instance.logs(), "awslambdaric's own init error"
    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1, sorted(objects)
    failing = line_of(broken, "import module_that_does_not_exist")
    remote = Path(TASK_ROOT) / "broken_import.py"
    assert failing in executed_lines(next(iter(objects.values())), remote)
    deadline = time.monotonic() + 10
    while instance.runtime_processes():  # the main process exits after its upload
        assert time.monotonic() < deadline, instance.logs()[-3000:]
        time.sleep(0.02)
    assert instance.leftovers() == [instance.tmp / "lambda-coverage"]


def test_coverage_that_cannot_start_never_stops_the_workers(environment, s3, bucket):
    instance = environment(2, measured=False, COVERAGE_DATA_DIR="/proc/no-such-directory")
    answers = instance.invoke_together([{"path": p, "gather": 2} for p in "ab"])
    assert [a.status for a in answers] == [200, 200]
    assert "coverage could not start; the function runs without it" in [
        r["message"] for r in instance.json_logs()
    ]
    assert instance.terminate() == 0
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_labels_are_each_worker_s_and_the_union_keeps_them(environment, s3, bucket, tmp_path):
    instance = environment(2)
    # This RIE mode hands X-Amz-Client-Context to the runtime as it is, where Lambda
    # (and the classic RIE) decode its base64 first: send what the runtime must get.
    headers = [
        {"X-Amz-Client-Context": json.dumps({"custom": {"coverage-label": f"test-{p}"}})}
        for p in "ab"
    ]
    answers = instance.invoke_together(
        [{"path": "a", "gather": 2}, {"path": "b", "gather": 2}], headers=headers
    )
    assert len({a.body["pid"] for a in answers}) == 2
    assert instance.terminate() == 0
    labels = lines_by_label(the_object(s3, bucket, tmp_path), REMOTE)
    assert labels[PATH_LINE["a"]] == {"test-a"}
    assert labels[PATH_LINE["b"]] == {"test-b"}
    assert all(labels[line] == {"init"} for line in INIT), "each worker's import: its init"


def test_a_worker_frozen_at_shutdown_counts_with_its_last_publication_and_is_stopped(
    environment, s3, bucket, tmp_path
):
    instance = environment(2, COVERAGE_FLUSH_INTERVAL_SECONDS="0")
    answers = instance.invoke_together(
        [{"path": "a", "gather": 2, "flush": True}, {"path": "b", "gather": 2}]
    )
    frozen = answers[0].body["pid"]
    os.kill(frozen, signal.SIGSTOP)  # as stuck as a worker can be: no thread of it runs
    started = time.monotonic()
    assert instance.terminate() == 0
    assert time.monotonic() - started < 3, "the main process did not wait for the frozen one"
    late = [r for r in instance.json_logs() if r["message"].startswith("workers did not publish")]
    assert len(late) == 1 and len(late[0]["workers"]) == 1, late
    lines = recorded(the_object(s3, bucket, tmp_path))
    assert {PATH_LINE["a"], PATH_LINE["b"]} <= lines, "its published data, and the other's"
    assert marker("after-flush") not in lines, "what it ran after its last publication is lost"
    assert instance.runtime_processes() == [], "the main process stopped it"


def test_a_known_line_under_a_new_label_is_uploaded_by_a_checkpoint(
    environment, s3, bucket, tmp_path
):
    instance = environment(2)

    def labelled(label: str) -> dict[str, str]:
        return {"X-Amz-Client-Context": json.dumps({"custom": {"coverage-label": label}})}

    assert instance.invoke_as_lambda_caller({"path": "a"}, headers=labelled("t1")).status == 200
    instance.wait_for_log("coverage uploaded")  # the timer, in the worker then the main process
    assert instance.invoke_as_lambda_caller({"path": "a"}, headers=labelled("t2")).status == 200
    instance.wait_for_log("coverage uploaded", count=2)  # nothing new but the label
    labels = lines_by_label(the_object(s3, bucket, tmp_path), REMOTE)
    assert labels[PATH_LINE["a"]] == {"t1", "t2"}, "uploaded before any shutdown"


# Few enough modules for CI, each replayed slowly at shutdown (`COVERAGE_TEST_REPLAY_DELAY_MS`,
# as in tests/test_partial_rie.py): a worker's replay outgrows its share of the window.
PARTIAL_MODULES = 30


def shut_down_before_the_hand_over(
    environment: Callable[..., ManagedInstance],
    tmp_path: Path,
    budget_ms: int,
    delay_ms: int,
) -> ManagedInstance:
    """SIGTERM to an environment of 2 workers whose shipping threads are held
    (a pause point) before they hand the recorded init over, each file's replay
    at shutdown slowed by ``delay_ms``; the environment, ended."""
    task = synthetic_function.write(tmp_path / "synthetic", PARTIAL_MODULES)
    instance = environment(
        2,
        handler="handler.handler",
        sources=(task / "handler.py", task / "synthetic"),
        COVERAGE_FLUSH_INTERVAL_SECONDS="0",
        COVERAGE_SHUTDOWN_BUDGET_MS=str(budget_ms),
        COVERAGE_TEST_REPLAY_DELAY_MS=str(delay_ms),
        COVERAGE_TEST_PAUSE_DIR="/tmp",  # (the shared /tmp: instance.tmp here)
        COVERAGE_TEST_PAUSE_AT="materialize",
    )
    reached = instance.tmp / "materialize.reached"
    deadline = time.monotonic() + 20
    while not reached.exists():  # a worker's init is recorded, not handed over
        assert time.monotonic() < deadline, instance.logs()[-3000:]
        time.sleep(0.01)
    assert instance.terminate() == 0
    return instance


def test_a_worker_s_partial_shutdown_makes_the_environment_s_object_partial(
    environment, s3_server, s3, bucket, tmp_path, report_credentials
):
    """A worker shut down before its shipping thread handed its recorded init over
    replays only what fits in its share of the window and publishes those files
    whole; the environment's one object says it is partial (the union lacks what
    that worker left out), with the files left out, and holds what the partial
    replay did publish."""
    instance = shut_down_before_the_hand_over(environment, tmp_path, 600, 40)
    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1, (sorted(objects), instance.logs()[-3000:])
    key, path = next(iter(objects.items()))
    metadata = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
    assert metadata.get(layout.PARTIAL) == "true", (metadata, instance.logs()[-3000:])
    assert int(metadata[layout.FILES_NOT_REPLAYED]) > 0, metadata
    from coverage import CoverageData

    data = CoverageData(basename=str(path))
    data.read()
    measured = {name for name in data.measured_files() if "/synthetic/m" in name}
    assert 0 < len(measured) < PARTIAL_MODULES, sorted(measured)
    published = [r for r in instance.json_logs() if r.get("partial") is True]
    assert published, "the partial worker's own loss record"

    # The report reads the environment's one object and says it is partial.
    import io

    from coverage_runtime.report.cli import main

    out, err = io.StringIO(), io.StringIO()
    where = ["--bucket", bucket, "--endpoint-url", s3_server.endpoint_url]
    assert main(["list", *where], out=out, err=err) == 0, err.getvalue()
    assert "partial: 1 objects hold only the source files" in out.getvalue(), out.getvalue()
