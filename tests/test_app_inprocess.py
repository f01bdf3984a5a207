"""The example function in-process: generated events never crash it, and the pure parts are right.

Outside the shim the coverage API is a no-op, so this runs the real handler,
Powertools logger and metrics included, without a Lambda runtime.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import admin, business, config, health
from app.checks import CheckResult
from app.config import load_config
from app.errors import RequestError
from app.handler import lambda_handler, request_kind


@dataclass
class Context:
    """What awslambdaric passes as the context, with the attributes Powertools reads."""

    function_name: str = "inprocess-fn"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:inprocess-fn"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(autouse=True)
def small_limits(monkeypatch):
    """Small maxima keep generated admin requests fast; no dependency is configured."""
    for name in (
        "COVERAGE_S3_BUCKET",
        "HEALTH_DATABASE_URL",
        "HEALTH_EXTERNAL_API_URL",
        "ADMIN_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN", "true")  # the sample events' setup
    monkeypatch.setenv("ADMIN_MAX_ITERATIONS", "200")
    monkeypatch.setenv("ADMIN_MAX_ITEMS", "50")
    monkeypatch.setenv("HEALTH_CHECK_TIMEOUT_SECONDS", "0.5")
    config.reload()
    yield
    monkeypatch.undo()
    config.reload()


def call(event: Any) -> tuple[int, dict[str, Any], bool]:
    """Invoke as Lambda would (the event went through JSON) and check the response shape."""
    event = json.loads(json.dumps(event))
    result = lambda_handler(event, Context())
    assert isinstance(result, dict)
    json.dumps(result, allow_nan=False)  # strict JSON, as awslambdaric's callers parse it
    if "statusCode" in result:
        assert result["headers"] == {"content-type": "application/json"}
        document = json.loads(result["body"])
        return result["statusCode"], document, True
    status = result["error"]["status"] if "error" in result else 200
    return status, result, False


def assert_structured(status: int, document: dict[str, Any]) -> None:
    assert status != 500, document
    if status >= 400:
        error = document["error"]
        assert error["status"] == status
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["request_kind"], str)
        assert len(error["message"]) < 400, "messages never echo huge inputs"


# -- generated events -------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
numbers = st.integers(-(10**400), 10**400) | st.floats(allow_nan=False)
sections = st.fixed_dictionaries(
    {},
    optional={
        "transform": json_values,
        "validate": st.fixed_dictionaries(
            {},
            optional={
                "record": st.dictionaries(
                    st.sampled_from(["a", "b", "email"]), json_values, max_size=3
                ),
                "rules": st.dictionaries(
                    st.sampled_from(["a", "b", "email"]),
                    st.dictionaries(
                        st.sampled_from([*business.RULE_KEYS, "bogus"]),
                        json_values
                        | st.sampled_from([*business.TYPES, *business.FORMATS])
                        | st.lists(json_scalars, max_size=3),
                        max_size=4,
                    )
                    | json_values,
                    max_size=3,
                ),
            },
        )
        | json_values,
        "aggregate": st.lists(numbers, max_size=12) | st.lists(numbers | json_scalars, max_size=12),
    },
)
business_events = st.fixed_dictionaries(
    {"operation": st.sampled_from(["process_data", "nope"]) | json_values},
    optional={"data": sections | json_values},
)
process_data_events = st.fixed_dictionaries(
    {"operation": st.just("process_data"), "data": sections}
)
admin_parameters = {
    "iterations": st.integers(-5, 300) | json_values,
    "test_type": st.sampled_from(["cpu", "memory", "gpu"]) | json_values,
    "items": st.integers(-5, 80) | st.lists(json_values, max_size=60) | json_values,
    "track_coverage": st.booleans() | json_values,
}
admin_requests = st.fixed_dictionaries(
    {"admin": st.just(True), "admin_action": st.sampled_from(sorted(admin.ACTIONS))},
    optional=admin_parameters,
)
admin_events = st.fixed_dictionaries(
    {"admin": st.just(True) | json_values},
    optional={
        "admin_action": st.sampled_from([*admin.ACTIONS, "drop"]) | json_values,
        "iterations": st.integers(-5, 300) | json_values,
        "test_type": st.sampled_from(["cpu", "memory", "gpu"]) | json_values,
        "items": st.integers(-5, 80) | st.lists(json_values, max_size=60) | json_values,
        "track_coverage": st.booleans() | json_values,
        "admin_token": json_values,
    },
)
direct_events = (
    business_events | admin_events | st.fixed_dictionaries({"health": st.just(True)}) | json_values
)
bodies = st.one_of(
    st.none(),
    st.text(max_size=40),
    direct_events.map(json.dumps),
)
headers = st.none() | st.dictionaries(
    st.sampled_from(["x-admin-token", "Authorization", "content-type", "X"]),
    st.text(max_size=12) | st.integers(),
    max_size=3,
)
methods = st.sampled_from(["GET", "POST", "DELETE", "HEAD", "get"]) | st.text(max_size=5)
paths = st.sampled_from(["/health", "/health/", "/", "/process", "/admin", ""]) | st.text(
    max_size=10
)
rest_events = st.builds(
    lambda m, p, h, b, enc: {
        "httpMethod": m,
        "path": p,
        "headers": h,
        "body": b,
        "isBase64Encoded": enc,
    },
    methods,
    paths,
    headers,
    bodies,
    st.booleans(),
)
v2_events = st.builds(
    lambda m, p, h, b, domain: {
        "version": "2.0",
        "rawPath": p,
        "headers": h,
        "body": b,
        "requestContext": {"http": {"method": m}, "domainName": domain},
    },
    methods,
    paths,
    headers,
    bodies,
    st.sampled_from(["x.lambda-url.us-east-1.on.aws", "x.execute-api.us-east-1.amazonaws.com"])
    | json_values,
)
events = direct_events | rest_events | v2_events | json_values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_generated_events_always_get_a_structured_answer(event):
    status, document, _ = call(event)
    assert_structured(status, document)
    assert isinstance(request_kind(event), str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(process_data_events)
def test_generated_business_requests(event):
    status, document, _ = call(event)
    assert_structured(status, document)
    if status == 200:
        assert document["operation"] == "process_data"
        assert set(document["results"]) == set(event["data"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(admin_requests)
def test_generated_admin_requests(event):
    status, document, _ = call(event)
    assert_structured(status, document)
    if status == 200:
        assert document["admin_action"] == event["admin_action"]


# -- business logic ---------------------------------------------------------------------------


def test_aggregate_statistics():
    errors = business._Errors()
    result = business.aggregate([3, 1, 4, 1, 5, 9, 2, 6], load_config({}), errors)
    assert not errors
    assert result == {"count": 8, "sum": 31, "mean": 3.875, "min": 1, "max": 9, "median": 3.5}
    odd = business.aggregate([2.5, -1, 10], load_config({}), errors)
    assert odd["median"] == 2.5
    assert odd["sum"] == 11.5


def test_aggregate_rejects_non_numbers_and_overflow():
    errors = business._Errors()
    assert business.aggregate([1, True, "2", 10**400], load_config({}), errors) is None
    assert [e.field for e in errors] == [
        "data.aggregate[1]",
        "data.aggregate[2]",
        "data.aggregate[3]",
    ]
    errors = business._Errors()  # each value in range, their sum not (fsum raised)
    assert business.aggregate([1.7e308, 1.7e308], load_config({}), errors) is None
    assert [e.field for e in errors] == ["data.aggregate"]


def test_transform_normalises_text_keys_and_lists():
    errors = business._Errors()
    result = business.transform(
        {"firstName": "  a   b ", "Tags": ["x", " x ", "y"], "Nested Thing": {"innerKey": 1}},
        load_config({}),
        errors,
    )
    assert not errors
    assert result["result"] == {
        "first_name": "a b",
        "tags": ["x", "y"],
        "nested_thing": {"inner_key": 1},
    }


def test_transform_depth_and_length_limits():
    errors = business._Errors()
    deep: Any = "leaf"
    for _ in range(12):
        deep = {"k": deep}
    business.transform(
        {"deep": deep, "long": "x" * 11}, load_config({"APP_MAX_STRING_LENGTH": "10"}), errors
    )
    messages = " ".join(e.message for e in errors)
    assert "nested deeper than" in messages
    assert "APP_MAX_STRING_LENGTH" in messages


def test_validation_rules_and_violations():
    status, document, _ = call(
        {
            "operation": "process_data",
            "data": {
                "validate": {
                    "record": {
                        "id": "9b2f1c9e-8f2a-4d55-9a38-2f1e9c0b6a11",
                        "when": "2026-13-01",
                        "n": 5,
                    },
                    "rules": {
                        "id": {"format": "uuid"},
                        "when": {"format": "date"},
                        "n": {"type": "number", "min": 6, "one_of": [1, 2]},
                        "tags": {"type": "array", "min_length": 1},
                    },
                }
            },
        }
    )
    assert status == 200
    violations = {(v["field"], v["rule"]) for v in document["results"]["validate"]["violations"]}
    assert violations == {("when", "format"), ("n", "min"), ("n", "one_of")}


# -- health rules -------------------------------------------------------------------------------


def _variables(missing=(), invalid=()):
    return {"status": "ok", "missing_variables": list(missing), "invalid_variables": list(invalid)}


@pytest.mark.parametrize(
    ("database", "external", "s3", "missing", "percent", "expected"),
    [
        ("healthy", "healthy", "healthy", (), 10.0, "healthy"),
        ("not_configured", "not_configured", "not_configured", (), 10.0, "healthy"),
        ("timeout", "healthy", "healthy", (), 10.0, "unhealthy"),
        ("unhealthy", "timeout", "healthy", (), 10.0, "unhealthy"),
        ("healthy", "timeout", "healthy", (), 10.0, "degraded"),
        ("healthy", "healthy", "unhealthy", (), 10.0, "degraded"),
        ("healthy", "healthy", "healthy", ("AWS_REGION",), 10.0, "degraded"),
        ("healthy", "healthy", "healthy", (), 95.0, "degraded"),
    ],
)
def test_overall_status_rules(database, external, s3, missing, percent, expected):
    results = {
        "database_connection": CheckResult(database),
        "external_api": CheckResult(external),
        "s3_bucket": CheckResult(s3),
    }
    status, reasons = health.overall_status(
        results, {"percent": percent}, _variables(missing), load_config({})
    )
    assert status == expected
    assert bool(reasons) == (expected != "healthy")


def test_health_in_process_is_fast_and_complete():
    status, document, was_http = call({"path": "/health", "httpMethod": "GET"})
    assert was_http and status == 200
    assert document["s3_bucket"]["status"] == "not_configured"
    assert document["coverage_enabled"] is False
    assert "COVERAGE_S3_BUCKET" in document["environment_variables"]["missing_variables"]


def http_post(body: str) -> dict[str, Any]:
    return {"path": "/", "httpMethod": "POST", "body": body, "headers": {}}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("[" * 1000 + "]" * 1000, "invalid_json"),  # RecursionError in json.loads
        ('{"operation": "process_data", "data": ' + '{"a": ' * 80 + "1" + "}" * 81, "invalid_data"),
        ('{"operation": "process_data", "data": {"transform": {"x": 1e999}}}', "invalid_json"),
        ('{"operation": "process_data", "data": {"aggregate": [NaN]}}', "invalid_json"),
        ('{"operation": "process_data", "data": {"transform": {"x": "\ud800"}}}', None),
    ],
    ids=["nested-999", "nested-80", "1e999", "NaN", "lone-surrogate"],
)
def test_hostile_http_bodies_get_a_4xx_and_strict_json(body, code):
    result = lambda_handler(http_post(body), Context())
    document = json.loads(result["body"])  # strict: no NaN/Infinity
    assert result["statusCode"] != 500, document
    if code:
        assert result["statusCode"] == 400
        assert document["error"]["code"] == code


def test_a_lone_surrogate_in_an_http_body_string_or_token_is_not_a_500(monkeypatch):
    monkeypatch.setenv("ADMIN_TOKEN", "right-token")
    raw = {"path": "/", "httpMethod": "POST", "headers": {"x-admin-token": "\ud800x"}}
    raw["body"] = '{"admin": true, "admin_action": "coverage_status"}\ud800'
    result = lambda_handler(raw, Context())
    assert result["statusCode"] in (400, 403), result
    raw["body"] = '{"admin": true, "admin_action": "coverage_status"}'
    result = lambda_handler(raw, Context())
    assert result["statusCode"] == 403, result


def test_direct_events_with_non_finite_numbers_or_deep_nesting_get_a_400():
    for event in (
        {"operation": "process_data", "data": {"transform": {"x": float("inf")}}},
        {"operation": "process_data", "data": {"aggregate": [float("nan")]}},
        {
            "operation": "process_data",
            "data": functools.reduce(lambda d, _: {"a": d}, range(70), 1),
        },
    ):
        result = lambda_handler(event, Context())
        assert result["error"]["status"] == 400, result
        json.dumps(result, allow_nan=False)


# -- admin in-process ---------------------------------------------------------------------------


def test_admin_without_a_token_is_refused_unless_direct_invocations_are_allowed(monkeypatch):
    monkeypatch.delenv("ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN")
    config.reload()
    status, document, _ = call({"admin": True, "admin_action": "coverage_status"})
    assert (status, document["error"]["code"]) == (403, "admin_forbidden")
    assert "ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN" in document["error"]["message"]
    monkeypatch.setenv("ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN", "true")
    config.reload()
    assert call({"admin": True, "admin_action": "coverage_status"})[0] == 200


def test_admin_outside_the_shim_is_a_safe_no_op():
    status, document, _ = call({"admin": True, "admin_action": "coverage_flush"})
    assert status == 200
    assert document["uploaded"] is False
    assert document["reason"] == "coverage is not active"
    status, document, _ = call({"admin": True, "admin_action": "coverage_reset"})
    assert (status, document["reset"]) == (200, False)


def test_admin_token_is_compared_in_constant_time(monkeypatch):
    calls = []
    real = admin.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(admin.hmac, "compare_digest", spy)
    cfg = load_config({"ADMIN_TOKEN": "tok"})
    admin.authorize({"admin_token": "tok"}, None, cfg)
    with pytest.raises(RequestError) as refused:
        admin.authorize({"admin_token": "tok2"}, None, cfg)
    assert refused.value.status == 403
    assert calls == [(b"tok", b"tok"), (b"tok2", b"tok")]


def test_invalid_settings_are_listed_and_defaults_kept():
    cfg = load_config(
        {
            "ADMIN_MAX_ITERATIONS": "lots",
            "HEALTH_DATABASE_URL": "ftp://db",
            "HEALTH_EXTERNAL_API_URL": "http://127.0.0.1:99999/",
        }
    )
    assert cfg.max_iterations == 20_000
    assert cfg.health_database_url is None
    assert [p.variable for p in cfg.invalid] == [
        "ADMIN_MAX_ITERATIONS",
        "HEALTH_DATABASE_URL",
        "HEALTH_EXTERNAL_API_URL",
    ]


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"operation": "process_data", "data": {"records": []}}, "business:process_data"),
        ({"admin": True, "admin_action": "coverage_status"}, "admin:coverage_status"),
        ({"health": True}, "health"),
        ([1, 2], "invalid"),
        ({"httpMethod": "GET", "path": "/health", "headers": {}}, "health"),
        (
            {
                "httpMethod": "POST",
                "path": "/x",
                "headers": {},
                "body": json.dumps({"operation": "nope"}),
            },
            "business",
        ),
        ({"httpMethod": "DELETE", "path": "/x", "headers": {}}, "http:DELETE"),
        (
            {
                "httpMethod": "POST",
                "path": "/x",
                "headers": {},
                "body": json.dumps({"health": True}),
            },
            "health",
        ),
        (
            {"httpMethod": "POST", "path": "/x", "headers": {}, "body": "{not json"},
            "http:POST",
        ),
    ],
)
def test_each_event_is_read_once(monkeypatch, caplog, event, kind):
    """The handler reads the event's shape once per invocation, and the kind it names
    labels the answer: an error document's ``request_kind``, or the log record's."""
    import app.http

    reads = []
    real_parse = app.http.parse
    monkeypatch.setattr(app.http, "parse", lambda e: reads.append(e) or real_parse(e))
    caplog.clear()
    _, document, _ = call(event)
    assert len(reads) == 1, "the event is parsed once"
    if "error" in document:
        assert document["error"]["request_kind"] == kind
    labels = {r.request_kind for r in caplog.records if hasattr(r, "request_kind")}
    assert labels == {kind}, caplog.records


def test_one_table_names_and_serves_every_request_document():
    from app.handler import PAYLOADS, classify

    assert [entry.family for entry in PAYLOADS] == ["health", "admin", "business"]
    for action in admin.ACTIONS:
        kind, entry = classify({"admin": True, "admin_action": action})
        assert (kind, entry and entry.family) == (f"admin:{action}", "admin")
    for operation in business.OPERATIONS:
        kind, entry = classify({"operation": operation})
        assert (kind, entry and entry.family) == (f"business:{operation}", "business")
    assert classify({"admin": True, "admin_action": "rm -rf"})[0] == "admin"
    assert classify({"health": "yes"}) == ("invalid", None)
