"""#21 item 3 through the RIE: the shim works with the packages the function
brings (AWS's ``pip install --target`` recipe puts them in the task root, which
comes first on the path), and never swaps them for its own.

- boto3/botocore: the shim's uploads use neither (`s3.ObjectClient` signs and
  sends them itself); it asks botocore only for credentials, when the
  environment holds none (Lambda always sets the role's), and then through the
  botocore the function's path finds.  So the test gives the function no
  credentials in its environment, only a shared credentials file, and the
  function's own boto3/botocore, down to `OLDEST_BOTO3` (the oldest documented
  in the README), serve the shim's uploads; the function imports the very same
  modules it vendored.
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
# Not in the function's environment: the shim then takes botocore's credential chain.
NO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


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


def test_the_functions_oldest_boto3_uploads(start_function, function_env, s3, bucket, tmp_path):
    task = vendored_task(tmp_path, *OLDEST_BOTO3)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\n"
        f"aws_access_key_id = {function_env['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {function_env['AWS_SECRET_ACCESS_KEY']}\n"
    )
    env = {k: v for k, v in function_env.items() if k not in NO_CREDENTIALS}
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-config")
    function = start_function(
        HANDLER,
        task_root=task,
        env=env,
        COVERAGE_FLUSH_INTERVAL_SECONDS="1",
        # Every parameter the shim can send (its own client writes them, not botocore).
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
