"""#21's adoption paths in real images, run as AWS documents for images (the RIE as
the entry point, the image's own start after it).

- An existing function image on a non-AWS base (AWS's recipe: a venv with
  awslambdaric and the function's code), to which the user adds one ``pip
  install`` of lambda-coverage (a wheel built from this checkout) and changes
  ENTRYPOINT: with the package's pinned dependencies, or (the README's other way)
  ``--no-deps`` and coverage.py's pin beside an older boto3 the image already has,
  which stays.
- The layer from scripts/build-layer.sh on the image's Python (3.14, which no
  host test reaches), at the real paths: the managed runtime's start
  (tests/managed_runtime.py's ``/lambda-entrypoint.sh``, ``/var/runtime/bootstrap``
  and ``bootstrap.py``, written for ``/``), its interpreter in ``/var/lang`` with
  awslambdaric and boto3, the layer unpacked into ``/opt``, the function in
  ``/var/task``, ``AWS_LAMBDA_EXEC_WRAPPER=/opt/lambda-coverage``: what an AWS base
  image with the README's recipe, or Lambda's python3.14 runtime with the layer,
  runs.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pytest
from coverage import CoverageData

from tests.conftest import FUNCTIONS_DIR
from tests.containers import podman, script
from tests.harness import (
    FAKE_CREDENTIALS,
    build_wheel,
    download_objects,
    find_rie,
    free_port,
    line_of,
    pinned_version,
    post_invocation,
    runtime_records,
    wait_for_port,
)
from tests.managed_runtime import (
    BOOTSTRAP_PY,
    BOOTSTRAP_SH,
    ENTRYPOINT_SH,
    build_layer,
    unzip_preserving_modes,
)

pytestmark = [pytest.mark.container, pytest.mark.slow]

IMAGE_PYTHON = "3.14"  # the base image's (scripts/container-setup.sh: Debian forky)

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
ARG FUNCTION_PACKAGES
ARG ADOPT_OPTIONS
ARG ADOPT_EXTRA
RUN python3 -m venv /opt/fn
RUN /opt/fn/bin/pip install --no-cache-dir ${FUNCTION_PACKAGES}
COPY app.py /var/task/
WORKDIR /var/task
# The function as it was:
#   ENTRYPOINT ["/opt/fn/bin/python", "-m", "awslambdaric"]
# Adopting lambda-coverage: one install, one changed ENTRYPOINT.
COPY dist/ /tmp/dist/
RUN /opt/fn/bin/pip install --no-cache-dir ${ADOPT_OPTIONS} /tmp/dist/*.whl ${ADOPT_EXTRA} \
    && rm -rf /tmp/dist
ENTRYPOINT ["/opt/fn/bin/python", "-m", "coverage_runtime"]
CMD ["app.handler"]
"""


@pytest.fixture(scope="module")
def base_image() -> str:
    return script("container-setup.sh", timeout=1200).stdout.strip().splitlines()[-1]


