"""The combiner handler (coverage_runtime.report.combiner) against moto's S3 server over HTTP.

It merges where the data is and writes the merged data file, the reports and a
JSON summary back under ``${COVERAGE_S3_PREFIX}combined/``: in one invocation,
or as distributed-map batches (shards) plus a reduce step.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coverage_runtime.errors import ReportError
from coverage_runtime.report import combiner
from coverage_runtime.report.cli import main
from tests.harness import FAKE_CREDENTIALS
from tests.report_samples.envs import (
    BRANCH,
    LINE,
    SAMPLES,
    arcs_of,
    lines_of,
    run_envs,
    union_arcs,
    union_lines,
    upload,
)


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_envs(tmp_path_factory)


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, s3_server: Any, bucket: str, tmp_path: Path) -> str:
    """The combiner function's environment: this bucket, the samples as its task root."""
    import os

    for name in list(os.environ):
        if name.startswith(("COVERAGE_", "AWS_", "LAMBDA_")):
            monkeypatch.delenv(name)
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COVERAGE_S3_BUCKET", bucket)
    monkeypatch.setenv("COVERAGE_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(SAMPLES))
    monkeypatch.setattr(combiner, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(combiner, "WORK_DIR", str(tmp_path / "work"))
    return bucket


def get(s3: Any, bucket: str, key: str, tmp_path: Path) -> Path:
    path = tmp_path / key.replace("/", "_").replace("$", "")
    path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return path


def test_one_invocation_merges_and_writes_under_combined(envs, s3, lambda_env, tmp_path):
    bucket = lambda_env
    upload(s3, bucket, LINE)
    result = combiner.lambda_handler({"function": "orders-fn"}, None)
    scope = "coverage/combined/orders-fn/all/latest/"
    assert result["s3"]["data"] == f"s3://{bucket}/{scope}merged.coverage"
    merged = get(s3, bucket, f"{scope}merged.coverage", tmp_path)
    assert lines_of(merged) == union_lines(LINE)
    summary = json.loads(get(s3, bucket, f"{scope}summary.json", tmp_path).read_text())
    assert summary["environments"]["merged"] == 4
    assert summary["environments"]["invocations"] == 12
    assert summary["files"] == 3
    assert 0 < summary["percent"] < 100
    assert summary["lines"]["covered"] <= summary["lines"]["statements"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    for name in ("coverage.json", "coverage.xml", "coverage.lcov", "evidence.json.gz"):
        assert f"{scope}{name}" in keys
    assert any(k.startswith("coverage/combined/orders-fn/all/history/") for k in keys)
    # The combiner's outputs are never taken for environment data.
    out = io.StringIO()
    assert main(["list", "--bucket", bucket], out=out, err=io.StringIO()) == 0
    assert "total: 4 objects" in out.getvalue()

    # A second run (warm /tmp) downloads nothing and gives the same data.
    again = combiner.lambda_handler({"function": "orders-fn"}, None)
    assert again["from_cache"] == 4 and again["downloaded"] == 0
    # The filters also take lists (a JSON event's natural form), numbers as written.
    listed = combiner.lambda_handler({"function": ["orders-fn"], "version": ["$LATEST", 3]}, None)
    assert listed["environments"]["merged"] == 4


def test_distributed_map_batches_and_reduce_equal_one_merge(envs, s3, lambda_env, tmp_path):
    bucket = lambda_env
    upload(s3, bucket, LINE + BRANCH)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="coverage/orders-fn/")["Contents"]
    items = [{"Key": o["Key"], "Etag": o["ETag"], "Size": o["Size"]} for o in listing]
    items[-1] = {"key": items[-1]["Key"]}  # an ItemReader over a JSON file of the user's
    batches = [items[:3], items[3:]]
    shard_results = [
        combiner.lambda_handler({"Items": batch, "BatchInput": {"run_id": "run-1"}}, None)
        for batch in batches
    ]
    assert sum(r["environments"] for r in shard_results) == 6
    final = combiner.lambda_handler({"action": "reduce", "run_id": "run-1"}, None)
    assert final["environments"]["merged"] == 6
    assert "evidence" not in final["s3"]  # shards carry no evidence: none is written
    assert final["environments"]["shards"] == 2
    assert final["measure"] == "line"  # line and branch environments: lines of all
    warnings = [w for r in [*shard_results, final] for w in r["warnings"]]
    assert any('event field "measure"' in w for w in warnings), warnings
    assert not any("--" in w for w in warnings), "an event's warnings name no flags"
    merged = get(s3, bucket, "coverage/combined/all/all/latest/merged.coverage", tmp_path)
    assert lines_of(merged) == union_lines(LINE + BRANCH)


def test_branch_shards_reduce_to_branch_data(envs, s3, lambda_env, tmp_path):
    bucket = lambda_env
    upload(s3, bucket, BRANCH)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="coverage/")["Contents"]
    for item in listing:
        combiner.lambda_handler({"Items": [item], "BatchInput": {"run_id": "b"}}, None)
    final = combiner.lambda_handler({"action": "reduce", "run_id": "b"}, None)
    assert final["measure"] == "branch"
    merged = get(s3, bucket, "coverage/combined/all/all/latest/merged.coverage", tmp_path)
    assert arcs_of(merged) == union_arcs(BRANCH)


def test_combiner_errors_are_clear(envs, s3, lambda_env):
    with pytest.raises(ReportError, match="no coverage data objects matched"):
        combiner.lambda_handler({"function": "nothing-here"}, None)
    with pytest.raises(ReportError, match="invalid date range"):
        combiner.lambda_handler({"since": "2026-11-25", "until": "2026-11-01"}, None)
    with pytest.raises(ReportError, match='event field "measure"') as caught:
        combiner.lambda_handler({"measure": "arcs"}, None)
    assert "--" not in str(caught.value), "messages from an event speak of event fields"
    with pytest.raises(ReportError, match="no shard files"):
        combiner.lambda_handler({"action": "reduce", "run_id": "never"}, None)


def test_a_warm_combiner_leaves_no_files_behind(envs, s3, lambda_env, tmp_path):
    """Many invocations in one warm environment: the work directory does not grow (the
    cache of downloaded objects is the one thing kept, and it does not grow either)."""
    bucket = lambda_env
    upload(s3, bucket, LINE)

    def files_under(root: str) -> int:
        return sum(len(names) for _, _, names in os.walk(root))

    combiner.lambda_handler({"function": "orders-fn"}, None)
    batch = [{"Key": o["Key"], "ETag": o["ETag"], "Size": o["Size"]}
             for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
             if o["Key"].endswith(".coverage") and "/combined/" not in o["Key"]]  # fmt: skip
    after_first = files_under(combiner.WORK_DIR), files_under(combiner.CACHE_DIR)
    for round_ in range(5):
        combiner.lambda_handler({"function": "orders-fn"}, None)
        combiner.lambda_handler({"Items": batch, "BatchInput": {"run_id": f"r{round_}"}}, None)
        combiner.lambda_handler({"action": "reduce", "run_id": f"r{round_}"}, None)
    assert files_under(combiner.WORK_DIR) == after_first[0] == 0
    assert files_under(combiner.CACHE_DIR) <= after_first[1] + 1


def test_a_revision_filter_reaches_the_batches_and_the_reduce_keeps_it(
    envs, s3, lambda_env, tmp_path
):
    """Batches of a run filtered by revision: a batch with nothing of that revision gives
    an empty shard (not an error), and the reduce merges what the batches kept."""
    bucket = lambda_env
    upload(s3, bucket, LINE)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="coverage/orders-fn/")["Contents"]
    items = [{"Key": o["Key"], "Etag": o["ETag"], "Size": o["Size"]} for o in listing]
    kept = [env for env in LINE if env.metadata.get("code-revision") == "abc123"]
    batch_input = {"run_id": "rev", "revision": "abc123"}
    shards = [
        combiner.lambda_handler({"Items": [item], "BatchInput": batch_input}, None)
        for item in items
    ]
    assert sum(r["environments"] for r in shards) == len(kept) < len(items)
    assert any(r["environments"] == 0 for r in shards), "a batch the filter empties"
    final = combiner.lambda_handler(
        {"action": "reduce", "run_id": "rev", "revision": "abc123"}, None
    )
    assert final["environments"]["merged"] == len(kept)
    assert final["environments"]["shards"] == len(items)
    assert final["environments"]["invocations"] == sum(
        int(env.metadata["invocations"]) for env in kept
    )
    assert "revision abc123" in final["selection"]
    merged = get(s3, bucket, "coverage/combined/all/all/latest/merged.coverage", tmp_path)
    assert lines_of(merged) == union_lines(kept)


