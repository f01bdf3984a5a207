"""`init_recorder.return_offsets` (a scan of the raw bytecode) against ``dis``.

Run as ``python -m tests.exactness.return_offsets`` on each Python (the host's,
3.12/3.13, the image's 3.14): for compiled and specialised code of a few large
standard-library modules, the offsets must be exactly those ``dis`` names as
return instructions.  Prints one JSON line: the Python and how many code
objects were checked.
"""

from __future__ import annotations

import dis
import importlib
import json
import platform
import types
from collections.abc import Iterator

from coverage_runtime.shim.init_recorder import return_offsets

MODULES = ("json.decoder", "json.encoder", "asyncio.base_events", "email.message",
           "http.client", "dataclasses", "typing", "argparse", "inspect", "dis")  # fmt: skip


def walk(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from walk(const)


def main() -> None:
    for _ in range(100):  # specialised (adaptive) code: co_code must still be de-optimised
        json.loads(json.dumps({"a": [1, 2.5, None, "x"], "b": {"c": True}}))
    checked = 0
    for name in MODULES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        with open(module.__file__) as source:
            codes = list(walk(compile(source.read(), module.__file__, "exec")))
        codes += [f.__code__ for f in vars(module).values() if isinstance(f, types.FunctionType)]
        for code in codes:
            expected = [
                i.offset
                for i in dis.get_instructions(code)
                if i.opname in ("RETURN_VALUE", "RETURN_CONST")
            ]
            assert return_offsets(code) == expected, (name, code.co_name, expected)
            checked += 1
    print(json.dumps({"python": platform.python_version(), "checked": checked}))


if __name__ == "__main__":
    main()
