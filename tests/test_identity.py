"""Who this execution environment is: the names that make up its S3 key."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from coverage_runtime.settings import load_settings
from coverage_runtime.shim.identity import EnvironmentIdentity, environment_id_from
from coverage_runtime.shim.uploader import object_key

LAMBDA_STREAM = "2026/11/25/[$LATEST]0123456789abcdef0123456789abcdef"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (LAMBDA_STREAM, "0123456789abcdef0123456789abcdef"),
        ("2026/11/25/[7]fedcba9876543210fedcba9876543210", "fedcba9876543210fedcba9876543210"),
        ("2026/11/25/my-fn[$LATEST]0a1b2c3d", "0a1b2c3d"),
    ],
)
def test_environment_id_from_a_lambda_log_stream(stream, expected):
    assert environment_id_from(stream) == expected


@pytest.mark.parametrize(
    "stream",
    [
        None,
        "",
        "$LATEST",  # what the RIE sets: shared by every run
        "2026/11/25/[$LATEST]",
        "2026/11/25/[$LATEST]0a1b",  # too short to be an environment's id
        "2026/11/25/[$LATEST]not/an id",
        "2026/11/25/[$LATEST]\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17",  # not ASCII
    ],
)
def test_no_environment_id_without_a_lambda_log_stream(stream):
    assert environment_id_from(stream) is None


def test_detect_in_lambda():
    before = datetime.now(UTC)
    identity = EnvironmentIdentity.detect(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "orders-api",
            "AWS_LAMBDA_FUNCTION_VERSION": "7",
            "AWS_LAMBDA_LOG_STREAM_NAME": LAMBDA_STREAM,
        }
    )
    assert identity.function_name == "orders-api"
    assert identity.function_version == "7"
    assert identity.environment_id == "0123456789abcdef0123456789abcdef"
    assert before <= identity.init_time <= datetime.now(UTC)
    assert identity.init_time.tzinfo is not None
    assert identity.init_date == identity.init_time.strftime("%Y-%m-%d")


def test_detect_is_stable_for_the_same_lambda_environment():
    environ = {"AWS_LAMBDA_LOG_STREAM_NAME": LAMBDA_STREAM}
    first = EnvironmentIdentity.detect(environ)
    second = EnvironmentIdentity.detect(environ)
    assert first.environment_id == second.environment_id


def test_detect_under_the_rie_is_random_per_environment():
    environ = {
        "AWS_LAMBDA_FUNCTION_NAME": "test_function",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
    }
    first = EnvironmentIdentity.detect(environ)
    second = EnvironmentIdentity.detect(environ)
    assert HEX32.match(first.environment_id)
    assert HEX32.match(second.environment_id)
    assert first.environment_id != second.environment_id
    assert first.function_version == "$LATEST"


def test_detect_outside_lambda():
    identity = EnvironmentIdentity.detect({})
    assert identity.function_name == "local"
    assert identity.function_version == "$LATEST"
    assert HEX32.match(identity.environment_id)


def test_names_are_made_safe_for_an_s3_key():
    identity = EnvironmentIdentity.detect(
        {"AWS_LAMBDA_FUNCTION_NAME": "../etc/pass wd", "AWS_LAMBDA_FUNCTION_VERSION": "//"}
    )
    assert "/" not in identity.function_name
    assert " " not in identity.function_name
    assert identity.function_name == "..-etc-pass-wd"
    assert identity.function_version == "unknown"


def test_object_key_layout():
    identity = EnvironmentIdentity(
        function_name="orders-api",
        function_version="$LATEST",
        environment_id="0123456789abcdef0123456789abcdef",
        init_time=datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC),
    )
    settings = load_settings({"LAMBDA_TASK_ROOT": "/var/task"})
    assert object_key(settings, identity) == (
        "coverage/orders-api/$LATEST/2026-11-25/0123456789abcdef0123456789abcdef.coverage"
    )
    empty = load_settings({"LAMBDA_TASK_ROOT": "/var/task", "COVERAGE_S3_PREFIX": ""})
    assert object_key(empty, identity).startswith("orders-api/$LATEST/")
    team = load_settings({"LAMBDA_TASK_ROOT": "/var/task", "COVERAGE_S3_PREFIX": "team/cov"})
    assert object_key(team, identity).startswith("team/cov/orders-api/")


def test_logging_never_raises_even_when_the_clock_or_the_stream_fails(monkeypatch):
    """The exit path's upload logs while memory may be exhausted: a failing
    timestamp, serialisation or stream must not escape."""
    import io

    from coverage_runtime.shim import structured_log

    def broken_clock() -> str:
        raise MemoryError

    monkeypatch.setattr(structured_log, "_timestamp", broken_clock)
    structured_log.error("still quiet")  # raises nothing

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    monkeypatch.undo()
    structured_log.info("odd field", value=Unprintable())
    closed = io.StringIO()
    closed.close()
    structured_log.info("closed stream", stream=closed)


def test_a_worker_gets_the_identity_its_main_process_exported():
    """Managed Instances: every worker measures for its environment's one object,
    also when it is a fresh interpreter (forkserver, spawn)."""
    identity = EnvironmentIdentity.detect({"AWS_LAMBDA_FUNCTION_NAME": "orders-api"})
    assert EnvironmentIdentity.imported(identity.exported()) == identity


@pytest.mark.parametrize("value", ["", "a\tb", "f\tv\tid\tnot a time", "f\t\tid\t2026-01-01"])
def test_no_identity_from_anything_else(value):
    assert EnvironmentIdentity.imported(value) is None
