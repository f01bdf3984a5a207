"""Building and running the image with podman (host network only), for the
container tests and the image benchmark."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from tests.harness import FAKE_CREDENTIALS, REPO_ROOT, find_rie, free_port, wait_for_port

# The image the container tests build and run; another name keeps a run of them
# apart from another checkout's on the same machine.
TEST_IMAGE = os.environ.get("LAMBDA_COVERAGE_TEST_IMAGE", "localhost/lambda-coverage-test")


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def script(name: str, *args: str, timeout: float, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stderr[-4000:]}"
    return result


def build_image(name: str, tag: str = "current", timeout: float = 1200) -> str:
    """scripts/container-setup.sh, then scripts/build.sh on its base image; the image name."""
    base = script("container-setup.sh", timeout=timeout).stdout.strip().splitlines()[-1]
    result = script(
        "build.sh", "--name", name, "--tag", tag, "--base-image", base,
        "--", "--network=host", "--pull=never",
        timeout=timeout, CONTAINER_ENGINE="podman",
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def run_container(
    name: str,
    image: str,
    port: int,
    *args: str,
    env: dict[str, str],
    command: tuple[str, ...] = (),
) -> float:
    """Start the container detached; returns the monotonic time just before the start.

    ``command`` replaces the image's CMD (the handler), as a function's
    ``ImageConfig.Command`` does."""
    environment = [f"--env={key}={value}" for key, value in env.items()]
    started = time.monotonic()
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network=host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--env",
        f"RIE_ADDRESS=127.0.0.1:{port}",
        "--env",
        f"RIE_API_ADDRESS=127.0.0.1:{free_port()}",
        *environment,
        *args,
        image,
        *command,
    )
    return started


def start_with_local_s3(
    name: str,
    image: str,
    s3_server: Any,
    bucket: str,
    *args: str,
    command: tuple[str, ...] = (),
    **env: str,
) -> tuple[int, float]:
    """Run the image with the RIE mounted, uploading to ``bucket`` in the local S3;
    returns the invoke port once it listens, and the start time."""
    port = free_port()
    started = run_container(
        name,
        image,
        port,
        "--volume",
        f"{find_rie()}:/aws-lambda/aws-lambda-rie:ro",
        *args,
        command=command,
        env={
            **FAKE_CREDENTIALS,
            "COVERAGE_S3_BUCKET": bucket,
            "COVERAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
            **env,
        },
    )
    wait_for_port(port, timeout=60)
    return port, started


def stop(name: str) -> tuple[int, str, float]:
    started = time.monotonic()
    podman("stop", "--time", "10", name, timeout=60)
    seconds = time.monotonic() - started
    code = int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip())
    logs = podman("logs", name).stdout + podman("logs", name).stderr
    return code, logs, seconds
