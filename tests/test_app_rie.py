"""The example function (app/) through the real shim, awslambdaric, the AWS RIE and moto S3.

Every event in events/ is invoked and its response asserted; the coverage data
that reached S3 shows every app/ module ran.  Health checks talk to real
servers on 127.0.0.1 started here: a TCP listener, an HTTP server, one that
accepts and never answers, and a port where nothing listens.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from coverage_runtime.shim.status import ActiveStatus
from tests.harness import REPO_ROOT, download_objects, executed_lines, free_port, line_of

pytestmark = pytest.mark.rie

APP_DIR = REPO_ROOT / "app"
EVENTS_DIR = REPO_ROOT / "events"
HANDLER = "app.handler.lambda_handler"
SERVICE = "lambda-coverage-example"
HEALTH_KEYS = {
    "status",
    "coverage_enabled",
    "layer_version",
    "database_connection",
    "external_api",
    "memory_usage",
    "environment_variables",
    "overall_status",
    "coverage",
    "s3_bucket",
}


# -- helpers ---------------------------------------------------------------------------


def load_event(name: str) -> Any:
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def answer(body: Any) -> tuple[int, dict[str, Any], bool]:
    """(status, document, was_http) from a response: HTTP-shaped or a direct document."""
    if isinstance(body, dict) and "statusCode" in body:
        assert body["headers"]["content-type"] == "application/json"
        return body["statusCode"], json.loads(body["body"]), True
    assert isinstance(body, dict), body
    status = body["error"]["status"] if "error" in body else 200
    return status, body, False


def app_records(logs: str) -> list[dict[str, Any]]:
    """The function's own JSON log lines (Powertools Logger) and EMF records."""
    records = []
    for line in logs.splitlines():
        if line.startswith("{") and (f'"service":"{SERVICE}"' in line or '"_aws"' in line):
            records.append(json.loads(line))
    return records


def error_code(code: str) -> Callable[[dict], None]:
    def check(doc: dict) -> None:
        assert doc["error"]["code"] == code, doc
        assert doc["error"]["message"]
        assert doc["error"]["request_kind"]

    return check


def healthy(doc: dict) -> None:
    assert set(doc) >= HEALTH_KEYS, set(doc) ^ HEALTH_KEYS
    assert doc["overall_status"] == "healthy", doc["reasons"]
    assert doc["coverage_enabled"] is True
    assert doc["s3_bucket"]["status"] == "healthy"
    assert doc["database_connection"] == {
        "status": "not_configured",
        "variable": "HEALTH_DATABASE_URL",
    }
    assert doc["external_api"]["status"] == "not_configured"
    assert doc["memory_usage"]["rss_mb"] > 0
    assert doc["environment_variables"] == {
        "status": "ok",
        "missing_variables": [],
        "invalid_variables": [],
    }
    assert doc["coverage"]["mode"] == "full"


def process_data_results(doc: dict) -> None:
    results = doc["results"]
    assert results["transform"]["result"]["customer_name"] == "Ada Lovelace"
    assert results["transform"]["result"]["tags"] == ["vip", "beta"]
    assert results["transform"]["result"]["shipping_address"] == {
        "street_line": "12 St James's Sq",
        "city": "London",
    }
    assert results["validate"] == {"valid": True, "violations": [], "fields_checked": 4}
    assert results["aggregate"] == {
        "count": 6,
        "sum": 91.75,
        "mean": pytest.approx(91.75 / 6),
        "min": 3,
        "max": 42,
        "median": 10.25,
    }


def performance(test_type: str) -> Callable[[dict], None]:
    def check(doc: dict) -> None:
        assert doc["test_type"] == test_type
        assert doc["iterations"] == 2000
        assert doc["unmeasured_ms"] > 0
        assert doc["measured_ms"] > 0
        assert doc["overhead_ratio"] == pytest.approx(
            doc["measured_ms"] / doc["unmeasured_ms"], rel=0.01
        )
        assert doc["same_result"] is True
        assert doc["coverage"]["enabled"] is True

    return check


