"""Benchmarks only: the runtime process's CPU time when its init is done.

The RIE's ``INIT REPORT`` is wall time, and on a shared two-core VM the
same configuration's median moves by 30-60 ms between runs: more than the
5 ms a cold-start target allows.  CPU time spent by the process is far
steadier, so `bench_image.py` and `sizes.py` put this directory on
``PYTHONPATH`` of every environment they start, coverage on or off alike:
when awslambdaric first asks for an event (its init is over), one line
``{"bench": "init-cpu", "cpu_ms": ...}`` goes to stderr.

It counts every thread of the process and what ran before ``exec`` in it
(the entrypoint's shell), the same in every configuration.  awslambdaric's
runtime client is patched when it is first imported, by whoever imports it:
until 2026-12-07 it was imported here, before the shim started, which took
its import out of the measured init.
"""

from __future__ import annotations

import os
import sys
from typing import Any

MARKER = "init-cpu"
# `bench/instructions.py`: end the process at the N-th request for an event (1: when the
# init is done; 2: when the first invocation is), so that callgrind's count is up to there.
EXIT_VARIABLE = "BENCH_EXIT_AT_NEXT"
# `bench/instructions.py --python-names`: where the process's perf map goes before it ends.
PERF_MAP_VARIABLE = "BENCH_PERF_MAP_DIR"
TARGET = "awslambdaric.lambda_runtime_client"


def _patch(client: Any) -> None:
    import json
    import time

    original = client.wait_next_invocation
    asked = 0
    exit_at = int(os.environ.get(EXIT_VARIABLE) or 0)

    def wait_next_invocation(self: object) -> object:
        nonlocal asked
        asked += 1
        if asked == 1:
            import resource

            times, usage = os.times(), resource.getrusage(resource.RUSAGE_SELF)
            line = json.dumps({
                "bench": MARKER,
                "cpu_ms": time.process_time() * 1000,
                "user_ms": times.user * 1000,  # (clock ticks: 10 ms steps)
                "system_ms": times.system * 1000,
                "minor_faults": usage.ru_minflt,
                "max_rss_kb": usage.ru_maxrss,
            })  # fmt: skip
            os.write(2, (line + "\n").encode())
        if asked == exit_at:
            keep_perf_map()
            os._exit(0)
        return original(self)

    client.wait_next_invocation = wait_next_invocation


def keep_perf_map() -> None:
    """Copy this process's ``/tmp/perf-PID.map`` into ``BENCH_PERF_MAP_DIR``.

    With ``PYTHONPERFSUPPORT=1`` (3.12+) each Python function runs through a
    trampoline of its own, named in that map: it is what turns callgrind's
    ``???:0x...`` entries into Python functions.  The process ends with
    ``os._exit`` inside a container whose ``/tmp`` goes with it, so the map is
    copied out first.
    """
    target = os.environ.get(PERF_MAP_VARIABLE)
    source = f"/tmp/perf-{os.getpid()}.map"
    if not target or not os.path.exists(source):
        return
    import shutil

    shutil.copy(source, target)


class _PatchOnLoad:
    """Patches awslambdaric's runtime client when it is first imported, by
    whoever imports it: importing it here would take its import out of the
    measured init (and out of what coverage records there)."""

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> Any:
        if name != TARGET:
            return None
        sys.meta_path.remove(cls)
        from importlib.util import find_spec

        spec = find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader: Any = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            _patch(module.LambdaRuntimeClient)

        loader.exec_module = exec_and_patch
        return spec


def _install() -> None:
    sys.meta_path.insert(0, _PatchOnLoad)


if os.environ.get("AWS_LAMBDA_RUNTIME_API") and not os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY"):
    _install()
