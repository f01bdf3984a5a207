"""The public API in this process: a safe no-op outside the shim, and what it
does when a runtime is installed (as the shim does) around a real coverage.py."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import coverage_runtime
from coverage_runtime.errors import CoverageError, NotActiveError, UploadError
from coverage_runtime.settings import load_settings
from coverage_runtime.shim import api
from coverage_runtime.shim.identity import EnvironmentIdentity
from coverage_runtime.shim.session import CoverageSession
from coverage_runtime.shim.status import Versions
from tests.harness import FAKE_CREDENTIALS, REPO_ROOT, imported_sample

SAMPLE = '''\
"""Handler code using the public API.  Markers name lines for asserts."""

from coverage_runtime import CoverageContext, coverage_handler, without_coverage


def unmeasured():
    return "unmeasured"  # marker: unmeasured


def measured():
    return "measured"  # marker: measured


def excluded():
    return "excluded"  # marker: excluded


@coverage_handler
def handler(event, context):
    if event.get("raise"):
        raise KeyError("deliberate")  # marker: raise
    with without_coverage():
        excluded()
    return {"ok": True, "event": event}  # marker: handler-body


def plain(event, context):
    unmeasured()
    with CoverageContext():
        value = measured()  # marker: block-line
    return value


@CoverageContext()
def decorated_block():
    return measured()  # marker: decorated-block
'''


class Context:
    aws_request_id = "req-1"


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[ModuleType]:
    with imported_sample(tmp_path / "src", SAMPLE, "api_sample") as module:
        yield module


@pytest.fixture(autouse=True)
def no_runtime_left_behind() -> Iterator[None]:
    assert api.current_session() is None, "an earlier test left a runtime installed"
    yield
    assert api.current_session() is None


def line(module: ModuleType, marker: str) -> int:
    for number, text in enumerate(Path(module.__file__).read_text().splitlines(), start=1):
        if f"marker: {marker}" in text:
            return number
    raise AssertionError(marker)


# -- outside the shim -----------------------------------------------------------------


def test_decorator_passes_the_result_through_unchanged(sample):
    event = {"x": [1, 2]}
    result = sample.handler(event, Context())
    assert result == {"ok": True, "event": event}
    assert result["event"] is event


def test_decorator_passes_exceptions_through_unchanged():
    error = ValueError("mine")

    @coverage_runtime.coverage_handler
    def failing(event, context):
        raise error

    with pytest.raises(ValueError) as caught:
        failing({}, None)
    assert caught.value is error


def test_decorator_with_a_kind_function_and_wraps():
    @coverage_runtime.coverage_handler(kind=lambda event: "custom")
    def named_handler(event, context):
        """Docstring kept."""
        return event

    sentinel = object()
    assert named_handler(sentinel, None) is sentinel
    assert named_handler.__name__ == "named_handler"
    assert named_handler.__doc__ == "Docstring kept."


def test_coverage_context_is_a_no_op(sample):
    with coverage_runtime.CoverageContext() as block:
        assert isinstance(block, coverage_runtime.CoverageContext)
        with coverage_runtime.CoverageContext(enabled=False), coverage_runtime.without_coverage():
            value = 1
    assert value == 1
    assert sample.plain({}, None) == "measured"
    assert sample.decorated_block() == "measured"


def test_coverage_context_lets_exceptions_through():
    with pytest.raises(ZeroDivisionError), coverage_runtime.CoverageContext():
        1 / 0  # noqa: B018


def test_status_flush_reset_outside_the_shim():
    status = coverage_runtime.status()
    assert status["enabled"] is False
    assert "coverage_runtime" in status["reason"]
    assert set(status) == set(coverage_runtime.InactiveStatus.__annotations__)
    assert coverage_runtime.flush() is None
    assert coverage_runtime.reset() is None
    with pytest.raises(NotActiveError):
        api.require_session()


def test_the_exception_family():
    for error in (
        coverage_runtime.ConfigurationError,
        coverage_runtime.UploadError,
        coverage_runtime.NotActiveError,
    ):
        assert issubclass(error, coverage_runtime.CoverageError)
    assert issubclass(coverage_runtime.CoverageError, Exception)


def test_package_exports_and_lazy_loading():
    for name in coverage_runtime.__all__:
        assert getattr(coverage_runtime, name) is not None
    assert coverage_runtime.coverage_handler is api.coverage_handler
    with pytest.raises(AttributeError):
        coverage_runtime.no_such_name  # noqa: B018


def _probe(code: str) -> str:
    """What ``code`` prints in a fresh interpreter of the checkout."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_importing_the_package_loads_neither_the_api_nor_coverage():
    probe = (
        "import sys, coverage_runtime; "
        "print(sorted(m for m in ('coverage', 'coverage_runtime.shim.api', 'boto3') "
        "if m in sys.modules))"
    )
    assert _probe(probe) == "[]"


