"""Label each Lambda invocation with the test that made it.

Copy this file next to the integration tests that invoke your deployed
function.  Every invocation made through the ``invoke`` fixture carries the
test's node id as its coverage label (Lambda ``Invoke``'s ``ClientContext``,
``custom["coverage-label"]``), so lambda-coverage records which test ran
which line of the function, and ``lambda-coverage report --context
'tests/test_api.py::test_orders*'`` reports what those tests ran.

    FUNCTION_NAME=my-function pytest tests/integration
    # against a function under the Runtime Interface Emulator (the demo, tests):
    FUNCTION_NAME=function LAMBDA_ENDPOINT_URL=http://127.0.0.1:9000 pytest ...

ClientContext reaches the function on synchronous invocations only
(``RequestResponse``, the default here), and Lambda takes at most 3,583 bytes
of it; the shim keeps the first 200 characters of a label.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest

LABEL_KEY = "coverage-label"
MAX_LABEL = 200  # what the shim keeps (coverage_runtime.shim.labels.MAX_LENGTH)


def client_context(label: str) -> str:
    """``ClientContext`` for boto3's ``invoke``: base64 of the JSON Lambda passes on."""
    custom = {LABEL_KEY: label[:MAX_LABEL]}
    return base64.b64encode(json.dumps({"custom": custom}).encode()).decode()


@pytest.fixture(scope="session")
def lambda_client() -> Any:
    return boto3.client("lambda", endpoint_url=os.environ.get("LAMBDA_ENDPOINT_URL"))


@pytest.fixture
def invoke(request: pytest.FixtureRequest, lambda_client: Any) -> Callable[[Any], Any]:
    """``invoke(event)`` -> the function's response, labelled with this test's node id."""
    function = os.environ["FUNCTION_NAME"]
    context = client_context(request.node.nodeid)

    def call(event: Any) -> Any:
        response = lambda_client.invoke(
            FunctionName=function,
            Payload=json.dumps(event).encode(),
            ClientContext=context,
        )
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            raise AssertionError(f"{function} failed: {payload}")
        return payload

    return call