def test_event_fields_are_checked_before_anything_is_read(envs, s3, lambda_env):
    cases = [
        ({"Items": [], "BatchInput": {}}, "event field BatchInput.run_id"),
        ({"Items": [], "BatchInput": {"run_id": "a/b"}}, "event field BatchInput.run_id"),
        ({"Items": "coverage/x", "BatchInput": {"run_id": "r"}}, 'event field "Items"'),
        ({"action": "reduce"}, "event field run_id"),
        ({"Items": [], "BatchInput": {"run_id": "r", "measure": "x"}}, 'event field "measure"'),
        ({"since": "last week"}, 'event field "since"'),
        ({"function": {"name": "orders"}}, 'event field "function"'),
        ({"version": [True]}, 'event field "version"'),
        ({"Items": [], "BatchInput": "run-1"}, 'event field "BatchInput"'),
    ]
    for event, message in cases:
        with pytest.raises(ReportError, match=message) as caught:
            combiner.lambda_handler(event, None)
        assert "--" not in str(caught.value), event
    assert not os.path.exists(combiner.WORK_DIR), "refused before any work"


_FIELDS = ("function", "version", "since", "until", "revision", "measure", "run_id", "action")
_values = (
    st.sampled_from(("plan", "batch", "reduce"))
    | st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.lists(st.text(max_size=6) | st.integers(), max_size=3)
)
_events = st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=4) | st.fixed_dictionaries(
    {
        "Items": st.lists(st.dictionaries(st.sampled_from(("Key", "key", "Size")), _values))
        | _values,
        "BatchInput": st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=4) | _values,
    }
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(event=_events | _values)
def test_any_event_gets_an_answer_or_a_report_error(envs, s3, lambda_env, event):
    """Whatever a schedule or a state machine sends: a summary, or one ReportError
    sentence (which Step Functions can match), never another exception."""
    try:
        result = combiner.lambda_handler(event, None)
    except ReportError as exc:
        assert str(exc) and "--" not in str(exc), event
    else:
        assert isinstance(result, dict)


