"""What is measured, through the RIE: a task root laid out by AWS's recipe for a
non-AWS base image (``pip install --target``), ``COVERAGE_INCLUDE_PATTERNS``, and
coverage.py's warnings as JSON records."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from coverage import CoverageData

from tests.harness import download_objects

pytestmark = pytest.mark.rie

HANDLER = """\
import vendored_web
import vendored_single
from mine import logic


def handler(event, context):
    return {"web": vendored_web.route(event), "one": vendored_single.twice(2),
            "mine": logic.decide(event.get("n", 0))}
"""

LOGIC = """\
def decide(n):
    if n > 1:
        return "many"
    return "few"
"""


def install_like_pip(target: Path, name: str, files: dict[str, str], top_level: bool) -> None:
    """What ``pip install --target TARGET`` leaves: the files and NAME-1.0.dist-info."""
    for relative, text in files.items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text(text)
    info = target / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "INSTALLER").write_text("pip\n")
    rows = [[relative, "sha256=x", "1"] for relative in files]
    rows += [[f"{info.name}/{n}", "", ""] for n in ("METADATA", "INSTALLER", "RECORD")]
    rows.append([f"../../bin/{name}-cli", "", ""])  # a console script, outside the target
    with (info / "RECORD").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    if top_level:
        (info / "top_level.txt").write_text(sorted({r.split("/")[0] for r in files})[0] + "\n")


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "handler.py").write_text(HANDLER)
    (root / "mine").mkdir()
    (root / "mine" / "__init__.py").write_text("")
    (root / "mine" / "logic.py").write_text(LOGIC)
    install_like_pip(
        root,
        "vendored-web",
        {
            "vendored_web/__init__.py": "from vendored_web.routing import route\n",
            "vendored_web/routing.py": "def route(event):\n    return sorted(event)\n",
        },
        top_level=False,  # wheels built by flit or hatch write no top_level.txt
    )
    install_like_pip(
        root, "vendored-single", {"vendored_single.py": "def twice(x):\n    return 2 * x\n"}, True
    )
    return root


def measured_files(s3, bucket: str, tmp_path: Path) -> set[str]:
    [(_, path)] = download_objects(s3, bucket, tmp_path).items()
    data = CoverageData(basename=str(path))
    data.read()
    return {f for f in data.measured_files() if data.lines(f)}


def run_once(start_function, task_root: Path, **env: str):
    function = start_function("handler.handler", task_root=task_root, **env)
    assert function.invoke({"n": 3}).body["mine"] == "many"
    assert function.terminate() == 0
    return function


def test_packages_installed_into_the_task_root_are_not_measured(
    start_function, s3, bucket, tmp_path, task_root
):
    run_once(start_function, task_root)
    assert measured_files(s3, bucket, tmp_path) == {
        str(task_root / "handler.py"),
        str(task_root / "mine" / "__init__.py"),
        str(task_root / "mine" / "logic.py"),
    }


def test_a_source_inside_an_installed_package_is_measured(
    start_function, s3, bucket, tmp_path, task_root
):
    web = task_root / "vendored_web"
    run_once(start_function, task_root, COVERAGE_SOURCE=f"{task_root},{web}")
    files = measured_files(s3, bucket, tmp_path)
    assert str(web / "routing.py") in files, "named explicitly in COVERAGE_SOURCE"
    assert str(task_root / "vendored_single.py") not in files


def test_include_patterns_narrow_what_is_measured_and_warnings_are_json(
    start_function, s3, bucket, tmp_path, task_root
):
    function = run_once(start_function, task_root, COVERAGE_INCLUDE_PATTERNS="mine/*")
    assert measured_files(s3, bucket, tmp_path) == {
        str(task_root / "mine" / "__init__.py"),
        str(task_root / "mine" / "logic.py"),
    }
    logs = function.logs()
    assert "CoverageWarning" not in logs, "no raw warning line in the function's log"
    assert "--include is ignored" not in logs


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="sysmon measures branches from 3.14")
def test_coverage_warnings_become_json_records(start_function, s3, bucket, tmp_path, task_root):
    """Asked for sysmon with branches where it cannot measure them, coverage.py warns and
    falls back: the warning is a JSON record from the runtime's logger, not a raw line."""
    function = run_once(start_function, task_root, COVERAGE_CORE="sysmon", COVERAGE_BRANCH="true")
    assert "CoverageWarning" not in function.logs()
    warnings = [r for r in function.json_logs() if r.get("source") == "coverage.py"]
    assert warnings, function.logs()
    assert all(r["level"] == "WARN" and r["logger"] == "coverage_runtime" for r in warnings)
    assert any(r.get("slug") == "no-sysmon" for r in warnings), warnings
