"""#21's first adoption path in a real image: an existing function image on a
non-AWS base (AWS's recipe: a venv with awslambdaric and the function's code),
to which the user adds one ``pip install`` of lambda-coverage (a wheel built from
this checkout) and changes ENTRYPOINT.  Run as AWS documents for such images,
with the RIE as the entry point and the function's own command after it."""

from __future__ import annotations

import json
import uuid

import pytest
from coverage import CoverageData

from tests.containers import podman, script
from tests.harness import (
    FAKE_CREDENTIALS,
    build_wheel,
    download_objects,
    find_rie,
    free_port,
    line_of,
    post_invocation,
    wait_for_port,
)

pytestmark = [pytest.mark.container, pytest.mark.slow]

FUNCTION = '''\
"""An existing function: nothing in it knows about lambda-coverage."""

import json

GREETING = "hello"  # marker: module-level


def handler(event, context):
    if event.get("name"):
        return {"body": json.dumps(f"{GREETING} {event['name']}")}  # marker: named
    return {"body": json.dumps(GREETING)}  # marker: anonymous
'''

DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN python3 -m venv /opt/fn
RUN /opt/fn/bin/pip install --no-cache-dir awslambdaric==4.2.2
COPY app.py /var/task/
WORKDIR /var/task
# The function as it was:
#   ENTRYPOINT ["/opt/fn/bin/python", "-m", "awslambdaric"]
# Adopting lambda-coverage: one install, one changed ENTRYPOINT.
COPY dist/ /tmp/dist/
RUN /opt/fn/bin/pip install --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist
ENTRYPOINT ["/opt/fn/bin/python", "-m", "coverage_runtime"]
CMD ["app.handler"]
"""


@pytest.fixture(scope="module")
def base_image() -> str:
    return script("container-setup.sh", timeout=1200).stdout.strip().splitlines()[-1]


def test_an_existing_image_with_the_package_installed(base_image, s3_server, s3, bucket, tmp_path):
    context = tmp_path / "context"
    (context / "dist").mkdir(parents=True)
    (context / "app.py").write_text(FUNCTION)
    (context / "Dockerfile").write_text(DOCKERFILE)
    build_wheel(context / "dist")
    image = f"localhost/lambda-coverage-adopted:{uuid.uuid4().hex[:8]}"
    podman(
        "build", "--network=host", "--pull=never", "--build-arg", f"BASE_IMAGE={base_image}",
        "-t", image, str(context), timeout=1200,
    )  # fmt: skip
    name = f"lc-adopted-{uuid.uuid4().hex[:8]}"
    port = free_port()
    environment = {
        **FAKE_CREDENTIALS,
        "AWS_LAMBDA_FUNCTION_NAME": "adopted-fn",
        "COVERAGE_S3_BUCKET": bucket,
        "COVERAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
    }
    try:
        # AWS's way to run a non-AWS-base image locally: the RIE first, the image's
        # own entry point and command after it.
        podman(
            "run", "--detach", "--name", name, "--network=host", "--read-only",
            "--tmpfs", "/tmp", "-v", f"{find_rie()}:/aws-lambda/aws-lambda-rie:ro",
            *(f"--env={k}={v}" for k, v in environment.items()),
            "--entrypoint", "/aws-lambda/aws-lambda-rie", image,
            "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
            "/opt/fn/bin/python", "-m", "coverage_runtime", "app.handler",
        )  # fmt: skip
        wait_for_port(port, timeout=60)
        for event in ({"name": "ada"}, {}):
            done = post_invocation(port, json.dumps(event).encode())
            assert done.status == 200, done.body
        podman("stop", "--time", "10", name, timeout=60)
        logs = podman("logs", name).stdout + podman("logs", name).stderr
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
        podman("rmi", "--force", image, check=False)
    assert "coverage runtime started" in logs, logs[-3000:]
    [(_, path)] = download_objects(s3, bucket, tmp_path).items()
    data = CoverageData(basename=str(path))
    data.read()
    lines = set(data.lines("/var/task/app.py") or ())
    source = context / "app.py"
    for marker in ("module-level", "named", "anonymous"):
        assert line_of(source, f"marker: {marker}") in lines, marker
    measured = data.measured_files()
    assert measured == {"/var/task/app.py"}, "only the function: not the venv, not the shim"
