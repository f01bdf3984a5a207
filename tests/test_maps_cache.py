"""`maps_cache`: coverage.py's multiline maps written at the image's build, read back
only for the files, Python and coverage.py they were computed for.  (That the data
measured with them equals the data measured without: `tests.exactness.maps_cache`,
in the image, `test_container`.)"""

from __future__ import annotations

import marshal
import os
from pathlib import Path

from coverage_runtime.shim import coverage_adapter, maps_cache

SOURCE = "def f(a,\n      b):\n    return (a\n            + b)\n"


def write_function(root: Path) -> Path:
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text(SOURCE)
    (root / "top.py").write_text("x = [1,\n     2]\n")
    (root / "notes.txt").write_text("not python")
    installed = root / "lib"  # a distribution installed into the task root
    installed.mkdir()
    (installed / "__init__.py").write_text("y = 1\n")
    (root / "lib-1.0.dist-info").mkdir()
    (root / "lib-1.0.dist-info" / "RECORD").write_text("lib/__init__.py,,\n")
    return root


def test_the_build_keeps_coverage_pys_map_of_each_measured_file(tmp_path: Path) -> None:
    root = write_function(tmp_path)
    written = maps_cache.build([str(root)])
    assert written == {str(root): 2}, "the two modules; not the installed package"
    known = maps_cache.Known([str(root)])
    module = str(root / "pkg" / "mod.py")
    assert known(module) == coverage_adapter.multiline_map(module) == {1: 1, 2: 1, 3: 3, 4: 3}
    assert known(str(root / "lib" / "__init__.py")) is None
    assert known.hits == 1


def test_a_file_changed_since_the_build_is_not_taken_from_it(tmp_path: Path) -> None:
    root = write_function(tmp_path)
    maps_cache.build([str(root)])
    module = root / "pkg" / "mod.py"
    module.write_text(SOURCE + "# one more line\n")  # another size
    top = root / "top.py"
    os.utime(top, ns=(0, top.stat().st_mtime_ns + 10**9))  # another time, same size
    known = maps_cache.Known([str(root)])
    assert known(str(module)) is None
    assert known(str(top)) is None


def test_a_cache_of_another_version_or_unreadable_is_not_used(tmp_path: Path) -> None:
    root = write_function(tmp_path)
    maps_cache.build([str(root)])
    cache = root / maps_cache.CACHE_NAME
    stamp, maps = marshal.loads(cache.read_bytes())
    cache.write_bytes(marshal.dumps(((stamp[0], "another Python", stamp[2]), maps)))
    assert maps_cache.Known([str(root)])(str(root / "top.py")) is None
    cache.write_bytes(b"not marshal data")
    assert maps_cache.Known([str(root)])(str(root / "top.py")) is None
    cache.write_bytes(marshal.dumps((stamp, {str(root / "top.py"): "malformed"})))
    assert maps_cache.Known([str(root)])(str(root / "top.py")) is None
