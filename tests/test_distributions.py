"""`distributions`: the top-level names pip and setuptools record for what they installed."""

from __future__ import annotations

import csv
from pathlib import Path

from coverage_runtime.shim.distributions import installed_top_levels, omit_patterns


def record(directory: Path, name: str, rows: list[str], top_level: str | None = None) -> None:
    info = directory / name
    info.mkdir(parents=True)
    with (info / "RECORD").open("w", newline="") as handle:
        csv.writer(handle).writerows([[row, "", ""] for row in rows])
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level)


def test_names_from_record_and_top_level(tmp_path):
    record(
        tmp_path,
        "pydantic_core-2.0.dist-info",
        [
            "pydantic_core/__init__.py",
            "pydantic_core/_pydantic_core.cpython-314-x86_64-linux-gnu.so",
            "pydantic_core-2.0.dist-info/RECORD",
            "../../bin/tool",
            "typing_extensions.py",
            "__pycache__/typing_extensions.cpython-314.pyc",
            "native.cpython-314-x86_64-linux-gnu.so",
            "pkg-2.0.data/scripts/x",
        ],
    )
    egg = tmp_path / "old.egg-info"
    egg.mkdir()
    (egg / "top_level.txt").write_text("oldpkg\n\n")
    assert installed_top_levels(str(tmp_path)) == {
        "pydantic_core",
        "typing_extensions",
        "native",
        "oldpkg",
    }


def test_nothing_installed_or_unreadable(tmp_path):
    assert installed_top_levels(str(tmp_path)) == set()
    assert installed_top_levels(str(tmp_path / "missing")) == set()
    (tmp_path / "broken.dist-info").mkdir()  # no RECORD, no top_level.txt
    assert installed_top_levels(str(tmp_path)) == set()


def test_omit_patterns_keep_an_explicit_source_inside_a_package(tmp_path):
    record(tmp_path, "web-1.0.dist-info", ["web/__init__.py", "helper.py"])
    patterns = omit_patterns([str(tmp_path)])
    assert f"{tmp_path}/web/*" in patterns
    assert f"{tmp_path}/helper.py" in patterns
    explicit = omit_patterns([str(tmp_path), str(tmp_path / "web")])
    assert f"{tmp_path}/web/*" not in explicit
    assert f"{tmp_path}/helper.py" in explicit


def test_rows_as_pip_writes_them(tmp_path):
    """Hashes hold "/" (base64), paths with a comma are quoted, a wheel built on
    Windows may use backslashes, and a RECORD may end its rows with CRLF or hold
    a path that is not UTF-8: each name is found once, nothing else is made up."""
    info = tmp_path / "mixed-1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_bytes(
        b"six.py,sha256=ab/cd+ef,123\r\n"
        b"pkg/a.py,sha256=x/y,1\r\n"
        b'"odd,name/x.py",sha256=z,2\r\n'
        b"win\\mod.py,sha256=q,3\r\n"
        b"bad\xff/x.py,sha256=w,4\r\n"
        b"mixed-1.0.dist-info/RECORD,,\r\n"
    )
    assert installed_top_levels(str(tmp_path)) == {"six", "pkg", "odd,name", "win"}