def test_the_disabled_entry_path_loads_nothing_but_env():
    """``python -m coverage_runtime`` with coverage off reads the switch through `env`;
    that must load no other module of ours, and no standard module that Python and
    awslambdaric (which runs the function next) do not load anyway."""
    probe = (
        "import sys, awslambdaric.__main__, awslambdaric.bootstrap\n"
        "before = set(sys.modules)\n"
        "import coverage_runtime.__main__ as entry\n"
        "assert entry.env.coverage_enabled({'COVERAGE_ENABLED': 'off'}) is False\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    loaded = eval(_probe(probe))  # our own probe's printed list
    assert loaded == ["coverage_runtime", "coverage_runtime.__main__", "coverage_runtime.env"]


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"path": "/health", "httpMethod": "GET"}, "http GET /health"),
        ({"rawPath": "/items", "requestContext": {"http": {"method": "POST"}}}, "http POST /items"),
        ({"operation": "process_data"}, "operation=process_data"),
        ({"admin": True, "admin_action": "coverage_status"}, "admin_action=coverage_status"),
        (
            {"resource": "/users/{id}", "path": "/users/7", "httpMethod": "GET"},
            "http GET /users/{id}",
        ),
        ({"routeKey": "PUT /users/{id}", "rawPath": "/users/7"}, "http PUT /users/{id}"),
        (
            {
                "routeKey": "$default",
                "rawPath": "/u/7",
                "requestContext": {"http": {"method": "GET"}},
            },
            "http GET /u/7",
        ),
        ({"requestContext": "not a dict"}, "invoke"),
        ([1, 2], "invoke"),
        (None, "invoke"),
    ],
)
def test_default_kind(event, kind):
    assert api.default_kind(event) == kind


# -- with a runtime installed, as the shim does ---------------------------------------------


