"""The image itself, built and run in a real container (podman, host network only).

scripts/container-setup.sh installs and configures podman when missing and makes a
Debian forky (Python 3.14) base image from Debian packages; scripts/build.sh builds
our Dockerfile on it. The container runs read-only with a tmpfs /tmp, as in Lambda,
with the RIE mounted read-only from ../shared/bin, and uploads to the moto S3 server
on 127.0.0.1. The measured numbers are printed at the end of the module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from coverage import CoverageData

from tests.containers import TEST_IMAGE, podman, run_container, script, start_with_local_s3, stop
from tests.harness import (
    REPO_ROOT,
    client_context,
    download_objects,
    find_rie,
    free_port,
    line_of,
    post_invocation,
    wait_for_port,
)

pytestmark = pytest.mark.container

IMAGE_NAME = TEST_IMAGE  # (tests/containers.py)
TASK_ROOT = "/var/task"
MAX_IMAGE_BYTES = 400 * 1024 * 1024  # the whole image, base included
MAX_ADDED_BYTES = 120 * 1024 * 1024  # what our layers add to the base
METRICS: dict[str, Any] = {}


def image_size(image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


@dataclass
class Image:
    name: str
    base: str
    revision: str
    extra_build_args: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def base_image() -> str:
    if shutil.which("podman") is None and os.geteuid() != 0:
        pytest.skip("podman is not installed and installing it needs root")
    started = time.monotonic()
    result = script("container-setup.sh", timeout=1200)
    METRICS["setup_seconds"] = round(time.monotonic() - started, 1)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def image(base_image: str) -> Image:
    started = time.monotonic()
    result = script(
        "build.sh",
        "--name",
        IMAGE_NAME,
        "--tag",
        "current",
        "--base-image",
        base_image,
        "--",
        "--network=host",
        "--pull=never",
        timeout=1200,
        CONTAINER_ENGINE="podman",
    )
    METRICS["build_seconds"] = round(time.monotonic() - started, 1)
    name = result.stdout.strip().splitlines()[-1]
    assert name == f"{IMAGE_NAME}:current"
    revision = podman(
        "image",
        "inspect",
        "--format",
        '{{index .Labels "org.opencontainers.image.revision"}}',
        name,
    ).stdout.strip()
    return Image(name=name, base=base_image, revision=revision)


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"lc-test-{uuid.uuid4().hex[:10]}"
    yield name
    podman("rm", "--force", "--time", "0", name, check=False)


def invoke(port: int, body: bytes, timeout: float = 60) -> tuple[int, Any]:
    result = post_invocation(port, body, timeout)
    return result.status, result.body


def bad_event_names() -> set[str]:
    """Events allowed an error: bad-* files, and those events/README.md calls bad."""
    readme = REPO_ROOT / "events" / "README.md"
    names: set[str] = set()
    if readme.exists():
        for line in readme.read_text().splitlines():
            if "bad" in line.lower() or "error" in line.lower() or "invalid" in line.lower():
                names.update(
                    p.name for p in (REPO_ROOT / "events").glob("*.json") if p.name in line
                )
    return names


def ordered_events() -> list[Path]:
    """Every sample event; one that resets coverage (events/README.md) goes first."""
    events = sorted((REPO_ROOT / "events").glob("*.json"))
    assert events, "events/ has sample events"
    return sorted(events, key=lambda path: "coverage-reset" not in path.name)


def test_every_event_in_a_read_only_container_ships_coverage(
    image, s3_server, s3, bucket, container_name, tmp_path
):
    port, started = start_with_local_s3(
        container_name,
        image.name,
        s3_server,
        bucket,
        AWS_LAMBDA_FUNCTION_NAME="container-test",
        COVERAGE_FLUSH_INTERVAL_SECONDS="0",  # the only upload is the one at shutdown
        ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN="true",  # the admin sample events carry no token
    )
    events = ordered_events()
    bad = bad_event_names()
    for number, event in enumerate(events):
        status, body = invoke(port, event.read_bytes())
        if number == 0:
            METRICS["start_to_first_response_seconds"] = round(time.monotonic() - started, 2)
        if event.name.startswith("bad-") or event.name in bad:
            assert status in (200, 400, 413, 422), f"{event.name}: HTTP {status} {body}"
        else:
            assert status == 200, f"{event.name}: HTTP {status} {body}"
            assert not (isinstance(body, dict) and "errorType" in body), f"{event.name}: {body}"

    code, logs, seconds = stop(container_name)
    METRICS["stop_seconds"] = round(seconds, 2)
    assert code == 0, logs
    assert "did not exit after deadline" not in logs, "the runtime was SIGKILLed"
    records = [
        json.loads(line) for line in logs.splitlines() if '"logger": "coverage_runtime"' in line
    ]
    started_record = next(r for r in records if r["message"] == "coverage runtime started")
    if "forky" in image.base:
        assert started_record["core"] == "sysmon", "3.14 measures with sys.monitoring"
    assert any(
        r["message"] == "coverage runtime exiting" and r["reason"] == "SIGTERM" for r in records
    )
    reasons = [r["reason"] for r in records if r["message"] == "coverage uploaded"]
    assert reasons, "coverage was uploaded"

    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1, sorted(objects)
    [(key, path)] = objects.items()
    assert key.startswith("coverage/container-test/$LATEST/")
    metadata = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
    assert metadata["code-revision"] == image.revision
    if reasons[-1] == "SIGTERM":
        assert metadata["invocations"] == str(len(events))

    data = CoverageData(basename=str(path))
    data.read()
    measured = sorted(data.measured_files())
    assert measured, "nothing was measured"
    outside = [f for f in measured if not f.startswith(f"{TASK_ROOT}/")]
    assert outside == [], "only the function's code is measured (not site-packages)"
    assert not any("coverage_runtime" in f for f in measured)
    for file in measured:
        source = REPO_ROOT / file.removeprefix(f"{TASK_ROOT}/")
        assert source.is_file(), f"{file} is not a file of the checkout"
        length = len(source.read_text().splitlines())
        assert all(1 <= line <= length for line in data.lines(file) or ()), file
    lines = set(data.lines(f"{TASK_ROOT}/app/handler.py") or ())
    assert lines, "the handler module's lines are executed"
    METRICS["app_lines_executed"] = sum(len(data.lines(f) or ()) for f in measured)
    METRICS["app_files_measured"] = len(measured)


def test_selective_mode_in_the_image_measures_only_sampled_work(
    image, s3_server, s3, bucket, container_name, tmp_path
):
    """The image's Python (3.14: sysmon, branches included) in selective mode: only the
    decorated invocation is measured, minus the batch items kept out with without_coverage()."""
    port, _ = start_with_local_s3(
        container_name,
        image.name,
        s3_server,
        bucket,
        AWS_LAMBDA_FUNCTION_NAME="selective-test",
        ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN="true",
        COVERAGE_MODE="selective",
        COVERAGE_BRANCH="true",
    )
    # Items 0 and 10 are sampled (measured); items 1-9 (numbers) are kept out.
    items = ["  Sampled TEXT ", *range(1, 10), {"sampled": "object"}]
    event = {"admin": True, "admin_action": "batch_process", "items": items}
    status, body = invoke(port, json.dumps(event).encode())
    assert status == 200, body
    code, logs, _ = stop(container_name)
    assert code == 0, logs

    [(_, path)] = download_objects(s3, bucket, tmp_path).items()
    data = CoverageData(basename=str(path))
    data.read()
    assert data.has_arcs(), "COVERAGE_BRANCH=true records arcs"
    workloads = REPO_ROOT / "app" / "workloads.py"
    lines = set(data.lines(f"{TASK_ROOT}/app/workloads.py") or ())
    text_line = line_of(workloads, '"kind": "text"')
    object_line = line_of(workloads, '"kind": "object"')
    number_line = line_of(workloads, '"kind": "number", "value": item, "score": item * item')
    assert {text_line, object_line} <= lines, "sampled items are measured"
    assert number_line not in lines, "items kept out with without_coverage() are not"
    handler = REPO_ROOT / "app" / "handler.py"
    handler_lines = set(data.lines(f"{TASK_ROOT}/app/handler.py") or ())
    assert line_of(handler, "started = time.perf_counter()") in handler_lines
    assert line_of(handler, "from __future__ import annotations") not in handler_lines, (
        "selective mode does not measure imports"
    )


def test_labels_in_the_image_through_the_rie(
    image, s3_server, s3, bucket, container_name, tmp_path
):
    """The image's Python (3.14: sysmon with branches): labels from the caller's
    ClientContext recorded as dynamic contexts, lines and arcs, beside init and the
    unlabelled invocations; nothing falls back to the C tracer."""
    port, _ = start_with_local_s3(
        container_name, image.name, s3_server, bucket,
        AWS_LAMBDA_FUNCTION_NAME="labels-test", COVERAGE_BRANCH="true",
    )  # fmt: skip
    event = (REPO_ROOT / "events" / "health.json").read_bytes()
    for label in ("it::test_a", None, "it::test_b"):
        headers = client_context({"coverage-label": label}) if label else None
        done = post_invocation(port, event, headers=headers)
        assert done.status == 200, done.body
    code, logs, _ = stop(container_name)
    assert code == 0, logs
    started = next(line for line in logs.splitlines() if "coverage runtime started" in line)
    assert '"core": "sysmon"' in started, started
    [(_, path)] = download_objects(s3, bucket, tmp_path).items()
    data = CoverageData(basename=str(path))
    data.read()
    assert data.has_arcs()
    assert data.measured_contexts() == {"init", "", "it::test_a", "it::test_b"}
    handler = f"{TASK_ROOT}/app/handler.py"
    by_line = data.contexts_by_lineno(handler)
    ran_by_all = [
        n for n, labels in by_line.items() if {"", "it::test_a", "it::test_b"} <= set(labels)
    ]
    assert ran_by_all, by_line
    for label in ("it::test_a", "it::test_b"):
        data.set_query_contexts([f"^{re.escape(label)}$"])
        assert data.arcs(handler), f"arcs under {label}"


def test_growth_after_a_large_base_ships_as_a_delta_in_the_image(
    image, s3_server, s3, bucket, container_name, tmp_path
):
    """The image's Python (3.14: sysmon with branches), 200 synthetic modules (a base of
    ~370 kB, past `DELTA_MIN_BASE_BYTES`): a checkpoint confirms the base, the next one
    and the shutdown send only what ran since (the delta object), and the two together
    hold every module's import-time code, the modules the events ran in full, the first
    function only of the others: what the union of the objects says, as the report reads
    it (`tests/test_report_delta.py`)."""
    from tests import synthetic_function

    root = synthetic_function.write(tmp_path / "task", 200)
    port, _ = start_with_local_s3(
        container_name, image.name, s3_server, bucket,
        "--volume", f"{root}:{TASK_ROOT}:ro",
        command=("handler.handler",),
        AWS_LAMBDA_FUNCTION_NAME="delta-test", COVERAGE_BRANCH="true",
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
    )  # fmt: skip

    def uploads() -> list[dict[str, Any]]:
        logs = podman("logs", container_name).stdout + podman("logs", container_name).stderr
        return [
            json.loads(line)
            for line in logs.splitlines()
            if '"message": "coverage uploaded"' in line
        ]

    def wait_uploads(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(found := uploads()) < count:
            assert time.monotonic() < deadline, found
            time.sleep(0.1)

    def run(k: int) -> None:
        done = post_invocation(port, json.dumps({"k": k}).encode())
        assert done.status == 200, done.body

    run(0)
    time.sleep(1.1)  # the checkpoint interval (whole seconds) passes
    run(0)
    wait_uploads(1)  # the base, the hand-over's first
    time.sleep(1.1)
    run(1)  # new code, then a checkpoint: a delta
    wait_uploads(2)
    run(2)  # new code, shipped at shutdown
    code, logs, _ = stop(container_name)
    assert code == 0, logs
    assert '"core": "sysmon"' in next(
        line for line in logs.splitlines() if "coverage runtime started" in line
    )
    shipped = uploads()
    assert [(r["reason"], r.get("delta")) for r in shipped] == [
        ("checkpoint", None),
        ("checkpoint", True),
        ("SIGTERM", True),
    ], shipped
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert [k.rsplit(".coverage", 1)[1] for k in keys] == ["", ".delta"], keys
    [(_, path)] = download_objects(s3, bucket, tmp_path).items()  # (base and delta joined)
    data = CoverageData(basename=str(path))
    data.read()
    assert data.has_arcs()
    measured = [f for f in data.measured_files() if "/synthetic/m" in f]
    assert len(measured) == 200
    ran = {k: len(data.lines(f"{TASK_ROOT}/synthetic/m{k:05d}.py") or ()) for k in (0, 1, 2, 3)}
    assert min(ran[0], ran[1], ran[2]) > 60 and ran[3] < ran[1] - 30, ran
    arcs = set(data.arcs(f"{TASK_ROOT}/synthetic/m00002.py") or ())
    assert arcs, "the shutdown's delta holds module 2's arcs"


@pytest.mark.parametrize("plugin", ["late", "early"], ids=["partial", "whole"])
def test_a_replay_with_nothing_new_sends_nothing_in_the_image(
    image, s3_server, s3, bucket, container_name, tmp_path, plugin
):
    """The image's Python (3.14: sysmon with branches): a shutdown whose replay of the
    recorded events finds nothing new since the last flush takes no snapshot and
    sends nothing, and S3 keeps exactly the flush's object; when the replay left a
    new file out (``late``), the one record says so (`tests/test_partial_rie.py`,
    where the host's Pythons run both with lines)."""
    from tests.test_partial_rie import (
        FLUSHING_ENV,
        LATE_DELAY_MS,
        check_nothing_new_sent,
        flush_then_run,
        write_flushing,
    )

    root = write_flushing(tmp_path / "task")
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    pauses.chmod(0o777)  # (the runtime's user in the container writes its pause files)
    port, _ = start_with_local_s3(
        container_name, image.name, s3_server, bucket,
        "--volume", f"{root}:{TASK_ROOT}:ro", "--volume", f"{pauses}:/pauses",
        command=("handler.handler",),
        AWS_LAMBDA_FUNCTION_NAME="unsent-test", COVERAGE_BRANCH="true",
        COVERAGE_TEST_PAUSE_DIR="/pauses", COVERAGE_TEST_REPLAY_DELAY_MS=LATE_DELAY_MS[True],
        **FLUSHING_ENV,
    )  # fmt: skip

    def invoke(label: str, **event: object) -> None:
        headers = client_context({"coverage-label": label})
        done = post_invocation(port, json.dumps(event).encode(), headers=headers)
        assert done.status == 200 and done.body["plugin"], done.body

    flushed = flush_then_run(invoke, pauses, s3, bucket, plugin)
    code, logs, _ = stop(container_name)
    assert code == 0, logs
    started = next(line for line in logs.splitlines() if "coverage runtime started" in line)
    assert '"core": "sysmon"' in started, started
    partial = plugin == "late"
    check_nothing_new_sent(
        logs, pauses, flushed, s3, bucket, root, TASK_ROOT, tmp_path, branch=True, partial=partial
    )


def test_the_combiner_runs_in_the_image(
    image, s3_server, s3, bucket, container_name, tmp_path_factory
):
    """The image deployed a second time as the combiner (README, "Merging in AWS"): its
    command replaced by coverage_runtime.report.combiner.lambda_handler, coverage off,
    read-only with /tmp only, on the image's 3.14. One merge, then a distributed map's
    batches and reduce; the reports read the source the function shipped (here the report
    samples, mounted where they were recorded), and /tmp keeps only the download cache."""
    from tests.report_samples.envs import LINE, SAMPLE_PACKAGE, SAMPLES, run_envs, union_lines
    from tests.report_samples.envs import upload as upload_envs

    run_envs(tmp_path_factory)
    upload_envs(s3, bucket, LINE)
    port, _ = start_with_local_s3(
        container_name,
        image.name,
        s3_server,
        bucket,
        "--volume",
        f"{SAMPLE_PACKAGE}:{TASK_ROOT}/{SAMPLE_PACKAGE.name}:ro",
        command=("coverage_runtime.report.combiner.lambda_handler",),
        COVERAGE_ENABLED="false",
        AWS_LAMBDA_FUNCTION_NAME="combiner",
    )

    def merged_lines(key: str) -> dict[str, set[int]]:
        path = tmp_path_factory.mktemp("merged") / "merged.coverage"
        path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        data = CoverageData(basename=str(path))
        data.read()
        local = str(SAMPLES)
        return {
            f.replace(TASK_ROOT, local, 1): set(data.lines(f) or ()) for f in data.measured_files()
        }

    status, summary = invoke(port, json.dumps({"function": "orders-fn"}).encode())
    assert status == 200 and "errorType" not in summary, summary
    assert summary["environments"]["merged"] == len(LINE)
    assert summary["files"] >= 2 and 0 < summary["percent"] < 100, "the reports read the source"
    assert set(summary["s3"]) >= {"data", "json", "xml", "lcov", "summary"}
    scope = "coverage/combined/orders-fn/all/latest/"
    assert merged_lines(f"{scope}merged.coverage") == union_lines(LINE)

    listing = s3.list_objects_v2(Bucket=bucket, Prefix="coverage/orders-fn/")["Contents"]
    items = [{"Key": o["Key"], "Etag": o["ETag"], "Size": o["Size"]} for o in listing]
    for batch in (items[:2], items[2:]):
        status, shard = invoke(
            port, json.dumps({"Items": batch, "BatchInput": {"run_id": "img"}}).encode()
        )
        assert status == 200 and "errorType" not in shard, shard
    status, final = invoke(port, json.dumps({"action": "reduce", "run_id": "img"}).encode())
    assert status == 200 and final["environments"]["merged"] == len(LINE), final
    assert merged_lines("coverage/combined/all/all/latest/merged.coverage") == union_lines(LINE)

    status, refused = invoke(port, json.dumps({"measure": "arcs"}).encode())
    assert refused["errorType"] == "ReportError", refused
    assert 'event field "measure"' in refused["errorMessage"]

    left = podman(
        "exec", container_name, "find", "/tmp/lambda-coverage-combiner/work", "-type", "f"
    )
    assert left.stdout.strip() == "", "a warm combiner leaves no files behind"
    code, logs, _ = stop(container_name)
    assert code == 0, logs


def run_tests_module(
    image: Image, module: str, *args: str, timeout: float = 600, check: bool = False
) -> tuple[subprocess.CompletedProcess, Any]:
    """``python -m <module> <args>`` from this checkout's tests/ on the image's own Python
    (read-only, as Lambda runs it); the process and the JSON of its last line."""
    result = podman(
        "run", "--rm", "--network=host", "--read-only", "--tmpfs", "/tmp",
        "-v", f"{REPO_ROOT / 'tests'}:/var/task/tests:ro", "--workdir", "/var/task",
        "--env", "PYTHONDONTWRITEBYTECODE=1", "--entrypoint", "python", image.name,
        "-m", module, *args,
        timeout=timeout, check=check,
    )  # fmt: skip
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def test_return_offsets_on_the_image_python(image):
    """The maintenance pass's scan of the raw bytecode names the returns ``dis`` names,
    on the image's 3.14 (where branches are measured on sysmon)."""
    _, result = run_tests_module(image, "tests.exactness.return_offsets", check=True)
    assert result["python"].startswith("3.14"), result
    assert result["checked"] > 1000


def test_fast_multiline_maps_on_the_image_python(image):
    """coverage.py's multiline maps, fed the C tokenizer's tuples, equal its own on the
    image's 3.14, the one Python where its sysmon core measures branches."""
    _, result = run_tests_module(image, "tests.exactness.multiline_maps", check=True)
    assert result["python"].startswith("3.14"), result
    assert result["installed"] and result["differ"] == [], result
    assert result["files"] > 500, result


def test_coverage_pys_dependencies_on_the_image_python(image):
    """On the image's 3.14 too, ``import coverage`` after `coverage_adapter.DEPENDENCIES`
    imports nothing from outside coverage.py but the interpreter's private helpers."""
    _, result = run_tests_module(image, "tests.exactness.coverage_dependencies", check=True)
    assert result["python"].startswith("3.14"), result
    assert result["outside"] == [] and result["steps"] > 10, result


def test_multiline_maps_from_the_build_change_nothing_measured(image):
    """coverage.py's multiline maps written at the image's build (`maps_cache`, the
    Dockerfile's step) give the same data file as tokenizing each file in the
    environment, and are taken only for files unchanged since."""
    _, result = run_tests_module(image, "tests.exactness.maps_cache", check=True)
    assert result["python"].startswith("3.14"), result
    assert result["differ"] == [] and result["files"] > 20, result
    assert result["hits"] > 20 and not result["hits_without_cache"], result
    assert result["fresh_equal"] and result["stale_is_none"], result


def test_the_image_holds_the_multiline_maps_of_its_function(image):
    """The Dockerfile's step wrote the maps of the example function's files."""
    result = podman(
        "run", "--rm", "--entrypoint", "python", image.name, "-c",
        "from coverage_runtime.shim import maps_cache; import os, json; "
        "k = maps_cache.Known(['/var/task']); "
        "print(json.dumps([k(os.path.join('/var/task/app', n)) is not None "
        "for n in sorted(os.listdir('/var/task/app')) if n.endswith('.py')]))",
        check=True,
    )  # fmt: skip
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found and all(found), found


def test_exactness_matrix_on_the_image_python(image):
    """`tests.exactness.check --matrix` inside the image: sysmon (lines and branches), ctrace
    and contexts on the image's own Python, every scenario exact, no restart of coverage.py."""
    result, results = run_tests_module(image, "tests.exactness.check", "--matrix")
    assert results[0]["python"].startswith("3.14"), results[0]
    cores = {(r["core"], "--branch" in r["cell"]) for r in results}
    assert {("sysmon", False), ("sysmon", True), ("ctrace", True)} <= cores
    for cell in results:
        assert cell["gate"] == "gate", cell
        assert cell["init_equal"], cell  # module-level code: as plain coverage.py records it
        assert cell["after_init_equal"], cell
        assert cell["exact"], cell
        # On sysmon the init runs before coverage.py is built, in the image too.
        assert cell["init_gate"] == ("recorder" if cell["core"] == "sysmon" else "gate"), cell
    late = [cell for cell in results if "--late-handover" in cell["cell"]]
    assert len(late) == 8 and all(cell["late_gate"] == "recorder" for cell in late), late
    assert result.returncode == 0
    # Branches on 3.14: code running while the init is replayed in slices, as plain coverage.py.
    cases = {}
    for case in ("replay_while_running", "replay_while_running_reference"):
        _, cases[case] = run_tests_module(
            image, "tests.exactness.recorder_cases", case, timeout=300, check=True
        )
    ours, plain = cases["replay_while_running"], cases["replay_while_running_reference"]
    assert plain["arcs"], "branches are measured on the image's Python"
    assert (ours["lines"], ours["arcs"]) == (plain["lines"], plain["arcs"])


def test_a_partial_shutdown_replay_is_exact_per_file_on_the_image_python(image):
    """Branches on 3.14: a shutdown's replay cut by its budget holds, for each file it
    holds, exactly the whole replay's lines and arcs under each label
    (`tests.exactness.partial_cases`)."""
    from tests.test_partial_replay import check_partial_matrix

    _, result = run_tests_module(image, "tests.exactness.partial_cases", "--matrix", check=True)
    assert result["python"].startswith("3.14"), result
    check_partial_matrix(result, branches=True)


def test_the_deferred_hand_over_on_the_image_python(image):
    """Branches on 3.14: the recorder keeps recording until data is needed, status()
    builds nothing, a long stream (a large init, or labels) is handed over at once."""
    from tests.test_init_recorder import (
        check_deferred_hand_over,
        check_disarmed_code_keeps_its_id,
        check_finaliser_during_a_drain,
        check_finaliser_during_the_install,
        check_labels_bound,
        check_long_stream,
        check_omitted_finaliser,
        check_paused_code,
        check_prearm_held,
        check_prearm_then_a_background_thread,
        check_resume_before_the_mute,
        check_retire_after_a_prearm,
        check_retire_in_small_steps,
        check_retired_before_its_start_is_replayed,
        check_switch_during_a_first_hit,
        check_untraced_stays_disarmed,
    )

    module = "tests.exactness.recorder_cases"
    done, result = run_tests_module(image, module, "deferred_hand_over", timeout=300, check=True)
    check_deferred_hand_over(result, done.stdout + done.stderr)
    check_long_stream(run_tests_module(image, module, "long_stream_hands_over_at_once")[1])
    check_labels_bound(run_tests_module(image, module, "labels_bound_the_stream")[1])
    # A finaliser the GC runs inside the gate's install: its arcs as plain coverage.py's.
    done, result = run_tests_module(image, module, "finaliser_during_the_install", check=True)
    reference = run_tests_module(image, module, "finaliser_during_the_install_reference")[1]
    assert reference["arcs"], "branches are measured on the image's Python"
    check_finaliser_during_the_install(result, reference, done.stdout + done.stderr)
    done, result = run_tests_module(image, module, "omitted_finaliser_before_the_forward")
    check_omitted_finaliser(result, done.stdout + done.stderr)
    # Omitted code the drain disarmed: never armed again, its id never another's.
    check_untraced_stays_disarmed(
        run_tests_module(image, module, "untraced_code_stays_disarmed")[1]
    )
    check_disarmed_code_keeps_its_id(
        run_tests_module(image, module, "disarmed_code_keeps_its_id")[1],
        run_tests_module(image, module, "disarmed_code_keeps_its_id_reference")[1],
    )
    done, result = run_tests_module(image, module, "finaliser_during_a_drain", "--labels")
    reference = run_tests_module(image, module, "finaliser_during_a_drain_reference")[1]
    check_finaliser_during_a_drain(result, reference, done.stdout + done.stderr)
    for when in ("invocation", "init"):
        check_switch_during_a_first_hit(
            run_tests_module(image, module, "switch_during_a_first_hit", when)[1]
        )
    for receiver in ("recorder", "gate"):  # labels changing: the switch pre-armed
        result = run_tests_module(image, module, "prearm_then_a_background_thread", receiver)[1]
        check_prearm_then_a_background_thread(result, receiver)
        check_prearm_held(
            run_tests_module(image, module, "prearm_held_while_the_next_event_comes", receiver)[1]
        )
        result = run_tests_module(image, module, "retire_after_a_prearm", receiver)[1]
        check_retire_after_a_prearm(result, receiver)
    for mode in ((), ("--labels",)):  # branches: the arcs around paused code too
        for case in ("paused_code", "paused_code_muted_at_once"):
            check_paused_code(run_tests_module(image, module, case, *mode)[1], mode)
        result = run_tests_module(image, module, "resume_before_the_mute", *mode)[1]
        check_resume_before_the_mute(result, mode)
        # The maintenance pass in small steps: functions retire, bodies never.
        result = run_tests_module(image, module, "retire_in_small_steps", *mode)[1]
        check_retire_in_small_steps(result, mode)
        # Retired before coverage.py saw it start: no arc from a re-armed second run.
        result = run_tests_module(image, module, "retired_before_its_start_is_replayed", *mode)[1]
        reference = "retired_before_its_start_is_replayed_reference"
        check_retired_before_its_start_is_replayed(
            result, run_tests_module(image, module, reference)[1], mode
        )


def test_labels_exact_on_the_image_python(image):
    """`tests.exactness.labels --matrix` in the image: each label (init, none, tests'
    node ids) records what plain coverage.py records for that label's invocations, on
    sysmon with lines and branches (3.14) and on the C tracer."""
    from tests.test_exactness import assert_labels_exact

    result, results = run_tests_module(image, "tests.exactness.labels", "--matrix")
    assert results[0]["python"].startswith("3.14"), results[0]
    assert {("sysmon", True), ("sysmon", False)} <= {
        (r["core"], "--branch" in r["cell"]) for r in results
    }
    assert_labels_exact(results, sysmon=True)
    assert result.returncode == 0


def test_image_is_lean_and_has_no_build_tools_or_caches(image):
    probe = r"""
echo "uid=$(id -u)"
echo "lambda_uid=$(id -u lambda)"
for tool in gcc cc g++ c++ make cmake; do command -v "$tool" && echo "compiler=$tool"; done
for dir in /root/.cache /tmp/.cache /build /context /opt/venv/bin/pip; do
  [ -e "$dir" ] && echo "leftover=$dir"
done
ls -d /opt/venv/lib/python3*/site-packages/pip /opt/venv/lib/python3*/site-packages/setuptools \
  2>/dev/null | sed 's/^/leftover=/'
site=$(echo /opt/venv/lib/python3*/site-packages)
echo "boto3_pyc=$(ls "$site"/boto3/__pycache__/__init__.*.pyc 2>/dev/null | wc -l)"
echo "app_pyc=$(ls /var/task/app/__pycache__/*.pyc 2>/dev/null | wc -l)"
python -c 'import coverage_runtime; print("shim=" + coverage_runtime.__file__)'
python -c 'import sys; print("dont_write_bytecode=%d" % sys.flags.dont_write_bytecode)'
start=$(date +%s%N); python -c 'import boto3, awslambdaric, coverage'; end=$(date +%s%N)
echo "import_ms=$(( (end - start) / 1000000 ))"
"""
    result = podman(
        "run",
        "--rm",
        "--network=host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--entrypoint",
        "sh",
        image.name,
        "-c",
        probe,
    )
    facts = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    problems = [
        line for line in result.stdout.splitlines() if line.startswith(("compiler=", "leftover="))
    ]
    assert problems == []
    assert facts["uid"] == "0", "USER stays root, so SAM's overlay build can RUN as root"
    assert facts["lambda_uid"] == "993", "the function's own unprivileged user"
    assert facts["shim"].startswith("/opt/venv/lib/"), "coverage_runtime is in site-packages"
    assert facts["dont_write_bytecode"] == "1"
    assert facts["boto3_pyc"] == "1", "dependencies are precompiled"
    assert int(facts["app_pyc"]) >= 1, "the function code is precompiled"
    METRICS["import_boto3_awslambdaric_coverage_ms"] = int(facts["import_ms"])

    size, base = image_size(image.name), image_size(image.base)
    METRICS["image_mb"] = round(size / 1e6, 1)
    METRICS["base_mb"] = round(base / 1e6, 1)
    assert size <= MAX_IMAGE_BYTES
    assert size - base <= MAX_ADDED_BYTES, f"our layers add {(size - base) / 1e6:.0f} MB"


def function_uid(name: str) -> str:
    """The real uid of the container's ``python -m coverage_runtime`` process."""
    probe = (
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q coverage_runtime"
        " && awk '/^Uid:/ {print $2}' $p/status; done"
    )
    return podman("exec", name, "sh", "-c", probe).stdout.split()[0]


def test_sam_local_invoke_overlay_builds_and_serves_as_non_root(image, tmp_path, container_name):
    """What `sam local invoke` / `sam local start-lambda` do with the image (SAM CLI's
    lambda_image.py and lambda_container.py): build an overlay that adds its RIE under
    /var/rapid with `RUN mv`, then run the RIE as the entry point, before the image's own
    entry point and command. Own network namespace: the RIE listens on SAM's 0.0.0.0:8080."""
    arch = "arm64" if os.uname().machine in ("aarch64", "arm64") else "x86_64"
    context = tmp_path / "sam-overlay"
    context.mkdir()
    shutil.copy(find_rie(), context / f"aws-lambda-rie-{arch}")
    (context / "Dockerfile").write_text(
        f"FROM {image.name}\n"
        f"ADD aws-lambda-rie-{arch} /var/rapid/\n"
        f"RUN mv /var/rapid/aws-lambda-rie-{arch} /var/rapid/aws-lambda-rie"
        " && chmod +x /var/rapid/aws-lambda-rie\n"
    )
    rapid = "localhost/lambda-coverage-test-sam:rapid-" + arch
    podman("build", "--network=host", "--pull=never", "-t", rapid, str(context), timeout=300)
    config = json.loads(
        podman("image", "inspect", "--format", "{{json .Config}}", image.name).stdout
    )
    entrypoint = ["/var/rapid/aws-lambda-rie", "--log-level", "error", *config["Entrypoint"]]
    podman(
        "run", "--detach", "--name", container_name, "--network=none",
        "--entrypoint", json.dumps(entrypoint),
        "--workdir", config.get("WorkingDir") or "/var/task",
        "--env", f"AWS_LAMBDA_FUNCTION_HANDLER={config['Cmd'][0]}",
        "--env", "AWS_LAMBDA_FUNCTION_NAME=sam-fn", "--env", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
        "--env", "AWS_LAMBDA_FUNCTION_TIMEOUT=3", "--env", "AWS_SAM_LOCAL=true",
        "--env", "AWS_REGION=us-east-1", "--env", "AWS_DEFAULT_REGION=us-east-1",
        rapid, *config["Cmd"],
    )  # fmt: skip
    invoke_inside = (
        "import json, time, urllib.request\n"
        "url = 'http://127.0.0.1:8080/2015-03-31/functions/function/invocations'\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        body = urllib.request.urlopen(url, b'{\"health\": true}', timeout=30).read()\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n"
        "print(body.decode())\n"
    )
    result = podman("exec", container_name, "python", "-c", invoke_inside, timeout=60)
    doc = json.loads(result.stdout)
    assert doc["coverage_enabled"] is True, doc
    assert doc["status"] in ("ok", "degraded"), doc
    assert function_uid(container_name) == "993", "the function runs as the unprivileged user"
    code, logs, _ = stop(container_name)
    assert code == 0, logs
    assert '"message": "coverage runtime started"' in logs
    assert "Permission denied" not in logs


def test_outside_lambda_without_rie_the_entrypoint_says_why(image):
    result = podman("run", "--rm", "--network=host", "--read-only", image.name, check=False)
    assert result.returncode == 1
    assert "no Runtime Interface" in result.stderr


def test_rie_baked_in_at_build_time_serves_alone(image, container_name):
    rie = Path(find_rie())
    started = time.monotonic()
    result = script(
        "build.sh",
        "--name",
        IMAGE_NAME,
        "--tag",
        "with-rie",
        "--base-image",
        image.base,
        "--with-rie",
        f"file:///rie/{rie.name}",
        "--",
        "--network=host",
        "--pull=never",
        f"--volume={rie.parent}:/rie:ro",
        timeout=1200,
        CONTAINER_ENGINE="podman",
    )
    METRICS["rebuild_with_rie_seconds"] = round(time.monotonic() - started, 1)
    baked = result.stdout.strip().splitlines()[-1]
    port = free_port()
    # no bucket: measured but not uploaded; branch coverage on
    run_container(container_name, baked, port, env={"COVERAGE_BRANCH": "true"})
    wait_for_port(port, timeout=60)
    event = sorted((REPO_ROOT / "events").glob("*.json"))[0]
    status, body = invoke(port, event.read_bytes())
    assert status == 200, body
    code, logs, _ = stop(container_name)
    assert code == 0, logs
    started = next(
        json.loads(line) for line in logs.splitlines() if "coverage runtime started" in line
    )
    assert started["branch"] is True
    if "forky" in image.base:
        assert started["core"] == "sysmon", "Python 3.14 measures branches with sys.monitoring"


def test_setup_is_idempotent_and_never_creates_a_bridge(base_image):
    started = time.monotonic()
    again = script("container-setup.sh", timeout=300)
    assert again.stdout.strip().splitlines()[-1] == base_image
    assert time.monotonic() - started < 30, "a re-run with everything in place is quick"
    conf = Path("/etc/containers/containers.conf").read_text()
    if "scripts/container-setup.sh" in conf:  # ours, not a machine's own configuration
        assert 'netns = "host"' in conf
    if shutil.which("ip"):
        bridges = subprocess.run(
            ["ip", "-o", "link", "show", "type", "bridge"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert bridges == "", "host networking only: no bridge interface"


def test_zz_cached_rebuild_and_measurements(image, capsys):
    started = time.monotonic()
    script(
        "build.sh",
        "--name",
        IMAGE_NAME,
        "--tag",
        "current",
        "--base-image",
        image.base,
        "--",
        "--network=host",
        "--pull=never",
        timeout=600,
        CONTAINER_ENGINE="podman",
    )
    METRICS["cached_build_seconds"] = round(time.monotonic() - started, 1)
    assert METRICS["cached_build_seconds"] < 120
    with capsys.disabled():
        print("\ncontainer metrics:", json.dumps(METRICS, sort_keys=True))
