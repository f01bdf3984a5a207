"""Calls the public API from inside the function."""

import coverage_runtime


def helper(n):
    total = 0
    for i in range(n):
        total += i
    return total


@coverage_runtime.coverage_handler
def handler(event, context):
    action = event.get("action")
    if action == "status":
        return coverage_runtime.status()  # marker: status
    if action == "flush":
        return {"flushed": coverage_runtime.flush()}
    if action == "reset":
        coverage_runtime.reset()
        return {"reset": True}
    return {"sum": helper(event.get("n", 3))}  # marker: sum
