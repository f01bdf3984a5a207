"""Units of the checkout's source: module bodies, classes, functions, methods, nested functions.

A verdict is given per unit, not per line: "is this function ever called?"
A unit's lines are its own statements without its nested units': a ``def``
statement runs in the body around it (at import, for a module's functions),
so the header of a function (decorators, signature) belongs to its parent
and only the body is the function's.  Statements are coverage.py's own
(the analysis of the report, with the project's exclusions), so a unit's
lines are exactly the lines its coverage is counted on.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from coverage_runtime.errors import ReportError

MODULE = "module"
CLASS = "class"
FUNCTION = "function"
METHOD = "method"
NESTED = "nested"
KINDS = (MODULE, CLASS, FUNCTION, METHOD, NESTED)


@dataclass
class Unit:
    """One unit of a file; ``lines`` are its own statements (nested units' excluded)."""

    path: str  # relative to the checkout, '/'-separated
    qualname: str  # as Python spells __qualname__; '<module>' for the module body
    kind: str
    start_line: int
    end_line: int
    lines: set[int] = field(default_factory=set)


_Scoped = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _children(node: ast.AST) -> Iterator[_Scoped]:
    """The units directly inside ``node`` (through if/try/with/for blocks, not into units)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _Scoped):
            yield child
        elif not isinstance(child, ast.Lambda | ast.expr):
            yield from _children(child)


def _body_range(node: _Scoped) -> tuple[int, int]:
    """Lines of the body: from the first body statement below the header to the end."""
    first = node.body[0].lineno
    end = node.end_lineno or node.lineno
    return (first, end) if first > node.lineno else (end + 1, end)  # a one-line def owns none


def units_of(path: str, source: str, statements: Iterable[int]) -> list[Unit]:
    """The units of one file (``path`` as it is named in the output)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ReportError(f"{path}: cannot parse the checkout's source: {exc}") from exc
    statements = set(statements)
    lines = source.count("\n") + 1
    found: list[Unit] = []

    def visit(node: ast.AST, unit: Unit, body: tuple[int, int], prefix: str, kind: str) -> None:
        own = {n for n in statements if body[0] <= n <= body[1]}
        for child in _children(node):
            start, end = _body_range(child)
            own -= set(range(start, end + 1))
            if isinstance(child, ast.ClassDef):
                child_kind = CLASS
            elif kind == CLASS:
                child_kind = METHOD
            elif kind in (FUNCTION, METHOD, NESTED):
                child_kind = NESTED
            else:
                child_kind = FUNCTION
            qualname = f"{prefix}{child.name}"
            inner = (
                f"{qualname}.<locals>."
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                else f"{qualname}."
            )
            sub = Unit(path, qualname, child_kind, child.lineno, child.end_lineno or child.lineno)
            visit(child, sub, (start, end), inner, child_kind)
        unit.lines = own
        found.append(unit)

    visit(tree, Unit(path, "<module>", MODULE, 1, lines), (1, lines), "", MODULE)
    return sorted(found, key=lambda u: (u.start_line, u.kind != MODULE))
