"""Lambda Managed Instances in the image (podman, host network), through the RIE's
multi-concurrent mode.

The image runs unchanged; the RIE in this mode ignores its command and runs
``/var/task/bootstrap`` as uid 993, so the test mounts one that starts the
image's own entry point command (in Lambda, the image's ENTRYPOINT runs).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from coverage import CoverageData

from tests.containers import TEST_IMAGE, build_image, podman, start_with_local_s3, stop
from tests.harness import REPO_ROOT, download_objects, post_invocation, runtime_records
from tests.managed_instances import unavailable

pytestmark = [pytest.mark.container, pytest.mark.slow]

IMAGE_NAME = TEST_IMAGE  # (tests/containers.py)
EVENTS = ["business-process-data", "business-transform-only", "health-direct"] * 2


@pytest.fixture(scope="module")
def image() -> str:
    return build_image(IMAGE_NAME)


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"lc-mi-{uuid.uuid4().hex[:10]}"
    yield name
    podman("rm", "--force", "--time", "0", name, check=False)


def invoke_retrying(port: int, body: bytes) -> int:
    for _ in range(500):
        answer = post_invocation(port, body)
        if not unavailable(answer):
            return answer.status
        time.sleep(0.02)
    raise AssertionError("still Runtime.Unavailable")


def test_three_workers_in_the_image_make_one_object(
    image, container_name, s3_server, s3, bucket, tmp_path
):
    bootstrap = tmp_path / "bootstrap"
    bootstrap.write_text(
        "#!/bin/sh\nexec /opt/venv/bin/python -m coverage_runtime app.handler.lambda_handler\n"
    )
    bootstrap.chmod(0o755)
    port, _ = start_with_local_s3(
        container_name,
        image,
        s3_server,
        bucket,
        "--volume",
        f"{bootstrap}:/var/task/bootstrap:ro",
        AWS_LAMBDA_MAX_CONCURRENCY="3",
        AWS_LAMBDA_FUNCTION_NAME="mi-image",
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
    )
    statuses: list[int] = []

    def send(name: str) -> None:
        body = (REPO_ROOT / "events" / f"{name}.json").read_bytes()
        statuses.append(invoke_retrying(port, body))

    threads = [threading.Thread(target=send, args=(name,)) for name in EVENTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert statuses == [200] * len(EVENTS)
    code, logs, _ = stop(container_name)
    assert code == 0, logs[-3000:]
    records = runtime_records(logs)
    started = [r for r in records if r["message"] == "coverage runtime started"]
    assert [r.get("workers") for r in started] == [3], logs[-3000:]

    objects = download_objects(s3, bucket, tmp_path)
    assert len(objects) == 1, sorted(objects)
    key, path = next(iter(objects.items()))
    metadata = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
    assert metadata["invocations"] == str(len(EVENTS)), "the workers' invocations, summed"
    data = CoverageData(basename=str(path))
    data.read()
    measured = {Path(name).name for name in data.measured_files()}
    assert {"handler.py", "business.py", "health.py"} <= measured, measured
