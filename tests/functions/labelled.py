"""A function for the label tests: each route runs its own lines, and ``shared``
runs under every label.  Markers name lines for asserts."""

from coverage_runtime import coverage_handler

ROUTES = {}  # marker: init-only


def shared(n):
    total = 0  # marker: shared
    for i in range(n):
        if i % 2:
            total += i  # marker: shared-odd
    return total


def route(name):
    def register(func):
        ROUTES[name] = func
        return func

    return register


@route("orders")
def orders(event):
    return {"orders": shared(3)}  # marker: orders


@route("users")
def users(event):
    return {"users": shared(1)}  # marker: users


@route("status")
def status(event):
    import coverage_runtime

    found = coverage_runtime.status()
    return {"labels": found.get("labels")}  # marker: status


def kind(event):
    return f"kind:{event.get('route')}"


@coverage_handler(kind=kind)
def handler(event, context):
    return ROUTES[event["route"]](event)  # marker: handler