# The README's two ways to install: with the package's pinned dependencies, or, for an
# image whose Python already has the boto3 (here an older one) and awslambdaric the
# function uses, --no-deps and coverage.py at requirements.txt's pin, changing neither.
OLDER_BOTO3 = "1.35.0"
RECIPES = {
    "with-deps": {"FUNCTION_PACKAGES": f"awslambdaric=={pinned_version('awslambdaric')}"},
    "no-deps": {
        "FUNCTION_PACKAGES": f"awslambdaric=={pinned_version('awslambdaric')} boto3=={OLDER_BOTO3}",
        "ADOPT_OPTIONS": "--no-deps",
        "ADOPT_EXTRA": f"coverage=={pinned_version('coverage')}",
    },
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_an_existing_image_with_the_package_installed(
    base_image, s3_server, s3, bucket, tmp_path, recipe
):
    context = tmp_path / "context"
    (context / "dist").mkdir(parents=True)
    (context / "app.py").write_text(FUNCTION)
    (context / "Dockerfile").write_text(DOCKERFILE)
    build_wheel(context / "dist")
    image = f"localhost/lambda-coverage-adopted:{uuid.uuid4().hex[:8]}"
    build_args = {"BASE_IMAGE": base_image, **RECIPES[recipe]}
    podman(
        "build", "--network=host", "--pull=never",
        *(f"--build-arg={k}={v}" for k, v in build_args.items()),
        "-t", image, str(context), timeout=1200,
    )  # fmt: skip
    versions = podman(
        "run", "--rm", "--network=host", "--entrypoint", "/opt/fn/bin/python", image, "-c",
        "import boto3, coverage; print(boto3.__version__, coverage.__version__)",
    ).stdout.split()  # fmt: skip
    boto3 = OLDER_BOTO3 if recipe == "no-deps" else pinned_version("boto3")
    assert versions == [boto3, pinned_version("coverage")], versions
    name = f"lc-adopted-{uuid.uuid4().hex[:8]}"
    environment = {
        **FAKE_CREDENTIALS,
        "AWS_LAMBDA_FUNCTION_NAME": "adopted-fn",
        "COVERAGE_S3_BUCKET": bucket,
        "COVERAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
    }
    try:
        port = start_runtime(
            image,
            name,
            environment,
            ("/opt/fn/bin/python", "-m", "coverage_runtime", "app.handler"),
        )
        for event in ({"name": "ada"}, {}):
            done = post_invocation(port, json.dumps(event).encode())
            assert done.status == 200, done.body
        podman("stop", "--time", "10", name, timeout=60)
        logs = podman("logs", name).stdout + podman("logs", name).stderr
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
        podman("rmi", "--force", image, check=False)
    assert "coverage runtime started" in logs, logs[-3000:]
    # The extension registered before the init ended, so the stop's SIGTERM shipped.
    registered = logs.find("Internal agent lambda-coverage")
    assert -1 < registered < logs.find("INIT RTDONE"), logs[-3000:]
    uploads = [r["reason"] for r in runtime_records(logs) if r["message"] == "coverage uploaded"]
    assert uploads == ["SIGTERM"], logs[-3000:]
    [(_, path)] = download_objects(s3, bucket, tmp_path).items()
    data = CoverageData(basename=str(path))
    data.read()
    lines = set(data.lines("/var/task/app.py") or ())
    source = context / "app.py"
    for marker in ("module-level", "named", "anonymous"):
        assert line_of(source, f"marker: {marker}") in lines, marker
    measured = data.measured_files()
    assert measured == {"/var/task/app.py"}, "only the function: not the venv, not the shim"


# -- the layer on the image's Python, at the managed runtime's real paths -------------

RUNTIME_IMAGE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# The runtime's interpreter and what it ships (awslambdaric, boto3): nothing of ours.
RUN python3 -m venv /var/lang \\
    && /var/lang/bin/pip install -q --only-binary=:all: {awslambdaric} {boto3}
COPY root/ /
ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
ENTRYPOINT ["/lambda-entrypoint.sh"]
CMD ["adopted.handler"]
"""

ADOPTED = FUNCTIONS_DIR / "adopted.py"


def runtime_root(context: Path, layer_zip: Path, version: str) -> None:
    """``/`` of a managed runtime as tests/managed_runtime.py writes it, at the real
    paths, with the layer unpacked into ``/opt`` as Lambda unpacks it."""
    root = context / "root"
    runtime = root / "var" / "runtime"
    runtime.mkdir(parents=True)
    (root / "var" / "task").mkdir()
    python = f"/var/lang/bin/python{version}"
    files = {
        root / "lambda-entrypoint.sh": ENTRYPOINT_SH.format(runtime="/var/runtime"),
        runtime / "bootstrap": BOOTSTRAP_SH.format(
            version=version, python=python, runtime="/var/runtime"
        ),
        runtime / "bootstrap.py": BOOTSTRAP_PY.format(
            opt="/opt", runtime_site=f"/var/lang/lib/python{version}/site-packages"
        ),
    }
    for path, text in files.items():
        path.write_text(text)
        path.chmod(0o755)
    unzip_preserving_modes(layer_zip, root / "opt")
    shutil.copy(ADOPTED, root / "var" / "task" / ADOPTED.name)


def container_records(name: str) -> tuple[str, list[dict]]:
    logs = podman("logs", name).stdout + podman("logs", name).stderr
    return logs, runtime_records(logs)


def start_runtime(
    image: str,
    name: str,
    environment: dict[str, str],
    command: tuple[str, ...] = ("/lambda-entrypoint.sh", "adopted.handler"),
) -> int:
    """The image under the RIE, as AWS runs an image locally (the RIE first, the
    image's own entry point and ``command`` after it); the invoke port."""
    port = free_port()
    podman(
        "run", "--detach", "--name", name, "--network=host", "--read-only",
        "--tmpfs", "/tmp", "-v", f"{find_rie()}:/aws-lambda/aws-lambda-rie:ro",
        *(f"--env={k}={v}" for k, v in environment.items()),
        "--entrypoint", "/aws-lambda/aws-lambda-rie", image,
        "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
        "--runtime-api-address", f"127.0.0.1:{free_port()}", *command,
    )  # fmt: skip
    wait_for_port(port, timeout=60)
    return port


def invoke(port: int, event: dict) -> dict:
    done = post_invocation(port, json.dumps(event).encode())
    assert done.status == 200, done.body
    return done.body


def test_the_layer_on_the_image_python_at_the_runtimes_paths(
    base_image, s3_server, s3, bucket, tmp_path
):
    context = tmp_path / "context"
    context.mkdir()
    layer_zip = build_layer(IMAGE_PYTHON, tmp_path / "layer")
    runtime_root(context, layer_zip, IMAGE_PYTHON)
    (context / "Dockerfile").write_text(
        RUNTIME_IMAGE.format(
            awslambdaric=f"awslambdaric=={pinned_version('awslambdaric')}",
            boto3=f"boto3=={pinned_version('boto3')}",
        )
    )
    image = f"localhost/lambda-coverage-managed:{uuid.uuid4().hex[:8]}"
    podman(
        "build", "--network=host", "--pull=never", "--build-arg", f"BASE_IMAGE={base_image}",
        "-t", image, str(context), timeout=1200,
    )  # fmt: skip
    function_env = {
        **FAKE_CREDENTIALS,
        "AWS_LAMBDA_FUNCTION_NAME": "managed-fn",
        "COVERAGE_S3_BUCKET": bucket,
        "COVERAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "COVERAGE_FLUSH_INTERVAL_SECONDS": "1",
    }
    probe = {"import": ["boto3", "botocore"]}
    names = [f"lc-managed-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        port = start_runtime(
            image, names[0], {**function_env, "AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambda-coverage"}
        )
        seen = invoke(port, {**probe, "path": "a"})
        time.sleep(1.1)  # COVERAGE_FLUSH_INTERVAL_SECONDS=1 passes
        invoke(port, {"path": "a"})
        deadline = time.monotonic() + 30
        while not any(r.get("reason") == "checkpoint" for r in container_records(names[0])[1]):
            assert time.monotonic() < deadline, container_records(names[0])[0][-3000:]
            time.sleep(0.1)
        invoke(port, {"path": "b"})  # new lines for the shutdown
        podman("stop", "--time", "10", names[0], timeout=60)
        logs, records = container_records(names[0])
        # The same function without the wrapper (the layer still in /opt).
        alone = invoke(start_runtime(image, names[1], function_env), {**probe, "path": "a"})
    finally:
        for name in names:
            podman("rm", "--force", "--time", "0", name, check=False)
        podman("rmi", "--force", image, check=False)

    # The start: the extension registered before the init ended (SIGTERM comes), the
    # shim on the image's Python and sysmon, a checkpoint after a response, then SIGTERM.
    registered = logs.find("Internal agent lambda-coverage")
    assert -1 < registered < logs.find("INIT RTDONE"), logs[-3000:]
    started = next(r for r in records if r["message"] == "coverage runtime started")
    assert started["core"] == "sysmon", started
    uploads = [r["reason"] for r in records if r["message"] == "coverage uploaded"]
    assert uploads == ["checkpoint", "SIGTERM"], logs[-3000:]
    assert [r for r in records if r["level"] == "ERROR"] == []

    # The function as without the wrapper: the runtime's path set-up and packages, the
    # layer's directory after /var/lang's site-packages, nothing of ours loaded before
    # its module (sysmon defers coverage.py).
    layer_lib = "/opt/lambda-coverage-lib"
    assert seen["handler_env"] == alone["handler_env"] == "adopted.handler"
    assert [p for p in seen["sys_path"] if p != layer_lib] == alone["sys_path"]
    assert seen["sys_path"].index(layer_lib) > seen["sys_path"].index(
        f"/var/lang/lib/python{IMAGE_PYTHON}/site-packages"
    )
    assert seen["modules"] == alone["modules"]
    assert seen["modules"]["botocore"]["file"].startswith("/var/lang/lib/"), seen
    assert seen["preloaded"] == alone["preloaded"] == []

    [(key, path)] = download_objects(s3, bucket, tmp_path).items()
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["invocations"] == "3"
    assert head["Metadata"]["python-version"].startswith(IMAGE_PYTHON)
    data = CoverageData(basename=str(path))
    data.read()
    assert data.measured_files() == {"/var/task/adopted.py"}
    lines = set(data.lines("/var/task/adopted.py") or ())
    for marker in ("module-level", "path-a", "path-b"):
        assert line_of(ADOPTED, f"marker: {marker}") in lines, marker
