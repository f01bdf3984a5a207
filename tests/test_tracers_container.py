"""The function's tracers never see the shim's work (#21 item 2), on the image's
Python (3.14, where the shim measures on ``sysmon``).

tests/test_tracers.py runs `tests.tracer_probe` on the host's Python only.  Here
the same probe and the same verdict run in an image built on the project's base
image: the package installed from a wheel of this checkout with the pins of
requirements.txt (what the project image holds), plus the real tracers at the
pins of requirements-dev.txt (the X-Ray SDK; OpenTelemetry's SDK with its
botocore, sqlite3 and urllib3 instrumentations and the in-memory exporter).
Each case is a fresh container (X-Ray's patches cannot be undone), read-only as
Lambda runs, uploading to the local S3 on 127.0.0.1 (host network)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers import podman, script
from tests.harness import FAKE_CREDENTIALS, REPO_ROOT, build_wheel
from tests.test_tracers import FUNCTION_OWN, assert_only_the_functions_own

pytestmark = [pytest.mark.container, pytest.mark.slow]

TRACER_PACKAGES = ("aws-xray-sdk==", "opentelemetry-", "wrapt==")

DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/fn
COPY requirements.txt tracers.txt /tmp/build/
COPY dist/ /tmp/build/dist/
RUN /opt/fn/bin/pip install -q --only-binary=:all: -r /tmp/build/requirements.txt \\
        -r /tmp/build/tracers.txt \\
    && /opt/fn/bin/pip install -q --no-deps /tmp/build/dist/*.whl \\
    && rm -rf /tmp/build
"""


def tracer_pins() -> str:
    """The tracers' lines of requirements-dev.txt (the one place they are pinned)."""
    lines = (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
    pins = [line for line in lines if line.startswith(TRACER_PACKAGES)]
    assert len(pins) == 6, pins
    return "\n".join(pins) + "\n"


@pytest.fixture(scope="module")
def tracer_image(tmp_path_factory) -> Iterator[str]:
    base = script("container-setup.sh", timeout=1200).stdout.strip().splitlines()[-1]
    context = tmp_path_factory.mktemp("tracer-image")
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "requirements.txt").write_text((REPO_ROOT / "requirements.txt").read_text())
    (context / "tracers.txt").write_text(tracer_pins())
    build_wheel(context / "dist")
    image = f"localhost/lambda-coverage-tracers:{uuid.uuid4().hex[:8]}"
    podman(
        "build", "--network=host", "--pull=never", "--build-arg", f"BASE_IMAGE={base}",
        "-t", image, str(context), timeout=1800,
    )  # fmt: skip
    yield image
    podman("rmi", "--force", image, check=False)


@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("tracer", sorted(FUNCTION_OWN))
def test_the_shims_work_is_invisible_to_the_functions_tracer_in_the_image(
    tracer: str, order: str, tracer_image: str, s3_server, bucket: str
) -> None:
    workdir = "/tmp/probe"
    environment = {**FAKE_CREDENTIALS, "PYTHONDONTWRITEBYTECODE": "1"}
    done = podman(
        "run", "--rm", "--network=host", "--read-only", "--tmpfs", "/tmp",
        "-v", f"{REPO_ROOT / 'tests'}:/var/task/tests:ro", "--workdir", "/var/task",
        *(f"--env={key}={value}" for key, value in environment.items()),
        "--entrypoint", "/opt/fn/bin/python", tracer_image,
        "-m", "tests.tracer_probe", tracer, order, s3_server.endpoint_url, bucket, workdir,
        timeout=180, check=False,
    )  # fmt: skip
    found = assert_only_the_functions_own(tracer, done, workdir)
    assert found["python"] == "3.14" and found["core"] == "sysmon", found


def test_the_probe_sees_the_image_not_the_checkout(tracer_image: str) -> None:
    """The shim the probe drives is the installed wheel's, not this checkout's
    (only tests/ is mounted): the image is what is tested."""
    done = podman(
        "run", "--rm", "--network=host", "--read-only",
        "-v", f"{REPO_ROOT / 'tests'}:/var/task/tests:ro", "--workdir", "/var/task",
        "--entrypoint", "/opt/fn/bin/python", tracer_image,
        "-c", "import coverage_runtime, aws_xray_sdk, opentelemetry.sdk, sys;"
        "print(coverage_runtime.__file__, sys.version_info[:2] >= (3, 14))",
    )  # fmt: skip
    location, newest = done.stdout.split()
    assert location.startswith("/opt/fn/lib/python3.14/site-packages/"), location
    assert newest == "True"
    assert Path(location).name == "__init__.py"
