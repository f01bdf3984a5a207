"""bench/bench_workers.py's launcher: the runtime as its bootstrap starts it, each
worker's init timed.

``python worker_init_probe.py <handler>`` (staged in ``/var/task`` beside the
function) notes ``CLOCK_MONOTONIC`` in each forked worker right after the fork
(awslambdaric 4.2.2 forks its workers) and again when that worker first asks
the Runtime API for an event: the worker's init, whatever runs in it (awslambdaric
alone with coverage off; the shim's start, the handler's import and the shim's
end of init with coverage on), as the RIE's INIT REPORT times a standard
environment's.  Each worker writes ``{"pid", "init_ms", "init_cpu_ms",
"imported"}`` to
``/tmp/worker-init/<pid>.json`` (the shared ``/tmp``) once it has noted it.
Then it runs ``python -m coverage_runtime <handler>``, unchanged (the shim's API
imported first: see below).
"""

import json
import os
import sys
import time

import awslambdaric.lambda_runtime_client as runtime_client

OUT = "/tmp/worker-init"


def _time_this_worker() -> None:
    forked, cpu = time.monotonic(), time.process_time()
    inherited = set(sys.modules)
    client = runtime_client.BaseLambdaRuntimeClient
    real = client.wait_next_invocation

    def first(self):  # every client awslambdaric or the shim builds asks through it
        asked, cpu_now = time.monotonic(), time.process_time()
        client.wait_next_invocation = real
        os.makedirs(OUT, exist_ok=True)
        path = os.path.join(OUT, f"{os.getpid()}.json")
        with open(f"{path}.tmp", "w") as handle:
            json.dump(
                {
                    "pid": os.getpid(),
                    "init_ms": (asked - forked) * 1000,
                    # the worker's CPU time meanwhile, every thread of it (steadier
                    # on a shared machine, as bench_image.py's cold CPU rows)
                    "init_cpu_ms": (cpu_now - cpu) * 1000,
                    # what the worker imported itself (not inherited from the main process)
                    "imported": sorted(set(sys.modules) - inherited),
                },
                handle,
            )
        os.replace(f"{path}.tmp", path)
        return real(self)

    client.wait_next_invocation = first


if __name__ == "__main__":
    # The function (tests/functions/many_workers.py) imports the shim's API, which
    # with coverage off brings the shim's modules into each worker, and with it on
    # is inherited from the main process: imported here in every configuration,
    # so that a worker's init differs only by what the shim does in it.
    import coverage_runtime.shim.api  # noqa: F401

    os.register_at_fork(after_in_child=_time_this_worker)
    from coverage_runtime.__main__ import main

    main(sys.argv)
