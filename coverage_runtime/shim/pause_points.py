"""Named points where a test can hold the runtime, to signal it at a chosen moment.

Races are tested deterministically, not with sleeps: with
``COVERAGE_TEST_PAUSE_DIR`` and ``COVERAGE_TEST_PAUSE_AT`` (a comma list of
point names) set, tests only, `reach` at a listed point creates
``<dir>/<name>.reached`` and waits until ``<dir>/<name>.go`` exists (at most
10 s, once per point), so a test can send SIGTERM exactly while, say, a
checkpoint takes its snapshot.  Unset (always, in Lambda), `reach` is one
global lookup.
"""

from __future__ import annotations

import os
import time

from coverage_runtime import env

_directory = os.environ.get(env.TEST_PAUSE_DIR) or None
_points = set(env.parse_list(os.environ.get(env.TEST_PAUSE_AT)))
MAX_WAIT_SECONDS = 10.0


def reach(name: str) -> None:
    if _directory is None or name not in _points:
        return
    _points.discard(name)  # once: the shutdown that follows passes freely
    reached = os.path.join(_directory, f"{name}.reached")
    go = os.path.join(_directory, f"{name}.go")
    try:
        with open(reached, "w"):
            pass
    except OSError:
        return
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.002)
