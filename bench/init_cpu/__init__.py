"""The runtime process's CPU time at the end of init, for the cold-start rows.

`sitecustomize.py` here writes it (see its docstring); this reads it, and says
how to put it on an environment's path: in a container, this directory
mounted at `MOUNT`; on the host, this directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DIR = Path(__file__).resolve().parent
MOUNT = "/opt/bench-init-cpu"
# sitecustomize.py's: where the runtime copies its perf map before it ends (--python-names).
PERF_MAP_VARIABLE = "BENCH_PERF_MAP_DIR"
_LINE = re.compile(r'\{"bench": "init-cpu", "cpu_ms": [^}]*\}')


def container_args() -> tuple[str, ...]:
    """``podman run`` arguments: the directory, read-only."""
    return ("--volume", f"{DIR}:{MOUNT}:ro")


def cpu_ms(logs: str) -> float | None:
    """The first environment's init CPU time in ``logs``, if it wrote one."""
    found = _LINE.search(logs)
    return float(json.loads(found.group(0))["cpu_ms"]) if found else None
