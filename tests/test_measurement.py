"""`Measurement` with a real coverage.py, in this process, on a sample module.

coverage.py's collector is process-wide, and pytest runs in this process too,
so every test finishes what it starts: the ``measure`` fixture stops each
`Measurement` at teardown, even when an assertion fails inside a block.
"""

from __future__ import annotations

import importlib
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from coverage_runtime.settings import load_settings
from coverage_runtime.shim import coverage_adapter
from coverage_runtime.shim.measurement import Measurement
from tests.harness import imported_sample

SAMPLE = '''\
"""A module to measure.  Markers name lines for asserts."""

IMPORTED = True  # marker: module-level


def helper(x):
    return x * 2  # marker: helper


def other(x):
    return x + 1  # marker: other


def in_block(m, measure=True):
    before = 1  # marker: before-block
    m.enter(measure=measure)
    inside = helper(before)  # marker: block-line
    m.exit(measure=measure)
    after = other(inside)  # marker: after-block
    return after


def nested(m):
    m.enter(measure=True)
    outer = helper(1)  # marker: outer-block
    m.enter(measure=True)
    inner = other(outer)  # marker: inner-block
    m.exit(measure=True)
    still = inner + 1  # marker: outer-after-inner
    m.exit(measure=True)
    gone = still + 1  # marker: after-nested
    return gone


def excluded(m):
    first = helper(1)  # marker: before-exclude
    m.enter(measure=False)
    skipped = other(first)  # marker: excluded-line
    m.enter(measure=True)
    still_skipped = skipped + 1  # marker: measure-inside-exclude
    m.exit(measure=True)
    m.exit(measure=False)
    back = still_skipped + 1  # marker: after-exclude
    return back


def loop(m, n):
    total = 0
    for i in range(n):
        m.enter(measure=True)
        total += helper(i)  # marker: thread-block
        m.exit(measure=True)
    return total


def late():
    return "late"  # marker: late


def branchy(flag):
    if flag:
        return "yes"  # marker: branch-yes
    return "no"  # marker: branch-no
'''


def cores() -> list[str]:
    """The default core on this Python, plus the C tracer where the default is sysmon."""
    default = load_settings({"LAMBDA_TASK_ROOT": "/var/task"}).core or "ctrace"
    return sorted({default, "ctrace"})


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[ModuleType]:
    with imported_sample(tmp_path / "src", SAMPLE, "cov_sample") as module:
        yield module


