"""A function of N measured modules, for the size tests and benchmarks (issue 18).

Each module has 111 statements in 10 functions with branches and loops, and
is imported at init; the event with k calls the functions of every module
whose index is k modulo 10 and one function of each of the others, with
arguments from k modulo 10, so coverage grows over events 0-9 and then stays,
with branches too (with k itself as the argument, branch arcs kept coming
until k = 59: each function's branches turn on its argument modulo 3, 4 and 5).
"""

from __future__ import annotations

import zlib
from pathlib import Path

MODULE = '''"""Synthetic module {index}."""

TABLE = {{name: len(name) for name in ("alpha", "beta", "gamma")}}

'''
FUNCTION = """

def f{j}(value):
    total = 0
    for step in range(3):
        if value % 3 == step:
            total += step
        elif value % 5 == step:
            total -= step
        else:
            total += 1
    if total > 4:
        return total * 2
    result = [item for item in range(value % 4)]
    while result and result[-1] > 1:
        result.pop()
    return total + len(result)
"""
HANDLER = '''"""Imports every synthetic module at init; see tests/synthetic_function.py."""

import importlib

MODULES = [importlib.import_module(f"synthetic.m{{index:05d}}") for index in range({n})]


def handler(event, context):
    k = int(event.get("k", 0))
    turn = k % 10  # (event k + 10 runs what event k ran: coverage stops growing)
    total = 0
    for index, module in enumerate(MODULES):
        if index % 10 == turn:
            for j in range(10):
                total += getattr(module, f"f{{j}}")(turn + j)
        else:
            total += module.f0(turn)
    return {{"total": total, "k": k}}
'''


def write(root: Path, n: int) -> Path:
    """The task root with ``n`` modules (written once per ``n``); handler ``handler.handler``."""
    stamp = root / ".modules"
    written = f"{n} {zlib.crc32((MODULE + FUNCTION + HANDLER).encode()):08x}"  # (n, and which text)
    if stamp.exists() and stamp.read_text() == written:
        return root
    package = root / "synthetic"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    body = "".join(FUNCTION.format(j=j) for j in range(10))
    for index in range(n):
        (package / f"m{index:05d}.py").write_text(MODULE.format(index=index) + body)
    (root / "handler.py").write_text(HANDLER.format(n=n))
    stamp.write_text(written)
    return root
