"""A function for the shim's end-to-end tests.  Markers name lines for asserts."""

import os

MODULE_CONSTANT = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")  # marker: module-level


def handler(event, context):
    if event.get("raise"):
        raise ValueError("deliberate failure")  # marker: raise
    if event.get("path") == "a":
        result = "took a"  # marker: path-a
    else:
        result = "took b"  # marker: path-b
    return {"result": result, "request_id": context.aws_request_id}
