"""Managed Instances: what workers publish in the shared directory, and its union.

Real coverage.py data files written by real `Measurement` sessions in this
process stand in for the workers' (the RIE tests run real workers).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
from coverage import CoverageData

from coverage_runtime.settings import load_settings
from coverage_runtime.shim.worker_data import WorkerPublisher, WorkerState, WorkersUnion

SOURCE = "/var/task/fn.py"


def data_file(path: Path, lines: set[int]) -> bytes:
    """The bytes of a coverage.py data file recording ``lines`` of `SOURCE`."""
    data = CoverageData(basename=str(path))
    data.add_lines({SOURCE: set(lines)})
    data.write()
    data.close()
    return path.read_bytes()


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(
        {"LAMBDA_TASK_ROOT": "/var/task", "COVERAGE_DATA_DIR": str(tmp_path / "data")}
    )


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "data" / "env.workers"


def publish(directory: Path, worker: str, body: bytes, generation: int, invocations: int):
    publisher = WorkerPublisher(str(directory), worker)
    publisher.register()
    publisher.upload(
        body, {"invocations": str(invocations), "core": "sysmon"}, generation=generation
    )
    return publisher


def test_the_union_is_every_worker_s_newest_snapshot(settings, directory, tmp_path):
    union = WorkersUnion(settings, str(directory), str(tmp_path / "data" / "env.coverage"))
    first = publish(directory, "w1", data_file(tmp_path / "a", {1, 2}), 1, invocations=2)
    publish(directory, "w2", data_file(tmp_path / "b", {2, 3}), 1, invocations=5)
    snapshot = union.snapshot()
    assert (snapshot.files, snapshot.lines) == (1, 3)
    assert union.invocations == 7
    assert union.core_name() == "sysmon"

    first.upload(data_file(tmp_path / "c", {1, 2, 4}), {"invocations": "3"}, generation=2)
    merged = tmp_path / "merged"
    merged.write_bytes(union.snapshot().body)
    data = CoverageData(basename=str(merged))
    data.read()
    assert set(data.lines(SOURCE)) == {1, 2, 3, 4}
    assert union.invocations == 8


def test_a_snapshot_not_replaced_is_not_merged_again(settings, directory, tmp_path):
    union = WorkersUnion(settings, str(directory), str(tmp_path / "data" / "env.coverage"))
    publish(directory, "w1", data_file(tmp_path / "a", {1}), 1, invocations=1)
    union.counts()
    before = os.stat(union.data_file).st_mtime_ns
    assert union.counts().lines == 1
    assert os.stat(union.data_file).st_mtime_ns == before, "nothing new: the file is untouched"


def test_an_older_snapshot_never_replaces_a_newer_one(directory, tmp_path):
    publisher = publish(directory, "w1", data_file(tmp_path / "new", {1, 2}), 5, invocations=1)
    publisher.upload(data_file(tmp_path / "old", {1}), {"invocations": "1"}, generation=4)
    data = CoverageData(basename=publisher.key)
    data.read()
    assert set(data.lines(SOURCE)) == {1, 2}
    assert publisher.stored_generation(0) == 5


def test_a_finished_worker_leaves_only_its_last_snapshot_and_state(directory, tmp_path):
    publisher = publish(directory, "w1", data_file(tmp_path / "a", {1}), 1, invocations=1)
    Path(publisher.live_path).write_bytes(b"live")
    publisher.finish(invocations=9)
    assert sorted(p.name for p in directory.iterdir()) == ["w1.coverage", "w1.json"]
    state = WorkerState.read(publisher.state_path)
    assert state == WorkerState(pid=os.getpid(), invocations=9, generation=1, final=True,
                                core="sysmon")  # fmt: skip


def test_the_end_removes_the_shared_directory(settings, directory, tmp_path):
    union = WorkersUnion(settings, str(directory), str(tmp_path / "data" / "env.coverage"))
    publisher = publish(directory, "w1", data_file(tmp_path / "a", {1}), 1, invocations=1)
    publisher.finish(invocations=1)
    union.snapshot()
    union.finish()  # every worker has finished: no wait
    union.end()
    assert not directory.exists()
    assert not Path(union.data_file).exists()


def test_an_unreadable_snapshot_does_not_stop_the_others(settings, directory, tmp_path):
    union = WorkersUnion(settings, str(directory), str(tmp_path / "data" / "env.coverage"))
    publish(directory, "w1", data_file(tmp_path / "a", {1}), 1, invocations=1)
    publish(directory, "w2", b"not a data file", 1, invocations=1)
    assert union.counts().lines == 1


def test_the_union_is_partial_when_a_worker_s_merged_snapshot_is(settings, directory, tmp_path):
    """A worker's shutdown that replayed only some files publishes a partial
    snapshot (`layout.PARTIAL` in its metadata); the union then lacks what that
    worker left out and must say so, with the workers' outcomes summed."""
    from coverage_runtime import layout
    from coverage_runtime.shim.partial_replay import Outcome

    union = WorkersUnion(settings, str(directory), str(tmp_path / "data" / "env.coverage"))
    whole = publish(directory, "w1", data_file(tmp_path / "a", {1, 2}), 1, invocations=2)
    union.snapshot()
    assert union.partial is None, "complete snapshots: a complete union"

    cut = WorkerPublisher(str(directory), "w2")
    cut.register()
    cut.partial = lambda: Outcome(3, 4, 30, 40, 0)
    partial = {"invocations": "1", layout.PARTIAL: "true", layout.FILES_NOT_REPLAYED: "4"}
    cut.upload(data_file(tmp_path / "b", {3}), partial, generation=1)
    assert union.snapshot().lines == 3
    assert union.partial == Outcome(3, 4, 30, 40, 0)

    whole.partial = lambda: Outcome(1, 2, 10, 20, 1)
    whole.upload(data_file(tmp_path / "c", {1, 2, 5}), {**partial, "invocations": "3"},
                 generation=2)  # fmt: skip
    union.snapshot()
    assert union.partial == Outcome(4, 6, 40, 60, 1), "every partial worker's, summed"
    assert WorkerState.read(cut.state_path).replay == Outcome(3, 4, 30, 40, 0)._asdict()