def test_plan_batch_reduce_events_of_the_state_machine(envs, s3, lambda_env, tmp_path):
    """The three events the merge state machine sends, in process: a plan cut in
    batches, each batch into its shard, and a reduce that names a missing one."""
    bucket = lambda_env
    upload(s3, bucket, LINE)
    defaults = {"batch_size": "3", "max_concurrency": "10", "tolerated_failure_percentage": "50"}
    planned = combiner.lambda_handler(
        {
            "action": "plan",
            "run_id": "r1",
            "selection": {"function": "orders-fn", "since": "2026-11-01"},
            "defaults": defaults,
        },
        None,
    )
    assert planned["batches"] == 2 and planned["environments"] == 4
    assert planned["batch_size"] == 3 and planned["max_concurrency"] == 10
    assert planned["tolerated_failure_percentage"] == 50.0
    assert planned["selection"] == {
        "measure": "auto",
        "function": ["orders-fn"],
        "since": "2026-11-01",
    }
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=planned["manifest"])["Body"].read())
    assert [m["environments"] for m in manifest] == [3, 1]
    first = combiner.lambda_handler(
        {
            "action": "batch",
            "run_id": "r1",
            "batch": manifest[0]["batch"],
            "selection": planned["selection"],
        },
        None,
    )
    assert first["environments"] == 3
    assert first["shard"].endswith("/coverage/combined/_runs/r1/000000.coverage")
    reduce = {"action": "reduce", "run_id": "r1", "selection": planned["selection"]}
    with pytest.raises(
        ReportError, match=r"1 of 2 batches failed \(50%\), more than the 0% tolerated"
    ):
        combiner.lambda_handler({**reduce, "tolerated_failure_percentage": 0}, None)
    final = combiner.lambda_handler({**reduce, "tolerated_failure_percentage": 50}, None)
    assert final["batches"] == {
        "planned": 2,
        "merged": 1,
        "failed": ["000001"],
        "environments_not_merged": 1,
    }
    assert final["complete"] is False and final["environments"]["merged"] == 3
    assert final["environments"]["not_merged"] == 1


def test_state_machine_events_are_checked(envs, s3, lambda_env):
    bucket = lambda_env
    upload(s3, bucket, LINE)
    cases = [
        ({"action": "plan", "run_id": "r", "selection": {"functions": "x"}}, "unknown field"),
        ({"action": "plan", "run_id": "r", "selection": {"batch_size": 0}}, "'batch_size': 0"),
        ({"action": "plan", "run_id": "r", "selection": {"batch_size": 2.5}}, "whole number"),
        (
            {"action": "plan", "run_id": "r", "defaults": {"max_concurrency": "many"}},
            "state machine default 'max_concurrency'",
        ),
        (
            {"action": "plan", "run_id": "r", "selection": {"tolerated_failure_percentage": 101}},
            "from 0 to 100",
        ),
        ({"action": "plan", "selection": {}}, "plan needs event field run_id"),
        ({"action": "plan", "run_id": "r", "selection": "orders"}, '"selection" must be an object'),
        (
            {"action": "plan", "run_id": "r", "selection": {"function": "nothing"}},
            "no coverage data objects matched",
        ),
        ({"action": "batch", "run_id": "r"}, 'event field "batch"'),
        (
            {
                "action": "batch",
                "run_id": "r",
                "batch": "coverage/combined/_runs/other/batches/000000.json",
            },
            "is not a batch of run 'r'",
        ),
        (
            {
                "action": "batch",
                "run_id": "r",
                "batch": "coverage/combined/_runs/r/batches/000009.json",
            },
            "does not exist",
        ),
        (
            {"action": "reduce", "run_id": "r", "tolerated_failure_percentage": "x"},
            "'tolerated_failure_percentage'",
        ),
    ]
    for event, message in cases:
        with pytest.raises(ReportError, match=message):
            combiner.lambda_handler(event, None)
