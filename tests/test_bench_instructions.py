"""`bench/instructions.py`: instructions of an init, counted by callgrind, and the
`bench/init_cpu` hook that ends the runtime's process when its init is done."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import init_cpu
from bench.instructions import (
    FIRST,
    OUT_DIR,
    Count,
    counted_process,
    instructions,
    perf_map_of,
    python_names_env,
    rows,
    wrapper_script,
)
from tests.harness import REPO_ROOT

# A Python with perf support (3.12+) for --python-names' hook; the venv's may be 3.11.
PERF_PYTHONS = [
    p
    for p in (sys.executable, *sorted(Path("/root/.pyenv/versions").glob("3.1[2-9]*/bin/python")))
    if subprocess.run(
        [str(p), "-c", "import sys; sys.exit(not hasattr(sys, 'activate_stack_trampoline'))"],
        check=False,
    ).returncode
    == 0
]


def test_the_hook_patches_awslambdarics_client_when_the_function_imports_it() -> None:
    """Importing awslambdaric in the hook would take its import out of the
    measured init: it is patched when whoever imports it first does."""
    probe = (
        "import sys\n"
        "print('awslambdaric.lambda_runtime_client' in sys.modules)\n"
        "from awslambdaric.lambda_runtime_client import LambdaRuntimeClient\n"
        "print(LambdaRuntimeClient.wait_next_invocation.__qualname__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(init_cpu.DIR), "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:1"}
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    assert found.stdout.split() == ["False", "_patch.<locals>.wait_next_invocation"]


def test_the_hook_ends_the_process_at_the_first_request_for_an_event() -> None:
    """With ``BENCH_EXIT_AT_NEXT=1`` the first ``wait_next_invocation`` writes
    the CPU line and exits 0 without asking the (unreachable) Runtime API."""
    probe = (
        "from awslambdaric.lambda_runtime_client import LambdaRuntimeClient\n"
        "LambdaRuntimeClient('127.0.0.1:1').wait_next_invocation()\n"
        "print('not reached')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(init_cpu.DIR),
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:1",
        "BENCH_EXIT_AT_NEXT": "1",
    }
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    assert found.returncode == 0
    assert "not reached" not in found.stdout
    assert init_cpu.cpu_ms(found.stderr) is not None


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_callgrinds_total_is_read_and_repeats(tmp_path: Path) -> None:
    """The same program counts the same instructions twice: what the rows rely on."""
    totals = []
    for run in range(2):
        out = tmp_path / f"callgrind.{run}"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q",
             sys.executable, "-S", "-c", "sum(range(1000))"],
            check=True, env={**os.environ, "PYTHONHASHSEED": "0"}, cwd=REPO_ROOT,
        )  # fmt: skip
        totals.append(instructions(out))
    assert totals[0] is not None and totals[0] > 1_000_000
    assert totals[1] is not None and abs(totals[1] - totals[0]) / totals[0] < 0.001


def test_the_rows_compare_each_configuration_with_coverage_off() -> None:
    counts = [
        Count("example", "disabled", 0, 1_000, None),
        Count("example", "disabled", 1, 1_002, None),
        Count("example", "full", 0, 1_030, None),
        Count("example", "full", 1, 1_032, None),
        Count("example", "selective", 0, None, None),  # no count: left out
    ]
    [row] = rows(counts, {"example": 100.0})
    assert row["config"] == "full"
    assert row["off"] == 1_001
    assert row["value"] == 1_031
    assert row["ratio"] == pytest.approx(1_031 / 1_001)
    assert row["added_ms"] == pytest.approx(30 / 1_001 * 100.0)
    assert (row["target"], row["pass"]) == ("+5 ms", True)  # the example's: +3.0 ms
    [slow] = rows([*counts[:2], Count("example", "full", 0, 1_100, None)], {"example": 100.0})
    assert slow["pass"] is False  # +9.9 ms
    [unknown] = rows(counts[:4], {})
    assert unknown["pass"] is None  # no INIT REPORT of coverage off: no ms to judge


def test_ratio_targets_for_the_heavy_and_the_synthetic_functions() -> None:
    counts = [
        Count("heavy", "disabled", 0, 1_000, None),
        Count("heavy", "full+branch", 0, 1_050, None),
        Count("synthetic-2000", "disabled", 0, 1_000, None),
        Count("synthetic-2000", "full", 0, 1_260, None),
    ]
    heavy, synthetic = rows(counts, {})
    assert (heavy["target"], heavy["pass"]) == ("<= 1.05x", True)
    assert (synthetic["target"], synthetic["pass"]) == ("<= 1.25x", False)


def test_the_hook_and_the_bench_agree_on_the_perf_map_variable() -> None:
    hook = (init_cpu.DIR / "sitecustomize.py").read_text()
    assert f'PERF_MAP_VARIABLE = "{init_cpu.PERF_MAP_VARIABLE}"' in hook
    assert python_names_env(False) == {}
    assert python_names_env(True) == {
        "PYTHONPERFSUPPORT": "1",
        init_cpu.PERF_MAP_VARIABLE: "/out",
    }


@pytest.mark.skipif(not PERF_PYTHONS, reason="no Python 3.12+ with perf support")
def test_the_hook_keeps_the_perf_map_that_names_python_functions(tmp_path: Path) -> None:
    """With ``PYTHONPERFSUPPORT=1`` the process's own map, naming a function it ran,
    is copied into ``BENCH_PERF_MAP_DIR`` (the process ends with ``os._exit`` after)."""
    probe = (
        "import os, sitecustomize\n"
        "def a_function_of_the_init():\n    return 1\n"
        "a_function_of_the_init()\n"
        "sitecustomize.keep_perf_map()\n"
        "print(os.getpid())\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(init_cpu.DIR),
        "PYTHONPERFSUPPORT": "1",
        init_cpu.PERF_MAP_VARIABLE: str(tmp_path),
    }
    env.pop("AWS_LAMBDA_RUNTIME_API", None)
    found = subprocess.run(
        [str(PERF_PYTHONS[0]), "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    pid = found.stdout.strip()
    kept = tmp_path / f"perf-{pid}.map"
    assert "py::a_function_of_the_init:" in kept.read_text()
    Path(f"/tmp/perf-{pid}.map").unlink(missing_ok=True)
    # bench/instructions.py finds it beside the process's callgrind file for --keep.
    (tmp_path / f"callgrind.{pid}").write_text("")
    assert perf_map_of(tmp_path / f"callgrind.{pid}") == kept
    assert perf_map_of(tmp_path / "callgrind.1") is None


def test_the_hook_can_end_the_process_after_the_first_invocation_instead() -> None:
    """``BENCH_EXIT_AT_NEXT=2``: the first request for an event goes through (here it
    fails: no runtime client behind it), the second ends the process."""
    probe = (
        "from awslambdaric.lambda_runtime_client import LambdaRuntimeClient\n"
        "try:\n"
        "    LambdaRuntimeClient.wait_next_invocation(None)\n"
        "except Exception as exc:\n"
        "    print('went through', type(exc).__name__)\n"
        "LambdaRuntimeClient.wait_next_invocation(None)\n"
        "print('not reached')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(init_cpu.DIR),
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:1",
        "BENCH_EXIT_AT_NEXT": "2",
    }
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("went through")
    assert "not reached" not in found.stdout


def test_the_rows_of_the_init_with_the_first_invocation_have_their_own_target() -> None:
    first = "example" + FIRST
    counts = [Count(first, "disabled", 0, 1_000, None), Count(first, "full", 0, 1_040, None)]
    [row] = rows(counts, {"example": 100.0})
    assert (row["target"], row["pass"]) == ("<= 1.05x", True)
    assert "added_ms" not in row  # (coverage off's INIT REPORT is the init's alone)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_a_file_per_thread_sums_to_the_process_and_names_the_main_threads(tmp_path: Path) -> None:
    script = tmp_path / "threads.py"
    script.write_text(
        "import threading\n"
        "t = threading.Thread(target=lambda: sum(range(200_000)))\n"
        "t.start(); t.join()\n"
    )
    python = os.path.realpath(sys.executable)  # not a shell shim that execs it
    wrapper = tmp_path / "python"
    wrapper.write_text(
        wrapper_script(python, separate_threads=True).replace(OUT_DIR, str(tmp_path))
    )
    wrapper.chmod(0o755)
    subprocess.run([str(wrapper), str(script)], check=True)
    total, main, file = counted_process(tmp_path)
    assert file is not None and file.endswith("-01")
    assert main == instructions(Path(file))
    assert total is not None and main is not None
    assert 0 < main < total  # the worker's sum is the rest
    threads = sorted(tmp_path.glob("callgrind.*-*"))
    assert len(threads) == 2
    assert total == sum(instructions(t) or 0 for t in threads)
