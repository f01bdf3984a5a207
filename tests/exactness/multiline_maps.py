"""`coverage_adapter.fast_multiline_maps` against coverage.py's own multiline maps.

Run as ``python -m tests.exactness.multiline_maps`` on each Python (the host's,
3.12/3.13, the image's 3.14): for every module of the standard library (its
test suite holds files that do not tokenize, odd encodings and tabs) and for a
few edge cases written here, the map the fast path computes must equal what
``coverage.sysmon.compute_multiline_map`` computes.  Prints one JSON line: the
Python, whether the fast path is in place, how many files were compared, how
many of them had a multi-line statement, and the files that differ (in the
map, or in the exception coverage.py lets through).
"""

from __future__ import annotations

import json
import platform
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path

from coverage_runtime.shim import coverage_adapter

EDGES = {
    "unterminated_string.py": '"""never closed\n\nx = 1\n',
    "open_bracket.py": "x = (1,\n 2,\n",
    "bad_indent.py": "if x:\n        a = 1\n    b = 2\n",
    "latin1.py": "# -*- coding: latin-1 -*-\nname = ('caf\xe9',\n 1)\n",
    "continuations.py": "x = 1 + \\\n    2\ny = [\n  3,  # note\n]\n",
    "template.html": "<p>{{ not python }}</p>\n",
}


def outcome(compute: Callable[[str], dict[int, int]], filename: str) -> object:
    """The map, or the exception's type: coverage.py lets some through (a bad
    encoding cookie), and the fast path must let the same ones through."""
    try:
        return compute(filename)
    except Exception as exc:
        return type(exc).__name__


def main() -> None:
    if getattr(sys, "monitoring", None) is None:
        print(json.dumps({"python": platform.python_version(), "installed": False}))
        return
    from coverage import sysmon

    original = sysmon.compute_multiline_map
    installed = coverage_adapter.fast_multiline_maps()
    fast = sysmon.compute_multiline_map
    with tempfile.TemporaryDirectory() as scratch:
        edges = []
        for name, text in EDGES.items():
            path = Path(scratch) / name
            path.write_bytes(text.encode("latin-1" if "latin1" in name else "utf-8"))
            edges.append(str(path))
        edges.append(str(Path(scratch) / "missing.py"))
        stdlib = sorted(str(p) for p in Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
        differ, multiline = [], 0
        for filename in edges + stdlib:
            expected = outcome(original, filename)
            multiline += isinstance(expected, dict) and bool(expected)
            if outcome(fast, filename) != expected:
                differ.append(filename)
    print(json.dumps({
        "python": platform.python_version(), "installed": installed and fast is not original,
        "files": len(edges) + len(stdlib), "multiline": multiline, "differ": differ,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
