"""Long runs through the RIE (marked slow; `.ci/run` runs them): a 10,000-invocation soak
with memory bounded and uploads only when coverage grew, and a hostile corpus of 1,000+
generated events that never crashes the function nor gets a 500."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO_ROOT

pytestmark = [pytest.mark.rie, pytest.mark.slow]

HANDLER = "app.handler.lambda_handler"
EVENTS = sorted((REPO_ROOT / "events").glob("*.json"))


def rss_kb(function: Any) -> int:
    """Resident memory of the runtime (the RIE's child process)."""
    tasks = Path(f"/proc/{function.process.pid}/task")
    children = [c for task in tasks.iterdir() for c in (task / "children").read_text().split()]
    assert children, "the RIE has started no runtime"
    for line in Path(f"/proc/{children[0]}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_soak_10000_invocations_memory_stays_bounded(start_function):
    function = start_function(
        HANDLER,
        task_root=REPO_ROOT,
        COVERAGE_SOURCE=str(REPO_ROOT / "app"),
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
    )
    bodies = [json.loads(path.read_text()) for path in EVENTS if "coverage-reset" not in path.name]
    for i in range(500):  # warm: every path once, caches filled
        function.invoke(bodies[i % len(bodies)])
    start = rss_kb(function)
    for i in range(10_000):
        result = function.invoke(bodies[i % len(bodies)])
        assert result.status == 200, result.raw[:300]
    end = rss_kb(function)
    assert function.terminate() == 0
    print(f"\nsoak: RSS {start / 1024:.1f} MB after warm-up, {end / 1024:.1f} MB after 10,000")
    assert end - start < 16 * 1024, f"RSS grew {start} -> {end} kB"
    uploads = [r for r in function.json_logs() if r["message"] == "coverage uploaded"]
    assert uploads, "checkpoints ran"
    lines = [r["recorded_lines"] for r in uploads]
    assert lines == sorted(lines), "an upload only when coverage grew"
    assert len(uploads) < 30


def hostile_events(count: int, seed: int = 20261201) -> list[Any]:
    """Deterministic hostile events: every sample event mutated, plus odd shapes."""
    rng = random.Random(seed)
    samples = [json.loads(path.read_text()) for path in EVENTS]
    odd_values: list[Any] = [
        None, True, 0, -1, 2**63, 10**30, 1.5, "", "x" * 5000, "\u0000", "\ud800", "é" * 100,
        [], {}, [[[[[]]]]], {"a": {"b": {"c": {}}}}, ["\u202e"], {"__proto__": 1},
        "' OR 1=1 --", "<script>", "../../etc/passwd", "%s%s%s", float(2**60),
    ]  # fmt: skip
    keys = ["operation", "admin", "admin_action", "data", "items", "path", "httpMethod",
            "body", "headers", "rawPath", "requestContext", "isBase64Encoded", "health",
            "iterations", "test_type", "track_coverage", "transform", "validate", "aggregate",
            "record"]  # fmt: skip

    def mutate(value: Any, depth: int = 0) -> Any:
        if isinstance(value, dict) and value and depth < 6:
            copy = dict(value)
            key = rng.choice(list(copy))
            action = rng.random()
            if action < 0.3:
                copy[key] = rng.choice(odd_values)
            elif action < 0.5:
                del copy[key]
            elif action < 0.7:
                copy[rng.choice(keys)] = rng.choice(odd_values)
            else:
                copy[key] = mutate(copy[key], depth + 1)
            return copy
        if isinstance(value, list) and value and depth < 6:
            copy = list(value)
            copy[rng.randrange(len(copy))] = rng.choice(odd_values)
            return copy
        return rng.choice(odd_values)

    events: list[Any] = []
    while len(events) < count:
        base = rng.choice(samples)
        event = mutate(base)
        if isinstance(event, dict) and "body" in event and rng.random() < 0.5:
            event["body"] = rng.choice(
                ["{", "[" * 50, '{"operation": "process_data", "data": 1e999}', "\ud800", "NaN",
                 json.dumps(mutate(base))[:2000], "eyJhIjox", ""]
            )  # fmt: skip
        events.append(event)
    return events


def test_hostile_corpus_never_crashes_nor_gets_a_500(start_function):
    events = hostile_events(1200)
    function = start_function(
        HANDLER, task_root=REPO_ROOT, COVERAGE_SOURCE=str(REPO_ROOT / "app"), ADMIN_TOKEN="t0ken"
    )
    internal = []
    for event in events:
        result = function.invoke(event)
        assert result.status == 200, result.raw[:300]  # the runtime answered
        body = result.body
        if isinstance(body, dict) and "statusCode" in body:
            document = json.loads(body["body"])  # strict JSON
            status = body["statusCode"]
        else:
            document = body
            status = (body.get("error") or {}).get("status", 200) if isinstance(body, dict) else 0
            if isinstance(body, dict) and body.get("errorType"):
                status = 502  # a runtime-level error (e.g. Runtime.UnmarshalError)
        if status >= 500:
            internal.append((event, document))
    assert function.terminate() == 0
    assert "did not exit after deadline" not in function.logs()
    assert internal == [], f"{len(internal)} of {len(events)} got a 5xx, first: {internal[:2]}"
