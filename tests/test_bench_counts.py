"""`bench/batch_counts.py`'s reading of callgrind's output, on a profile written
here (so each count is known), and `bench/event_costs.py` runs on a Python
with ``sys.monitoring``: the attribution table of bench/README.md ("The batch
event counted") rests on both."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.batch_counts import Function, perf_map, profile, total
from tests.harness import REPO_ROOT
from tests.test_exactness import other_pythons

# main calls helper twice (900 instructions with what helper calls), and a trampoline
# at 0x4e00000 once; helper calls itself once (recursion: its inner level's cost is in
# the outer one's) and leaf 3 times.  Names are compressed after first use, as
# callgrind writes them.
PROFILE = """\
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 1450

ob=(1) /usr/bin/python3.14
fl=(1) ???
fn=(1) main
0 100
cfn=(2) helper
calls=2 0
0 900
cob=(2) ???
cfi=(1)
cfn=(3) 0x0000000004e00000
calls=1 0
0 450

fn=(2)
0 300
cfn=(2)
calls=1 0
0 200
cfn=(4) leaf
calls=3 0
0 600

fn=(4)
0 600

fn=(3)
0 450
totals: 1450
"""


def test_a_profile_gives_each_function_its_self_and_inclusive_counts_and_calls(
    tmp_path: Path,
) -> None:
    cg = tmp_path / "cg"
    cg.write_text(PROFILE)
    (tmp_path / "perf.map").write_text("4e00000 20 py::handler:/var/task/app/handler.py\n")
    names = perf_map(tmp_path / "perf.map")
    assert names == {"0x0000000004e00000": "py::handler:/var/task/app/handler.py"}
    found = profile(cg, names)
    assert found["main"] == Function(self_cost=100, inclusive=1450, calls=0)
    # The recursive call (200) is in helper's own inclusive count already: not twice.
    assert found["helper"] == Function(self_cost=300, inclusive=900, calls=3)
    assert found["leaf"] == Function(self_cost=600, inclusive=600, calls=3)
    assert found["py::handler:/var/task/app/handler.py"] == Function(450, 450, 1)
    assert total(cg) == 1450


@pytest.mark.parametrize("mode", ["plain", "line", "branch", "muted", "disabled", "rearm"])
def test_the_calibration_runs_on_a_python_with_sys_monitoring(mode: str) -> None:
    pythons = other_pythons()
    if not pythons:
        pytest.skip("no Python 3.12+ under pyenv")
    done = subprocess.run(
        [str(pythons[-1]), "-m", "bench.event_costs", mode, "50"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
