"""An environment's base and delta objects, read as one by every reader of the report.

The shim uploads, beside an environment's ``<env>.coverage`` (its base), a
``<env>.coverage.delta``: what it measured since the base's snapshot
(`coverage_runtime.layout`).  Against moto's S3 over HTTP, with data files
written by coverage.py: the report, ``list``, the cache, the combiner's plan,
batches and reduce, and a map's own batching all count the environment once,
with the delta's metadata, and merge the union of both.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from coverage import CoverageData

from coverage_runtime import layout
from coverage_runtime.layout import DEFAULT_PREFIX, ObjectKey
from coverage_runtime.report import combiner
from coverage_runtime.report import objects as report_objects
from coverage_runtime.report.cli import main
from coverage_runtime.report.client import make_client
from coverage_runtime.report.evidence import Evidence
from coverage_runtime.report.listing import BackgroundListing
from coverage_runtime.report.pipeline import ReportOptions, collect
from coverage_runtime.report.selection import Selection
from tests.report_samples.envs import (
    IMAGE_ROOT,
    LINE,
    SAMPLE_PACKAGE,
    SAMPLES,
    Env,
    line_of,
    lines_of,
    run_envs,
    union_lines,
    upload,
)
from tests.s3_proxy import fault_proxy
from tests.test_report_combiner import lambda_env  # noqa: F401  (the combiner's environment)

SHAPES = str(SAMPLE_PACKAGE / "shapes.py")
RECORDED_SHAPES = f"{IMAGE_ROOT}/sampleapp/shapes.py"
UNKNOWN = line_of("shapes", "unknown")  # no environment of LINE runs it
POSITIVE = line_of("shapes", "positive")  # nor this one


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_envs(tmp_path_factory)


@pytest.fixture(autouse=True)
def aws_env(report_credentials: None) -> None:
    """Every test runs the CLI in process (tests/conftest.py)."""


def report(
    s3_server: Any, bucket: str, tmp_path: Path, *args: str, command: str = "report"
) -> tuple[int, str, str]:
    """The CLI in process, with the bucket, endpoint, cache and checkout filled in."""
    out, err = io.StringIO(), io.StringIO()
    argv = [command, "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url]
    if command == "report":
        argv += ["-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
        argv += ["--source-root", str(SAMPLES), "--no-progress", "--format", "none"]
    code = main([*argv, *args], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def summary(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "out" / "summary.json").read_text())


def data_file(path: Path, lines: dict[str, list[int]], *merged: Env) -> bytes:
    """A coverage.py data file of ``lines``, plus the data of ``merged`` environments
    (coverage.py's own union: `CoverageData.update`)."""
    data = CoverageData(basename=str(path))
    data.add_lines(lines)
    for env in merged:
        data.update(env.data())
    data.write()
    data.close()
    return path.read_bytes()


def delta_key(env: Env) -> str:
    return ObjectKey(env.function, env.version, env.date, env.name).format_delta(DEFAULT_PREFIX)


def put(s3: Any, bucket: str, key: str, body: bytes, **metadata: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        Metadata={name.replace("_", "-"): value for name, value in metadata.items()},
    )


def with_unknown(expected: dict[str, set[int]], *lines: int) -> dict[str, set[int]]:
    return {**expected, SHAPES: expected[SHAPES] | set(lines)}


# -- the report and list -------------------------------------------------------------


def test_an_environment_is_its_base_and_its_delta(envs, s3, s3_server, bucket, tmp_path):
    # What line-a measured since its base: line-c's data, and lines the base holds too.
    base, delta = LINE[0], LINE[2]
    delta_body = data_file(tmp_path / "delta.coverage", {}, delta, base)
    put(
        s3,
        bucket,
        base.key,
        base.path.read_bytes(),
        invocations="4",
        code_revision="abc123",
        snapshot_generation="3",
        partial="true",
        files_not_replayed="2",
    )
    put(
        s3,
        bucket,
        delta_key(base),
        delta_body,
        invocations="9",
        code_revision="abc123",
        snapshot_generation="5",
        base_generation="3",
    )
    upload(s3, bucket, [LINE[1]])

    code, out, err = report(s3_server, bucket, tmp_path)
    assert code == 0, err
    assert lines_of(tmp_path / "out" / "merged.coverage") == union_lines([base, delta, LINE[1]])
    environments = summary(tmp_path)["environments"]
    assert environments["listed"] == 2 and environments["merged"] == 2
    assert environments["invocations"] == 9 + 2  # the delta's count, not base + delta
    assert environments["partial_uploads"] == 1  # the base's partial flag carries over
    assert environments["skipped"] == []
    assert "from 2 environment(s), 11 invocation(s)" in out
    assert summary(tmp_path)["downloaded"] == 3  # objects: base, delta, line-b
    # The evidence: one environment, its delta's count, for the lines both objects hold.
    evidence = Evidence.load(tmp_path / "out" / "evidence.json.gz", relative_to=SAMPLES)
    assert evidence.environments == 2 and evidence.invocations == 11
    held = [set(env.data().lines(RECORDED_SHAPES) or ()) for env in (base, LINE[1])]
    assert held[0] - held[1]
    for line in held[0] - held[1]:  # in the base and the delta, not in line-b
        ran = evidence.lines_of(SHAPES)[line]
        assert (ran.environments, ran.invocations) == (1, 9), line

    code, out, err = report(s3_server, bucket, tmp_path, "--objects", command="list")
    assert code == 0, err
    assert "total: 2 objects" in out and "invocations: 11\n" in out
    rows = [row.split("\t") for row in out.splitlines() if "\t" in row]
    assert [r[0] for r in rows] == [LINE[1].key, base.key]  # no row of its own for the delta
    size = base.path.stat().st_size + len(delta_body)
    assert rows[1][1:3] == [str(size), "9"]
    assert "partial: 1 objects" in out


def test_a_delta_counts_with_a_base_of_its_epoch_its_metadata_if_newer(
    envs, s3, s3_server, bucket, tmp_path
):
    extra = data_file(tmp_path / "extra.coverage", {RECORDED_SHAPES: [UNKNOWN]})
    # line-a was reset after its delta: the delta's data must not come back.
    a, b = LINE[0], LINE[1]
    put(
        s3,
        bucket,
        a.key,
        a.path.read_bytes(),
        invocations="4",
        data_epoch="1",
        snapshot_generation="7",
    )
    put(
        s3,
        bucket,
        delta_key(a),
        extra,
        invocations="6",
        snapshot_generation="6",
        base_generation="5",
    )
    # line-b's base is newer than its delta (read after the shim replaced the base the
    # delta extends): it holds the delta's data, and the newer count is its own.
    put(s3, bucket, b.key, b.path.read_bytes(), invocations="2", snapshot_generation="5")
    put(
        s3,
        bucket,
        delta_key(b),
        data_file(tmp_path / "older.coverage", {}, b),
        invocations="1",
        snapshot_generation="4",
        base_generation="3",
    )
    # A delta with no base (its base deleted, or never confirmed): nobody's.
    ghost = ObjectKey("orders-fn", "$LATEST", "2026-11-25", "ghost")
    put(s3, bucket, ghost.format_delta(DEFAULT_PREFIX), extra, invocations="5")

    code, out, err = report(s3_server, bucket, tmp_path)
    assert code == 0, err
    assert lines_of(tmp_path / "out" / "merged.coverage") == union_lines([a, b])
    environments = summary(tmp_path)["environments"]
    assert environments["listed"] == environments["merged"] == 2
    assert environments["invocations"] == 4 + 2 and environments["skipped"] == []
    code, out, err = report(s3_server, bucket, tmp_path, command="list")
    assert "total: 2 objects" in out and "invocations: 6\n" in out, out + err


@pytest.mark.parametrize("page_size", [1, 2, 3, 1000])
def test_a_base_and_its_delta_on_two_listing_pages(
    envs, s3, s3_server, bucket, tmp_path, monkeypatch, page_size
):
    # Listed in key order: line-c, line-b, line-a, line-a's delta, then version 3's line-d;
    # with 1 or 3 keys a page, the base ends a page and its delta starts the next.
    monkeypatch.setattr(report_objects, "LIST_PAGE_SIZE", page_size)
    upload(s3, bucket, LINE)
    extra = data_file(tmp_path / "extra.coverage", {RECORDED_SHAPES: [UNKNOWN]})
    put(s3, bucket, delta_key(LINE[0]), extra, invocations="7")

    code, _out, err = report(s3_server, bucket, tmp_path)
    assert code == 0, err
    expected = with_unknown(union_lines(LINE), UNKNOWN)
    assert lines_of(tmp_path / "out" / "merged.coverage") == expected
    environments = summary(tmp_path)["environments"]
    assert environments["listed"] == environments["merged"] == 4
    assert environments["invocations"] == 7 + 2 + 1 + 5


def test_the_cache_keeps_each_object_and_a_new_delta_alone_is_downloaded(
    envs, s3, s3_server, bucket, tmp_path
):
    upload(s3, bucket, LINE[:2])
    first = data_file(tmp_path / "d1.coverage", {RECORDED_SHAPES: [UNKNOWN]})
    put(s3, bucket, delta_key(LINE[0]), first, invocations="5")
    code, out, err = report(s3_server, bucket, tmp_path)
    assert code == 0, err
    assert "3 downloaded, 0 from cache" in out
    code, out, err = report(s3_server, bucket, tmp_path)
    assert "0 downloaded, 3 from cache" in out
    assert lines_of(tmp_path / "out" / "merged.coverage") == with_unknown(
        union_lines(LINE[:2]), UNKNOWN
    )
    # The environment uploads a newer delta (a new ETag): only that object is read again.
    second = data_file(tmp_path / "d2.coverage", {RECORDED_SHAPES: [UNKNOWN, POSITIVE]})
    put(s3, bucket, delta_key(LINE[0]), second, invocations="8")
    code, out, err = report(s3_server, bucket, tmp_path)
    assert "1 downloaded, 2 from cache" in out, out + err
    assert lines_of(tmp_path / "out" / "merged.coverage") == with_unknown(
        union_lines(LINE[:2]), UNKNOWN, POSITIVE
    )
    assert summary(tmp_path)["environments"]["invocations"] == 8 + 2


def test_a_base_replaced_while_listing_is_read_again_after_its_delta(
    envs, s3, s3_server, bucket, tmp_path, monkeypatch
):
    """The listing passes the base (its old version cached), the shim then uploads a
    new base and a delta that extends it, and the listing's next page has the delta:
    the cached base is older than the delta says, so it is read again."""
    env, later = LINE[0], LINE[3]  # line-d: listed after line-a, so line-a's page is not the last
    put(s3, bucket, env.key, env.path.read_bytes(), invocations="4", snapshot_generation="3")
    upload(s3, bucket, [later])
    code, _out, err = report(s3_server, bucket, tmp_path)  # caches the old base
    assert code == 0, err
    monkeypatch.setattr(report_objects, "LIST_PAGE_SIZE", 1)
    selection = Selection(bucket=bucket)
    listing = BackgroundListing(make_client(s3_server.endpoint_url), selection)
    assert listing.first == [] and listing.more  # the base, waiting for the next key
    # The new base holds line-b's data too (a reset would have changed the epoch).
    new_base = data_file(tmp_path / "b2.coverage", {}, env, LINE[1])
    put(s3, bucket, env.key, new_base, invocations="6", snapshot_generation="5")
    delta = data_file(tmp_path / "d2.coverage", {RECORDED_SHAPES: [UNKNOWN]})
    put(
        s3,
        bucket,
        delta_key(env),
        delta,
        invocations="9",
        snapshot_generation="6",
        base_generation="5",
    )
    listed = list(listing)
    assert [o.key for o in listed] == [env.key, later.key] and listed[0].delta is not None
    assert listed[0].etag != s3.head_object(Bucket=bucket, Key=env.key)["ETag"].strip('"')

    options = ReportOptions(
        selection=selection,
        endpoint_url=s3_server.endpoint_url,
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "race",
        source_root=SAMPLES,
        jobs=0,
    )
    result = collect(options, objects=listed)
    expected = with_unknown(union_lines([env, LINE[1], later]), UNKNOWN)
    assert lines_of(result.data_file) == expected
    assert result.invocations == 9 + 5 and result.partial.merged == 2
    assert result.fetch.downloaded == 2 and result.fetch.cached == 1  # delta, then base again


def test_an_unreadable_delta_skips_its_environment_by_its_key(
    envs, s3, s3_server, bucket, tmp_path
):
    upload(s3, bucket, LINE[:2])
    put(s3, bucket, delta_key(LINE[0]), b"not a database\n" * 50, invocations="5")
    code, _out, err = report(s3_server, bucket, tmp_path)
    assert code == 0, err
    assert lines_of(tmp_path / "out" / "merged.coverage") == union_lines([LINE[1]])
    environments = summary(tmp_path)["environments"]
    assert environments["merged"] == 1
    assert environments["skipped"] == [
        {"key": LINE[0].key, "reason": "its delta object: not an SQLite database"}
    ]


# -- the combiner ---------------------------------------------------------------------


def _merged(s3: Any, bucket: str, tmp_path: Path) -> dict[str, set[int]]:
    path = tmp_path / "reduced.coverage"
    key = f"{DEFAULT_PREFIX}combined/all/all/latest/merged.coverage"
    path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return lines_of(path)


@pytest.mark.usefixtures("lambda_env")
def test_the_plan_keeps_a_delta_with_its_base_in_one_batch(envs, s3, bucket, tmp_path):
    upload(s3, bucket, LINE)
    extra = data_file(tmp_path / "extra.coverage", {RECORDED_SHAPES: [UNKNOWN]})
    put(s3, bucket, delta_key(LINE[0]), extra, invocations="9")
    planned = combiner.lambda_handler(
        {"action": "plan", "run_id": "r1", "selection": {"batch_size": 1}}, None
    )
    assert planned["batches"] == 4 and planned["environments"] == 4
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=planned["manifest"])["Body"].read())
    entries = [
        json.loads(s3.get_object(Bucket=bucket, Key=m["batch"])["Body"].read()) for m in manifest
    ]
    with_delta = [e[0] for e in entries if "Delta" in e[0]]
    assert [e["Key"] for e in with_delta] == [LINE[0].key]
    assert with_delta[0]["Delta"]["Key"] == delta_key(LINE[0])
    for batch in manifest:
        event = {"action": "batch", "run_id": "r1", "batch": batch["batch"]}
        shard = combiner.lambda_handler({**event, "selection": planned["selection"]}, None)
        assert shard["environments"] == 1
    final = combiner.lambda_handler(
        {"action": "reduce", "run_id": "r1", "selection": planned["selection"]}, None
    )
    assert final["environments"]["merged"] == 4
    assert final["environments"]["invocations"] == 9 + 2 + 1 + 5
    assert _merged(s3, bucket, tmp_path) == with_unknown(union_lines(LINE), UNKNOWN)


