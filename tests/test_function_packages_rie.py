"""#21 item 3 through the RIE: the shim works with the packages the function
brings (AWS's ``pip install --target`` recipe puts them in the task root, which
comes first on the path), and never swaps them for its own.

- boto3/botocore: the function's own, down to `OLDEST_BOTO3` (the oldest
  documented in the README), serve the shim's uploads; the function imports
  the very same modules it vendored.
- coverage.py: see tests/test_adoption_rie.py (``test_the_functions_own_coverage``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FUNCTIONS_DIR
from tests.harness import download_objects, executed_lines, line_of

pytestmark = [pytest.mark.rie, pytest.mark.slow]

ADOPTED = FUNCTIONS_DIR / "adopted.py"
HANDLER = "adopted.handler"
MOTO_ACCOUNT = "123456789012"  # the account that owns buckets in moto
# The oldest boto3/botocore the shim is tested with (README, "What the function brings").
OLDEST_BOTO3 = ("boto3==1.15.0", "botocore==1.18.0")


def vendored_task(tmp_path: Path, *requirements: str, python: str = sys.executable) -> Path:
    """A task root as AWS's recipe lays it out: the requirements ``pip install
    --target``-ed into it, the function's module beside them."""
    task = tmp_path / "task"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-compile", "--target", str(task), *requirements],
        check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    shutil.copy(ADOPTED, task / ADOPTED.name)
    return task


def uploads(function) -> list[str]:
    return [r["reason"] for r in function.json_logs() if r["message"] == "coverage uploaded"]


def test_the_functions_oldest_boto3_uploads(start_function, s3, bucket, tmp_path):
    task = vendored_task(tmp_path, *OLDEST_BOTO3)
    function = start_function(
        HANDLER,
        task_root=task,
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
        # Every parameter the shim can send: the owner check came last (botocore 1.18.0).
        COVERAGE_S3_EXPECTED_OWNER=MOTO_ACCOUNT,
        COVERAGE_S3_SSE="aws:kms",
        COVERAGE_S3_KMS_KEY_ID="alias/coverage",
    )
    probe = {"import": ["boto3", "botocore"]}
    first = function.invoke({**probe, "path": "a"})
    assert first.status == 200, first.body
    time.sleep(1.1)
    assert function.invoke({**probe, "path": "b"}).status == 200
    deadline = time.monotonic() + 15
    while "checkpoint" not in uploads(function):
        assert time.monotonic() < deadline, function.logs()
        time.sleep(0.05)
    assert function.terminate() == 0
    assert uploads(function) == ["checkpoint"] or uploads(function)[-1] == "SIGTERM"

    for name, pin in zip(("boto3", "botocore"), OLDEST_BOTO3, strict=True):
        module = first.body["modules"][name]
        assert module["file"].startswith(str(task)), module
        assert module["version"] == pin.partition("==")[2]
    ready = next(r for r in function.json_logs() if r["message"] == "S3 client ready")
    assert ready["ms"] > 0
    objects = download_objects(s3, bucket, tmp_path)
    ((key, path),) = objects.items()
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["Metadata"]["invocations"] == "2"
    lines = executed_lines(path, task / ADOPTED.name)
    assert {line_of(ADOPTED, "path-a"), line_of(ADOPTED, "path-b")} <= lines
