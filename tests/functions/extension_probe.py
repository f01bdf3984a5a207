"""Registers extensions through `coverage_runtime.shim.extension` at init (run with
plain awslambdaric, so the shim registers nothing itself); the handler says how
each attempt went."""

import os

from coverage_runtime.shim import extension

API = os.environ["AWS_LAMBDA_RUNTIME_API"]


def attempt(runtime_api: str, name: str) -> dict:
    try:
        return {"id": extension.register(runtime_api, name)}
    except extension.ExtensionError as exc:
        return {"error": str(exc)}


FIRST = attempt(API, "probe-a")
AGAIN = attempt(API, "probe-a")  # the same name twice


def handler(event, context):
    late = attempt(API, "probe-late")  # after the init: refused
    return {"first": FIRST, "again": AGAIN, "late": late}
