"""The function's tracers never see the shim's work (issue 21, item 2).

Each case runs `tests.tracer_probe` in a fresh interpreter (X-Ray's patches
cannot be undone) against the local S3: the real X-Ray SDK's ``patch_all()``
(with ``double_patch=True`` too, which patches ``http.client``),
OpenTelemetry's botocore, sqlite3 and urllib3 instrumentations, or its urllib3
one alone, applied before the shim starts or after its client and data file
exist.  The shim snapshots (coverage.py writes its SQLite data file) and
uploads (PutObject, HeadObject through `s3.ObjectClient`, on http.client,
which X-Ray's patch_all() patches too) inside and outside a traced
invocation; the tracer must record the function's own boto3 call and sqlite3
query, and nothing else, and log no warning.  The control (a boto3 client of
this project's, a plain sqlite3 connection) shows the same tracer does see
such work.
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
    "xray-all": ["s3 ListObjectsV2", "sql :memory:"],
    "otel": ["S3 ListObjectsV2", "sql SELECT"],
    "otel-http": ["http GET"],
}
CONTROL = {
    "xray": ["s3 HeadBucket", "sql {workdir}/control.db"],
    "xray-all": ["s3 HeadBucket", "sql {workdir}/control.db"],
    "otel": ["S3 HeadBucket", "sql CREATE"],
    "otel-http": ["http HEAD"],
}


@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("tracer", ["xray", "xray-all", "otel", "otel-http"])
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
    assert_only_the_functions_own(tracer, done, str(workdir))


def assert_only_the_functions_own(
    tracer: str, done: subprocess.CompletedProcess, workdir: str
) -> dict:
    """The probe's verdict: every upload made, the tracer recorded the function's own
    calls and nothing else, logged no warning, and did see the control's; its JSON."""
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["uploads"] == [True, True, "SIGTERM"], done.stdout
    assert found["recorded"] == FUNCTION_OWN[tracer]
    assert found["messages"] == []
    assert found["control"] == [item.format(workdir=workdir) for item in CONTROL[tracer]]
    return found


def test_the_original_is_the_standard_librarys_own_method():
    """Unpatched, `original` is the method itself: the client behaves as http.client does."""
    import http.client

    for name in ("putrequest", "putheader", "endheaders", "getresponse"):
        own = vars(http.client.HTTPConnection)[name]
        assert s3_module.original(http.client.HTTPConnection, name) is own
    own_read = vars(http.client.HTTPResponse)["read"]
    assert s3_module.original(http.client.HTTPResponse, "read") is own_read


@pytest.mark.parametrize("style", ["wrapt", "functools"])
def test_a_patch_of_http_client_made_after_the_client_is_bypassed(
    style, s3_server, bucket, monkeypatch
):
    """Tracers (X-Ray's httplib patch, Sentry's, ddtrace's) patch http.client's
    classes; the uploader's requests call the methods beneath the patches, the
    function's own requests go through them."""
    import functools
    import http.client

    import wrapt

    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    ours = s3_module.make_client(purpose="test", endpoint_url=s3_server.endpoint_url, light=True)
    seen: list[str] = []
    for name in ("putrequest", "getresponse"):
        own = vars(http.client.HTTPConnection)[name]
        if style == "wrapt":

            def record(wrapped, instance, args, kwargs, name=name):
                seen.append(name)
                return wrapped(*args, **kwargs)

            patched = wrapt.FunctionWrapper(own, record)
        else:

            def make(own=own, name=name):
                @functools.wraps(own)
                def counting(self, *args, **kwargs):
                    seen.append(name)
                    return own(self, *args, **kwargs)

                return counting

            patched = make()
        monkeypatch.setattr(http.client.HTTPConnection, name, patched)
    ours.put_object({"Bucket": bucket, "Key": "k", "Body": b"x"})
    assert ours.head_object({"Bucket": bucket, "Key": "k"})["ContentLength"] == 1
    assert seen == []
    connection = http.client.HTTPConnection("127.0.0.1", s3_server.port, timeout=10)
    connection.request("GET", "/")
    connection.getresponse().read()
    connection.close()
    assert seen == ["putrequest", "getresponse"]
