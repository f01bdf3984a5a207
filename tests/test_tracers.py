"""The function's tracers never see the shim's work (issue 21, item 2).

Each case runs `tests.tracer_probe` in a fresh interpreter (X-Ray's patches
cannot be undone) against the local S3: the real X-Ray SDK's ``patch_all()``,
OpenTelemetry's botocore, sqlite3 and urllib3 instrumentations, or its urllib3
one alone (under botocore, out of unwrapping's reach), applied before the
shim starts or after its client and data file exist.  The shim snapshots
(coverage.py writes its SQLite data file) and uploads (PutObject, HeadObject)
inside and outside a traced invocation; the tracer must record the function's
own boto3 call and sqlite3 query, and nothing else, and log no warning.  The
control (a client built without ``untraced``, a plain sqlite3 connection)
shows the same tracer does see such work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coverage_runtime import s3 as s3_module
from tests.harness import FAKE_CREDENTIALS, REPO_ROOT

FUNCTION_OWN = {
    "xray": ["s3 ListObjectsV2", "sql :memory:"],
    "otel": ["S3 ListObjectsV2", "sql SELECT"],
    "otel-http": ["http GET"],
}
CONTROL = {
    "xray": ["s3 HeadBucket", "sql {workdir}/control.db"],
    "otel": ["S3 HeadBucket", "sql CREATE"],
    "otel-http": ["http HEAD"],
}


@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("tracer", ["xray", "otel", "otel-http"])
def test_the_shims_work_is_invisible_to_the_functions_tracer(
    tracer: str, order: str, s3_server, bucket: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "probe"
    environment = {**os.environ, **FAKE_CREDENTIALS, "PYTHONPATH": str(REPO_ROOT)}
    for name in ("_X_AMZN_TRACE_ID", "AWS_XRAY_CONTEXT_MISSING", "OTEL_SDK_DISABLED"):
        environment.pop(name, None)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tests.tracer_probe", tracer, order),
            *(s3_server.endpoint_url, bucket, str(workdir)),
        ],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["uploads"] == [True, True, "SIGTERM"], done.stdout
    assert found["recorded"] == FUNCTION_OWN[tracer]
    assert found["messages"] == []
    assert found["control"] == [item.format(workdir=workdir) for item in CONTROL[tracer]]


def test_the_original_is_botocores_own_decorated_method():
    """botocore wraps ``_make_api_call`` itself (``with_current_context``, with
    ``functools.wraps``): peeling stops there, so botocore behaves as it would."""
    from botocore.client import BaseClient
    from botocore.endpoint import Endpoint

    own = vars(BaseClient)["_make_api_call"]
    assert s3_module.original(BaseClient, "_make_api_call") is own
    assert s3_module.original(Endpoint, "prepare_request") is vars(Endpoint)["prepare_request"]


def test_every_traced_method_is_bypassed_on_this_botocore():
    """`bypass_instrumentation` skips what a botocore lacks: this one lacks nothing."""
    client = s3_module.make_client(purpose="test", region="us-east-1", untraced=True)
    assert "_make_api_call" in vars(client)
    assert "prepare_request" in vars(client._endpoint)
    plain = s3_module.make_client(purpose="test", region="us-east-1")
    assert "_make_api_call" not in vars(plain)


@pytest.mark.parametrize("style", ["wrapt", "functools"])
def test_a_patch_made_after_the_client_is_bypassed(style, s3_server, bucket, monkeypatch):
    import functools

    import wrapt
    from botocore.client import BaseClient

    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    ours = s3_module.make_client(purpose="test", endpoint_url=s3_server.endpoint_url, untraced=True)
    own = vars(BaseClient)["_make_api_call"]
    seen: list[str] = []
    if style == "wrapt":

        def record(wrapped, instance, args, kwargs):
            seen.append(args[0])
            return wrapped(*args, **kwargs)

        patched = wrapt.FunctionWrapper(own, record)
    else:

        @functools.wraps(own)
        def patched(self, operation_name, api_params):
            seen.append(operation_name)
            return own(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", patched)
    ours.head_bucket(Bucket=bucket)
    s3_server.client().list_objects_v2(Bucket=bucket)
    assert seen == ["ListObjectsV2"]
    assert s3_module.original(BaseClient, "_make_api_call") is own