def batch(doc: dict) -> None:
    assert doc["processed"] == 200
    assert doc["measured_items"] == 20
    assert doc["unmeasured_items"] == 180
    assert doc["kinds"] == {"number": 100, "text": 100}


def batch_untracked(doc: dict) -> None:
    assert doc["processed"] == 7
    assert doc["measured_items"] == 0
    assert doc["kinds"] == {"number": 2, "text": 1, "object": 1, "list": 1, "flag": 2}


def coverage_status(doc: dict) -> None:
    coverage = doc["coverage"]
    assert coverage["enabled"] is True
    assert set(coverage) == set(ActiveStatus.__annotations__), "status() as it is"
    assert coverage["mode"] == "full"
    assert coverage["files_measured"] >= 5
    assert coverage["recorded_lines"] > 100
    assert coverage["invocations"] >= 1
    assert coverage["uploads_enabled"] is True
    assert "pending_checkpoint" in coverage
    assert "last_upload" in coverage


def flushed(doc: dict) -> None:
    assert doc["uploaded"] is True
    assert doc["upload"]["key"].endswith(".coverage")


def invalid_record(doc: dict) -> None:
    violations = doc["results"]["validate"]["violations"]
    assert doc["results"]["validate"]["valid"] is False
    assert {(v["field"], v["rule"]) for v in violations} == {
        ("email", "format"),
        ("age", "max"),
        ("country", "one_of"),
        ("name", "required"),
    }


def wrong_types(doc: dict) -> None:
    error_code("invalid_data")(doc)
    fields = {e["field"] for e in doc["error"]["field_errors"]}
    assert fields == {
        "data.transform",
        "data.validate.rules.age.type",
        "data.validate.rules.age.min",
        "data.aggregate[1]",
        "data.aggregate[2]",
    }


def limit(variable: str) -> Callable[[dict], None]:
    def check(doc: dict) -> None:
        error_code("limit_exceeded")(doc)
        assert doc["error"]["limit_variable"] == variable

    return check


# name -> (expected status, HTTP-shaped response?, check of the document)
EXPECTED: dict[str, tuple[int, bool, Callable[[dict], None]]] = {
    "health": (200, True, healthy),
    "health-direct": (200, False, healthy),
    "health-rest-v1": (200, True, healthy),
    "health-http-api-v2": (200, True, healthy),
    "health-function-url": (200, True, healthy),
    "admin-coverage-status": (200, False, coverage_status),
    "admin-performance-test-cpu": (200, False, performance("cpu")),
    "admin-performance-test-memory": (200, False, performance("memory")),
    "admin-batch-process": (200, False, batch),
    "admin-batch-process-items-untracked": (200, False, batch_untracked),
    "admin-coverage-flush": (200, False, flushed),
    "business-process-data": (200, False, process_data_results),
    "business-process-data-rest-v1": (200, True, process_data_results),
    "business-process-data-http-api-v2": (200, True, process_data_results),
    "business-process-data-function-url-base64": (200, True, process_data_results),
    "business-transform-only": (
        200,
        False,
        lambda d: d["results"]["transform"]["result"]["languages"] == ["COBOL", "FLOW-MATIC"],
    ),
    "business-validate-invalid-record": (200, False, invalid_record),
    "business-aggregate-empty": (
        200,
        False,
        lambda d: d["results"]["aggregate"]["count"] == 0,
    ),
    "bad-unknown-operation": (400, False, error_code("unknown_operation")),
    "bad-unknown-admin-action": (400, False, error_code("unknown_admin_action")),
    "bad-unrecognized-event": (400, False, error_code("unrecognized_event")),
    "bad-not-an-object": (400, False, error_code("invalid_event")),
    "bad-missing-data": (400, False, error_code("missing_field")),
    "bad-wrong-types": (400, False, wrong_types),
    "bad-unknown-section": (400, False, error_code("unknown_section")),
    "bad-malformed-json-body-rest-v1": (400, True, error_code("invalid_json")),
    "bad-missing-body-http-api-v2": (400, True, error_code("missing_body")),
    "bad-route-not-found-rest-v1": (404, True, error_code("route_not_found")),
    "bad-health-wrong-method-http-api-v2": (405, True, error_code("method_not_allowed")),
    "bad-admin-over-http-without-token": (403, True, error_code("admin_forbidden")),
    "bad-performance-test-too-many-iterations": (400, False, limit("ADMIN_MAX_ITERATIONS")),
    "bad-performance-test-unknown-type": (400, False, error_code("invalid_test_type")),
    "bad-batch-process-too-many-items": (400, False, limit("ADMIN_MAX_ITEMS")),
    "bad-batch-process-wrong-types": (400, False, error_code("invalid_type")),
    "bad-oversized-aggregate": (400, False, limit("APP_MAX_AGGREGATE_VALUES")),
    "bad-oversized-text": (400, False, error_code("invalid_data")),
}
# Dropping the measured data would spoil the coverage assertions of the
# all-events run, so the reset event has its own test.
RESET_EVENT = "admin-coverage-reset"


