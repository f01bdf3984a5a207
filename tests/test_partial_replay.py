"""An early shutdown that cannot replay the whole recorded stream in time ships
the complete data of the files it could replay (`partial_replay`), and says
which part is lost.  The exactness of that subset is checked against the whole
replay on every CPython 3.12+ here (`tests.exactness.partial_cases`; branches in
the image: `test_container`); the plan and the budget are checked here alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coverage_runtime.shim import partial_replay
from tests.harness import REPO_ROOT
from tests.test_exactness import other_pythons, venv_for

SYSMON_PYTHONS = [p for p in other_pythons() if p.parent.parent.name >= "3.12"]
SWITCH = partial_replay.SWITCH


def check_partial_matrix(result: dict[str, Any], *, branches: bool) -> None:
    """Every partial cell holds, for each file it holds, exactly the full replay's
    lines and arcs under each label, and the files it lacks are the ones it says."""
    cells = result["cells"]
    assert len(cells) == (8 if branches else 4), cells
    for cell in cells:
        outcome = cell["outcome"]
        assert cell["unequal"] == [], cell
        assert cell["missing_said"] and cell["contexts_equal"], cell
        assert outcome["partial"], cell
        # Files begun by a replay whose data was written (labels: the checkpoint's) are
        # completed; those begun but never written (a catch-up; with labels, a drain no
        # snapshot followed) are admitted by the budget as new ones are, and those left
        # out are missing whole, never in part.
        assert (outcome["begun"] > 0) == ("--labels" in cell["cell"]), cell
        assert outcome["begun_not_held"] > 0, cell
        # Whole files shipped beyond the begun ones, and some left out.
        assert outcome["begun"] < outcome["files_replayed"] < cell["files_full"], cell
        assert 0 < cell["files_held"] < cell["files_full"], cell
        assert cell["arcs"] == ("--branch" in cell["cell"]), cell
    # A file an earlier replay began (and no snapshot wrote) is written whole when
    # completed: the budget counts what that replay took of it, not its rest alone.
    assert any(cell["outcome"]["earlier"] > 0 for cell in cells), cells
    # All that earlier replays fed and the shutdown writes is in the budget, not
    # only what they fed of the files it completes: also all of the files they fed
    # whole (no event left to replay) and what begun files held, or the write
    # outgrows its estimate (without labels, 58 lines or 127 arcs of ~300 to write).
    for cell in cells:
        outcome = cell["outcome"]
        assert outcome["earlier_counted"] >= outcome["earlier_kept"] > 0, cell


@pytest.mark.parametrize("interpreter", SYSMON_PYTHONS, ids=lambda p: p.parent.parent.name)
def test_a_partial_replay_holds_exactly_the_full_replays_data_of_each_file_it_holds(
    interpreter: Path,
) -> None:
    done = subprocess.run(
        [venv_for(interpreter), "-m", "tests.exactness.partial_cases", "--matrix"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    check_partial_matrix(json.loads(done.stdout.strip().splitlines()[-1]), branches=False)


def code(name: str) -> Any:
    return SimpleNamespace(co_filename=name)


def test_the_plan_groups_by_file_in_stream_order_with_the_switches_between_its_events():
    a, b = code("a.py"), code("b.py")
    events = [
        (0, a, 0, 0),
        (1, a, 1, 0),
        (SWITCH, "x", 0, 0),
        (0, b, 0, 0),
        (SWITCH, "y", 0, 0),
        (1, a, 2, 0),
        (1, b, 3, 0),
        (1, b, 4, 0),
    ]
    plan = partial_replay.plan(events, 0, len(events), "init")
    assert list(plan.files) == ["a.py", "b.py"]
    assert plan.files["a.py"] == [events[0], events[1], (SWITCH, "y", 2, 0), events[5]]
    assert plan.files["b.py"] == [(SWITCH, "x", 1, 0), events[3], (SWITCH, "y", 2, 0), *events[6:]]
    assert (plan.events_of("a.py"), plan.events_of("b.py")) == (3, 3)
    assert (plan.last_switch, plan.last_label) == (2, "y")
    # A slice: what was replayed before it is not planned, its label is the start.
    later = partial_replay.plan(events, 5, len(events), "y")
    assert later.files == {"a.py": [events[5]], "b.py": events[6:]}
    assert (later.last_switch, later.last_label) == (0, "y")


def test_the_budget_keeps_the_write_and_the_put_of_what_was_replayed():
    now = [100.0]
    budget = partial_replay.Budget(101.0, branch=True, clock=lambda: now[0])
    lines = partial_replay.Budget(101.0, branch=False, clock=lambda: now[0])
    reserve = partial_replay.RESERVE_SECONDS
    share = partial_replay.WRITE_SHARE[True]
    assert budget.stop_at() == pytest.approx(101.0 - reserve)
    now[0] = 100.3  # waiting for a catch-up's slice: nothing to write
    budget.begin()
    lines.begin()
    assert budget.stop_at() == pytest.approx(101.0 - reserve)
    assert budget.admits() and not budget.expired()
    budget.file_started()
    now[0] = 100.5  # 0.2 s of replay: its write needs a share of it
    assert budget.stop_at() == pytest.approx(101.0 - reserve - share * 0.2)
    assert budget.replayed(10, new=True) == pytest.approx(0.2)  # the next needs twice that
    now[0] = 100.55  # (100.55 + 2 x 0.2 is past 101 - reserve - share x 0.25)
    assert not budget.admits()
    now[0] = 100.4
    assert budget.admits()
    now[0] = 101.0
    assert budget.expired()
    # With lines the write is a larger share of the replay (no tokenizing in it).
    assert lines.stop_at() < budget.stop_at()
    assert partial_replay.WRITE_SHARE[False] > share
    # Cheap replays of much data (files whose first sight a catch-up paid): the write
    # grows with the events, whatever the replay's time; and they are no estimate.
    now[0] = 100.35
    budget.file_started()
    budget.replayed(150_000, new=False)
    per_event = partial_replay.WRITE_SECONDS_PER_EVENT[True]
    assert per_event * 150_010 > share * 0.05
    assert budget.stop_at() == pytest.approx(101.0 - reserve - per_event * 150_010)
    assert budget.admits() is (budget.stop_at() > 100.35 + 2 * 0.2)
    # A file an earlier replay began: what that replay took of it is written with it.
    budget.file_started()
    budget.replayed(10, new=False, earlier=40_000)
    assert budget.stop_at() == pytest.approx(101.0 - reserve - per_event * 190_020)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(None, 0.0), ("", 0.0), ("40", 0.04), ("abc", 0.0), ("-5", 0.0), ("nan", 0.0), ("inf", 0.0)],
)
def test_the_test_delay_hook_never_stops_the_shim(raw, seconds):
    """``COVERAGE_TEST_REPLAY_DELAY_MS`` is read when the module is imported, on the
    init path: a malformed value is no delay, never an exception."""
    assert partial_replay._test_delay_seconds(raw) == pytest.approx(seconds)
