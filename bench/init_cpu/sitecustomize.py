"""Benchmarks only: the runtime process's CPU time when its init is done.

The RIE's ``INIT REPORT`` is wall time, and on a shared two-core VM the
same configuration's median moves by 30-60 ms between runs: more than the
5 ms a cold-start target allows.  CPU time spent by the process is far
steadier, so `bench_image.py` and `sizes.py` put this directory on
``PYTHONPATH`` of every environment they start, coverage on or off alike:
when awslambdaric first asks for an event (its init is over), one line
``{"bench": "init-cpu", "cpu_ms": ...}`` goes to stderr.

It counts every thread of the process and what ran before ``exec`` in it
(the entrypoint's shell), the same in every configuration.  awslambdaric is
imported here, before the shim starts, in every configuration: it is never
measured, so that moves nothing between them.
"""

from __future__ import annotations

import os

MARKER = "init-cpu"


def _install() -> None:
    import json
    import time

    from awslambdaric.lambda_runtime_client import LambdaRuntimeClient

    original = LambdaRuntimeClient.wait_next_invocation
    reported = False

    def wait_next_invocation(self: LambdaRuntimeClient) -> object:
        nonlocal reported
        if not reported:
            reported = True
            line = json.dumps({"bench": MARKER, "cpu_ms": time.process_time() * 1000})
            os.write(2, (line + "\n").encode())
        return original(self)

    LambdaRuntimeClient.wait_next_invocation = wait_next_invocation  # type: ignore[method-assign]


if os.environ.get("AWS_LAMBDA_RUNTIME_API") and not os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY"):
    _install()
