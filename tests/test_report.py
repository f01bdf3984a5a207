"""``lambda-coverage report`` against moto's S3 server over HTTP, with real data files.

Every data file comes from really running the sample package under coverage.py
in its own process (tests/report_samples), as simulated environments with
overlapping and disjoint lines, line and branch data, dynamic contexts, and
paths recorded under the image's task root /var/task.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from coverage import CoverageData

from coverage_runtime.errors import ReportError
from coverage_runtime.report import objects as report_objects
from coverage_runtime.report.cli import main
from coverage_runtime.report.client import make_client
from coverage_runtime.report.listing import BackgroundListing
from coverage_runtime.report.selection import Selection
from tests.harness import FAKE_CREDENTIALS, REPO_ROOT
from tests.report_samples.envs import (
    BRANCH,
    CONTEXTS,
    LINE,
    LOCAL,
    SAMPLE_PACKAGE,
    SAMPLES,
    arcs_of,
    line_of,
    lines_of,
    local_path,
    never_run_of,
    run_envs,
    union_arcs,
    union_lines,
    upload,
)

SHAPES = str(SAMPLE_PACKAGE / "shapes.py")
ORDERS = str(SAMPLE_PACKAGE / "orders.py")


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_envs(tmp_path_factory)


@pytest.fixture(autouse=True)
def aws_env(report_credentials: None) -> None:
    """Every test runs the CLI in process (tests/conftest.py)."""


class Run:
    def __init__(self, code: int, out: str, err: str, output: Path) -> None:
        self.code, self.out, self.err, self.output = code, out, err, output

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.output / "summary.json").read_text())

    @property
    def data_file(self) -> Path:
        return self.output / "merged.coverage"


@pytest.fixture
def report(s3_server: Any, bucket: str, tmp_path: Path):
    """Run the CLI in process: report(*args) with the bucket, endpoint and cache filled in."""

    def run(*args: str, command: str = "report", output: str = "out") -> Run:
        out, err = io.StringIO(), io.StringIO()
        argv = [command, "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url]
        if command == "report":
            argv += [
                "-o",
                str(tmp_path / output),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--source-root",
                str(SAMPLES),
                "--no-progress",
            ]
        code = main([*argv, *args], out=out, err=err)
        return Run(code, out.getvalue(), err.getvalue(), tmp_path / output)

    return run


# -- merging ----------------------------------------------------------------------


def test_line_data_of_all_environments_is_merged_exactly_and_remapped(envs, s3, bucket, report):
    upload(s3, bucket, LINE)
    run = report()
    assert run.code == 0, run.err
    merged = lines_of(run.data_file)
    assert merged == union_lines(LINE)
    # Remapped from /var/task to the checkout, and nothing else is in the data.
    assert set(merged) == {
        str(SAMPLE_PACKAGE / n) for n in ("__init__.py", "shapes.py", "orders.py")
    }
    # Overlapping (square twice) and disjoint (orders only in line-c) lines are all there.
    for marker in ("square", "circle", "negative", "zero"):
        assert line_of("shapes", marker) in merged[SHAPES]
    for marker in ("unknown", "positive"):
        assert line_of("shapes", marker) not in merged[SHAPES]
    assert line_of("orders", "add") in merged[ORDERS]
    assert line_of("orders", "skip-negative") not in merged[ORDERS]
    # line-b ran in selective mode: no import-time lines of its own, the merge has them.
    def_area = 1 + SAMPLE_PACKAGE.joinpath("shapes.py").read_text().split("\n").index(
        "def area(kind, size):"
    )
    selective_lines = LINE[1].data().lines("/var/task/sampleapp/shapes.py")
    assert line_of("shapes", "circle") in selective_lines
    assert def_area not in selective_lines
    assert def_area in merged[SHAPES]
    summary = run.summary
    assert summary["environments"]["merged"] == 4
    assert summary["environments"]["invocations"] == 12
    assert summary["measure"] == "line"
    assert "line coverage" in run.out and "from 4 environment(s), 12 invocation(s)" in run.out


def test_merge_equals_coverage_combine_of_the_same_files(envs, s3, bucket, report, tmp_path):
    upload(s3, bucket, LINE)
    run = report("--format", "none")
    assert run.code == 0, run.err
    work = tmp_path / "combine"
    work.mkdir()
    for env in LINE:
        (work / f".coverage.{env.name}").write_bytes(env.path.read_bytes())
    combined = subprocess.run(
        [sys.executable, "-m", "coverage", "combine", "-q"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    assert combined.returncode == 0, combined.stderr
    reference = {local_path(f): lines for f, lines in lines_of(work / ".coverage").items()}
    assert lines_of(run.data_file) == reference


def test_branch_data_merges_arcs(envs, s3, bucket, report):
    upload(s3, bucket, BRANCH)
    run = report()
    assert run.code == 0, run.err
    data = CoverageData(basename=str(run.data_file))
    data.read()
    assert data.has_arcs()
    assert arcs_of(run.data_file) == union_arcs(BRANCH)
    assert lines_of(run.data_file) == union_lines(BRANCH)
    summary = run.summary
    assert summary["measure"] == "branch"
    assert summary["branches"]["total"] > 0
    assert 0 < summary["branches"]["covered"] < summary["branches"]["total"]


def test_line_and_branch_data_merge_as_lines_or_branch_only(envs, s3, bucket, report):
    upload(s3, bucket, LINE + BRANCH)
    run = report()
    assert run.code == 0, run.err
    assert lines_of(run.data_file) == union_lines(LINE + BRANCH)
    assert run.summary["measure"] == "line"
    assert "2 environment(s) recorded branches and 4 lines only" in run.err

    only_branch = report("--measure", "branch", output="branch")
    assert only_branch.code == 0, only_branch.err
    assert arcs_of(only_branch.data_file) == union_arcs(BRANCH)
    assert "4 environment(s) recorded lines only and are left out" in only_branch.err


def test_parallel_batches_merge_the_same_as_one_pass_and_as_the_api(envs, tmp_path):
    from coverage_runtime.report.merge import Merger, Partial, merge_files, read_with_api

    files = [(env.key, env.path.read_bytes()) for env in LINE + BRANCH + CONTEXTS]
    serial = merge_files(files)
    with Merger(jobs=2, batch_size=1) as merger:  # more batches than may wait: it waits
        for key, body in files:
            merger.add(key, body)
        parallel = merger.finish()
    api = Partial()
    for _, body in files:
        read_with_api(body, api)
    for other in (parallel, api):
        assert other.lines == serial.lines
        assert other.arcs == serial.arcs
        assert (other.merged, other.line_files, other.arc_files) == (8, 6, 2)


def test_paths_already_local_are_kept(envs, s3, bucket, report):
    upload(s3, bucket, LOCAL)
    run = report()
    assert run.code == 0, run.err
    assert lines_of(run.data_file) == union_lines(LOCAL)
    assert SHAPES in lines_of(run.data_file)


def test_several_task_roots_map_to_their_own_directories(envs, s3, bucket, report, tmp_path):
    upload(s3, bucket, LINE[:1])
    run = report("--task-root", "/opt/other", "--task-root", f"/var/task={SAMPLES}")
    assert run.code == 0, run.err
    assert SHAPES in lines_of(run.data_file)


def _evidence_oracle(envs: list) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (local file, line): the environments that ran it, read through coverage.py's API."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for env in envs:
        data = env.data()
        for recorded in data.measured_files():
            lines = set(data.lines(recorded) or ())
            for line in lines:
                entry = found.setdefault(
                    (local_path(recorded), line),
                    {"envs": 0, "inv": 0, "dates": set(), "versions": set(), "revisions": set()},
                )
                entry["envs"] += 1
                entry["inv"] += int(env.metadata.get("invocations", 0))
                entry["dates"].add(env.date)
                entry["versions"].add(env.version)
                if env.metadata.get("code-revision"):
                    entry["revisions"].add(env.metadata["code-revision"])
    return found


@pytest.mark.parametrize("jobs", ["0", "2"])
def test_evidence_per_line_is_kept_beside_the_merged_data(envs, s3, bucket, report, jobs):
    from coverage_runtime.report.evidence import Evidence

    upload(s3, bucket, LINE + BRANCH)
    run = report("--format", "none", "--jobs", jobs)
    assert run.code == 0, run.err
    evidence = Evidence.load(run.output / "evidence.json.gz", relative_to=SAMPLES)
    assert evidence.environments == 6 and evidence.invocations == 16
    oracle = _evidence_oracle(LINE + BRANCH)
    kept = {
        (path, line): ev
        for path in evidence.paths()
        for line, ev in evidence.lines_of(path).items()
    }
    assert set(kept) == set(oracle)
    for key, expected in oracle.items():
        ev = kept[key]
        assert (ev.environments, ev.invocations) == (expected["envs"], expected["inv"]), key
        assert (ev.first, ev.last) == (min(expected["dates"]), max(expected["dates"]))
        assert ev.versions == expected["versions"] and ev.revisions == expected["revisions"]
    # The square line ran in line-a (abc123, 11-25) and line-d (version 3, no revision).
    square = kept[(SHAPES, line_of("shapes", "square"))]
    assert (square.environments, square.invocations, square.versions, square.revisions) == (
        2, 9, {"$LATEST", "3"}, {"abc123"},
    )  # fmt: skip
    # Arcs too, where the environments recorded branches.
    arcs = evidence.arcs_of(ORDERS)
    assert set(arcs) == union_arcs(BRANCH)[ORDERS]
    assert all(a.environments >= 1 for a in arcs.values())


def _file_report(run: Run) -> dict[str, dict]:
    files = json.loads((run.output / "coverage.json").read_text())["files"]
    return {os.path.relpath(os.path.join(os.getcwd(), k), SAMPLES): v for k, v in files.items()}


def test_files_never_imported_are_in_every_report_at_zero_percent(envs, s3, bucket, report):
    """line-c only ran orders: shapes.py was never imported, so its data never names it;
    the checkout does, as coverage.py's ``source`` would."""
    upload(s3, bucket, LINE)
    run = report("--function-version", "$LATEST", "--date", "2026-11-20", "--format", "json,xml")
    assert run.code == 0, run.err
    assert run.summary["environments"]["merged"] == 1
    assert SHAPES not in lines_of(run.data_file)
    # The measured source: the directory of the recorded files (sampleapp/), not the
    # test drivers beside it.
    assert never_run_of(run.data_file) == {SHAPES}
    assert run.summary["never_imported"] == 1
    files = _file_report(run)
    assert set(files) == {f"sampleapp/{n}" for n in ("__init__.py", "orders.py", "shapes.py")}
    shapes = files["sampleapp/shapes.py"]["summary"]
    assert shapes["covered_lines"] == 0 and shapes["num_statements"] > 0
    assert shapes["percent_covered"] == 0
    assert files["sampleapp/orders.py"]["summary"]["covered_lines"] > 0
    xml_files = {c.get("filename") for c in ET.parse(run.output / "coverage.xml").iter("class")}
    assert any(name.endswith("shapes.py") for name in xml_files)
    assert run.summary["percent"] < 100


