"""Fixtures: local S3 (moto server) and functions under the AWS RIE."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    FAKE_CREDENTIALS,
    LambdaUnderRIE,
    S3Server,
    clean_environment,
    find_rie,
    silent_server,
)

FUNCTIONS_DIR = Path(__file__).resolve().parent / "functions"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: S3Server) -> Any:
    return s3_server.client()


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh, empty bucket for each test."""
    name = f"cov-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def function_env(s3_server: S3Server, bucket: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a function under the RIE, uploading to ``bucket``."""
    return clean_environment(
        {
            "COVERAGE_S3_BUCKET": bucket,
            "COVERAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
            "COVERAGE_DATA_DIR": str(tmp_path / "coverage-data"),
            "LAMBDA_TASK_ROOT": str(FUNCTIONS_DIR),
            "AWS_LAMBDA_FUNCTION_NAME": "test-fn",
        }
    )


@pytest.fixture
def rie_binary() -> str:
    return find_rie()


@pytest.fixture
def start_function(
    function_env: dict[str, str], tmp_path: Path, rie_binary: str
) -> Iterator[Callable[..., LambdaUnderRIE]]:
    """Start ``handler`` under the RIE: ``start_function("basic.handler", COVERAGE_MODE=...)``."""
    started: list[LambdaUnderRIE] = []

    def start(
        handler: str,
        task_root: Path = FUNCTIONS_DIR,
        env: Mapping[str, str] | None = None,
        command: list[str] | None = None,
        **overrides: str,
    ) -> LambdaUnderRIE:
        merged = dict(function_env if env is None else env)
        merged.update(overrides)
        merged["LAMBDA_TASK_ROOT"] = str(task_root)
        log = tmp_path / f"rie-{len(started)}.log"
        function = LambdaUnderRIE(task_root, handler, merged, log, command=command)
        started.append(function)
        return function

    yield start
    for function in started:
        function.kill()


@pytest.fixture
def hanging_endpoint() -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 that accepts connections and never answers."""
    with silent_server() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def report_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report CLI in process: fake AWS credentials, no bucket or prefix from the host."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "COVERAGE_S3_BUCKET", "COVERAGE_S3_PREFIX"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium for the ``browser`` tests, installed by the project's script when
    missing."""
    import subprocess

    from tests.harness import REPO_ROOT

    found = subprocess.run(
        [str(REPO_ROOT / "scripts" / "browser-setup.sh")],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if found.returncode != 0:
        pytest.skip(f"no headless Chromium: {found.stderr.strip()}")
    return found.stdout.strip().splitlines()[-1]
