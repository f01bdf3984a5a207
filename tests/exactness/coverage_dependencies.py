"""`coverage_adapter.DEPENDENCIES` against what ``import coverage`` really imports.

Run as ``python -m tests.exactness.coverage_dependencies`` on each Python (the
host's, 3.12/3.13, the image's 3.14), in a fresh process: `import_coverage`
with a ``between`` imports the dependencies one at a time, then coverage.py.
The last step must import nothing from outside coverage.py but the
interpreter's private helpers its modules load (``_sysconfigdata_*``, C
accelerators), or a coverage.py upgrade grew the one step the shipping thread
cannot cut.  Prints one JSON line.
"""

from __future__ import annotations

import json
import platform
import sys

from coverage_runtime.shim import coverage_adapter


def main() -> None:
    steps: list[str] = []
    seen = set(sys.modules)

    def between() -> None:
        new = sorted(set(sys.modules) - seen)
        seen.update(new)
        steps.append(",".join(new))

    coverage_adapter.import_coverage(between=between)
    last = sorted(set(sys.modules) - seen)
    outside = [m for m in last if m != "coverage" and not m.startswith("coverage.")]
    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "steps": len(steps),
                "coverage_modules": len(last) - len(outside),
                "outside": [m for m in outside if not m.startswith("_")],
                "private": [m for m in outside if m.startswith("_")],
            }
        )
    )


if __name__ == "__main__":
    main()
