"""The labels recipe on a fresh clone (#20 item 6): the example function under the
real RIE, the copyable pytest fixture (examples/pytest_labels) running a small suite
against it with each test's node id as the label, then the report of one test and of
all, from the data the environment uploaded."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from coverage import CoverageData

from tests.harness import FAKE_CREDENTIALS, REPO_ROOT, download_objects, line_of

pytestmark = [pytest.mark.rie, pytest.mark.slow]

SUITE = "examples/pytest_labels/test_example_app.py"
TESTS = (f"{SUITE}::test_health", f"{SUITE}::test_transform",
         f"{SUITE}::test_unknown_operation_is_refused")  # fmt: skip


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The repository as a user gets it: what is committed, nothing else."""
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(target)], check=True, timeout=120)
    return target


def test_a_pytest_suite_labels_what_each_test_ran(
    clone, start_function, s3, s3_server, bucket, tmp_path
):
    function = start_function(
        "app.handler.lambda_handler",
        task_root=clone,
        command=[sys.executable, "-m", "coverage_runtime", "app.handler.lambda_handler"],
        PYTHONPATH=str(clone),
        COVERAGE_SOURCE=str(clone / "app"),
        ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN="true",
    )
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITE],
        cwd=clone,
        env={
            "PATH": "/usr/bin:/bin",
            **FAKE_CREDENTIALS,
            "FUNCTION_NAME": "function",
            "LAMBDA_ENDPOINT_URL": f"http://127.0.0.1:{function.port}",
        },
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert "3 passed" in suite.stdout
    assert function.terminate() == 0
    [(_, path)] = download_objects(s3, bucket, tmp_path).items()
    data = CoverageData(basename=str(path))
    data.read()
    assert set(TESTS) | {"init"} <= data.measured_contexts()

    handler = str(clone / "app" / "handler.py")
    business = str(clone / "app" / "business.py")

    def lines(label: str, file: str) -> set[int]:
        data.set_query_contexts([f"^{re.escape(label)}$"])
        return set(data.lines(file) or ())

    transform = lines(TESTS[1], business)
    assert transform, "the transform test ran business code"
    assert not lines(TESTS[0], business) & transform - lines(TESTS[2], business), (
        "the health test ran none of what only the transform test ran"
    )
    entry = line_of(clone / "app" / "handler.py", "def lambda_handler(")
    assert all(entry + 1 <= max(lines(test, handler)) for test in TESTS)

    # The report of one test, and of all, as the README shows it, from the clone.
    def cli(command: str, output: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "coverage_runtime.report.cli", command,
             "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
             "--task-root", str(clone), "--source-root", str(clone), "--no-progress",
             "--format", "json", "-o", str(tmp_path / output), *args],
            cwd=clone, env={"PATH": "/usr/bin:/bin", **FAKE_CREDENTIALS},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def report(output: str, *patterns: str) -> tuple[set[int], set[int]]:
        cli("report", output, *(a for p in patterns for a in ("--context", p)))
        found = json.loads((tmp_path / output / "coverage.json").read_text())["files"]
        (info,) = (info for name, info in found.items() if name.endswith("business.py"))
        executed = set(info["executed_lines"])
        return executed, executed | set(info["missing_lines"])

    executed_one, statements = report("one", TESTS[1])
    executed_all, _ = report("all")
    assert executed_one == lines(TESTS[1], business) & statements
    assert executed_one < executed_all
    data.set_query_contexts(None)
    assert executed_all == set(data.lines(business) or ()) & statements

    # unused, one test's runs only: a unit of business.py ran exactly when that test ran
    # one of its statements (units cut by units_of, on coverage.py's statements).
    from coverage_runtime.report.units import units_of

    units = units_of("app/business.py", Path(business).read_text(), statements)
    for test in TESTS[:2]:
        cli("unused", f"unused-{test[-9:]}", "--no-static", "--all", "--context", test)
        document = json.loads((tmp_path / f"unused-{test[-9:]}" / "unused.json").read_text())
        assert document["labels"]["selected"] == [test]
        assert document["observed"]["environments"] == 1
        judged = {
            u["qualname"]: u["environments"]
            for u in document["units"]
            if u["path"] == "app/business.py"
        }
        ran = lines(test, business)
        assert judged == {u.qualname: int(bool(u.lines & ran)) for u in units if u.lines}
        if test == TESTS[1]:
            assert 1 in judged.values() and 0 in judged.values()  # ran some, not all
