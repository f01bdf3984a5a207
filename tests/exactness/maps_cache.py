"""`maps_cache`: the multiline maps computed at the image's build change nothing measured.

Run as ``python -m tests.exactness.maps_cache`` on the image's 3.14 (the one
Python where coverage.py's sysmon core measures branches and asks for the
maps): a small function (the synthetic one, and a module of multi-line
statements and conditions) is measured with branches through the shim's own
path (the init recorder, the replay into coverage.py, a snapshot) in a fresh
process, once without a cache and once with one written by
`maps_cache.build`; the two data files must hold the same arcs, and the
second must have taken its maps from the cache.  A file changed after the
build (its size or modification time) is not taken from it.  Prints one JSON
line.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from tests import synthetic_function

EDGE = '''"""Multi-line statements, conditions and calls: what the maps are for."""


def classify(value,
             limit=3):
    if (value > limit
            and value % 2 == 0):
        return ("big",
                "even")
    elif (value
          < 0):
        return "negative"
    result = [item
              for item in range(value)
              if item % 2]
    return {"items": result,
            "count": len(result)}
'''

RUN = """
import importlib, json, os, sys
from coverage_runtime.settings import load_settings
from coverage_runtime.shim import coverage_adapter
from coverage_runtime.shim.measurement import Measurement

root = sys.argv[1]
sys.path.insert(0, root)
settings = load_settings(os.environ)
m = Measurement(settings, os.path.join(os.environ["COVERAGE_DATA_DIR"], "x.coverage"))
m.begin()
handler = importlib.import_module("handler")
edge = importlib.import_module("edge")
for k in range(3):
    handler.handler({"k": k}, None)
for value in (-1, 2, 4, 7):
    edge.classify(value)
m.materialize()
m.snapshot()
data = m.data()
known = coverage_adapter._known_maps
m.finish()
print(json.dumps({
    "arcs": {name: sorted(data.arcs(name) or []) for name in sorted(data.measured_files())},
    "hits": getattr(known, "hits", None),
}))
"""


def measure(root: Path, scratch: str) -> dict:
    env = {
        **os.environ,
        "LAMBDA_TASK_ROOT": str(root),
        "COVERAGE_BRANCH": "true",
        "COVERAGE_DATA_DIR": tempfile.mkdtemp(dir=scratch),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(root)],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from coverage_runtime.shim import coverage_adapter, maps_cache

    with tempfile.TemporaryDirectory() as scratch:
        root = synthetic_function.write(Path(scratch) / "function", 20)
        (root / "edge.py").write_text(EDGE)
        without = measure(root, scratch)
        written = maps_cache.build([str(root)])
        cached = measure(root, scratch)
        # A file changed after the build is tokenized again, not taken from the cache.
        known = maps_cache.Known([str(root)])
        edge = str(root / "edge.py")
        fresh = known(edge) == coverage_adapter.multiline_map(edge)
        os.utime(edge, ns=(0, os.stat(edge).st_mtime_ns + 1_000_000_000))
        stale = known(edge)
    differ = sorted(
        name
        for name in set(without["arcs"]) | set(cached["arcs"])
        if without["arcs"].get(name) != cached["arcs"].get(name)
    )
    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "files": len(without["arcs"]),
                "written": sum(written.values()),
                "hits": cached["hits"],
                "hits_without_cache": without["hits"],
                "differ": differ,
                "fresh_equal": fresh,
                "stale_is_none": stale is None,
            }
        )
    )


if __name__ == "__main__":
    main()