def test_never_imported_files_honour_source_include_omit_and_the_coverage_config(
    envs, s3, bucket, report, tmp_path
):
    upload(s3, bucket, LINE[2:3])  # orders only
    omitted = report("--omit", "*/shapes.py", "--format", "json")
    assert omitted.code == 0, omitted.err
    assert set(_file_report(omitted)) == {"sampleapp/__init__.py", "sampleapp/orders.py"}

    rcfile = tmp_path / "coveragerc"
    rcfile.write_text("[run]\nomit = */shapes.py\n")
    configured = report("--rcfile", str(rcfile), "--format", "json", output="configured")
    assert configured.code == 0, configured.err
    assert set(_file_report(configured)) == {"sampleapp/__init__.py", "sampleapp/orders.py"}

    # --source says what the function measured (its COVERAGE_SOURCE): here the whole
    # directory, the drivers beside the package included; [report] omit still applies.
    rcfile.write_text("[report]\nomit = */report_samples/__init__.py\n")
    whole = report("--source", ".", "--rcfile", str(rcfile), "--format", "json", output="whole")
    assert whole.code == 0, whole.err
    assert set(_file_report(whole)) == {
        "envs.py",
        "run_env.py",
        "synthetic.py",
        "sampleapp/__init__.py",
        "sampleapp/orders.py",
        "sampleapp/shapes.py",
    }
    assert never_run_of(whole.data_file) == {
        str(SAMPLES / "envs.py"),
        str(SAMPLES / "run_env.py"),
        str(SAMPLES / "synthetic.py"),
        SHAPES,
    }  # the omitted __init__.py is not added either
    rcfile.write_text(f"[run]\nsource = {SAMPLES}\n")
    from_config = report("--rcfile", str(rcfile), "--format", "json", output="from-config")
    assert from_config.code == 0, from_config.err
    assert "envs.py" in _file_report(from_config)

    only = report("--include", "*/orders.py", "--format", "json", output="only")
    assert only.code == 0, only.err
    assert set(_file_report(only)) == {"sampleapp/orders.py"}

    bad = report("--source", "no-such-dir", output="bad")
    assert bad.code == 1 and "--source" in bad.err and "not a directory" in bad.err


