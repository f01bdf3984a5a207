"""`coverage_adapter`: every coverage.py internal it relies on, checked by name.

These fail loudly when a coverage.py upgrade changes what the adapter reads or
swaps; the runtime itself would fall back to restarting coverage.py (correct,
but slow) and log why.  Each case runs in a fresh process where coverage.py's
process-wide state matters.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import coverage
import pytest

from coverage_runtime.settings import sysmon_supports
from coverage_runtime.shim import coverage_adapter
from tests.harness import REPO_ROOT, pinned_version
from tests.test_exactness import other_pythons, venv_for


def run_python(code: str, tmp_path: Path) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_pinned_coverage_is_the_one_installed():
    assert coverage.__version__ == pinned_version("coverage")


def cores() -> list[str]:
    found = ["ctrace", "pytrace"]
    if sysmon_supports(branch=False):
        found.append("sysmon")
    return found


@pytest.mark.parametrize("core", cores())
@pytest.mark.parametrize("branch", [False, True])
def test_every_core_gets_a_gate_not_the_restart_fallback(core, branch, tmp_path):
    if core == "sysmon" and not sysmon_supports(branch=branch):
        pytest.skip("coverage.py measures branches with sysmon from 3.14")
    result = run_python(
        f"""
        import json, sys
        from coverage_runtime.shim import coverage_adapter
        coverage = coverage_adapter.import_coverage()
        cov = coverage.Coverage(data_file={str(tmp_path / "d")!r}, source=[{str(tmp_path)!r}],
                                branch={branch}, config_file=False)
        cov.set_option("run:core", {core!r})
        coverage_adapter.start(cov)
        gate = coverage_adapter.attach(cov, [{str(tmp_path)!r}])
        gate.pause(); gate.resume()
        print(json.dumps({{"gate": type(gate).__name__, "core": coverage_adapter.core_name(cov),
                          "kind": gate.kind}}))
        gate.stop()
        """,
        tmp_path,
    )
    expected = "SysmonGate" if core == "sysmon" else "TraceGate"
    assert result == {"gate": expected, "core": core, "kind": "gate"}


def test_the_internals_the_gates_read_exist(tmp_path):
    result = run_python(
        f"""
        import json, sys
        from coverage_runtime.shim import coverage_adapter
        coverage = coverage_adapter.import_coverage()
        import coverage.collector, coverage.sysmon
        cov = coverage.Coverage(data_file={str(tmp_path / "d")!r}, config_file=False)
        cov.set_option("run:core", "ctrace")
        cov.start()
        coll = cov._collector
        found = {{name: hasattr(coll, name) for name in
                  ("tracers", "_start_tracer", "data", "covdata", "mapped_file_dict",
                   "static_context", "core", "flush_data")}}
        found["packed_arcs"] = hasattr(coll.core, "packed_arcs")
        found["short_stack"] = hasattr(coverage.collector, "short_stack")
        found["CodeInfo"] = sorted(coverage.sysmon.CodeInfo.__dataclass_fields__)
        found["SysMonitor"] = all(hasattr(coverage.sysmon.SysMonitor, n) for n in
                                  ("local_events", "sysmon_py_start", "start", "stop"))
        cov.stop()
        print(json.dumps(found))
        """,
        tmp_path,
    )
    assert {"tracing", "file_data", "last_line"} <= set(result.pop("CodeInfo"))
    assert all(result.values()), result


def test_the_data_layer_connects_through_the_untraced_sqlite3():
    """`UntracedSqlite3` relies on every connection of coverage.py's going through
    ``sqlite3.connect`` looked up on ``coverage.sqlitedb``'s module global."""
    import ast
    import sqlite3

    coverage_adapter.import_coverage()
    import coverage.sqlitedb

    assert coverage_adapter.untrace_data_file()
    assert isinstance(coverage.sqlitedb.sqlite3, coverage_adapter.UntracedSqlite3)
    assert coverage.sqlitedb.sqlite3.Error is sqlite3.Error
    connecting = set()
    for path in Path(coverage.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            func = node.func if isinstance(node, ast.Call) else None
            name = getattr(func, "attr", getattr(func, "id", None))
            if func is not None and name == "connect":
                connecting.add((path.stem, ast.unparse(func)))
    assert connecting == {("sqlitedb", "sqlite3.connect")}


def test_the_untraced_connect_peels_wrappers_made_after_it(tmp_path, monkeypatch):
    import functools
    import sqlite3

    coverage_adapter.import_coverage()
    import coverage.sqlitedb

    calls = []
    original = sqlite3.connect

    @functools.wraps(original)
    def traced(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", traced)
    connection = coverage.sqlitedb.sqlite3.connect(str(tmp_path / "x.db"))
    connection.close()
    sqlite3.connect(":memory:").close()
    assert type(connection) is sqlite3.Connection
    assert calls == [(":memory:",)]


def test_deferred_imports_load_on_first_use_and_report_as_usual(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "mod.py").write_text("def f(x):\n    if x:\n        return 1\n    return 2\n")
    result = run_python(
        f"""
        import json, sys
        sys.path.insert(0, {str(source)!r})
        from coverage_runtime.shim import coverage_adapter
        coverage = coverage_adapter.import_coverage()
        import coverage.control as control
        names = [n for names in coverage_adapter.DEFERRED_IMPORTS.values() for n in names]
        before = {{name: type(getattr(control, name)).__name__ for name in names}}
        loaded = [m for m in coverage_adapter.DEFERRED_IMPORTS if m in sys.modules]
        cov = coverage.Coverage(data_file={str(tmp_path / "d")!r}, source=[{str(source)!r}],
                                config_file=False)
        cov.start(); import mod; mod.f(1); cov.stop()
        out = {str(tmp_path)!r}
        totals = [
            cov.report(file=open("/dev/null", "w")),
            cov.json_report(outfile=out + "/c.json"),
            cov.xml_report(outfile=out + "/c.xml"),
            cov.lcov_report(outfile=out + "/c.lcov"),
            cov.html_report(directory=out + "/html"),
        ]
        cov.annotate(directory=out + "/ann")
        after = {{name: type(getattr(control, name)).__name__ for name in names
                 if name not in ("Analysis", "patch_multiprocessing")}}
        print(json.dumps({{"before": before, "loaded": loaded, "totals": totals,
                          "after": after}}))
        """,
        tmp_path,
    )
    names = [n for names in coverage_adapter.DEFERRED_IMPORTS.values() for n in names]
    assert result["before"] == dict.fromkeys(names, "Deferred")
    assert result["loaded"] == [], "no deferred module is imported at start"
    assert result["totals"] == [75.0] * 5  # 3 of 4 statements
    kinds = {"render_report": "function", "analysis_from_file_reporter": "function"}
    assert result["after"] == {
        name: kinds.get(name, "type")
        for name in names
        if name not in ("Analysis", "patch_multiprocessing")
    }, "the real classes and functions are put back once used"
    assert (tmp_path / "html" / "index.html").exists()


def test_unpacking_arcs_matches_coverage_py(tmp_path):
    """The C tracer's packed arc integers, unpacked as `Collector.flush_data` does."""
    for l1, l2 in [(1, 2), (-1, 5), (7, -3), (-4, -9), (2**20, 3)]:
        packed = abs(l1) | (abs(l2) << 28) | ((l1 < 0) << 56) | ((l2 < 0) << 57)
        assert coverage_adapter.unpack_arc(packed) == (l1, l2)


def test_arcs_unpacked_and_their_lines_in_bulk_match_one_by_one():
    """`unpack_arcs` and `arc_lines` (the shutdown's inlined forms) agree with
    `unpack_arc`, on both ends' signs, zero and the largest line number."""
    ends = [0, 1, 7, 2**20, 2**28 - 1]
    pairs = {(s1 * a, s2 * b) for a in ends for b in ends for s1 in (1, -1) for s2 in (1, -1)}
    packed = {abs(a) | (abs(b) << 28) | ((a < 0) << 56) | ((b < 0) << 57) for a, b in pairs}
    assert sorted(coverage_adapter.unpack_arcs(packed)) == sorted(
        coverage_adapter.unpack_arc(p) for p in packed
    )
    expected = {n for pair in pairs for n in pair if n > 0}
    assert coverage_adapter.arc_lines(packed, packed=True) == expected
    assert coverage_adapter.arc_lines(pairs, packed=False) == expected


def test_collector_pause_resume_keeps_measuring(tmp_path):
    """coverage.py issue 2302 (fixed in 7.17.5): on 3.14, ``Collector.pause()`` +
    ``resume()`` stopped measuring code that had already run.  Checked on this Python;
    `test_container` runs the exactness matrix on the image's 3.14."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "again.py").write_text("def f(x):\n    if x:\n        return 1\n    return 2\n")
    core = "sysmon" if sysmon_supports(branch=False) else "ctrace"
    result = run_python(
        f"""
        import json, sys
        sys.path.insert(0, {str(source)!r})
        import coverage
        cov = coverage.Coverage(data_file={str(tmp_path / "d")!r}, source=[{str(source)!r}],
                                config_file=False)
        cov.set_option("run:core", {core!r})
        cov.start()
        import again
        again.f(1)
        cov._collector.pause()
        cov._collector.resume()
        again.f(0)
        cov.stop()
        print(json.dumps(sorted(cov.get_data().lines({str(source / "again.py")!r}))))
        """,
        tmp_path,
    )
    assert result == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "interpreter",
    [
        "host",
        *(
            pytest.param(p.parent.parent.name, marks=pytest.mark.slow)
            for p in other_pythons()
            if p.parent.parent.name >= "3.12"
        ),
    ],
)
def test_fast_multiline_maps_are_coverage_pys(interpreter):
    """The multiline maps coverage.py's sysmon core computes for branches, fed the C
    tokenizer's tuples (`fast_multiline_maps`), equal its own on every module of
    the standard library and on edge cases (files that do not tokenize, a bad
    encoding cookie, a file that is missing or not Python), on each Python with
    ``sys.monitoring`` (the image's 3.14: in test_container).  Without it (3.11)
    nothing is replaced."""
    if interpreter == "host":
        python = sys.executable
    else:
        python = venv_for(next(p for p in other_pythons() if p.parent.parent.name == interpreter))
    done = subprocess.run(
        [python, "-m", "tests.exactness.multiline_maps"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if interpreter == "host" and sys.version_info < (3, 12):
        assert result == {"python": result["python"], "installed": False}
        return
    assert result["installed"], result
    assert result["differ"] == [], result
    assert result["files"] > 500 and result["multiline"] > 400, result


@pytest.mark.parametrize(
    "interpreter",
    [
        "host",
        *(p.parent.parent.name for p in other_pythons() if p.parent.parent.name >= "3.12"),
    ],
)
def test_coverage_pys_dependencies_are_imported_before_it_one_at_a_time(interpreter):
    """`import_coverage` with a ``between`` (the shipping thread's turn) imports
    `coverage_adapter.DEPENDENCIES` one at a time first; ``import coverage`` is
    then left with coverage.py's own modules (and the interpreter's private
    helpers), so no step of it costs a frozen invocation more than its own
    modules.  Fails when a coverage.py upgrade imports something new: add it to
    `DEPENDENCIES`.  (The image's 3.14: in test_container.)"""
    if interpreter == "host":
        python = sys.executable
    else:
        python = venv_for(next(p for p in other_pythons() if p.parent.parent.name == interpreter))
    result = coverage_dependencies_on(python)
    assert result["outside"] == [], result
    assert result["steps"] > 10 and result["coverage_modules"] > 20, result


def coverage_dependencies_on(python: str | Path) -> dict:
    done = subprocess.run(
        [python, "-m", "tests.exactness.coverage_dependencies"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_a_delta_data_file_is_what_the_tracers_recorded_in_coverage_pys_form(tmp_path, branch):
    """`write_data_file` (the delta object's file): afresh, then grown by more, it
    holds exactly what was taken from the tracers, under the label's context with
    coverage.py's static context, in the form coverage.py writes (arcs unpacked)."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "again.py").write_text("def f(x):\n    if x:\n        return 1\n    return 2\n")
    delta = tmp_path / "delta.coverage"
    result = run_python(
        f"""
        import json, sys
        sys.path.insert(0, {str(source)!r})
        import coverage
        from coverage_runtime.shim import coverage_adapter as a
        cov = coverage.Coverage(data_file={str(tmp_path / "d")!r}, source=[{str(source)!r}],
                                branch={branch}, context="static", config_file=False)
        cov.start()
        import again
        again.f(1)
        first = a.take_recorded(a.live_data(cov))
        again.f(0)
        second = a.take_recorded(a.live_data(cov))
        cov.stop()
        packed = a.packed_arcs(cov)
        a.write_data_file(cov, {str(delta)!r}, {{"lbl": first}}, arcs={branch}, fresh=True)
        a.write_data_file(cov, {str(delta)!r}, {{"lbl": second}}, arcs={branch}, fresh=False)
        taken = set()
        for part in (first, second):
            for items in part.values():
                taken |= set(a.unpack_arcs(items) if packed and {branch} else items)
        print(json.dumps(sorted(map(list, taken)) if {branch} else sorted(taken)))
        """,
        tmp_path,
    )
    data = coverage.CoverageData(basename=str(delta))
    data.read()
    name = str(source / "again.py")
    assert data.measured_files() == {name}
    assert data.measured_contexts() == {"static|lbl"}
    assert data.has_arcs() is branch
    if branch:
        assert sorted(map(list, data.arcs(name) or ())) == result
        assert (2, 4) in set(data.arcs(name) or ()), "the second write added to the first"
    else:
        assert sorted(data.lines(name) or ()) == result
        assert 4 in (data.lines(name) or ())


@pytest.mark.slow
@pytest.mark.parametrize(
    "interpreter",
    [p.parent.parent.name for p in other_pythons() if p.parent.parent.name >= "3.12"],
)
def test_a_new_file_is_named_by_coverage_pys_disposition_not_a_scan(interpreter, tmp_path):
    """`SysmonGate` names a file it has not named before by coverage.py's cached
    disposition of the code's file (``SysMonitor.should_trace_cache``), the name
    coverage.py made its set under (here a real path under a symlinked
    directory), not by scanning every live file: the scan per new file made the
    shutdown's replay file by file quadratic.  Fails when an upgrade renames
    that cache (the gate would fall back to the scan: every live file named)."""
    real = tmp_path / "real"
    real.mkdir()
    for name in ("mod_a", "mod_c", "mod_d"):
        (real / f"{name}.py").write_text("def f():\n    return 1\n")
    (tmp_path / "link").symlink_to(real)
    python = venv_for(next(p for p in other_pythons() if p.parent.parent.name == interpreter))
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            sys.path.insert(0, {str(tmp_path / "link")!r})
            from coverage_runtime.shim import coverage_adapter
            coverage = coverage_adapter.import_coverage()
            cov = coverage.Coverage(data_file={str(tmp_path / "d")!r},
                                    source=[{str(tmp_path / "link")!r}], config_file=False)
            cov.set_option("run:core", "sysmon")
            coverage_adapter.start(cov)
            gate = coverage_adapter.attach(cov, [{str(tmp_path / "link")!r}])
            import mod_a
            mod_a.f()
            first = sorted(gate.take())
            import mod_c, mod_d
            mod_c.f()
            mod_d.f()
            name = gate.data_name(mod_c.f.__code__)
            named = sorted(gate._names.values())
            gate.stop()
            print(json.dumps({{"first": first, "name": name, "named": named}}))
            """
        )
    )
    done = subprocess.run(
        [python, str(script)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
        check=False, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    real_a, real_c = (str((real / f"{m}.py").resolve()) for m in ("mod_a", "mod_c"))
    assert result["first"] == [real_a]
    assert result["name"] == real_c
    assert result["named"] == [real_a, real_c], "named by the disposition, mod_d not scanned"


def test_real_paths_answer_as_coverage_pys_abs_file(tmp_path):
    """`RealPaths` answers what ``coverage.files.abs_file`` answers, links,
    missing files and unnormalized paths included, first asked or again."""
    import os

    from coverage.files import abs_file

    original = getattr(abs_file, "original", abs_file)
    root = tmp_path / "task"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "sub" / "mod.py").write_text("x = 1\n")
    (root / "pkg" / "a.py").write_text("x = 1\n")
    (root / "linked").symlink_to(root / "pkg")  # a linked directory, absolute
    (root / "pkg" / "rel.py").symlink_to("a.py")  # a linked file, relative
    (root / "pkg" / "chain.py").symlink_to(root / "pkg" / "rel.py")
    (root / "dangling.py").symlink_to(root / "nowhere.py")
    (root / "loop").symlink_to(root / "loop")
    asked = [
        root / "pkg" / "sub" / "mod.py",
        root / "pkg" / "a.py",
        root / "linked" / "sub" / "mod.py",
        root / "linked" / "a.py",
        root / "pkg" / "rel.py",
        root / "linked" / "chain.py",
        root / "dangling.py",
        root / "loop" / "x.py",
        root / "missing" / "x.py",
        root / "pkg" / "missing.py",
        root / "pkg",
        root / "linked",
    ]
    strings = [str(path) for path in asked] + [
        f"{root}/pkg/../pkg/a.py",
        f"{root}/pkg/./a.py",
        f"{root}//pkg/a.py",
        f"{root}/pkg/",
        "/",
        "relative/x.py",
        "<string>",
        os.curdir,
    ]
    paths = coverage_adapter.RealPaths(original)
    for _ in range(2):
        for name in strings:
            assert paths(name) == original(name), name
    # Asked while missing, then made a link (a directory made at run time): followed.
    (root / "missing").symlink_to(root / "pkg" / "sub")
    (root / "pkg" / "missing.py").symlink_to(root / "pkg" / "a.py")
    for name in (f"{root}/missing/x.py", f"{root}/missing/mod.py", f"{root}/pkg/missing.py"):
        assert paths(name) == original(name), name


def test_abs_file_resolves_a_path_once_and_a_new_file_with_one_lstat(tmp_path, monkeypatch):
    """In place of ``abs_file`` everywhere coverage.py calls it, a Coverage's file
    mapper included; a file in a known directory costs one ``lstat``, a known
    path none.  Fails loudly if coverage.py takes ``abs_file`` by name elsewhere."""
    import ast
    import os

    coverage_adapter.import_coverage()
    import coverage.control
    import coverage.files

    assert coverage_adapter.resolve_paths_once()
    assert isinstance(coverage.files.abs_file, coverage_adapter.RealPaths)
    assert coverage.control.abs_file is coverage.files.abs_file
    cov = coverage.Coverage(data_file=None)
    assert cov._file_mapper is coverage.files.abs_file
    importing = set()
    for path in Path(coverage.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and "abs_file" in {a.name for a in node.names}:
                importing.add((path.stem, node.module))
    assert importing == {("control", "coverage.files")}

    (tmp_path / "pkg").mkdir()
    tmp_path = tmp_path.resolve()
    names = [str(tmp_path / "pkg" / f"m{i}.py") for i in range(50)]
    for name in names:
        Path(name).write_text("x = 1\n")
    coverage.files.abs_file(str(tmp_path / "pkg"))  # (the directory: known)
    calls = []
    real_lstat = os.lstat

    def lstat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        calls.append(path)
        return real_lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", lstat)
    for name in names:
        assert coverage.files.abs_file(name) == name
    assert len(calls) == len(names)
    for name in names:
        coverage.files.canonical_filename(name)
        coverage.files.abs_file(name)
    assert len(calls) == len(names)
