"""The README's main command works as written."""

import subprocess

import pytest

from tests.harness import REPO_ROOT, clean_environment

pytestmark = pytest.mark.rie


def test_demo_runs_end_to_end_and_reports(tmp_path):
    env = clean_environment(
        {"DEMO_DIR": str(tmp_path / "demo"), "REPORT_DIR": str(tmp_path / "report")}
    )
    env.pop("PYTHONPATH")
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "demo.sh")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "coverage uploaded" in result.stdout
    assert "app/handler.py" in result.stdout
    assert "TOTAL" in result.stdout
    assert (tmp_path / "report" / "html" / "index.html").is_file()


def test_demo_help():
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "demo.sh"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "usage: scripts/demo.sh" in result.stdout
