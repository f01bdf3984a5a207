"""Per-invocation labels through the real RIE: from the caller's ClientContext,
an HTTP event's header and the decorator's kind, recorded as coverage.py
dynamic contexts in the object the environment uploads; on the venv's Python
(3.11 here: the C tracer) and on the newest CPython 3.12+ (sysmon, recorder).
The image's 3.14 (sysmon with branches) runs `test_container`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FUNCTIONS_DIR
from tests.harness import (
    REPO_ROOT,
    client_context,
    download_objects,
    line_of,
    lines_by_label,
)
from tests.test_recorder_rie import sysmon_runtime

pytestmark = pytest.mark.rie

SOURCE = FUNCTIONS_DIR / "labelled.py"


@pytest.fixture(params=["venv", "sysmon"])
def start(request, start_function):
    """Start ``labelled.handler`` on the venv's Python or on a sysmon one."""
    if request.param == "venv":
        return lambda **env: start_function("labelled.handler", **env)
    python = sysmon_runtime()

    def on_sysmon(**env: str):
        return start_function(
            "labelled.handler",
            command=[python, "-m", "coverage_runtime", "labelled.handler"],
            PYTHONPATH=str(REPO_ROOT),
            **env,
        )

    return on_sysmon


def stop(function) -> int:
    """SIGTERM: the shutdown builds coverage.py and the S3 client, and ships."""
    return function.terminate()


def labels_of(s3, bucket, tmp_path) -> dict[int, set[str]]:
    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1, sorted(objects)
    return lines_by_label(next(iter(objects.values())), SOURCE)


def at(marker: str) -> int:
    return line_of(SOURCE, f"# marker: {marker}")


def http_event(route: str, label: str | None = None, header: str = "x-coverage-label") -> dict:
    """An API Gateway HTTP API (v2) event, as Lambda delivers it."""
    headers = {"content-type": "application/json"}
    if label is not None:
        headers[header] = label
    return {
        "version": "2.0",
        "routeKey": "GET /x",
        "rawPath": "/x",
        "headers": headers,
        "requestContext": {"http": {"method": "GET", "path": "/x"}},
        "route": route,
    }


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_each_line_records_every_label_it_ran_under(start, s3, bucket, tmp_path, branch):
    function = start(COVERAGE_BRANCH=str(branch).lower(), COVERAGE_LABELS="client-context,kind")
    test_a = "tests/test_api.py::test_orders[eu]"
    assert function.invoke({"route": "orders"}, headers=client_context({"coverage-label": test_a}))
    assert function.invoke({"route": "users"}, headers=client_context({"coverage-label": "t-b"}))
    assert function.invoke({"route": "users"}).status == 200  # no request label: the kind
    # The same label again, after others: its lines are recorded under it once more.
    again = function.invoke({"route": "orders"}, headers=client_context({"coverage-label": "t-b"}))
    assert again.status == 200
    assert stop(function) == 0
    found = labels_of(s3, bucket, tmp_path)
    assert found[at("init-only")] == {"init"}, "module level runs at init only"
    assert found[at("orders")] == {test_a, "t-b"}
    assert found[at("users")] == {"t-b", "kind:users"}
    assert found[at("shared")] == {test_a, "t-b", "kind:users"}
    assert found[at("shared-odd")] == {test_a, "t-b"}, "shared(1) never takes the odd branch"
    assert found[at("handler")] == {test_a, "t-b", "kind:users"}
    if branch:
        import coverage

        objects = download_objects(s3, bucket, tmp_path)
        data = coverage.CoverageData(str(next(iter(objects.values()))))
        data.read()
        assert data.has_arcs()
        data.set_query_contexts(["^kind:users$"])
        arcs = set(data.arcs(str(SOURCE)) or ())
        assert (at("shared-odd") - 1, at("shared-odd")) not in arcs


def test_the_header_counts_only_where_allowed(start, s3, bucket, tmp_path):
    function = start(COVERAGE_LABELS="client-context,header")
    assert function.invoke(http_event("orders", "from-header")).status == 200
    # ClientContext first, header second.
    both = function.invoke(
        http_event("users", "header-loses"), headers=client_context({"coverage-label": "cc-wins"})
    )
    assert both.status == 200
    # Header names are case-insensitive (REST APIs keep the caller's case).
    assert function.invoke(http_event("orders", "upper", header="X-Coverage-Label")).status == 200
    stop(function)
    found = labels_of(s3, bucket, tmp_path)
    assert found[at("orders")] == {"from-header", "upper"}
    assert found[at("users")] == {"cc-wins"}


def test_a_header_is_ignored_unless_allowed(start, s3, bucket, tmp_path):
    function = start()  # the default: ClientContext only
    assert function.invoke(http_event("orders", "anyone")).status == 200
    stop(function)
    found = labels_of(s3, bucket, tmp_path)
    assert found[at("orders")] == {""}, "unlabelled: coverage.py's empty context"


def test_untrusted_labels_are_bounded_and_never_fail_the_invocation(start, s3, bucket, tmp_path):
    function = start(COVERAGE_MAX_LABELS="2")
    hostile = "\u202eevil\x1b[31m\n" + "x" * 500
    for label in (hostile, "second", "third", "fourth", ["not", "a", "string"], ""):
        done = function.invoke(
            {"route": "users"}, headers=client_context({"coverage-label": label})
        )
        assert done.status == 200, done.body
    status = function.invoke(
        {"route": "status"}, headers=client_context({"coverage-label": "fifth"})
    ).body["labels"]
    assert status["distinct"] == 2 and status["limit"] == 2
    assert status["overflowed"] == 3  # third, fourth, fifth
    assert status["current"] == "(other)"
    stop(function)
    found = labels_of(s3, bucket, tmp_path)
    users = found[at("users")]
    cleaned = next(label for label in users if "evil" in label)
    assert cleaned.isprintable() and len(cleaned) == 200 and cleaned.startswith("?evil?[31m")
    assert users == {cleaned, "second", "(other)", ""}
    warnings = [
        r for r in function.json_logs() if "too many distinct coverage labels" in r["message"]
    ]
    assert len(warnings) == 1, "logged once"
    raw = function.logs()
    assert "\u202e" not in raw and "\x1b" not in raw, "labels never reach the log unescaped"
    assert json.dumps(warnings[0])  # a JSON record


def test_labels_none_records_as_before(start, s3, bucket, tmp_path):
    function = start(COVERAGE_LABELS="none")
    assert function.invoke({"route": "orders"}, headers=client_context({"coverage-label": "x"}))
    stop(function)
    found = labels_of(s3, bucket, tmp_path)
    assert found[at("orders")] == {""} and found[at("init-only")] == {""}
