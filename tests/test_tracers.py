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