def test_a_task_root_that_maps_nothing_is_an_error_naming_the_roots_seen(
    envs, s3, bucket, report, tmp_path
):
    upload(s3, bucket, LINE)
    wrong = report("--task-root", "/opt/app")
    assert wrong.code == 1
    assert "no recorded path maps into the checkout" in wrong.err
    assert "the task root(s) /opt/app match none of the 3 measured file(s)" in wrong.err
    assert "recorded under /var/task: pass --task-root /var/task" in wrong.err
    assert not (tmp_path / "out" / "merged.coverage").exists()


def test_recorded_paths_that_exist_here_but_outside_the_checkout_are_not_read_silently(
    envs, s3, bucket, report, tmp_path
):
    """The data names files of another directory of this machine (here the test's own
    samples): the report says so instead of reading them in place of the checkout's."""
    checkout = tmp_path / "checkout"
    shutil.copytree(SAMPLE_PACKAGE, checkout / "sampleapp")
    upload(s3, bucket, LOCAL)
    run = report("--source-root", str(checkout))
    assert run.code == 1
    assert f"recorded under {SAMPLES}: pass --task-root {SAMPLES}" in run.err
    fixed = report("--source-root", str(checkout), "--task-root", str(SAMPLES), output="fixed")
    assert fixed.code == 0, fixed.err
    assert set(lines_of(fixed.data_file)) == {
        str(checkout / "sampleapp" / n) for n in ("__init__.py", "shapes.py")
    }