@pytest.mark.usefixtures("lambda_env")
def test_a_maps_own_batches_read_a_delta_listed_in_the_next_batch(envs, s3, bucket, tmp_path):
    """``ItemReader`` over the listing + ``ItemBatcher``: the base ends one batch and its
    delta starts the next; the base's batch reads the delta, the next one leaves it."""
    upload(s3, bucket, LINE)
    extra = data_file(tmp_path / "extra.coverage", {RECORDED_SHAPES: [UNKNOWN]})
    put(s3, bucket, delta_key(LINE[0]), extra, invocations="9")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=DEFAULT_PREFIX)["Contents"]
    keys = [item["Key"] for item in listing]
    split = keys.index(delta_key(LINE[0]))
    assert keys[split - 1] == LINE[0].key
    items = [{"Key": o["Key"], "Etag": o["ETag"], "Size": o["Size"]} for o in listing]
    shards = [
        combiner.lambda_handler({"Items": batch, "BatchInput": {"run_id": "m"}}, None)
        for batch in (items[:split], items[split:])
    ]
    assert [s["environments"] for s in shards] == [3, 1]
    final = combiner.lambda_handler({"action": "reduce", "run_id": "m"}, None)
    assert final["environments"]["merged"] == 4
    assert final["environments"]["invocations"] == 9 + 2 + 1 + 5
    assert _merged(s3, bucket, tmp_path) == with_unknown(union_lines(LINE), UNKNOWN)


