"""Lambda Managed Instances tests: one function served by several workers at once.

``gather``: the invocation waits until that many invocations have arrived (a
barrier of files in the shared /tmp), so the test knows they are in flight on
as many different workers: a worker serves one invocation at a time.
"""

import os
import time

from coverage_runtime import CoverageContext, flush

BARRIER = "/tmp/barrier"


def gather(event):
    count = event.get("gather")
    if not count:
        return
    os.makedirs(BARRIER, exist_ok=True)
    with open(os.path.join(BARRIER, f"{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    deadline = time.monotonic() + 20
    while len(os.listdir(BARRIER)) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def path_a():
    return "a"  # marker: path-a


def path_b():
    return "b"  # marker: path-b


def path_c():
    return "c"  # marker: path-c


def path_d():
    return "d"  # marker: path-d


def path_never():
    return "never"  # marker: never


PATHS = {"a": path_a, "b": path_b, "c": path_c, "d": path_d}


def work(rounds):
    """Some measured code per invocation (bench/bench_workers.py)."""
    total = 0
    for number in range(rounds):
        total += number % 7
    return total


def handler(event, context):
    gather(event)
    taken = PATHS[event["path"]]()
    if event.get("work"):
        work(event["work"])
    if event.get("crash"):
        flush()  # this worker's newest data, published
        os._exit(3)  # marker: crashed
    if event.get("flush"):
        flush()
        taken += "+"  # marker: after-flush
    if event.get("sleep"):
        time.sleep(event["sleep"])  # marker: sleeping
    return {"pid": os.getpid(), "took": taken}


def selective_handler(event, context):
    gather(event)
    path_never()  # outside any block: not measured
    with CoverageContext():
        taken = PATHS[event["path"]]()  # marker: block
    return {"pid": os.getpid(), "took": taken}