# -- outputs ---------------------------------------------------------------------


def test_every_output_format_parses_and_agrees(envs, s3, bucket, report):
    upload(s3, bucket, LINE)
    run = report()
    assert run.code == 0, run.err
    merged = lines_of(run.data_file)

    assert (run.output / "html" / "index.html").read_text().count("shapes.py") >= 1

    root = ET.parse(run.output / "coverage.xml").getroot()
    assert root.tag == "coverage"
    xml_hits = {
        int(line.get("number"))
        for cls in root.iter("class")
        if cls.get("filename", "").endswith("shapes.py")
        for line in cls.iter("line")
        if int(line.get("hits")) > 0
    }
    assert xml_hits == merged[SHAPES] - {1}  # line 1 is the docstring, not a statement

    lcov = (run.output / "coverage.lcov").read_text()
    blocks = [b for b in lcov.split("end_of_record") if "shapes.py\n" in b.split("SF:")[-1][:300]]
    assert len(blocks) == 1, lcov[:500]
    shapes_block = blocks[0]
    assert f"DA:{line_of('shapes', 'square')},1" in shapes_block
    assert f"DA:{line_of('shapes', 'unknown')},0" in shapes_block

    report_json = json.loads((run.output / "coverage.json").read_text())
    totals = report_json["totals"]
    summary = run.summary
    assert summary["lines"]["covered"] == totals["covered_lines"]
    assert summary["lines"]["statements"] == totals["num_statements"]
    assert summary["percent"] == pytest.approx(totals["percent_covered"], abs=1e-3)
    assert summary["never_imported"] == 0  # every file of the measured source ran
    assert summary["files"] == 3
    assert "TOTAL" in run.out