@pytest.mark.usefixtures("lambda_env")
def test_a_refused_read_of_an_unlisted_delta_is_no_delta(envs, s3, s3_server, bucket, monkeypatch):
    """S3 answers a GET of a missing key with 403 to a role that may not list it: the
    read of the batch's last base's delta (listed nowhere) takes that as no delta."""
    upload(s3, bucket, LINE)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=DEFAULT_PREFIX)["Contents"]
    items = [{"Key": o["Key"], "Etag": o["ETag"], "Size": o["Size"]} for o in listing]
    with fault_proxy(s3_server.port) as proxy:
        monkeypatch.setenv("COVERAGE_S3_ENDPOINT_URL", proxy.endpoint_url)
        proxy.set("GET", "status", 403, match=layout.DELTA_SUFFIX)
        shard = combiner.lambda_handler({"Items": items, "BatchInput": {"run_id": "p"}}, None)
        refused = [r.path for r in proxy.requests("GET") if layout.DELTA_SUFFIX in r.path]
    assert shard["environments"] == 4 and shard["skipped"] == []
    assert shard["invocations"] == 4 + 2 + 1 + 5
    assert len(refused) == 1 and "line-d" in refused[0]  # the last base's, version 3


def test_layout_rules_the_readers_apply():
    """The two rules a reader adds to `delta_applies` (for the race of a listing with
    the shim), on metadata as S3 returns it."""
    base = {layout.GENERATION: "5"}
    assert layout.base_outdated(base, {layout.BASE_GENERATION: "7", layout.GENERATION: "8"})
    assert not layout.base_outdated(base, {layout.BASE_GENERATION: "5"})
    assert layout.base_outdated(base, {layout.EPOCH: "1"})  # a reset since: a new base
    assert not layout.base_outdated({}, {layout.BASE_GENERATION: "5"})  # unknown: as listed
    assert layout.delta_newer(base, {layout.GENERATION: "6"})
    assert not layout.delta_newer(base, {layout.GENERATION: "5"})  # the base is as new
    assert layout.delta_newer({}, {layout.GENERATION: "6"})  # unknown: the delta's
