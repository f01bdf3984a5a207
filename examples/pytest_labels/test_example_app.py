"""A small integration suite against the example function (app/), labelled by
test: see conftest.py.  The repository's tests run it against the function
under the RIE and build the report of one test and of all
(tests/test_labels_recipe.py)."""

import json
from collections.abc import Callable
from typing import Any

Invoke = Callable[[Any], Any]


def document(response: Any) -> tuple[int, Any]:
    """The function's answer: an HTTP response's JSON body, or the document itself."""
    if isinstance(response, dict) and "statusCode" in response:
        return response["statusCode"], json.loads(response["body"])
    status = response["error"]["status"] if "error" in response else 200
    return status, response


def test_health(invoke: Invoke) -> None:
    status, _ = document(invoke({"path": "/health", "httpMethod": "GET"}))
    assert status == 200


def test_transform(invoke: Invoke) -> None:
    event = {"operation": "process_data", "data": {"transform": {"firstName": "  Grace "}}}
    status, found = document(invoke(event))
    assert status == 200, found


def test_unknown_operation_is_refused(invoke: Invoke) -> None:
    status, found = document(invoke({"operation": "delete_everything", "data": {}}))
    assert status == 400, found