def test_a_complete_snapshot_says_nothing_partial_even_after_a_replay(directory, tmp_path):
    """Only the snapshot whose metadata says partial is: the outcome alone (a
    checkpoint's upload from before the shutdown's replay) is not."""
    from coverage_runtime.shim.partial_replay import Outcome

    publisher = WorkerPublisher(str(directory), "w1")
    publisher.register()
    publisher.partial = lambda: Outcome(1, 2, 3, 4, 0)
    publisher.upload(data_file(tmp_path / "a", {1}), {"invocations": "1"}, generation=1)
    assert WorkerState.read(publisher.state_path).replay is None


def test_a_state_file_is_json_a_person_can_read(directory):
    publisher = WorkerPublisher(str(directory), "w1")
    publisher.register()
    assert json.loads(Path(publisher.state_path).read_text())["pid"] == os.getpid()


def labelled_file(path: Path, by_label: dict[str, set[int]], *, arcs: bool = False) -> bytes:
    data = CoverageData(basename=str(path))
    for label, lines in by_label.items():
        data.set_context(label)
        if arcs:
            ordered = sorted(lines)
            data.add_arcs({SOURCE: {(-1, ordered[0]), *itertools.pairwise(ordered)}})
        else:
            data.add_lines({SOURCE: set(lines)})
    data.write()
    data.close()
    return path.read_bytes()


@pytest.mark.parametrize("arcs", [False, True], ids=["lines", "arcs"])
def test_the_fast_count_is_what_coverage_py_reads(tmp_path, arcs):
    from coverage_runtime.shim.coverage_adapter import count_data_file

    path = tmp_path / "labelled"
    labelled_file(path, {"init": {1, 2}, "test-a": {2, 3, 5}, "": {7}}, arcs=arcs)
    data = CoverageData(basename=str(path))
    data.read()
    files, lines, arc_count, entries = count_data_file(str(path))
    assert files == len(data.measured_files()) == 1
    assert lines == len(set(data.lines(SOURCE)))
    assert arc_count == (len(set(data.arcs(SOURCE))) if arcs else 0)
    by_context = data.contexts_by_lineno(SOURCE)
    if not arcs:
        assert entries == sum(len(labels) for labels in by_context.values())


def test_a_known_line_under_a_new_label_grows_the_union(settings, directory, tmp_path):
    union = WorkersUnion(settings, str(directory), str(tmp_path / "data" / "env.coverage"))
    first = publish(directory, "w1", labelled_file(tmp_path / "a", {"t1": {1, 2}}), 1, 1)
    before = union.counts()
    first.upload(labelled_file(tmp_path / "b", {"t1": {1, 2}, "t2": {2}}), {}, generation=2)
    after = union.counts()
    assert after.lines == before.lines == 2
    assert after.size > before.size, "the environment's object must be uploaded again"
    assert union.snapshot().size == after.size, "what a checkpoint compares"