@pytest.fixture(params=cores())
def core(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def measure(tmp_path: Path, sample: ModuleType, core: str) -> Iterator[Callable[..., Measurement]]:
    """``measure(mode)``: a begun `Measurement` of the sample's directory."""
    made: list[Measurement] = []

    def make(mode: str = "full", **variables: str) -> Measurement:
        settings = load_settings(
            {
                "COVERAGE_SOURCE": str(Path(sample.__file__).parent),
                "COVERAGE_MODE": mode,
                "COVERAGE_CORE": core,
                **variables,
            }
        )
        m = Measurement(settings, str(tmp_path / "data" / f"{len(made)}.coverage"))
        made.append(m)
        m.begin()
        return m

    yield make
    for m in made:
        m.finish()
        assert not m.collecting


def line(module: ModuleType, marker: str) -> int:
    for number, text in enumerate(Path(module.__file__).read_text().splitlines(), start=1):
        if f"marker: {marker}" in text:
            return number
    raise AssertionError(marker)


def measured(m: Measurement, module: ModuleType) -> set[int]:
    return set(m.data().lines(module.__file__) or ())


def test_the_requested_core_is_used(measure, core):
    m = measure("full")
    assert m.core_name() == core


def test_full_mode_measures_what_runs(measure, sample):
    m = measure("full")
    assert m.collecting
    sample.helper(1)
    lines = measured(m, sample)
    assert line(sample, "helper") in lines
    assert line(sample, "other") not in lines
    counts = m.counts()
    assert counts.files == 1
    assert counts.lines == len(lines)
    assert counts.arcs == 0


@pytest.mark.filterwarnings("ignore:Can't use core=sysmon")
def test_full_mode_with_branches(measure, sample):
    m = measure("full", COVERAGE_BRANCH="true")
    sample.helper(1)
    data = m.data()
    assert data.has_arcs()
    assert m.counts().arcs > 0
    assert m.counts().size == m.counts().arcs


def test_selective_mode_measures_nothing_outside_blocks(measure, sample):
    m = measure("selective")
    assert not m.collecting
    sample.helper(1)
    sample.other(1)
    assert measured(m, sample) == set()
    assert m.counts().lines == 0


def test_selective_mode_measures_the_block_and_its_own_lines(request, core, measure, sample):
    m = measure("selective")
    sample.in_block(m)
    assert not m.collecting
    lines = measured(m, sample)
    assert line(sample, "helper") in lines
    assert line(sample, "block-line") in lines, "the block's own frame is adopted"
    assert line(sample, "before-block") not in lines
    assert line(sample, "after-block") not in lines
    assert line(sample, "other") not in lines


def test_nested_blocks(request, core, measure, sample):
    m = measure("selective")
    sample.nested(m)
    assert not m.collecting
    lines = measured(m, sample)
    for marker in ("outer-block", "inner-block", "outer-after-inner", "helper", "other"):
        assert line(sample, marker) in lines, marker
    assert line(sample, "after-nested") not in lines


def test_unbalanced_exit_does_not_go_negative(measure, sample):
    m = measure("selective")
    m.exit(measure=True)
    m.enter(measure=True)
    assert m.collecting
    sample.helper(1)
    m.exit(measure=True)
    assert not m.collecting
    assert line(sample, "helper") in measured(m, sample)


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_exclude_blocks(request, core, measure, sample, mode):
    m = measure(mode)
    if mode == "selective":
        m.enter(measure=True)
    sample.excluded(m)
    if mode == "selective":
        m.exit(measure=True)
    assert m.collecting is (mode == "full")
    lines = measured(m, sample)
    assert line(sample, "before-exclude") in lines
    assert line(sample, "helper") in lines
    assert line(sample, "excluded-line") not in lines
    assert line(sample, "other") not in lines
    assert line(sample, "measure-inside-exclude") not in lines, "exclusion wins over a block"
    assert line(sample, "after-exclude") in lines, "measuring resumes in the running frame"


def test_full_mode_exclude_then_block_own_lines(request, core, measure, sample):
    m = measure("full")
    sample.in_block(m, measure=False)
    lines = measured(m, sample)
    assert line(sample, "before-block") in lines
    assert line(sample, "block-line") not in lines
    assert line(sample, "helper") not in lines
    assert line(sample, "after-block") in lines
    assert line(sample, "other") in lines


def test_blocks_from_several_threads(measure, sample):
    m = measure("selective")
    threads = 6
    rounds = 200
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    results: list[int] = []

    def work() -> None:
        try:
            barrier.wait()
            results.append(sample.loop(m, rounds))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors
    assert results == [sum(i * 2 for i in range(rounds))] * threads
    assert m._measure_depth == 0
    assert m._exclude_depth == 0
    assert not m.collecting, "collection is off once every block is closed"
    lines = measured(m, sample)
    assert line(sample, "helper") in lines
    assert line(sample, "thread-block") in lines

    # Still usable afterwards, from this thread.
    m.enter(measure=True)
    sample.other(1)
    m.exit(measure=True)
    assert line(sample, "other") in measured(m, sample)
    assert not m.collecting


def test_a_block_in_an_already_running_thread_is_measured(core, measure, sample):
    m = measure("selective")
    go = threading.Event()
    done = threading.Event()

    def other_thread() -> None:
        go.wait(10)
        m.enter(measure=True)
        sample.other(1)
        m.exit(measure=True)
        done.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    m.enter(measure=True)  # collection starts on this thread
    sample.helper(1)
    go.set()
    assert done.wait(10)
    m.exit(measure=True)
    worker.join(10)
    lines = measured(m, sample)
    assert line(sample, "helper") in lines
    assert line(sample, "other") in lines


def test_concurrent_exclude_and_measure_blocks_balance(measure, sample):
    m = measure("full")
    barrier = threading.Barrier(4)

    def flip(measure_flag: bool) -> None:
        barrier.wait()
        for _ in range(300):
            m.enter(measure=measure_flag)
            m.exit(measure=measure_flag)

    workers = [threading.Thread(target=flip, args=(i % 2 == 0,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert (m._measure_depth, m._exclude_depth) == (0, 0)
    assert m.collecting, "full mode measures again once the exclusions are closed"


def test_reset_drops_data_and_keeps_measuring(measure, sample):
    m = measure("full")
    sample.helper(1)
    assert line(sample, "helper") in measured(m, sample)
    m.reset()
    assert m.collecting
    assert m.counts().lines == 0
    sample.other(1)
    lines = measured(m, sample)
    assert line(sample, "other") in lines
    assert line(sample, "helper") not in lines


def test_reset_in_selective_mode(measure, sample):
    m = measure("selective")
    sample.in_block(m)
    assert m.counts().lines > 0
    m.reset()
    assert not m.collecting
    assert m.counts().lines == 0
    sample.helper(1)
    assert measured(m, sample) == set(), "still only blocks"
    sample.in_block(m)
    assert line(sample, "block-line") in measured(m, sample)


def test_reset_inside_an_open_block(measure, sample):
    m = measure("selective")
    m.enter(measure=True)
    sample.helper(1)
    m.reset()
    assert m.collecting, "the block is still open"
    sample.other(1)
    m.exit(measure=True)
    lines = measured(m, sample)
    assert line(sample, "other") in lines
    assert line(sample, "helper") not in lines


def test_snapshot_is_a_coverage_data_file(measure, sample, tmp_path):
    from coverage import CoverageData

    m = measure("full")
    empty = m.snapshot()
    assert empty.lines == 0
    sample.helper(1)
    snapshot = m.snapshot()
    assert snapshot.body.startswith(b"SQLite format 3\x00")
    assert snapshot.files == 1
    assert snapshot.size == snapshot.lines > 0
    copy = tmp_path / "copy.coverage"
    copy.write_bytes(snapshot.body)
    data = CoverageData(basename=str(copy))
    data.read()
    assert line(sample, "helper") in (data.lines(sample.__file__) or [])


def test_snapshot_of_nothing_measured_counts_nothing(measure, sample):
    m = measure("selective")
    snapshot = m.snapshot()
    # coverage.py lists never-executed source files too, with no lines.
    assert (snapshot.lines, snapshot.arcs, snapshot.size) == (0, 0, 0)


def test_finish_stops_for_good(measure, sample):
    m = measure("full")
    m.finish()
    assert not m.collecting
    m.enter(measure=True)
    assert not m.collecting, "no block restarts a finished measurement"
    sample.late()
    m.exit(measure=True)
    assert line(sample, "late") not in measured(m, sample)


def lines_under(m: Measurement, module: ModuleType, label: str) -> set[int]:
    import re

    data = m.data()
    data.set_query_contexts([f"^{re.escape(label)}$"])
    return set(data.lines(module.__file__) or ())


def test_labels_record_each_line_under_every_label_it_ran_under(measure, sample):
    m = measure("full")
    assert m.label == "init"
    m.switch_label("first")
    sample.helper(1)
    m.switch_label("second")
    sample.other(1)
    sample.helper(2)
    m.switch_label("first")  # a label that comes back
    sample.late()
    assert {"first", "second"} <= m.data().measured_contexts()  # (imported before: no init)
    assert lines_under(m, sample, "first") == {line(sample, "helper"), line(sample, "late")}
    assert lines_under(m, sample, "second") == {line(sample, "helper"), line(sample, "other")}


def test_labels_none_records_everything_under_the_empty_context(measure, sample):
    m = measure("full", COVERAGE_LABELS="none")
    m.switch_label("ignored")
    sample.helper(1)
    assert m.data().measured_contexts() == {""}
    assert m.label == ""


def test_a_label_switch_writes_nothing(measure, sample, tmp_path):
    m = measure("full")
    sample.helper(1)
    m.snapshot()
    before = Path(m.data_file).stat().st_mtime_ns, Path(m.data_file).stat().st_size
    m.switch_label("new")
    sample.other(1)
    m.switch_label("newer")
    after = Path(m.data_file).stat().st_mtime_ns, Path(m.data_file).stat().st_size
    assert before == after
    assert m.counts().entries > 0


def test_site_packages_and_the_runtime_itself_are_never_measured(measure, sample, tmp_path):
    import coverage_runtime.shim.structured_log as runtime_module

    # A source directory that happens to hold installed packages (a local venv).
    root = Path(sample.__file__).parent
    installed = root / "venv" / "lib" / "site-packages"
    installed.mkdir(parents=True)
    name = f"installed_{uuid.uuid4().hex[:8]}"
    (installed / f"{name}.py").write_text("def f():\n    return 1\n")
    sys.path.insert(0, str(installed))
    try:
        package = importlib.import_module(name)
        m = measure("full", COVERAGE_SOURCE=f"{root},{Path(runtime_module.__file__).parent}")
        sample.helper(1)
        package.f()
        with open(tmp_path / "log", "w") as log:
            runtime_module.info("measured?", stream=log)
        files = m.data().measured_files()
    finally:
        sys.path.remove(str(installed))
        sys.modules.pop(name, None)
    assert sample.__file__ in files
    assert package.__file__ not in files
    assert not any(f.startswith(str(Path(runtime_module.__file__).parent)) for f in files)


def test_no_lines_of_the_runtime_are_recorded_in_user_files(request, core, measure, sample):
    """Every recorded line of the sample is one of its statements."""
    m = measure("selective")
    sample.in_block(m)
    sample.nested(m)
    lines = measured(m, sample)
    statements = set(m.cov.analysis2(sample.__file__)[1])
    assert lines, "something was measured"
    assert lines <= statements, sorted(lines - statements)


def test_selective_lines_after_a_block_are_not_recorded_later(request, core, measure, sample):
    """A function measured once inside a block is not measured outside blocks."""
    m = measure("selective")
    m.enter(measure=True)
    sample.branchy(True)
    m.exit(measure=True)
    sample.branchy(False)  # the same code object, outside any block
    lines = measured(m, sample)
    assert line(sample, "branch-yes") in lines
    assert line(sample, "branch-no") not in lines


def test_compact_drops_the_tracers_of_ended_threads_and_keeps_the_data(measure, sample, core):
    m = measure("full")
    for _ in range(40):  # e.g. a thread pool per request
        worker = threading.Thread(target=sample.other, args=(1,))
        worker.start()
        worker.join()
    tracers = m.cov._collector.tracers
    if core == "ctrace":
        assert len(tracers) > 32, "ctrace keeps a tracer per thread it saw"
    before = list(tracers)
    m.compact()
    assert len(m.cov._collector.tracers) == 1
    if core == "ctrace":
        assert m.cov._collector.tracers[0] is before[0], "the live thread keeps its tracer"
    assert m.collecting
    sample.helper(1)
    lines = measured(m, sample)
    assert line(sample, "other") in lines, "data from the ended threads is kept"
    assert line(sample, "helper") in lines, "measuring goes on after compacting"


def test_maintenance_takes_nothing_from_a_gate_that_retires_nothing(measure, sample, core):
    """On the C tracer a maintenance pass retires nothing (`TraceGate.retires`): it
    leaves what the tracers recorded where it is, for the checkpoint to take
    (taking it there cost an unpaced step of everything run since the last take)."""
    m = measure()
    sample.helper(1)
    gate = m._gate
    assert gate is not None
    assert m.maintain() == 0
    live = coverage_adapter.live_data(m.cov)
    held = any(Path(name) == Path(sample.__file__) and items for name, items in live.items())
    if core == "ctrace":
        assert held, "the pass took the tracers' data"
    else:
        assert gate.retires


def test_maintenance_counts_what_label_switches_parked_on_a_gate_that_retires_nothing(
    measure, sample, core
):
    """With labels changing, each switch on the C tracer parks a copy of all its
    label ran (it records every line each time it runs): a maintenance pass,
    which retires nothing there, still counts what the switches parked, so
    between checkpoints (none at all with ``COVERAGE_FLUSH_INTERVAL_SECONDS=0``)
    the gate's memory does not grow with every switch, nor the shutdown's count
    of it.  What ran since the last switch stays for the checkpoint to take."""
    m = measure()
    gate = m._gate
    assert gate is not None
    for n in range(40):
        m.switch_label("a" if n % 2 else "b")
        sample.helper(n)
        m.maintain()
    assert len(gate._parked) <= 1, "the switches' copies were kept until a checkpoint"
    assert lines_under(m, sample, "a") == {line(sample, "helper")}
    assert lines_under(m, sample, "b") == {line(sample, "helper")}


def test_threads_started_before_measuring_began(tmp_path, sample, core):
    """The one thread limit left, and only on the trace cores: a thread already
    running when coverage.py starts is never traced (``threading.settrace`` reaches
    only threads started later).  The shim starts coverage.py before the handler
    module is imported, so a function's own threads are never such threads.
    sysmon is process-wide and measures it."""
    go = threading.Event()
    done = threading.Event()

    def early() -> None:
        go.wait(10)
        sample.other(1)
        done.set()

    worker = threading.Thread(target=early)
    worker.start()
    settings = load_settings(
        {"COVERAGE_SOURCE": str(Path(sample.__file__).parent), "COVERAGE_CORE": core}
    )
    m = Measurement(settings, str(tmp_path / "early.coverage"))
    m.begin()
    try:
        go.set()
        assert done.wait(10)
        worker.join(10)
        recorded = line(sample, "other") in measured(m, sample)
    finally:
        m.finish()
    assert recorded is (core == "sysmon")


def test_an_unwritable_data_directory_is_a_storage_error_and_nothing_is_lost(
    measure, sample, tmp_path
):
    m = measure("full")
    sample.helper(1)
    first = m.snapshot()
    assert first.body
    data_dir = Path(m.data_file).parent
    import shutil

    shutil.rmtree(data_dir)
    data_dir.write_text("not a directory any more")  # writes now fail, even as root
    sample.other(1)
    from coverage_runtime.errors import StorageError

    with pytest.raises(StorageError, match=r"could not be written|not writable|full"):
        m.snapshot()
    assert m.storage_problem
    assert m.counts().lines >= first.lines, "counting needs no disk"
    data_dir.unlink()
    data_dir.mkdir()
    m.snapshot()  # a fresh data file with everything measured so far
    assert m.storage_problem is None
    lines = measured(m, sample)
    assert {line(sample, "helper"), line(sample, "other")} <= lines


def test_storage_errors_say_what_they_are():
    import errno
    import sqlite3

    from coverage_runtime.shim.measurement import describe_storage_error

    full = describe_storage_error(OSError(errno.ENOSPC, "No space left on device"), "/tmp/x")
    assert "full (ENOSPC)" in full
    assert "full (ENOSPC)" in describe_storage_error(
        sqlite3.OperationalError("database or disk is full"), "/tmp/x"
    )
    assert "not writable" in describe_storage_error(
        OSError(errno.EROFS, "Read-only file system"), "/tmp/x"
    )


def test_growth_counts_what_is_new_to_the_current_label(measure, sample):
    m = measure("full")
    m.switch_label("a")
    sample.helper(1)
    first = m.counts().size
    sample.helper(2)  # the same lines under the same label (the C tracer records them again)
    assert m.counts().size == first
    m.switch_label("b")
    sample.helper(3)  # known lines, a new label: new data for the file
    assert m.counts().size > first
    assert m.counts().lines == len(measured(m, sample))


def test_after_a_storage_error_a_label_that_comes_back_is_written_under_it_again(
    measure, sample, tmp_path
):
    """After a storage error the fresh data file holds everything under the current
    label (B here); what then runs again under a label that comes back (A) must be
    written under A: the fresh file has none of A's rows.  Before: the tally's run
    of A went on across the fresh file (nothing was taken under B), so what A ran
    again was left out as already written, and was B's only."""
    m = measure("full")
    m.switch_label("A")
    sample.helper(1)
    m.switch_label("B")  # (nothing runs under B)
    data_dir = Path(m.data_file).parent
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.rmdir()
    data_dir.write_text("not a directory")  # A's write fails
    from coverage_runtime.errors import StorageError

    with pytest.raises(StorageError):
        m.snapshot()
    data_dir.unlink()
    data_dir.mkdir()
    m.snapshot()  # the fresh data file: everything under B
    m.switch_label("A")
    sample.helper(1)
    m.snapshot()
    contexts = m.data().contexts_by_lineno(sample.__file__)
    assert {"A", "B"} <= set(contexts[line(sample, "helper")]), contexts