@pytest.fixture
def install(
    tmp_path: Path, sample: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., CoverageSession]]:
    """``install(**env)``: a started `CoverageSession` measuring the sample, made current."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    started: list[CoverageSession] = []

    def start(**variables: str) -> CoverageSession:
        settings = load_settings(
            {
                "COVERAGE_SOURCE": str(Path(sample.__file__).parent),
                "COVERAGE_DATA_DIR": str(tmp_path / "data"),
                "COVERAGE_MODE": "selective",
                **variables,
            }
        )
        runtime = CoverageSession.start(settings, EnvironmentIdentity.detect({}))
        started.append(runtime)
        api.install(runtime)
        return runtime

    yield start
    api.install(None)
    for runtime in started:
        runtime.measurement.finish()
        assert not runtime.measurement.collecting


@pytest.fixture
def with_deltas(
    install: Callable[..., CoverageSession],
    s3_server: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> CoverageSession:
    """A runtime installed as `install` does, uploading to the local S3, whose tiny
    sample takes deltas: no base is too small for one, and no share of it makes
    a new base (a test sets `session.DELTA_SHARE` lower to have one)."""
    from coverage_runtime.shim import session as session_module

    monkeypatch.setattr(session_module, "DELTA_MIN_BASE_BYTES", 0)
    monkeypatch.setattr(session_module, "DELTA_SHARE", 10.0)
    return install(
        COVERAGE_S3_BUCKET=bucket,
        COVERAGE_S3_ENDPOINT_URL=s3_server.endpoint_url,
        COVERAGE_MODE="full",
    )


def measured_lines(runtime: CoverageSession, module: ModuleType) -> set[int]:
    return set(runtime.measurement.data().lines(module.__file__) or ())


def test_selective_decorator_measures_the_invocation(install, sample):
    runtime = install()
    event = {"a": 1}
    result = sample.handler(event, Context())
    assert result == {"ok": True, "event": event}
    assert not runtime.measurement.collecting
    lines = measured_lines(runtime, sample)
    assert line(sample, "handler-body") in lines
    assert line(sample, "excluded") not in lines
    assert line(sample, "unmeasured") not in lines
    assert runtime.handled.count == 1
    assert runtime.handled.by_kind == {"invoke": 1}


def test_decorator_keeps_exceptions_and_still_counts(install, sample):
    runtime = install()
    with pytest.raises(KeyError) as caught:
        sample.handler({"raise": True, "operation": "x"}, Context())
    assert caught.value.args == ("deliberate",)
    assert not runtime.measurement.collecting, "the block closed on the way out"
    assert line(sample, "raise") in measured_lines(runtime, sample)
    assert runtime.handled.by_kind == {"operation=x": 1}


def test_a_broken_kind_function_labels_invoke(install):
    runtime = install()

    @coverage_runtime.coverage_handler(kind=lambda event: event["missing"])
    def fn(event, context):
        return "fine"

    assert fn({}, None) == "fine"
    assert runtime.handled.by_kind == {"invoke": 1}


def test_coverage_failures_never_reach_the_handler(install, sample, monkeypatch):
    runtime = install()

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("collector on fire")

    monkeypatch.setattr(runtime.measurement, "enter", broken)
    monkeypatch.setattr(runtime.measurement, "exit", broken)
    monkeypatch.setattr(runtime, "invocation_handled", lambda *a: broken())
    assert sample.handler({}, Context())["ok"] is True
    assert sample.plain({}, None) == "measured"


def test_context_block_in_selective_mode(install, sample):
    runtime = install()
    assert sample.plain({}, None) == "measured"
    assert sample.decorated_block() == "measured"
    lines = measured_lines(runtime, sample)
    assert line(sample, "measured") in lines
    assert line(sample, "decorated-block") in lines
    assert line(sample, "unmeasured") not in lines


def test_without_coverage_is_one_shared_block_that_nests(install):
    """The same stateless block every time: nesting it, or opening it on two threads at
    once, counts each opening (the measurement holds the count, not the block)."""
    import threading

    without_coverage = coverage_runtime.without_coverage
    runtime = install(COVERAGE_MODE="full")
    block = without_coverage()
    assert block is without_coverage()
    with block:
        with without_coverage():
            assert runtime.measurement.collecting is False
        assert runtime.measurement.collecting is False, "still inside the outer block"
        inside = threading.Event()
        leave = threading.Event()

        def other_thread() -> None:
            with without_coverage():
                inside.set()
                leave.wait(5)

        thread = threading.Thread(target=other_thread)
        thread.start()
        assert inside.wait(5)
    assert runtime.measurement.collecting is False, "the other thread's block is still open"
    leave.set()
    thread.join(5)
    assert runtime.measurement.collecting is True


def test_request_kinds_are_bounded_in_status_and_in_the_data(install, sample):
    """Kinds made of request data (a function URL's raw path) stop at MAX_KINDS distinct
    ones; the rest count as one more, in status() and as coverage.py contexts."""
    from coverage_runtime.shim.session import MAX_KINDS, OTHER_KIND

    runtime = install(COVERAGE_CONTEXTS="true")
    paths = [f"/users/{n}" for n in range(MAX_KINDS + 50)]
    for path in paths:
        sample.handler({"rawPath": path, "requestContext": {"http": {"method": "GET"}}}, Context())
    by_kind = coverage_runtime.status()["handled_by_kind"]
    assert len(by_kind) == MAX_KINDS + 1
    assert by_kind[OTHER_KIND] == 50
    assert sum(by_kind.values()) == len(paths), "every invocation is counted"
    contexts = set(runtime.measurement.data().measured_contexts())
    assert OTHER_KIND in contexts
    assert len(contexts - {""}) <= MAX_KINDS + 1


def test_context_labels_become_dynamic_contexts(install, sample):
    runtime = install(COVERAGE_CONTEXTS="true")
    sample.handler({"operation": "transform"}, Context())
    contexts = runtime.measurement.data().measured_contexts()
    assert "operation=transform" in contexts


def test_status_inside_the_runtime(install, sample):
    runtime = install()
    sample.handler({}, Context())
    status = coverage_runtime.status()
    assert status["enabled"] is True
    assert status["mode"] == "selective"
    assert status["core"] == runtime.measurement.core_name()
    assert status["branch"] is False
    assert status["versions"]["coverage"].startswith("7.")
    assert status["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert status["recorded_lines"] > 0
    assert status["collecting"] is False
    assert status["uploads_enabled"] is False
    assert "COVERAGE_S3_BUCKET" in status["upload_problem"]
    assert status["last_upload"] is None
    assert status["handled_by_kind"] == {"invoke": 1}
    assert status["handled_invocations"] == 1
    assert status["handled_ms"] >= 0


def test_flush_without_a_bucket_raises_upload_error(install):
    install()
    with pytest.raises(UploadError, match="COVERAGE_S3_BUCKET"):
        coverage_runtime.flush()


def test_reset_drops_what_was_measured(install, sample):
    runtime = install(COVERAGE_MODE="full")
    sample.plain({}, None)
    assert runtime.measurement.counts().lines > 0
    assert coverage_runtime.reset() is None
    assert line(sample, "unmeasured") not in measured_lines(runtime, sample)
    sample.unmeasured()
    assert line(sample, "unmeasured") in measured_lines(runtime, sample)


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_pause_measures_nothing_until_resume_and_keeps_what_ran(install, sample, mode):
    runtime = install(COVERAGE_MODE=mode)
    sample.plain({}, None)  # measured before the pause (in selective mode: its block)
    before = measured_lines(runtime, sample)
    assert line(sample, "block-line") in before
    coverage_runtime.pause()
    status = coverage_runtime.status()
    assert status["enabled"] and status["paused"] and not status["collecting"]
    sample.handler({}, Context())  # the decorator's block opens: still nothing recorded
    sample.decorated_block()
    runtime.measurement.snapshot()  # a checkpoint does not resume
    assert runtime.measurement.paused
    assert measured_lines(runtime, sample) == before, "nothing while paused, nothing dropped"
    coverage_runtime.pause()  # idempotent
    coverage_runtime.resume()
    assert not coverage_runtime.status()["paused"]
    sample.handler({}, Context())
    assert line(sample, "handler-body") in measured_lines(runtime, sample)
    coverage_runtime.resume()  # idempotent


def test_pause_and_resume_are_no_ops_outside_the_shim(sample):
    assert coverage_runtime.pause() is None
    assert sample.plain({}, None) == "measured"
    assert coverage_runtime.resume() is None


def test_reset_failure_surfaces_as_coverage_error(install, monkeypatch):
    runtime = install()

    def broken() -> None:
        raise OSError("disk full")

    monkeypatch.setattr(runtime.measurement, "reset", broken)
    with pytest.raises(CoverageError, match="disk full"):
        coverage_runtime.reset()


def test_flush_uploads_only_when_coverage_grew(install, sample, s3_server, s3, bucket):
    runtime = install(COVERAGE_S3_BUCKET=bucket, COVERAGE_S3_ENDPOINT_URL=s3_server.endpoint_url)
    assert coverage_runtime.flush() is None, "nothing measured yet"
    sample.handler({}, Context())
    first = coverage_runtime.flush()
    assert first is not None
    assert first["bucket"] == bucket
    assert first["reason"] == "flush"
    assert first["key"] == runtime.uploader().key
    assert coverage_runtime.flush() is None, "nothing new ran"
    sample.plain({}, None)
    second = coverage_runtime.flush()
    assert second is not None
    assert second["key"] == first["key"], "one object per environment, overwritten"
    head = s3.head_object(Bucket=bucket, Key=first["key"])
    assert head["Metadata"]["mode"] == "selective"
    assert coverage_runtime.status()["last_upload"]["etag"] == second["etag"]
    # The typed status says what is there, at every level.
    status = coverage_runtime.status()
    assert set(status) == set(coverage_runtime.ActiveStatus.__annotations__)
    assert set(status["versions"]) == set(Versions.__annotations__)
    assert (
        set(second)
        == set(status["last_upload"])
        == set(coverage_runtime.LastUpload.__annotations__)
    )


def test_the_init_path_creates_no_dataclass():
    """Every module the shim's start imports (and `s3`, which a shutdown soon after
    may import inside its window) defines its types without `dataclasses`: a frozen
    dataclass costs 0.5-1 ms to create on 3.14, on every cold start."""
    probe = (
        "import sys, dataclasses, inspect\n"
        "import coverage_runtime.shim.bootstrap, coverage_runtime.shim.runtime_client\n"
        "import coverage_runtime.shim.function_packages, coverage_runtime.s3\n"
        "found = sorted(f'{name}.{attr}' for name, module in list(sys.modules.items())\n"
        "    if name.startswith('coverage_runtime')\n"
        "    for attr, value in vars(module).items()\n"
        "    if inspect.isclass(value) and dataclasses.is_dataclass(value))\n"
        "print(found)\n"
    )
    assert eval(_probe(probe)) == []  # our own probe's printed list


# -- delta objects (`layout.DELTA_SUFFIX`) ----------------------------------------------


def _data_of(s3: Any, bucket: str, key: str, path: Path) -> Any:
    from coverage import CoverageData

    s3.download_file(bucket, key, str(path))
    data = CoverageData(basename=str(path))
    data.read()
    return data


def test_a_delta_holds_only_what_is_new_and_leaves_the_base(
    with_deltas, sample, s3, bucket, tmp_path
):

    runtime = with_deltas
    sample.handler({}, Context())
    base = coverage_runtime.flush()
    assert base is not None and not base["key"].endswith(".delta")
    base_etag = s3.head_object(Bucket=bucket, Key=base["key"])["ETag"]
    sample.unmeasured()
    delta = coverage_runtime.flush()
    assert delta is not None and delta["key"] == base["key"] + ".delta"
    assert s3.head_object(Bucket=bucket, Key=base["key"])["ETag"] == base_etag, "base untouched"
    source = sample.__file__
    in_base = set(_data_of(s3, bucket, base["key"], tmp_path / "b.coverage").lines(source))
    in_delta = set(_data_of(s3, bucket, delta["key"], tmp_path / "d.coverage").lines(source))
    assert line(sample, "handler-body") in in_base
    assert line(sample, "unmeasured") in in_delta
    assert line(sample, "unmeasured") not in in_base
    assert line(sample, "handler-body") not in in_delta, "only what is new since the base"
    # The union is everything measured, as coverage.py holds it.
    assert in_base | in_delta == measured_lines(runtime, sample)
    # A later delta still extends the same base, and holds all since it.
    sample.measured()
    again = coverage_runtime.flush()
    assert again is not None and again["key"] == delta["key"]
    later = set(_data_of(s3, bucket, again["key"], tmp_path / "d2.coverage").lines(source))
    assert {line(sample, "unmeasured"), line(sample, "measured")} <= later
    meta = s3.head_object(Bucket=bucket, Key=again["key"])["Metadata"]
    assert meta["invocations"] == "0" and meta["base-generation"] == "1"


def test_a_delta_past_its_share_of_the_base_makes_a_new_base(
    with_deltas, sample, s3, bucket, monkeypatch, tmp_path
):
    from coverage_runtime.shim import session as session_module

    sample.handler({}, Context())
    first = coverage_runtime.flush()
    sample.unmeasured()
    second = coverage_runtime.flush()
    assert first is not None and second is not None
    assert second["key"] == first["key"] + ".delta"
    monkeypatch.setattr(session_module, "DELTA_SHARE", 0.0)  # the delta file is too large
    sample.measured()
    third = coverage_runtime.flush()
    assert third is not None and third["key"] == first["key"], "a new base"
    monkeypatch.setattr(session_module, "DELTA_SHARE", 10.0)
    sample.decorated_block()
    fourth = coverage_runtime.flush()
    assert fourth is not None and fourth["key"] == second["key"]
    meta = s3.head_object(Bucket=bucket, Key=fourth["key"])["Metadata"]
    assert meta["base-generation"] == "3", "it extends the newest confirmed base"
    # Written afresh for that base: only what ran since it.
    source = sample.__file__
    delta = set(_data_of(s3, bucket, fourth["key"], tmp_path / "d.coverage").lines(source))
    assert line(sample, "decorated-block") in delta
    assert line(sample, "unmeasured") not in delta


def test_after_a_reset_the_next_upload_is_a_base_of_a_new_epoch(with_deltas, sample, s3, bucket):
    from coverage_runtime import layout

    sample.handler({}, Context())
    base = coverage_runtime.flush()
    sample.unmeasured()
    delta = coverage_runtime.flush()
    assert base is not None and delta is not None and delta["key"].endswith(".delta")
    coverage_runtime.reset()
    sample.measured()
    after = coverage_runtime.flush()
    assert after is not None and after["key"] == base["key"]
    base_meta = s3.head_object(Bucket=bucket, Key=base["key"])["Metadata"]
    old_delta = s3.head_object(Bucket=bucket, Key=delta["key"])["Metadata"]
    assert base_meta["data-epoch"] == "1"
    # The delta from before the reset no longer adds to the base: the reset's
    # dropped data does not come back.
    assert not layout.delta_applies(base_meta, old_delta)


LARGE_SOURCE = "".join(f"v{i} = {i}\n" for i in range(20_000))  # 20,000 lines


def held_for_deltas(run: Callable[[], None]) -> int:
    """Bytes allocated in `Since.add` (copies of written items kept for deltas)
    still held once ``run`` returned (tracemalloc)."""
    import tracemalloc

    from coverage_runtime.shim import measurement

    lines, first = inspect.getsourcelines(measurement.Since.add)
    kept = tracemalloc.Filter(True, measurement.__file__)
    tracemalloc.start()
    try:
        run()
        snapshot = tracemalloc.take_snapshot().filter_traces([kept])
    finally:
        tracemalloc.stop()
    return sum(
        stat.size
        for stat in snapshot.statistics("lineno")
        if first <= stat.traceback[0].lineno < first + len(lines)
    )


def test_no_copy_of_what_was_written_is_kept_when_no_delta_is_sent(
    install, sample, s3_server, s3, bucket, tmp_path
):
    """Bases only (a data file under `DELTA_MIN_BASE_BYTES`, as every small function's,
    and every Managed Instances worker's, which never sends deltas): once a base is
    confirmed, nothing of what was written stays in memory for deltas (`Since`).
    Before: a copy of every item ever written was kept for a delta that never came,
    a second measured set in memory for the environment's life."""
    install(
        COVERAGE_S3_BUCKET=bucket,
        COVERAGE_S3_ENDPOINT_URL=s3_server.endpoint_url,
        COVERAGE_MODE="full",
    )
    uploads: list[Any] = []

    def run() -> None:
        with imported_sample(tmp_path / "src", LARGE_SOURCE, "api_large"):
            uploads.append(coverage_runtime.flush())
            sample.handler({}, Context())
            uploads.append(coverage_runtime.flush())

    held = held_for_deltas(run)
    first_upload, second_upload = uploads
    assert first_upload is not None and second_upload is not None
    assert not second_upload["key"].endswith(".delta")
    assert held < 64 << 10, f"{held} bytes of written items kept for deltas"


def test_nothing_is_kept_for_deltas_before_a_base_is_confirmed(
    install, sample, s3_server, tmp_path
):
    """Until S3 confirms a base no delta can be sent, and the first base holds
    all that was written before its snapshot: none of it is copied for deltas
    (`Since`).  Here the first base's upload fails (its bucket does not exist on
    the local S3), so nothing is ever confirmed.  Before: the whole init's data
    was copied (~7 MB at 2,000 modules with branches) and kept until a base was
    confirmed -- for good, when none ever was."""
    install(
        COVERAGE_S3_BUCKET="no-such-bucket",
        COVERAGE_S3_ENDPOINT_URL=s3_server.endpoint_url,
        COVERAGE_MODE="full",
    )

    def run() -> None:
        with imported_sample(tmp_path / "src", LARGE_SOURCE, "api_unconfirmed"):
            with pytest.raises(coverage_runtime.UploadError, match="NoSuchBucket"):
                coverage_runtime.flush()
            sample.handler({}, Context())
            with pytest.raises(coverage_runtime.UploadError, match="NoSuchBucket"):
                coverage_runtime.flush()

    held = held_for_deltas(run)
    assert held < 64 << 10, f"{held} bytes of written items kept for deltas"


@pytest.mark.parametrize(
    ("raw", "share"),
    [(None, 0.25), ("", 0.25), ("0.5", 0.5), ("abc", 0.25), ("-1", 0.25), ("nan", 0.25)],
)
def test_the_bench_delta_share_never_stops_the_shim(raw, share):
    """``COVERAGE_BENCH_DELTA_SHARE`` (benchmarks only) is read when the session
    module is imported, on the init path: unset or malformed is the default."""
    from coverage_runtime.shim import session as session_module

    assert session_module._bench_delta_share(raw) == share


def test_after_a_re_base_the_next_checkpoint_is_a_delta_of_the_new_base(
    with_deltas, sample, s3, bucket, monkeypatch
):
    """After a re-base the delta file on disk extends the old base; the next delta
    of the new base is written afresh, so that file's size says nothing about it.
    Before: it was held against the new base's share, and every checkpoint after
    a re-base re-based again until the base was four times that old file (the
    host's C tracer at 8,000 modules with branches: eight 20-50 MB bases in a row)."""
    from coverage_runtime.shim import session as session_module

    sample.handler({}, Context())
    base = coverage_runtime.flush()
    sample.unmeasured()
    delta = coverage_runtime.flush()
    assert base is not None and delta is not None and delta["key"] == base["key"] + ".delta"
    monkeypatch.setattr(session_module, "DELTA_SHARE", 0.0)  # the delta file is too large
    sample.measured()
    new_base = coverage_runtime.flush()
    assert new_base is not None and new_base["key"] == base["key"], "a new base"
    # The old delta file is past this share of the new base; a fresh delta is not.
    monkeypatch.setattr(session_module, "DELTA_SHARE", delta["bytes"] / new_base["bytes"] / 2)
    sample.decorated_block()
    after = coverage_runtime.flush()
    assert after is not None and after["key"] == delta["key"], "a delta of the new base"
    meta = s3.head_object(Bucket=bucket, Key=after["key"])["Metadata"]
    assert meta["base-generation"] == "3"


def test_what_runs_again_is_not_written_again(with_deltas, sample, s3, bucket, tmp_path):
    """The C tracer (this host's core) records a line again each time it runs.
    What ran before and was written is not written again (`Tally.add` returns
    what is new under the label's run): the delta after the handler runs again
    holds only what is new, and the union is still everything.  Before: every
    line the handler ran went to the data file's SQLite insert again, and into
    the delta (on the host's 3.13 at 8,000 modules with branches, the first delta
    was as large as its base, 12 MB)."""

    runtime = with_deltas
    sample.handler({}, Context())
    base = coverage_runtime.flush()
    sample.handler({}, Context())  # again: nothing new
    sample.unmeasured()
    delta = coverage_runtime.flush()
    assert base is not None and delta is not None and delta["key"] == base["key"] + ".delta"
    source = sample.__file__
    in_base = set(_data_of(s3, bucket, base["key"], tmp_path / "b.coverage").lines(source))
    in_delta = set(_data_of(s3, bucket, delta["key"], tmp_path / "d.coverage").lines(source))
    assert line(sample, "handler-body") in in_base
    assert in_delta == {line(sample, "unmeasured")} | (in_delta - in_base)
    assert not in_delta & in_base, "nothing that ran again"
    assert in_base | in_delta == measured_lines(runtime, sample)


def test_nothing_is_counted_on_the_billed_path_after_a_response(
    install, sample, s3_server, bucket, monkeypatch
):
    """A checkpoint is due after a response: the runtime's thread, which Lambda bills
    until it asks for the next event, only asks the shipping thread; the count of
    what is new (on the C tracer everything the invocation ran again) runs there.
    Before: ``between_invocations`` counted, 10-95 ms of the invocation at
    2,000-8,000 modules with branches on the host's C tracer (bench/README.md)."""
    import threading
    import time

    runtime = install(
        COVERAGE_S3_BUCKET=bucket,
        COVERAGE_S3_ENDPOINT_URL=s3_server.endpoint_url,
        COVERAGE_MODE="full",
        COVERAGE_BRANCH="true",
        COVERAGE_CORE="ctrace",
    )
    counted: list[str] = []
    count = runtime.measurement.counts

    def counts() -> Any:
        counted.append(threading.current_thread().name)
        return count()

    monkeypatch.setattr(runtime.measurement, "counts", counts)
    here = threading.current_thread().name

    def respond() -> None:
        runtime.invocation_arrived(None)
        sample.handler({}, Context())
        runtime._last_checkpoint = time.monotonic() - 3600  # a checkpoint is due
        runtime.between_invocations()
        assert here not in counted, counted

    def wait(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.01)

    respond()
    wait(lambda: runtime.last_upload is not None)  # counted and shipped by the shipping thread
    first = runtime.last_upload
    assert first is not None and counted and here not in counted
    calls = len(counted)
    respond()  # the same work again: nothing new
    wait(lambda: len(counted) > calls)
    assert runtime.last_upload is first, "nothing new: nothing sent"
