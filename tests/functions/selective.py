"""Selective mode: only what the decorator and measured blocks run is measured."""

from coverage_runtime import CoverageContext, coverage_handler


def unmeasured_helper():
    return "never measured"  # marker: unmeasured


def measured_helper():
    return "measured in block"  # marker: in-block


def excluded_helper():
    return "excluded"  # marker: excluded


def plain_handler(event, context):
    unmeasured_helper()
    with CoverageContext():
        value = measured_helper()  # marker: block-line
    return {"ok": value == "measured in block"}  # marker: after-block


@coverage_handler
def decorated_handler(event, context):
    with CoverageContext(enabled=False):
        excluded_helper()
    return {"ok": True, "kind": "decorated"}  # marker: decorated-body
