"""Units of a source file, checked against what Python itself compiles: every function and
class body is a code object whose ``co_qualname`` is the name the unit must carry."""

from __future__ import annotations

import types

from coverage_runtime.report.units import units_of

SOURCE = '''\
"""A module with every kind of unit."""
import functools


def plain(x):
    return x


@functools.lru_cache
def decorated(x):
    return [y for y in range(x)]


async def coroutine():
    return 1


class Outer:
    attribute = 1

    def method(self):
        def inner():
            def innermost():
                return 3
            return innermost()
        return inner()

    @staticmethod
    def static():
        return lambda: 2

    class Nested:
        async def deep(self):
            return 4


def factory():
    class Local:
        def method(self):
            return 5
    return Local


if True:
    def conditional():
        return 6
else:
    def conditional():
        return 7
'''


def compiled_units(source: str) -> set[tuple[str, str]]:
    """(qualname, kind of code) of every module, class and function body Python compiles."""
    found = set()

    def walk(code: types.CodeType) -> None:
        name = code.co_qualname
        if not name.split(".")[-1].startswith("<") or name == "<module>":
            found.add(name)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                walk(const)

    walk(compile(source, "sample.py", "exec"))
    return found


def test_units_carry_the_qualnames_python_gives_them():
    statements = range(1, SOURCE.count("\n") + 2)  # every line: the shape is what counts here
    units = units_of("pkg/sample.py", SOURCE, statements)
    assert {u.qualname for u in units} == compiled_units(SOURCE)
    kinds = {u.qualname: u.kind for u in units}
    assert kinds == {
        "<module>": "module",
        "plain": "function",
        "decorated": "function",
        "coroutine": "function",
        "Outer": "class",
        "Outer.method": "method",
        "Outer.method.<locals>.inner": "nested",
        "Outer.method.<locals>.inner.<locals>.innermost": "nested",
        "Outer.static": "method",
        "Outer.Nested": "class",
        "Outer.Nested.deep": "method",
        "factory": "function",
        "factory.<locals>.Local": "class",
        "factory.<locals>.Local.method": "method",
        "conditional": "function",
    }


def test_a_units_lines_are_its_own_statements_without_its_nested_units():
    lines = SOURCE.splitlines()

    def number(text: str, after: int = 0) -> int:
        return next(i for i, line in enumerate(lines, 1) if i > after and text in line)

    statements = set(range(1, len(lines) + 1)) - {
        i for i, t in enumerate(lines, 1) if not t.strip()
    }
    units = {(u.qualname, u.start_line): u for u in units_of("sample.py", SOURCE, statements)}
    method = units[("Outer.method", number("def method(self):"))]
    # 'def inner' runs in method's body; inner's own body does not belong to method.
    assert method.lines == {number("def inner():"), number("return inner()")}
    decorated = units[("decorated", number("def decorated"))]
    assert decorated.lines == {number("return [y for y")}
    module = units[("<module>", 1)]
    # The decorator and the def line run at import: the module's.
    assert {number("@functools.lru_cache"), number("def decorated")} <= module.lines
    assert number("return [y for y") not in module.lines
    # Both conditional definitions are units of their own.
    first = number("def conditional")
    assert ("conditional", first) in units and (
        "conditional",
        number("def conditional", first),
    ) in units


def test_vulture_finds_decorated_and_plain_unreferenced_units(tmp_path):
    """vulture names a decorated definition by its first decorator's line; the unit is
    still matched (by its last line and name)."""
    from coverage_runtime.report.verdicts import statically_unused, statically_unused_unit

    path = tmp_path / "mod.py"
    path.write_text(
        "import functools\n\n\n"
        "@functools.lru_cache\n"
        "def cached_but_unused(x):\n    return x\n\n\n"
        "def unused_plain():\n    return 1\n\n\n"
        "def used():\n    return 2\n\n\n"
        "print(used())\n"
    )
    source = path.read_text()
    statements = range(1, source.count("\n") + 1)
    units = {u.qualname: u for u in units_of("mod.py", source, statements)}
    unused = statically_unused([str(path)])
    flagged = {
        name for name, unit in units.items() if statically_unused_unit(unused, str(path), unit)
    }
    assert flagged == {"cached_but_unused", "unused_plain"}