@pytest.fixture(scope="module")
def lcov_tools() -> str:
    """Debian's lcov (1.16 on Debian 12), installed with apt-get when missing (as root)."""
    if shutil.which("lcov") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("lcov is not installed and installing it needs apt-get as root")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, timeout=300, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "lcov"],
            env=env, timeout=600, check=True, capture_output=True,
        )  # fmt: skip
    return subprocess.run(["lcov", "--version"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("data", ["line", "branch"])
def test_lcov_totals_read_by_lcov_and_genhtml_match_the_json_report(
    envs, s3, bucket, report, lcov_tools, data, tmp_path
):
    """lcov 1.16 counted every function twice on coverage.py 7.17's ``FN:first,last,name``."""
    upload(s3, bucket, LINE if data == "line" else BRANCH)
    run = report("--format", "lcov,json")
    assert run.code == 0, run.err
    totals = json.loads((run.output / "coverage.json").read_text())["totals"]
    lcov_file = (run.output / "coverage.lcov").read_text()
    functions = [line for line in lcov_file.splitlines() if line.startswith("FN:")]
    hit = [line for line in lcov_file.splitlines() if line.startswith("FNDA:") and line[5] != "0"]
    assert all(re.fullmatch(r"FN:\d+,[^,]+", line) for line in functions), functions[:3]

    summary = subprocess.run(
        ["lcov", "--summary", str(run.output / "coverage.lcov"), "--rc", "lcov_branch_coverage=1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    text = summary.stdout + summary.stderr
    lines = re.search(r"lines\.+: [\d.]+% \((\d+) of (\d+) lines\)", text)
    assert lines, text
    assert (int(lines[1]), int(lines[2])) == (totals["covered_lines"], totals["num_statements"])
    found = re.search(r"functions\.+: [\d.]+% \((\d+) of (\d+) functions\)", text)
    assert found, text
    assert (int(found[1]), int(found[2])) == (len(hit), len(functions))

    html = tmp_path / "genhtml"
    page = subprocess.run(  # SF: paths are relative to where the report ran (the checkout)
        ["genhtml", "-q", "-o", str(html), str(run.output / "coverage.lcov")],
        capture_output=True, text=True, cwd=os.getcwd(), check=False,
    )  # fmt: skip
    assert page.returncode == 0, page.stderr
    assert (html / "index.html").exists()


def test_contexts_show_which_request_kinds_covered_lines(envs, s3, bucket, report):
    upload(s3, bucket, CONTEXTS)
    run = report("--contexts")
    assert run.code == 0, run.err
    table = run.out.split("label ")[-1]
    assert "health" in table and "business" in table
    report_json = json.loads((run.output / "coverage.json").read_text())
    square = str(line_of("shapes", "square"))
    shapes_key = next(k for k in report_json["files"] if k.endswith("shapes.py"))
    assert report_json["files"][shapes_key]["contexts"][square] == ["health"]
    positive = str(line_of("shapes", "positive"))
    assert report_json["files"][shapes_key]["contexts"][positive] == ["business"]
    shapes_page = next((run.output / "html").glob("*shapes_py.html")).read_text()
    assert "business" in shapes_page and "health" in shapes_page


def test_fail_under_exits_2_below_the_threshold(envs, s3, bucket, report):
    upload(s3, bucket, LINE)
    low = report("--fail-under", "10", "--format", "json")
    assert low.code == 0, low.err
    percent = low.summary["percent"]
    high = report("--fail-under", str(min(100, round(percent) + 5)), "--format", "json")
    assert high.code == 2
    assert "is below --fail-under" in high.err


def test_an_html_error_in_the_report_worker_is_one_clear_line(envs, s3, bucket, report, tmp_path):
    """HTML is written in a forked worker; its failure still reaches the user as a sentence."""
    upload(s3, bucket, LINE[:1])
    rcfile = tmp_path / "bad.rc"
    rcfile.write_text("[html]\nextra_css = /nonexistent/extra.css\n")
    run = report("--format", "html,json", "--rcfile", str(rcfile))
    assert run.code == 1
    assert "coverage.py could not write the report" in run.err and "extra.css" in run.err
    assert "Traceback" not in run.err


# -- cache, corrupt objects, filters ----------------------------------------------------


def test_second_run_downloads_only_what_changed(envs, s3, bucket, report):
    upload(s3, bucket, LINE)
    first = report("--format", "none")
    assert first.code == 0, first.err
    assert "4 downloaded, 0 from cache" in first.out
    second = report("--format", "none")
    assert "0 downloaded, 4 from cache" in second.out
    # line-a's environment uploads a newer snapshot: only that object is fetched again.
    s3.put_object(Bucket=bucket, Key=LINE[0].key, Body=LINE[2].path.read_bytes())
    third = report("--format", "none")
    assert "1 downloaded, 3 from cache" in third.out
    assert lines_of(third.data_file) == union_lines(LINE[1:])


def test_a_cache_that_cannot_be_used_is_a_warning_not_a_failure(envs, s3, bucket, report, tmp_path):
    upload(s3, bucket, LINE[:2])
    (tmp_path / "cache" / f"{bucket}.sqlite3").mkdir(parents=True)  # where the file goes
    run = report("--format", "none")
    assert run.code == 0, run.err
    assert run.summary["environments"]["merged"] == 2 and run.summary["downloaded"] == 2
    assert "warning: the download cache could not be written" in run.err
    assert "the next report downloads these objects again" in run.err


def test_corrupt_objects_are_skipped_by_key_with_the_reason(envs, s3, bucket, report, tmp_path):
    upload(s3, bucket, LINE[:2])
    good = LINE[0].path.read_bytes()
    plain_sqlite = tmp_path / "plain.db"
    import sqlite3

    with sqlite3.connect(plain_sqlite) as db:
        db.execute("CREATE TABLE t (x)")
    bad = {
        "truncated": good[: len(good) // 2],
        "torn": good[:5000],
        "text": b"this is not a database\n" * 50,
        "empty": b"",
        "other-sqlite": plain_sqlite.read_bytes(),
    }
    for name, body in bad.items():
        s3.put_object(
            Bucket=bucket, Key=f"coverage/orders-fn/$LATEST/2026-11-25/{name}.coverage", Body=body
        )
    run = report()
    assert run.code == 0, run.err
    assert lines_of(run.data_file) == union_lines(LINE[:2])
    skipped = {s["key"].split("/")[-1]: s["reason"] for s in run.summary["environments"]["skipped"]}
    assert set(skipped) == {f"{name}.coverage" for name in bad}
    assert "truncated" in skipped["truncated.coverage"]
    assert "truncated" in skipped["torn.coverage"]
    assert "not an SQLite database" in skipped["text.coverage"]
    assert "empty" in skipped["empty.coverage"]
    assert "not a coverage.py data file" in skipped["other-sqlite.coverage"]
    for name in bad:
        assert (
            f"skipped s3://{bucket}/coverage/orders-fn/$LATEST/2026-11-25/{name}.coverage"
            in run.err
        )


@pytest.mark.parametrize("page_size", [1000, 1], ids=["one-page", "a-page-per-key"])
def test_filters_select_by_function_version_date_and_revision(
    envs, s3, bucket, report, monkeypatch, page_size
):
    # One key per page: the listing goes on in the background while the first downloads,
    # and a page whose keys the filters all drop comes before pages that match.
    monkeypatch.setattr(report_objects, "LIST_PAGE_SIZE", page_size)
    upload(s3, bucket, LINE + CONTEXTS)

    def check(names: list[str], *args: str) -> None:
        run = report("--format", "none", *args)
        assert run.code == 0, run.err
        chosen = [env for env in LINE + CONTEXTS if env.name in names]
        assert run.summary["environments"]["merged"] == len(chosen), args
        assert lines_of(run.data_file) == union_lines(chosen), args

    check(["ctx-a", "ctx-b"], "--function", "ctx-fn")
    check(
        ["line-a", "line-b", "line-c"], "--function", "orders-fn", "--function-version", "$LATEST"
    )
    check(["line-a", "line-b", "line-d"], "--function", "orders-fn", "--since", "2026-11-24")
    check(["line-b", "line-c"], "--function", "orders-fn", "--until", "2026-11-24")
    check(["line-c"], "--date", "2026-11-20")
    check(["line-a", "line-b"], "--revision", "abc123")
    check(["line-a", "line-b"], "--revision", "def456,abc123", "--since", "2026-11-21")
    check(
        ["line-a", "line-d", "ctx-a", "ctx-b"],
        "--function-version",
        "3",
        "--function",
        "ctx-fn,orders-fn",
        "--version",
        "$LATEST",
        "--since",
        "2026-11-25",
    )


def test_list_shows_count_size_and_invocation_totals(envs, s3, bucket, report):
    upload(s3, bucket, LINE + CONTEXTS)
    run = report(command="list")
    assert run.code == 0, run.err
    size = sum(env.path.stat().st_size for env in LINE + CONTEXTS)
    assert "total: 6 objects" in run.out
    assert "invocations: 12 (2 objects without the count)" in run.out
    assert "orders-fn/$LATEST        3" in run.out or "orders-fn/$LATEST" in run.out
    filtered = report(
        "--function", "orders-fn", "--revision", "abc123", "--objects", command="list"
    )
    assert filtered.code == 0, filtered.err
    assert "total: 2 objects" in filtered.out
    assert "invocations: 6" in filtered.out
    assert LINE[0].key in filtered.out and LINE[2].key not in filtered.out
    assert size > 0


# -- errors ------------------------------------------------------------------------


def test_clear_errors_for_bad_input(envs, s3, s3_server, bucket, report):
    upload(s3, bucket, LINE[:1])

    missing_bucket = io.StringIO()
    code = main(
        ["report", "--bucket", "no-such-bucket-here", "--endpoint-url", s3_server.endpoint_url],
        out=io.StringIO(),
        err=missing_bucket,
    )
    assert code == 1
    assert "bucket 'no-such-bucket-here' does not exist" in missing_bucket.getvalue()
    assert "Traceback" not in missing_bucket.getvalue()

    nothing = report("--function", "no-such-function")
    assert nothing.code == 1
    assert "no coverage data objects matched" in nothing.err
    assert "function no-such-function" in nothing.err

    backwards = report("--since", "2026-11-25", "--until", "2026-11-01")
    assert backwards.code == 1
    assert "invalid date range: --since 2026-11-25 is after --until 2026-11-01" in backwards.err
    not_a_date = report("--since", "2026-13-45")
    assert not_a_date.code == 1 and "invalid date for --since" in not_a_date.err

    no_source = report("--source-root", str(REPO_ROOT))
    assert no_source.code == 1
    assert "local source missing for 2 measured file(s)" in no_source.err
    assert f"/var/task/sampleapp/shapes.py -> {REPO_ROOT}/sampleapp/shapes.py" in no_source.err
    assert "Traceback" not in no_source.err

    ignored = report("--source-root", str(REPO_ROOT), "--ignore-missing-source", "--format", "none")
    assert ignored.code == 1
    assert "hold no measured lines" in ignored.err


LISTING = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Name>locked-bucket</Name><Prefix>coverage/</Prefix><KeyCount>1</KeyCount>"
    b"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents>"
    b"<Key>coverage/fn/$LATEST/2026-11-25/env.coverage</Key>"
    b"<LastModified>2026-11-25T12:00:00.000Z</LastModified>"
    b'<ETag>"0123456789abcdef0123456789abcdef"</ETag><Size>53248</Size>'
    b"<StorageClass>STANDARD</StorageClass></Contents></ListBucketResult>"
)


def _s3_error(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()


@pytest.mark.parametrize(
    ("listing", "get_status", "get_code", "expected"),
    [
        # No s3:ListBucket: the listing is refused.
        (False, 403, "AccessDenied", "access denied to s3://locked-bucket while listing"),
        # s3:ListBucket but no s3:GetObject: the first download stops the run.
        (True, 403, "AccessDenied", "access denied to s3://locked-bucket while downloading"),
        # A server error on one object skips it with the reason; nothing else to merge.
        (True, 500, "InternalError", "none of the 1 matched objects could be read"),
    ],
)
def test_s3_refusals_are_clear_errors(tmp_path, listing, get_status, get_code, expected):
    import http.server
    import threading

    class FakeS3(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if "list-type=2" in self.path:
                if listing:
                    self._send(200, LISTING)
                else:
                    self._send(403, _s3_error("AccessDenied", "Access Denied"))
            else:
                self._send(get_status, _s3_error(get_code, "refused"))

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        err = io.StringIO()
        code = main(
            [
                "report",
                "--bucket",
                "locked-bucket",
                "--endpoint-url",
                f"http://127.0.0.1:{server.server_port}",
                "--cache-dir",
                str(tmp_path / "cache"),
                "-o",
                str(tmp_path / "out"),
            ],
            out=io.StringIO(),
            err=err,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1
    assert expected in err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_no_bucket_is_a_clear_error(monkeypatch):
    err = io.StringIO()
    assert main(["report"], out=io.StringIO(), err=err) == 1
    assert "no bucket: pass --bucket or set COVERAGE_S3_BUCKET" in err.getvalue()


# -- the wrapper script --------------------------------------------------------------


def test_wrapper_script_runs_the_report(envs, s3, s3_server, bucket, tmp_path):
    upload(s3, bucket, LINE[:2])
    env = {
        "PATH": "/usr/bin:/bin",
        **FAKE_CREDENTIALS,
        "COVERAGE_S3_BUCKET": bucket,
        "COVERAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "LAMBDA_COVERAGE_PYTHON": sys.executable,
    }
    result = subprocess.run(
        [
            str(REPO_ROOT / "scripts" / "coverage-report.sh"),
            "--source-root",
            str(SAMPLES),
            "-o",
            str(tmp_path / "report"),
            "--fail-under",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "report" / "html" / "index.html").is_file()
    assert "from 2 environment(s)" in result.stdout


def test_include_and_omit_limit_the_reports(envs, s3, bucket, report):
    upload(s3, bucket, LINE)
    run = report("--omit", "*/orders.py", "--format", "json")
    assert run.code == 0, run.err
    files = json.loads((run.output / "coverage.json").read_text())["files"]
    assert not any(name.endswith("orders.py") for name in files)
    assert any(name.endswith("shapes.py") for name in files)
    only = report("--include", "*/orders.py", "--format", "json", output="only")
    assert only.code == 0, only.err
    assert only.summary["files"] == 1


@pytest.mark.parametrize("page_size", [1000, 3], ids=["one-page", "listing-goes-on"])
def test_progress_bar_and_parallel_merge_workers(
    envs, s3, bucket, report, capsys, monkeypatch, page_size
):
    monkeypatch.setattr(report_objects, "LIST_PAGE_SIZE", page_size)
    upload(s3, bucket, LINE + BRANCH)
    run = report("--progress", "--jobs", "2", "--format", "none")
    assert run.code == 0, run.err
    assert lines_of(run.data_file) == union_lines(LINE + BRANCH)
    bar = capsys.readouterr().err  # tqdm's bar, on the process's stderr
    # The total grows with the listing, up to every object.
    assert "download" in bar and f"/{len(LINE + BRANCH)} [" in bar


def test_an_s3_error_on_a_later_page_reaches_the_report_as_one_sentence(
    envs, s3, s3_server, bucket, monkeypatch
):
    monkeypatch.setattr(report_objects, "LIST_PAGE_SIZE", 1)
    upload(s3, bucket, LINE[:3])
    listing = BackgroundListing(make_client(s3_server.endpoint_url), Selection(bucket=bucket))
    # The first page's one base waits for the next page: its delta may be the next key.
    assert listing.first == [] and listing.more
    for env in LINE[:3]:  # the bucket goes away before the next page is listed
        s3.delete_object(Bucket=bucket, Key=env.key)
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ReportError, match=f"bucket '{bucket}' does not exist"):
        list(listing)


def test_version_is_the_tools_and_function_version_is_a_filter(capsys):
    """``--version`` says which lambda-coverage this is; a function version is a filter
    of its own name (``--version`` after a command still means it, for old scripts)."""
    import coverage_runtime

    with pytest.raises(SystemExit) as exited:
        main(["--version"], out=io.StringIO(), err=io.StringIO())
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"lambda-coverage {coverage_runtime.__version__}"
    from coverage_runtime.report.cli import build_parser

    args = build_parser().parse_args(["report", "--function-version", "7", "--version", "$LATEST"])
    assert args.function_version == ["7", "$LATEST"]
