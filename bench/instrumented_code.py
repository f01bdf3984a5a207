"""Evidence: code carrying sys.monitoring LINE events runs slower even when every
event in it has returned DISABLE, and at full speed once its local events are removed.

    python bench/instrumented_code.py      # on the host's 3.12+, or inside the image

No coverage.py: a tool of its own instruments one copy of the seed's loop module and
not another; both are timed alternately in one process (medians of 41 rounds).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inprocess

TOOL = 4


def main() -> None:
    monitoring = sys.monitoring
    source = inprocess.LOOP_SOURCE.replace(
        "from coverage_runtime import CoverageContext",
        "import contextlib\nCoverageContext = contextlib.nullcontext",
    )
    instrumented, plain = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    (instrumented / "loop_a.py").write_text(source)
    (plain / "loop_b.py").write_text(source)
    sys.path[:0] = [str(instrumented), str(plain)]
    events = monitoring.events
    monitoring.use_tool_id(TOOL, "bench")
    monitoring.register_callback(TOOL, events.LINE, lambda code, line: monitoring.DISABLE)

    def start(code, offset):  # arm the instrumented copy only, as coverage.py arms its sources
        if code.co_filename.startswith(str(instrumented)):
            monitoring.set_local_events(TOOL, code, events.LINE)
        return monitoring.DISABLE

    monitoring.register_callback(TOOL, events.PY_START, start)
    monitoring.set_events(TOOL, events.PY_START)
    import loop_a
    import loop_b

    loop_a.seed_loop(inprocess.ITEMS)
    loop_b.seed_loop(inprocess.ITEMS)

    def compare(label: str) -> None:
        a, b = [], []
        for _ in range(41):
            started = time.perf_counter()
            loop_a.seed_loop(inprocess.ITEMS)
            a.append(time.perf_counter() - started)
            started = time.perf_counter()
            loop_b.seed_loop(inprocess.ITEMS)
            b.append(time.perf_counter() - started)
        ratio = statistics.median(a) / statistics.median(b)
        print(
            f"{label:<32} instrumented {statistics.median(a) * 1e3:.3f} ms, "
            f"plain {statistics.median(b) * 1e3:.3f} ms, ratio {ratio:.3f}"
        )

    print(f"Python {sys.version.split()[0]}")
    compare("every fired line disabled:")
    for function in (loop_a.seed_loop, loop_a.process, loop_a.score):
        monitoring.set_local_events(TOOL, function.__code__, 0)
    compare("local events removed:")


if __name__ == "__main__":
    main()
