"""Insights through the real parts: environments of a function at three revisions of a git
repository, run under the shim through the AWS RIE, uploading to the local S3; the
checkout one revision further (tests/insights_samples)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coverage_runtime.report.cli import main
from tests.harness import S3Server, headless_dom
from tests.insights_samples.deploy import (
    ENVIRONMENTS,
    FUNCTION,
    UNKNOWN_REVISION,
    deploy,
    make_repository,
)

pytestmark = pytest.mark.rie


@dataclass
class Deployed:
    s3_server: S3Server
    bucket: str
    repo: Path
    task_root: Path
    commits: list[str]
    work: Path


@pytest.fixture(scope="module")
def deployed(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    work = tmp_path_factory.mktemp("insights")
    bucket = f"cov-{uuid.uuid4().hex[:16]}"
    s3_server.client().create_bucket(Bucket=bucket)
    repo = work / "checkout"
    commits = make_repository(repo)
    task_root = work / "task"
    deploy(s3_server, bucket, task_root, commits, work)
    return Deployed(s3_server, bucket, repo, task_root, commits, work)


@pytest.fixture(autouse=True)
def aws_env(report_credentials: None) -> None:
    """Every test runs the CLI in process (tests/conftest.py)."""


@dataclass
class Run:
    code: int
    out: str
    err: str
    output: Path

    def json(self, name: str) -> Any:
        return json.loads((self.output / name).read_text())


def cli(deployed: Deployed, tmp_path: Path, command: str, *args: str, output: str = "out") -> Run:
    out, err = io.StringIO(), io.StringIO()
    argv = [
        command,
        "--bucket",
        deployed.bucket,
        "--endpoint-url",
        deployed.s3_server.endpoint_url,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--source-root",
        str(deployed.repo),
        "--task-root",
        str(deployed.task_root),
        "--no-progress",
        "-o",
        str(tmp_path / output),
        *args,
    ]
    code = main(argv, out=out, err=err)
    return Run(code, out.getvalue(), err.getvalue(), tmp_path / output)


def verdicts(run: Run) -> dict[str, tuple[str, int, int]]:
    """'path:qualname' -> (verdict, environments that ran it, comparable environments)."""
    return {
        f"{u['path']}:{u['qualname']}": (
            u["verdict"],
            u["environments"],
            u["observed_environments"],
        )
        for u in run.json("unused.json")["units"]
    }


# Derived by hand from tests/insights_samples (which revision holds each unit unchanged,
# and which environments of those revisions ran it); r1 has 2 environments, r2 2, r3 1.
EXPECTED = {
    "handler.py:<module>": ("active", 3, 3),  # its import changed in r2
    "handler.py:handler": ("active", 3, 3),
    "shop/orders.py:<module>": ("no_data", 0, 0),  # r4 added a def to it
    "shop/orders.py:Cart": ("active", 1, 1),  # r3 added a def to it
    "shop/orders.py:Cart.__init__": ("active", 4, 5),  # unchanged since r1, lines shifted
    "shop/orders.py:Cart.add": ("active", 4, 5),
    "shop/orders.py:Cart.total": ("active", 4, 5),
    "shop/orders.py:Cart.clear": ("no_data", 0, 0),  # changed in r4, never deployed
    "shop/orders.py:Cart.count": ("safe_to_delete", 0, 1),  # r3; nothing calls it
    "shop/orders.py:place": ("active", 4, 5),
    "shop/orders.py:place.<locals>.receipt": ("active", 4, 5),
    "shop/orders.py:refund": ("never_run", 0, 3),  # changed in r2; only r1 refunded
    "shop/orders.py:cancel": ("active", 1, 3),
    "shop/orders.py:audit": ("no_data", 0, 0),  # new in r4
    "shop/prices.py:<module>": ("active", 5, 5),  # renamed from pricing.py: followed
    "shop/prices.py:discount": ("active", 2, 5),
    "shop/prices.py:surcharge": ("safe_to_delete", 0, 5),
    "shop/receipts.py:<module>": ("active", 3, 3),  # moved here in r2: no evidence from r1
    "shop/receipts.py:format_receipt": ("active", 2, 3),
}


def test_unused_gives_every_unit_a_verdict_across_revisions(deployed, tmp_path):
    run = cli(deployed, tmp_path, "unused", "--all", "--function", FUNCTION)
    assert run.code == 0, run.err
    assert verdicts(run) == EXPECTED
    document = run.json("unused.json")
    invocations = sum(len(e.events) + 1 for e in ENVIRONMENTS if not e.unknown)  # + the flush
    assert document["observed"] == {
        "environments": 5,
        "invocations": invocations,
        "days": 1,
        "revisions": 3,
        "unknown_revisions": 1,
        "unknown_revision_ids": [UNKNOWN_REVISION],
        "environments_without_revision": 0,
        "environments_left_out": 1,
    }
    units = {f"{u['path']}:{u['qualname']}": u for u in document["units"]}
    count = units["shop/orders.py:Cart.count"]
    assert (count["kind"], count["start_line"], count["end_line"]) == ("method", 18, 19)
    assert units["shop/orders.py:place.<locals>.receipt"]["kind"] == "nested"
    assert units["shop/orders.py:Cart"]["kind"] == "class"
    assert units["handler.py:<module>"]["kind"] == "module"
    place = units["shop/orders.py:place"]
    # The invocations of the 4 environments that ordered (their events and the flush).
    assert place["invocations"] == (3 + 1) + (1 + 1) + (2 + 1) + (1 + 1)
    assert place["last_version"] == "3" and place["last_seen"] == document["generated"][:10]
    assert "does not know" in run.err and UNKNOWN_REVISION in run.err
    assert "safe_to_delete" in run.out and "Cart.count" in run.out


def test_low_traffic_is_a_share_of_the_comparable_environments(deployed, tmp_path):
    run = cli(deployed, tmp_path, "unused", "--all", "--low-traffic", "50", "--format", "json")
    assert run.code == 0, run.err
    changed = {k: v for k, v in verdicts(run).items() if v != EXPECTED[k]}
    assert changed == {
        "shop/orders.py:cancel": ("low_traffic", 1, 3),  # 33% < 50%
        "shop/prices.py:discount": ("low_traffic", 2, 5),  # 40% < 50%
    }


def test_production_against_the_unit_tests_data(deployed, tmp_path):
    """The unit tests ran surcharge (production never did) and place; not discount."""
    test = tmp_path / "test_shop.py"
    test.write_text(
        "from shop import orders, prices\n"
        "assert prices.surcharge(1) == 2\n"
        "assert orders.place([1]) == 'total 1'\n"
    )
    data = tmp_path / ".coverage.tests"
    subprocess.run(
        [sys.executable, "-m", "coverage", "run", "--data-file", str(data),
         "--source", str(deployed.repo), str(test)],
        cwd=deployed.repo, check=True, capture_output=True,
        env={"PYTHONPATH": str(deployed.repo), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    run = cli(deployed, tmp_path, "unused", "--all", "--tests-data", str(data), "--no-static")
    assert run.code == 0, run.err
    units = {f"{u['path']}:{u['qualname']}": u for u in run.json("unused.json")["units"]}
    got = {k: (u["verdict"], u["production_verdict"], u["tested"]) for k, u in units.items()}
    assert got["shop/prices.py:surcharge"] == ("tested_only", "never_run", True)
    assert got["shop/prices.py:discount"] == ("untested_in_production", "active", False)
    assert got["shop/orders.py:place"] == ("active", "active", True)
    assert got["shop/orders.py:refund"] == ("never_run", "never_run", False)
    assert got["shop/orders.py:Cart.count"] == ("never_run", "never_run", False)  # no static
    assert got["shop/orders.py:audit"] == ("no_data", "no_data", False)
    assert got["handler.py:handler"] == ("untested_in_production", "active", False)
    assert "statically_unused" not in units["shop/orders.py:Cart.count"]


def test_unused_reuses_a_reports_data_and_writes_markdown_and_html(deployed, tmp_path):
    report = cli(
        deployed, tmp_path, "report", "--format", "json", "--ignore-missing-source", output="report"
    )
    assert report.code == 0, report.err
    assert "left out 1 measured file(s) with no local source" in report.err  # r1's pricing.py
    # Every environment ran a revision other than the checkout's (r4, never deployed): said.
    assert "warning: 6 environment(s) ran revision(s) other than the checkout's" in report.err
    # The checkout's files never imported by r3 are in the report; old paths are not read.
    files = report.json("coverage.json")["files"]
    assert {Path(f).name for f in files} == {
        "handler.py", "__init__.py", "orders.py", "prices.py", "receipts.py"
    }  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["unused", "--data", str(report.output), "--source-root", str(deployed.repo),
         "-o", str(tmp_path / "again")],
        out=out, err=err,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    again = Run(code, out.getvalue(), err.getvalue(), tmp_path / "again")
    assert verdicts(again) == EXPECTED
    markdown = (again.output / "unused.md").read_text()
    assert "| safe_to_delete |" in markdown and "`shop/prices.py:10` `surcharge`" in markdown
    page = (again.output / "unused.html").read_text()
    assert page.count('<tr class="') == len(EXPECTED)
    # The terminal lists what is not active, and the totals.
    assert "Cart.count" in again.out and "Cart.__init__" not in again.out
    assert "observed: 5 environment(s)" in again.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--low-traffic", "200"), "invalid --low-traffic 200"),
        (("--tests-data", "/nonexistent/.coverage"), "--tests-data '/nonexistent/.coverage'"),
        (("--format", "pdf"), "invalid report format 'pdf'"),
        (("--data", "/nonexistent"), "--data '/nonexistent' is not a directory"),
    ],
)
def test_unused_bad_input_is_one_sentence(deployed, tmp_path, args, message):
    run = cli(deployed, tmp_path, "unused", *args)
    assert run.code == 1
    assert message in run.err


def _diff_units(run: Run) -> dict[str, tuple[int, int, int]]:
    return {
        f"{u['path']}:{u['qualname']}": (u["ran"], u["never_ran"], u["new"])
        for u in run.json("diff.json")["units"]
    }


def test_diff_holds_a_change_against_production(deployed, tmp_path):
    """r1 -> the checkout: what r2 and r3 ran of it is 'ran', what they held but never
    ran is 'never_ran', what no deployed revision holds is 'new' (derived by hand)."""
    run = cli(deployed, tmp_path, "diff", "--base", deployed.commits[0])
    assert run.code == 0, run.err
    assert _diff_units(run) == {
        "handler.py:<module>": (1, 0, 0),  # the new import
        "handler.py:handler": (3, 0, 0),  # the quote line and the two cancel lines
        "shop/orders.py:<module>": (2, 0, 1),  # import and 'def cancel' ran; 'def audit' new
        "shop/orders.py:Cart": (1, 0, 0),  # 'def count' (r3), run at import
        "shop/orders.py:Cart.clear": (0, 0, 1),  # changed in r4
        "shop/orders.py:Cart.count": (0, 1, 0),
        "shop/orders.py:refund": (0, 1, 0),  # changed in r2, never refunded since
        "shop/orders.py:cancel": (1, 0, 0),
        "shop/orders.py:audit": (0, 0, 1),
        "shop/receipts.py:<module>": (1, 0, 0),  # moved here in r2
        "shop/receipts.py:format_receipt": (1, 0, 0),
    }
    document = run.json("diff.json")
    assert document["lines"] == {"ran": 10, "never_ran": 2, "new": 3}
    assert document["ran_percent"] == pytest.approx(83.33, abs=0.01)
    lines = {(d["path"], d["line"]): d for d in document["changed_lines"]}
    cancel_return = lines[("shop/orders.py", 38)]
    assert (cancel_return["status"], cancel_return["environments"]) == ("ran", 1)
    assert cancel_return["observed_environments"] == 3 and cancel_return["invocations"] == 3
    assert lines[("handler.py", 2)]["environments"] == 3
    markdown = (run.output / "diff.md").read_text()
    assert "10 ran in production, 2 never ran, 3 new" in markdown
    assert "- `shop/orders.py:34`" in markdown  # refund's changed line, never ran

    gate = cli(deployed, tmp_path, "diff", "--base", deployed.commits[0], "--fail-under", "90")
    assert gate.code == 2
    assert "83.3% of the changed lines production could run did run" in gate.err
    assert cli(deployed, tmp_path, "diff", "--base", "HEAD~3", "--fail-under", "80").code == 0


def test_diff_of_a_diff_file_and_its_errors(deployed, tmp_path):
    patch = tmp_path / "change.diff"
    patch.write_text(
        subprocess.run(
            ["git", "-C", str(deployed.repo), "diff", deployed.commits[2], deployed.commits[3]],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    run = cli(deployed, tmp_path, "diff", "--diff-file", str(patch), "--fail-under", "100")
    assert run.code == 0, run.err  # nothing production could run: nothing below the gate
    assert run.json("diff.json")["lines"] == {"ran": 0, "never_ran": 0, "new": 3}
    for args, message in [
        ((), "give the change as --base REF or --diff-file FILE"),
        (("--base", "no-such-ref"), "--base 'no-such-ref' is not a revision"),
        (("--diff-file", str(tmp_path / "none.diff")), "cannot read --diff-file"),
    ]:
        bad = cli(deployed, tmp_path, "diff", *args)
        assert bad.code == 1 and message in bad.err, bad.err


def rendered(chromium: str, page: Path, profile: Path) -> dict[str, tuple[int, list]]:
    """What the page holds after its scripts ran in headless Chromium: per chart title,
    the canvases drawn and the points."""
    dom = headless_dom(chromium, page, profile)
    import html as html_module

    charts = {}
    for match in re.finditer(r'<div class="chart"([^>]*)>', dom):
        attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))
        charts[html_module.unescape(attributes["data-title"])] = (
            int(attributes.get("data-rendered", "0")),
            json.loads(html_module.unescape(attributes.get("data-points", "null"))),
        )
    return charts


def _combine_in_process(deployed: Deployed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from coverage_runtime.report import combiner

    monkeypatch.setenv("COVERAGE_S3_BUCKET", deployed.bucket)
    monkeypatch.setenv("COVERAGE_S3_ENDPOINT_URL", deployed.s3_server.endpoint_url)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(deployed.task_root))  # r3's files, deployed last
    monkeypatch.setattr(combiner, "CACHE_DIR", str(tmp_path / "combiner-cache"))
    monkeypatch.setattr(combiner, "WORK_DIR", str(tmp_path / "combiner-work"))
    return combiner.lambda_handler({"function": FUNCTION}, None)


@pytest.mark.browser
def test_history_page_renders_its_charts_in_chromium(deployed, tmp_path, chromium, monkeypatch):
    everything = cli(
        deployed, tmp_path, "report", "--ignore-missing-source", "--format", "json", output="all"
    )
    assert everything.code == 0, everything.err
    r3 = cli(deployed, tmp_path, "report", "--revision", deployed.commits[2], output="r3")
    assert r3.code == 0, r3.err
    combined = _combine_in_process(deployed, monkeypatch, tmp_path)
    # Every statement of the checkout production ran, through the revisions: a diff from
    # the empty tree touches every line.
    empty_tree = subprocess.run(
        ["git", "-C", str(deployed.repo), "hash-object", "-t", "tree", "/dev/null"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    whole = subprocess.run(
        ["git", "-C", str(deployed.repo), "diff", empty_tree, "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (tmp_path / "whole.diff").write_text(whole)
    every = cli(deployed, tmp_path, "diff", "--data", str(everything.output),
                "--diff-file", str(tmp_path / "whole.diff"), output="every")  # fmt: skip
    assert every.code == 0, every.err
    reached = every.json("diff.json")["lines"]["ran"]

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["history", "--bucket", deployed.bucket, "--endpoint-url", deployed.s3_server.endpoint_url,
         "--runs", str(everything.output), str(r3.output / "summary.json"),
         "--data", str(everything.output), "--source-root", str(deployed.repo),
         "-o", str(tmp_path / "history")],
        out=out, err=err,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    page = tmp_path / "history" / "history.html"
    text = page.read_text()
    assert (
        "http://" not in text.replace("http://www.w3.org", "")
        and "https://" not in text.split("/*! https://github.com/leeoniya/uPlot")[0]
    )

    charts = rendered(chromium, page, tmp_path / "chromium-profile")
    all_summary, r3_summary = everything.json("summary.json"), r3.json("summary.json")
    statements = all_summary["lines"]["statements"]
    r3_lines = r3_summary["lines"]
    assert r3_lines["statements"] == statements  # the same checkout's files
    assert set(charts) == {
        "Coverage per day (%)",
        "Environments and invocations merged (the day's last run)",
        "Environments and invocations per init day",
        "Lines reached for the first time",
        "Coverage per function version (%)",
    }
    assert all(canvases >= 1 for canvases, _ in charts.values()), charts
    assert dict(charts["Coverage per day (%)"][1]) == {
        all_summary["selection"]: [round(all_summary["percent"], 2)],
        r3_summary["selection"]: [round(r3_summary["percent"], 2)],
        f"{FUNCTION}/all": [round(combined["percent"], 2)],
    }
    assert dict(charts["Environments and invocations merged (the day's last run)"][1]) == {
        "environments": [6 + 1 + 6],
        "invocations": [15 + 2 + 15],  # 9 events and 6 flushes; r3's 1 and 1
    }
    assert dict(charts["Environments and invocations per init day"][1]) == {
        "environments": [6],
        "invocations": [15],
    }
    assert dict(charts["Lines reached for the first time"][1]) == {
        "new lines": [reached],
        "lines reached so far": [reached],
    }
    per_version = dict(charts["Coverage per function version (%)"][1])["coverage"]
    assert len(per_version) == 3  # versions 1, 2, 3
    # Version 3 is r3's one environment (the unknown revision's is left out); r3's lines are
    # the checkout's but for what r4 changed, which it never ran.
    assert per_version[2] == round(100 * r3_lines["covered"] / statements, 2)
    assert all(0 < p < 100 for p in per_version)


# -- labels and revisions, on the report tests' sample environments (coverage.py in a process)


def _samples_unused(s3_server, bucket: str, tmp_path: Path, *args: str) -> Run:
    from tests.report_samples.envs import SAMPLES

    out, err = io.StringIO(), io.StringIO()
    argv = ["unused", "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
            "--cache-dir", str(tmp_path / "cache"), "--source-root", str(SAMPLES),
            "--no-progress", "--all", "-o", str(tmp_path / "out"), *args]  # fmt: skip
    code = main(argv, out=out, err=err)
    return Run(code, out.getvalue(), err.getvalue(), tmp_path / "out")


def test_code_run_only_under_the_init_label_is_init_only(s3_server, s3, bucket, tmp_path):
    from tests.report_samples.envs import Env, run_all, upload

    calls = [["init", "shapes", "classify", [1]], ["business", "shapes", "area", ["square", 2]]]
    envs = [Env("init-a", calls, function="init-fn")]
    run_all(envs, tmp_path / "envs")
    upload(s3, bucket, envs)
    run = _samples_unused(s3_server, bucket, tmp_path, "--no-static")
    assert run.code == 0, run.err
    got = {k: v[0] for k, v in verdicts(run).items() if k.startswith("sampleapp/shapes.py")}
    assert got == {
        "sampleapp/shapes.py:<module>": "active",  # imported under init: what a module does
        "sampleapp/shapes.py:classify": "init_only",
        "sampleapp/shapes.py:area": "active",
    }


def test_revisions_unknown_here_are_left_out_and_none_is_the_checkouts(
    s3_server, s3, bucket, tmp_path, tmp_path_factory
):
    """line-a/b/c ran revisions abc123/def456, which this repository does not have;
    line-d recorded none and counts as the checkout's."""
    from tests.report_samples.envs import LINE, run_all, upload

    run_all(LINE, tmp_path_factory.mktemp("line"))
    upload(s3, bucket, LINE)
    run = _samples_unused(s3_server, bucket, tmp_path, "--no-static")
    assert run.code == 0, run.err
    observed = run.json("unused.json")["observed"]
    assert observed["environments"] == 1 and observed["invocations"] == 5
    assert observed["environments_without_revision"] == 1
    assert observed["unknown_revisions"] == 2 and observed["environments_left_out"] == 3
    assert sorted(observed["unknown_revision_ids"]) == ["abc123", "def456"]
    got = verdicts(run)
    assert got["sampleapp/shapes.py:area"] == ("active", 1, 1)  # line-d: square 3
    assert got["sampleapp/shapes.py:classify"] == ("never_run", 0, 1)
    assert got["sampleapp/orders.py:total"] == ("never_run", 0, 1)  # only line-c totalled


def test_history_without_anything_to_chart_is_one_sentence(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert main(["history", "-o", str(tmp_path / "h")], out=out, err=err) == 1
    assert "nothing to chart" in err.getvalue()
    bad = tmp_path / "summary.json"
    bad.write_text("[]")
    assert main(["history", "--runs", str(bad), "-o", str(tmp_path / "h")], out=out, err=err) == 1
    assert "not a lambda-coverage summary" in err.getvalue()