@pytest.fixture
def start_app(start_function) -> Callable[..., Any]:
    """Start app.handler under the RIE, measuring app/ only."""

    def start(**overrides: str) -> Any:
        overrides.setdefault("COVERAGE_SOURCE", str(APP_DIR))
        overrides.setdefault("ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN", "true")  # the sample events
        return start_function(HANDLER, task_root=REPO_ROOT, **overrides)

    return start


# -- every event ------------------------------------------------------------------------


def test_every_event_file_has_an_expectation():
    names = {path.stem for path in EVENTS_DIR.glob("*.json")}
    assert names == set(EXPECTED) | {RESET_EVENT}
    for name in names:
        assert name.startswith(("health", "admin-", "business-", "bad-")), name
        expected_status = EXPECTED.get(name, (200,))[0]
        assert name.startswith("bad-") == (expected_status >= 400), name
    table = (EVENTS_DIR / "README.md").read_text()
    for name in names:
        assert f"`{name}.json`" in table, f"{name}.json is missing from events/README.md"


def test_every_event_through_the_rie(start_app, s3, bucket, tmp_path):
    function = start_app()
    for name in sorted(EXPECTED):
        status, was_http, check = EXPECTED[name]
        result = function.invoke(load_event(name))
        assert result.status == 200, (name, result.raw)
        got_status, document, got_http = answer(result.body)
        assert (got_status, got_http) == (status, was_http), (name, document)
        check(document)
    assert function.terminate() == 0

    records = app_records(function.logs())
    handled = [r for r in records if r.get("message") == "request handled"]
    assert len(handled) == sum(1 for s, _, _ in EXPECTED.values() if s < 400)
    assert handled[0]["cold_start"] is True
    assert all(r["cold_start"] is False for r in handled[1:])
    for record in handled:
        assert record["level"] == "INFO"
        assert record["function_name"] == "test-fn"
        assert record["function_request_id"]
        assert record["timestamp"].endswith("Z")
    errors = [r for r in records if r.get("level") == "ERROR"]
    assert len(errors) == sum(1 for s, _, _ in EXPECTED.values() if s >= 400)
    for record in errors:
        assert record["error_type"] and record["error_message"] and record["request_kind"]
        assert record["status_code"] >= 400
    emf = [r for r in records if "_aws" in r]
    assert len(emf) == len(EXPECTED)
    for record in emf:
        names = {m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        assert {"Duration", "MemoryRss", "ErrorResponses"} <= names
        assert record["MemoryRss"][0] > 0
    overhead = [r["CoverageOverheadRatio"][0] for r in emf if "CoverageOverheadRatio" in r]
    assert len(overhead) == 2 and all(ratio > 0 for ratio in overhead)

    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1
    data_file = next(iter(objects.values()))
    for module in sorted(APP_DIR.glob("*.py")):
        assert executed_lines(data_file, module), f"{module.name} never ran"
    admin_py = APP_DIR / "admin.py"
    assert line_of(admin_py, "result = process_item(item)") in executed_lines(data_file, admin_py)


def test_coverage_reset_drops_what_was_measured(start_app):
    function = start_app()
    before = function.invoke(load_event("admin-coverage-status")).body["coverage"]
    reset = function.invoke(load_event(RESET_EVENT)).body
    assert reset["reset"] is True
    assert reset["coverage"]["recorded_lines"] < before["recorded_lines"]
    after = function.invoke(load_event("admin-coverage-status")).body["coverage"]
    assert after["recorded_lines"] < before["recorded_lines"]
    assert function.terminate() == 0


def test_coverage_pause_and_resume_switch_measuring_at_run_time(start_app, s3, bucket, tmp_path):
    """The seed's toggle: token-gated like the other admin actions; paused, the
    environment measures nothing, and what it measured before still ships."""
    function = start_app(ADMIN_TOKEN="s3cret-token", ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN="false")
    token = {"admin_token": "s3cret-token"}
    pause = {"admin": True, "admin_action": "coverage_pause"}
    refused = function.invoke(pause)
    assert refused.body["error"]["code"] == "admin_token_required", refused.body
    paused = function.invoke({**pause, **token}).body
    assert paused["paused"] is True and paused["coverage"]["paused"] is True
    before = paused["coverage"]["recorded_lines"]
    function.invoke(load_event("business-transform-only"))
    status = function.invoke({"admin": True, "admin_action": "coverage_status", **token})
    assert status.body["coverage"]["recorded_lines"] == before, "nothing new while paused"
    resumed = function.invoke({"admin": True, "admin_action": "coverage_resume", **token}).body
    assert resumed["paused"] is False
    function.invoke(load_event("business-transform-only"))
    status = function.invoke({"admin": True, "admin_action": "coverage_status", **token})
    assert status.body["coverage"]["recorded_lines"] > before
    assert function.terminate() == 0
    assert download_objects(s3, bucket, tmp_path), "what was measured ships"


# -- selective coverage in action -----------------------------------------------------------


def test_batch_sampling_and_excluded_blocks_in_selective_mode(start_app, s3, bucket, tmp_path):
    function = start_app(COVERAGE_MODE="selective")
    tracked = function.invoke(
        {"admin": True, "admin_action": "batch_process", "items": 20, "track_coverage": True}
    ).body
    assert tracked["measured_items"] == 2
    untracked = function.invoke(
        {
            "admin": True,
            "admin_action": "batch_process",
            "items": ["Text only"],
            "track_coverage": False,
        }
    ).body
    assert untracked["measured_items"] == 0
    status = function.invoke(load_event("admin-coverage-status")).body["coverage"]
    assert status["mode"] == "selective"
    assert function.terminate() == 0

    objects = download_objects(s3, bucket, tmp_path)
    data_file = next(iter(objects.values()))
    workloads = APP_DIR / "workloads.py"
    lines = executed_lines(data_file, workloads)
    assert line_of(workloads, '"kind": "number", "value": item, "score": item * item') in lines
    assert line_of(workloads, '"kind": "text"') not in lines, "odd items are never measured"
    assert line_of(workloads, "def process_item") not in lines, "imports are not measured"


def test_performance_test_excludes_the_unmeasured_run(start_app):
    function = start_app()
    doc = function.invoke(
        {
            "admin": True,
            "admin_action": "performance_test",
            "iterations": 300,
            "test_type": "memory",
        }
    ).body
    assert doc["iterations"] == 300
    assert doc["same_result"] is True
    assert doc["coverage"]["core"] in ("ctrace", "sysmon", "pytrace")
    assert doc["overhead_ratio"] > 0
    assert function.terminate() == 0


# -- admin safety --------------------------------------------------------------------------------


def _http_admin(token_header: dict[str, str] | None) -> dict[str, Any]:
    event = load_event("bad-admin-over-http-without-token")
    event["headers"] = {**event["headers"], **(token_header or {})}
    return event


def test_admin_token_rules(start_app):
    function = start_app(ADMIN_TOKEN="s3cret-token")
    status_request = {"admin": True, "admin_action": "coverage_status"}
    cases = [
        (status_request, 401, "admin_token_required"),
        ({**status_request, "admin_token": "wrong"}, 403, "admin_token_invalid"),
        ({**status_request, "admin_token": 42}, 401, "admin_token_required"),
        ({**status_request, "admin_token": "s3cret-token"}, 200, None),
        (_http_admin(None), 401, "admin_token_required"),
        (_http_admin({"X-Admin-Token": "s3cret-tokeN"}), 403, "admin_token_invalid"),
        (_http_admin({"X-Admin-Token": "s3cret-token"}), 200, None),
        (_http_admin({"Authorization": "Bearer s3cret-token"}), 200, None),
        (_http_admin({"Authorization": "Basic s3cret-token"}), 401, "admin_token_required"),
    ]
    for event, status, code in cases:
        got_status, doc, _ = answer(function.invoke(event).body)
        assert got_status == status, (event, doc)
        if code:
            assert doc["error"]["code"] == code
            assert "s3cret" not in json.dumps(doc)
        else:
            assert doc["coverage"]["enabled"] is True
    # The token guards business requests not at all, and health neither.
    assert answer(function.invoke(load_event("health-rest-v1")).body)[0] == 200
    assert answer(function.invoke(load_event("business-transform-only")).body)[0] == 200
    assert function.terminate() == 0
    assert "s3cret-token" not in function.logs()


def test_bounded_inputs_follow_the_configured_maxima(start_app):
    function = start_app(
        ADMIN_MAX_ITERATIONS="50", ADMIN_MAX_ITEMS="5", APP_MAX_PAYLOAD_BYTES="600"
    )
    perf = {"admin": True, "admin_action": "performance_test", "test_type": "cpu"}
    assert answer(function.invoke({**perf, "iterations": 50}).body)[0] == 200
    status, doc, _ = answer(function.invoke({**perf, "iterations": 51}).body)
    assert (status, doc["error"]["code"], doc["error"]["limit"]) == (400, "limit_exceeded", 50)
    status, doc, _ = answer(function.invoke({**perf, "iterations": 0}).body)
    assert (status, doc["error"]["code"]) == (400, "out_of_range")

    items = {"admin": True, "admin_action": "batch_process"}
    assert answer(function.invoke({**items, "items": [1, 2, 3, 4, 5]}).body)[0] == 200
    status, doc, _ = answer(function.invoke({**items, "items": [1, 2, 3, 4, 5, 6]}).body)
    assert (status, doc["error"]["limit_variable"]) == (400, "ADMIN_MAX_ITEMS")
    status, doc, _ = answer(function.invoke({**items, "items": 6}).body)
    assert (status, doc["error"]["limit"]) == (400, 5)

    big = {"operation": "process_data", "data": {"aggregate": list(range(300))}}
    status, doc, _ = answer(function.invoke(big).body)
    assert (status, doc["error"]["code"]) == (413, "payload_too_large")
    over_http = load_event("business-process-data-rest-v1")
    status, doc, was_http = answer(function.invoke(over_http).body)
    assert (status, doc["error"]["code"], was_http) == (413, "payload_too_large", True)
    assert function.terminate() == 0


# -- health with real dependencies -----------------------------------------------------------


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that answers 200."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/status"
    server.shutdown()
    server.server_close()


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    """A TCP listener (a stand-in database port) that accepts and closes connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    sock.close()


@pytest.fixture
def hanging_server(hanging_endpoint: str) -> str:
    """Accepts connections and never answers: the health check must time out."""
    return f"{hanging_endpoint}/status"


@pytest.fixture
def refused_port() -> int:
    """A port where nothing listens: connections are refused."""
    return free_port()


def test_health_with_reachable_dependencies(start_app, http_server, tcp_listener):
    function = start_app(
        HEALTH_DATABASE_URL=f"postgresql://app:hunter2@127.0.0.1:{tcp_listener}/orders",
        HEALTH_EXTERNAL_API_URL=http_server,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
    )
    status, doc, _ = answer(function.invoke(load_event("health-http-api-v2")).body)
    assert status == 200
    assert doc["overall_status"] == "healthy", doc["reasons"]
    database = doc["database_connection"]
    assert database["status"] == "healthy"
    assert database["target"] == f"postgresql://127.0.0.1:{tcp_listener}"
    assert database["check"] == "tcp_connect"
    assert "hunter2" not in json.dumps(doc), "credentials never reach the document"
    assert doc["external_api"]["status"] == "healthy"
    assert doc["external_api"]["status_code"] == 200
    assert doc["s3_bucket"]["status"] == "healthy"
    memory = doc["memory_usage"]
    assert memory["limit_mb"] == 512
    assert memory["percent_of"] == "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
    assert memory["percent"] == pytest.approx(memory["rss_mb"] / 512 * 100, abs=0.1)
    assert function.terminate() == 0


def test_health_times_out_on_a_hanging_api_and_reports_refusals(
    start_app, hanging_server, refused_port
):
    function = start_app(
        HEALTH_DATABASE_URL=f"tcp://127.0.0.1:{refused_port}",
        HEALTH_EXTERNAL_API_URL=hanging_server,
        HEALTH_CHECK_TIMEOUT_SECONDS="1",
        COVERAGE_S3_BUCKET="no-such-bucket-here",
    )
    started = time.monotonic()
    status, doc, _ = answer(function.invoke(load_event("health-rest-v1")).body)
    elapsed = time.monotonic() - started
    assert status == 503
    assert doc["overall_status"] == "unhealthy"
    assert doc["database_connection"]["status"] == "unhealthy"
    assert "ConnectionRefusedError" in doc["database_connection"]["error"]
    assert doc["external_api"]["status"] == "timeout"
    assert doc["s3_bucket"]["status"] == "unhealthy"
    assert "does not exist" in doc["s3_bucket"]["error"]
    assert doc["reasons"][0] == "database_connection: unhealthy"
    # Concurrent checks: the answer comes within one timeout (plus slack for a
    # shared machine), not after the hanging server gives up (never).
    assert elapsed < 6, elapsed
    assert doc["check_timeout_seconds"] == 1
    # Direct invocations get the document itself, whatever the status.
    direct = function.invoke(load_event("health-direct")).body
    assert direct["overall_status"] == "unhealthy"
    assert function.terminate() == 0, "hung checks do not block the shutdown"


def test_health_degraded_when_the_external_api_refuses(start_app, refused_port):
    function = start_app(
        HEALTH_EXTERNAL_API_URL=f"http://127.0.0.1:{refused_port}/",
        HEALTH_CHECK_TIMEOUT_SECONDS="not-a-number",
    )
    status, doc, _ = answer(function.invoke(load_event("health-function-url")).body)
    assert status == 200, "degraded still serves"
    assert doc["overall_status"] == "degraded"
    assert doc["external_api"]["status"] == "unhealthy"
    assert "ConnectionRefusedError" in doc["external_api"]["error"]
    assert doc["database_connection"]["status"] == "not_configured"
    invalid = doc["environment_variables"]["invalid_variables"]
    assert [item["variable"] for item in invalid] == ["HEALTH_CHECK_TIMEOUT_SECONDS"]
    assert doc["environment_variables"]["status"] == "incomplete"
    assert doc["check_timeout_seconds"] == 2.0, "the default is kept"
    assert function.terminate() == 0
    refused = [
        r for r in app_records(function.logs()) if r.get("error_type") == "invalid_configuration"
    ]
    assert len(refused) == 1, "reported once, at init"
    assert refused[0]["level"] == "ERROR"
    assert refused[0]["variable"] == "HEALTH_CHECK_TIMEOUT_SECONDS"
    assert refused[0]["value"] == "not-a-number"


def test_request_kinds_become_coverage_contexts(start_app, s3, bucket, tmp_path):
    function = start_app(COVERAGE_CONTEXTS="1")
    for name in (
        "health-direct",
        "business-process-data",
        "admin-batch-process",
        "bad-not-an-object",
        "business-process-data-rest-v1",  # a POST is named by its body
        "bad-route-not-found-rest-v1",
    ):
        function.invoke(load_event(name))
    assert function.terminate() == 0
    from coverage import CoverageData

    data_file = next(iter(download_objects(s3, bucket, tmp_path).values()))
    data = CoverageData(basename=str(data_file))
    data.read()
    contexts = set(data.measured_contexts())
    assert {"health", "business:process_data", "admin:batch_process", "invalid"} <= contexts
    assert "http:GET" in contexts, "a request with no document is named by its method"
    assert "http:POST" not in contexts, "a POST with a business body is a business request"


def test_health_without_coverage_runtime(start_app):
    function = start_app(COVERAGE_ENABLED="false")
    status, doc, _ = answer(function.invoke(load_event("health")).body)
    assert status == 200
    assert doc["coverage_enabled"] is False
    assert doc["coverage"]["enabled"] is False
    perf = function.invoke(load_event("admin-performance-test-cpu")).body
    assert perf["coverage"]["enabled"] is False
    assert "note" in perf
    assert function.terminate() == 0


@pytest.mark.parametrize(
    "database_url",
    [
        "postgres://admin:PLANTED-DB-PASSWORD@127.0.0.1:1/orders",  # valid: the check fails
        "ftp://admin:PLANTED-DB-PASSWORD@127.0.0.1:1/orders",  # invalid: logged at init
    ],
    ids=["valid-url", "invalid-url"],
)
def test_no_planted_secret_reaches_any_log_or_response(start_app, tmp_path, database_url):
    """Every sample event, over HTTP and directly, with credentials planted in the
    database URL, the admin token and the AWS keys: none of them is ever printed."""
    secrets = ["PLANTED-DB-PASSWORD", "PLANTED-ADMIN-TOKEN", "PLANTED-AWS-SECRET", "PLANTED-STS"]
    function = start_app(
        HEALTH_DATABASE_URL=database_url,
        ADMIN_TOKEN="PLANTED-ADMIN-TOKEN",
        AWS_SECRET_ACCESS_KEY="PLANTED-AWS-SECRET",
        AWS_SESSION_TOKEN="PLANTED-STS",
    )
    answers = []
    for path in sorted(EVENTS_DIR.glob("*.json")):
        answers.append(function.invoke(json.loads(path.read_text())).raw.decode())
    answers.append(function.invoke({"admin": True, "admin_action": "coverage_status"}).raw.decode())
    assert function.terminate() == 0
    output = function.logs() + "\n".join(answers)
    for secret in secrets:
        assert secret not in output, f"{secret} was printed"
    assert "***@127.0.0.1" in output or database_url.startswith("postgres")


def test_an_unwritable_data_directory_degrades_health_and_loses_nothing(
    start_app, s3, bucket, tmp_path
):
    """Through the RIE: the data directory stops being writable (replaced by a file, which
    stops root too); the function keeps serving, flush says why with a 503, health is
    degraded with the reason; once writable again, S3 gets everything measured."""
    import shutil

    data_dir = tmp_path / "coverage-data-broken"
    function = start_app(COVERAGE_DATA_DIR=str(data_dir))
    assert answer(function.invoke(load_event("health")).body)[0] == 200
    flush = {"admin": True, "admin_action": "coverage_flush"}
    assert answer(function.invoke(flush).body)[0] == 200
    shutil.rmtree(data_dir)
    data_dir.write_text("not a directory")
    assert answer(function.invoke(load_event("business-process-data")).body)[0] == 200
    status, document, _ = answer(function.invoke(flush).body)
    assert status == 503, document
    assert (
        "could not be written" in document["error"]["message"]
        or "not writable" in (document["error"]["message"])
    )
    status, health_doc, _ = answer(function.invoke({"health": True}).body)
    assert status in (200, 503), health_doc
    assert health_doc["overall_status"] != "healthy"
    assert any(reason.startswith("coverage: ") for reason in health_doc["reasons"])
    data_dir.unlink()
    data_dir.mkdir()
    assert answer(function.invoke(flush).body)[0] == 200
    assert function.terminate() == 0
    [(_, path)] = download_objects(s3, bucket, tmp_path).items()
    business = REPO_ROOT / "app" / "business.py"
    assert line_of(business, "def aggregate(") + 2 in executed_lines(path, business)
