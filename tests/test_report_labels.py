"""Reports by label: ``lambda-coverage report --context PATTERN`` / ``--contexts``, the labels
of ``summary.json`` and of the HTML report, against moto's S3 server over HTTP.

The data files come from really running the sample package under coverage.py with
``switch_context`` (tests/report_samples: ``init`` for the imports, ``""`` for an
invocation with no label, pytest node ids), and every expectation is coverage.py's
own reading of the contexts (``contexts_by_lineno``, ``set_query_context``).
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from coverage_runtime.report.cli import main
from coverage_runtime.report.labels import LabelSelection, pattern_regex, shown
from tests.harness import headless_dom
from tests.report_samples.envs import (
    CREATE_A,
    CREATE_B,
    LABELS,
    LABELS_BRANCH,
    LIST,
    ODD,
    SAMPLES,
    TOTAL,
    Env,
    arcs_by_label,
    lines_by_label,
    run_all,
    selected_lines,
    upload,
)

ALL_LABELS = {"", "init", CREATE_A, CREATE_B, LIST, TOTAL, ODD}


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Env]]:
    run_all(LABELS + LABELS_BRANCH, tmp_path_factory.mktemp("label-envs"))
    return {"line": LABELS, "branch": LABELS_BRANCH}


@pytest.fixture(autouse=True)
def aws_env(report_credentials: None) -> None:
    """Every test runs the CLI in process (tests/conftest.py)."""


class Run:
    def __init__(self, code: int, out: str, err: str, output: Path) -> None:
        self.code, self.out, self.err, self.output = code, out, err, output

    def json(self, name: str) -> Any:
        return json.loads((self.output / name).read_text())

    @property
    def data_file(self) -> Path:
        return self.output / "merged.coverage"

    def executed(self) -> dict[str, set[int]]:
        """coverage.json's executed lines per file (files that ran any)."""
        files = self.json("coverage.json")["files"]
        found = {os.path.abspath(name): set(f["executed_lines"]) for name, f in files.items()}
        return {path: lines for path, lines in found.items() if lines}

    def statements(self, lines: dict[str, set[int]]) -> dict[str, set[int]]:
        """``lines`` that are statements (a docstring line runs but is none)."""
        files = self.json("coverage.json")["files"]
        statements = {
            os.path.abspath(name): set(f["executed_lines"]) | set(f["missing_lines"])
            for name, f in files.items()
        }
        found = {path: found & statements[path] for path, found in lines.items()}
        return {path: found for path, found in found.items() if found}


@pytest.fixture
def report(s3_server: Any, bucket: str, tmp_path: Path):
    def run(*args: str, output: str = "out") -> Run:
        out, err = io.StringIO(), io.StringIO()
        argv = ["report", "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
                "-o", str(tmp_path / output), "--cache-dir", str(tmp_path / "cache"),
                "--source-root", str(SAMPLES), "--no-progress", *args]  # fmt: skip
        code = main(argv, out=out, err=err)
        return Run(code, out.getvalue(), err.getvalue(), tmp_path / output)

    return run


def paths(envs: list[Env]) -> list[Path]:
    return [e.path for e in envs if e.path is not None]


def counted(by_label: dict[str, dict[str, set[Any]]]) -> dict[str, tuple[int, int]]:
    return {
        label: (len(files), sum(len(v) for v in files.values()))
        for label, files in by_label.items()
    }


# -- the patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["", "*", "?*", "init", "tests/*", "tests/test_api.py::*", "*create*", CREATE_A,
     "tests/test_api.py::test_create[ab]", "tests/test_api.py::test_create[!a]",
     "*[[]a]", "odd <b>*", "[", "*.py::test_?ist", "(none)"],
)  # fmt: skip
def test_a_pattern_selects_what_fnmatch_selects_and_its_exact_spelling(pattern):
    for label in ALL_LABELS | {"tests/test_api.py::test_createa", "x" + CREATE_A, "\n"}:
        expected = fnmatch.fnmatchcase(label, pattern) or label == pattern
        assert bool(re.search(pattern_regex(pattern), label)) == expected, (pattern, label)


def test_labels_are_shown_printable():
    assert shown("") == '""'
    assert shown("tests/t.py::test[é-1]") == "tests/t.py::test[é-1]"
    assert shown("a\x1b[31mred\u202e") == "a\\x1b[31mred\\u202e"


def test_patterns_that_select_nothing_are_named():
    selection = LabelSelection(("init", "nope"))
    assert selection.check(ALL_LABELS) == ["--context 'nope' matches no label of the data"]
    with pytest.raises(Exception, match="no label matches --context 'nope'") as raised:
        LabelSelection(("nope",)).check(ALL_LABELS)
    assert '""' in str(raised.value) and "init" in str(raised.value)
    assert LabelSelection(()).check(ALL_LABELS) == []


# -- the merge keeps every label -------------------------------------------------------


@pytest.mark.parametrize("measure", ["line", "branch"])
def test_every_label_keeps_exactly_its_lines_and_arcs_through_the_merge(
    envs, s3, bucket, report, measure
):
    chosen = envs[measure]
    upload(s3, bucket, chosen)
    run = report("--format", "json")
    assert run.code == 0, run.err
    merged = lines_by_label([run.data_file])
    assert set(merged) == ALL_LABELS
    assert merged == lines_by_label(paths(chosen))  # the union of the environments, per label
    labels = run.json("summary.json")["labels"]
    arcs = arcs_by_label([run.data_file])
    if measure == "branch":
        assert arcs == arcs_by_label(paths(chosen))
        assert set(arcs) == ALL_LABELS
    assert {c["label"]: (c["files"], c["lines"]) for c in labels} == counted(merged)
    assert {c["label"]: c["arcs"] for c in labels} == (
        {label: sum(len(a) for a in files.values()) for label, files in arcs.items()}
        if measure == "branch"
        else dict.fromkeys(ALL_LABELS)
    )
    assert all(c["selected"] for c in labels)
    assert run.json("summary.json")["label_patterns"] == []
    lines = [c["lines"] for c in labels]
    assert lines == sorted(lines, reverse=True)  # most lines first
    cached = report("--format", "none", output="cached")  # the download cache keeps them too
    assert "0 downloaded, 2 from cache" in cached.out
    assert lines_by_label([cached.data_file]) == merged


def test_the_combiners_shards_and_reduce_keep_every_label(
    envs, s3, bucket, tmp_path, monkeypatch, s3_server
):
    from coverage_runtime.report import combiner
    from tests.harness import FAKE_CREDENTIALS

    for name, value in {
        **FAKE_CREDENTIALS,
        "COVERAGE_S3_BUCKET": bucket,
        "COVERAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "LAMBDA_TASK_ROOT": str(SAMPLES),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(combiner, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(combiner, "WORK_DIR", str(tmp_path / "work"))
    upload(s3, bucket, LABELS_BRANCH)
    for item in s3.list_objects_v2(Bucket=bucket, Prefix="coverage/")["Contents"]:
        combiner.lambda_handler({"Items": [item], "BatchInput": {"run_id": "r"}}, None)
    final = combiner.lambda_handler({"action": "reduce", "run_id": "r"}, None)
    merged = tmp_path / "merged.coverage"
    merged.write_bytes(
        s3.get_object(Bucket=bucket, Key="coverage/combined/all/all/latest/merged.coverage")[
            "Body"
        ].read()
    )
    assert lines_by_label([merged]) == lines_by_label(paths(LABELS_BRANCH))
    assert arcs_by_label([merged]) == arcs_by_label(paths(LABELS_BRANCH))
    assert {c["label"] for c in final["labels"]} == ALL_LABELS
    # The handler's answer (a state's output, at most 256 KiB) keeps the labels with most
    # lines; summary.json in S3 keeps them all.
    monkeypatch.setattr(combiner, "RETURNED_LABELS", 3)
    again = combiner.lambda_handler({"action": "reduce", "run_id": "r"}, None)
    assert again["labels"] == final["labels"][:3] and again["labels_left_out"] == 4
    summary = s3.get_object(Bucket=bucket, Key="coverage/combined/all/all/latest/summary.json")
    assert json.loads(summary["Body"].read())["labels"] == final["labels"]


# -- --context ------------------------------------------------------------------------


@pytest.mark.parametrize("measure", ["line", "branch"])
@pytest.mark.parametrize(
    ("patterns", "chosen"),
    [
        (["tests/test_api.py::*"], {CREATE_A, CREATE_B, LIST}),
        ([CREATE_A], {CREATE_A}),  # [a] taken as written, not as a character class
        ([""], {""}),
        (["init", TOTAL], {"init", TOTAL}),
        (["?*"], ALL_LABELS - {""}),
        (["odd <b>*"], {ODD}),
    ],
)
def test_context_reports_exactly_what_the_matching_labels_ran(
    envs, s3, bucket, report, measure, patterns, chosen
):
    upload(s3, bucket, envs[measure])
    args = [a for p in patterns for a in ("--context", p)]
    run = report(*args, "--format", "json,xml,lcov")
    assert run.code == 0, run.err
    expected = run.statements(selected_lines(lines_by_label([run.data_file]), chosen))
    assert run.executed() == expected
    # coverage.py's XML and LCOV reporters do not apply `contexts` themselves: ours do.
    xml_hits: dict[str, set[int]] = {}
    tree = ET.parse(run.output / "coverage.xml")
    (source,) = [s.text or "" for s in tree.iter("source")]
    for cls in tree.iter("class"):
        hit = {int(n.get("number", 0)) for n in cls.iter("line") if n.get("hits") != "0"}
        if hit:
            xml_hits[os.path.join(source, cls.get("filename", ""))] = hit
    assert xml_hits == expected
    lcov_hits: dict[str, set[int]] = {}
    current = ""
    for line in (run.output / "coverage.lcov").read_text().splitlines():
        if line.startswith("SF:"):
            current = os.path.abspath(line[3:])
        elif line.startswith("DA:") and not line.endswith(",0"):
            lcov_hits.setdefault(current, set()).add(int(line[3:].split(",")[0]))
    assert lcov_hits == expected
    summary = run.json("summary.json")
    assert summary["label_patterns"] == patterns
    assert {c["label"] for c in summary["labels"] if c["selected"]} == chosen
    assert {c["label"] for c in summary["labels"]} == ALL_LABELS  # all listed, some selected
    assert summary["lines"]["covered"] == sum(len(v) for v in expected.values())
    if measure == "branch":
        by_label = arcs_by_label([run.data_file])
        arcs = {a for label in chosen for v in by_label.get(label, {}).values() for a in v}
        executed = {
            tuple(arc)
            for f in run.json("coverage.json")["files"].values()
            for arc in f["executed_branches"]
        }
        assert executed and executed <= arcs


def test_context_that_matches_no_label_is_an_error_naming_the_labels(envs, s3, bucket, report):
    upload(s3, bucket, LABELS)
    run = report("--context", "tests/test_apu.py::*")
    assert run.code == 1
    assert "no label matches --context 'tests/test_apu.py::*'" in run.err
    assert "tests/test_api.py::test_list" in run.err and '""' in run.err
    assert "<b>" not in run.err.replace(ODD, "")  # shown escaped or as given, never more
    some = report("--context", "init", "--context", "nope", "--format", "json")
    assert some.code == 0, some.err
    assert "--context 'nope' matches no label of the data" in some.err
    assert some.executed() == some.statements(
        selected_lines(lines_by_label([some.data_file]), {"init"})
    )


def test_fail_under_gates_the_selected_labels(envs, s3, bucket, report):
    upload(s3, bucket, LABELS)
    everything = report("--format", "json", "--fail-under", "60", output="all")
    assert everything.code == 0, everything.err
    init_only = report("--context", "init", "--format", "json", "--fail-under", "60")
    assert init_only.code == 2  # the imports alone do not reach 60%
    assert "is below --fail-under 60" in init_only.err


# -- --contexts and the HTML report ---------------------------------------------------------


def test_contexts_lists_every_label_with_its_counts(envs, s3, bucket, report):
    upload(s3, bucket, LABELS_BRANCH)
    run = report("--contexts", "--format", "none", "--quiet")
    assert run.code == 0, run.err
    table = run.out.split("\n\n")[0].splitlines()
    assert table[0].split() == ["label", "files", "lines", "arcs"]
    merged = counted(lines_by_label([run.data_file]))
    arcs = arcs_by_label([run.data_file])
    got = {}
    for row in table[1:]:
        label, files, lines, arcs_count = row.rsplit(None, 3)
        got[label.strip()] = (int(files), int(lines), int(arcs_count))
    expected = {
        shown(label): (*merged[label], sum(len(a) for a in arcs[label].values()))
        for label in ALL_LABELS
    }
    assert got == expected
    filtered = report("--contexts", "--context", "init", "--format", "none", output="f")
    assert "selected" in filtered.out and "init " in filtered.out


def test_contexts_says_so_when_the_data_has_no_labels(s3, bucket, report, tmp_path):
    plain = [Env("plain", [[None, "shapes", "area", ["square", 1]]], function="plain-fn")]
    run_all(plain, tmp_path / "plain")
    upload(s3, bucket, plain)
    run = report("--contexts", "--format", "html")
    assert run.code == 0, run.err
    assert "labels: the data carries none" in run.out
    page = next((run.output / "html").glob("*shapes_py.html")).read_text()
    assert "contexts = " not in page  # one context: nothing to show per line


def _context_page(output: Path) -> str:
    return next((output / "html").glob("*shapes_py.html")).read_text()


def test_html_shows_labels_per_line_by_default_and_can_be_told_not_to(envs, s3, bucket, report):
    upload(s3, bucket, LABELS)
    default = report("--format", "html,json")
    assert default.code == 0, default.err
    assert 'class="ctx"' in _context_page(default.output)
    assert "contexts" not in next(iter(default.json("coverage.json")["files"].values()))
    hidden = report("--format", "html,json", "--no-show-contexts", output="hidden")
    assert 'class="ctx"' not in _context_page(hidden.output)
    both = report("--format", "html,json", "--show-contexts", output="both")
    files = both.json("coverage.json")["files"]
    shapes = next(v for k, v in files.items() if k.endswith("shapes.py"))
    assert set(shapes["contexts"]["13"]) == {"", LIST, CREATE_B, ODD}


# Opens every line's label list, as a click on its "N ctx" marker does.
_OPEN_EVERY_LABEL_LIST = """<script>
document.addEventListener("DOMContentLoaded", () => setTimeout(() => {
  document.querySelectorAll("input[id^=ctxs]").forEach(box => box.click());
  document.body.setAttribute("data-opened", "yes");
}, 0));
</script>"""


def _labels_in_browser(chromium: str, page: Path, profile: Path) -> dict[int, set[str]]:
    """Per line number, the labels Chromium shows once the line's list is opened."""
    opened = page.with_name("opened-" + page.name)
    opened.write_text(page.read_text().replace("</body>", _OPEN_EVERY_LABEL_LIST + "</body>"))
    dom = headless_dom(chromium, opened, profile)
    assert 'data-opened="yes"' in dom
    import html as html_module

    found: dict[int, set[str]] = {}
    for line in re.findall(r"<p class=[^>]*>(.*?)</p>", dom, re.DOTALL):
        number = re.search(r'<a id="t(\d+)"', line)
        labels = re.search(r'<span class="ctxs expanded">(.*?)</span>', line, re.DOTALL)
        if number and labels:
            found[int(number[1])] = {html_module.unescape(x) for x in labels[1].split("<br>") if x}
    return found


@pytest.mark.browser
def test_the_html_report_shows_each_lines_labels_in_chromium(envs, s3, bucket, report, chromium):
    upload(s3, bucket, LABELS_BRANCH)
    run = report("--format", "html,json")
    assert run.code == 0, run.err
    page = next((run.output / "html").glob("*shapes_py.html"))
    listed = _labels_in_browser(chromium, page, run.output / "chromium-profile")
    by_label = lines_by_label([run.data_file])
    shapes = str(SAMPLES / "sampleapp" / "shapes.py")
    expected: dict[int, set[str]] = {}
    for label, files in by_label.items():
        for line in files.get(shapes, ()):
            expected.setdefault(line, set()).add(label or "(empty)")
    # coverage.py lists the labels of statements, when they are more than the empty one.
    (statements,) = run.statements({shapes: set(expected)}).values()
    assert listed == {
        n: labels for n, labels in expected.items() if n in statements and labels != {"(empty)"}
    }
    assert ODD in listed[13]  # the odd label is text on the page, not markup
    dom_free = page.read_text()
    assert "<b>label</b>" not in dom_free

    selected = report("--format", "html", "--context", "tests/*", output="selected")
    page = next((selected.output / "html").glob("*shapes_py.html"))
    only = _labels_in_browser(chromium, page, selected.output / "chromium-profile")
    tests = {label for label in by_label if label.startswith("tests/")}
    assert set().union(*only.values()) <= tests and only
    for line, labels in only.items():
        assert labels == expected[line] & tests


# -- insights on labelled data ----------------------------------------------------------


@pytest.mark.parametrize("branch", [False, True])
def test_unused_tells_init_only_code_with_several_labels_per_line(
    s3, bucket, s3_server, tmp_path, branch
):
    """classify ran under init and under other labels (active); total ran under init
    only, in an environment where other code served invocations (init_only); the module
    bodies ran under init, as imports do, and are judged on their environments."""
    envs = [
        Env(
            "insight-a",
            [
                ["init", "shapes", "classify", [1]],
                [CREATE_A, "shapes", "area", ["square", 2]],
                ["", "shapes", "classify", [2]],
                [LIST, "shapes", "classify", [-1]],
            ],
            branch=branch,
            init_label="init",
            function="insight-fn",
            metadata={"invocations": "3"},
        ),
        Env(
            "insight-b",
            [["init", "orders", "total", [[1]]], [LIST, "shapes", "classify", [1]]],
            branch=branch,
            init_label="init",
            function="insight-fn",
            metadata={"invocations": "1"},
        ),
    ]
    run_all(envs, tmp_path / "envs")
    upload(s3, bucket, envs)
    by_label = lines_by_label(paths(envs))
    shapes = str(SAMPLES / "sampleapp" / "shapes.py")
    assert by_label["init"][shapes] & by_label[LIST][shapes] & by_label[""][shapes]  # shared
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["unused", "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
         "--cache-dir", str(tmp_path / "cache"), "--source-root", str(SAMPLES),
         "--no-progress", "--all", "--no-static", "--format", "json",
         "-o", str(tmp_path / "out")],
        out=out, err=err,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    units = json.loads((tmp_path / "out" / "unused.json").read_text())["units"]
    got = {f"{u['path'].split('/')[-1]}:{u['qualname']}": u["verdict"] for u in units}
    assert got == {
        "shapes.py:<module>": "active",  # module bodies run at import: never init_only
        "shapes.py:area": "active",
        "shapes.py:classify": "active",
        "orders.py:<module>": "active",
        "orders.py:total": "init_only",
    }


# -- labels the shim recorded, through the RIE ----------------------------------------------


def _invoke_with_label(port: int, event: dict[str, Any], label: str | None) -> Any:
    """An invoke as boto3's ``invoke(ClientContext=...)`` sends it: base64 JSON in
    X-Amz-Client-Context, which the RIE hands to the runtime."""
    import base64
    import urllib.request

    from tests.harness import INVOKE_PATH

    headers = {"Content-Type": "application/json"}
    if label is not None:
        custom = json.dumps({"custom": {"coverage-label": label}}).encode()
        headers["X-Amz-Client-Context"] = base64.b64encode(custom).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{INVOKE_PATH}",
        data=json.dumps(event).encode(),
        headers=headers,
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_reports_by_label_of_what_the_shim_recorded_through_the_rie(
    start_function, s3, bucket, s3_server, tmp_path
):
    """Labels from ClientContext through the RIE: init, none, two tests; the last
    invocation flushes, so the data is in S3 whatever the shutdown window allows."""
    from tests.conftest import FUNCTIONS_DIR
    from tests.harness import line_of

    source = FUNCTIONS_DIR / "uses_api.py"
    test_a, test_b = "tests/test_x.py::test_a[1-2]", "tests/test_x.py::test_b"
    function = start_function("uses_api.handler")
    for event, label in [({"n": 3}, test_a), ({"n": 0}, test_b), ({"n": 2}, None)]:
        assert "sum" in _invoke_with_label(function.port, event, label)
    assert _invoke_with_label(function.port, {"action": "flush"}, "flush")["flushed"]
    function.terminate()

    def report(*args: str, output: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        argv = ["report", "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
                "-o", str(tmp_path / output), "--cache-dir", str(tmp_path / "cache"),
                "--task-root", str(FUNCTIONS_DIR), "--source-root", str(FUNCTIONS_DIR),
                "--no-progress", "--format", "json", "--include", str(source), *args]  # fmt: skip
        code = main(argv, out=out, err=err)
        return Run(code, out.getvalue(), err.getvalue(), tmp_path / output)

    everything = report(output="all")
    assert everything.code == 0, everything.err
    by_label = {k: v[str(source)] for k, v in lines_by_label([everything.data_file]).items()}
    assert {"init", "", test_a, test_b} <= set(by_label) <= {"init", "", test_a, test_b, "flush"}
    loop_body = line_of(source, "total += i")
    assert {line_of(source, "marker: sum"), loop_body} <= by_label[test_a]
    assert by_label[test_b] == by_label[test_a] - {loop_body}  # range(0): no loop body
    assert by_label[""] == by_label[test_a]
    assert line_of(source, "def helper") in by_label["init"]
    labels = {c["label"]: c["lines"] for c in everything.json("summary.json")["labels"]}
    assert labels == {k: len(v) for k, v in by_label.items()}

    for patterns, chosen in [([test_a], {test_a}), (["tests/*"], {test_a, test_b}), ([""], {""})]:
        args = [a for p in patterns for a in ("--context", p)]
        one = report(*args, output="one")
        assert one.code == 0, one.err
        expected = one.statements({str(source): set().union(*(by_label[c] for c in chosen))})
        assert one.executed() == expected


def test_report_contexts_of_the_rcfile_narrow_every_format_unless_context_is_given(
    envs, s3, bucket, report, tmp_path
):
    upload(s3, bucket, LABELS)
    rcfile = tmp_path / "labels.rc"
    rcfile.write_text("[report]\ncontexts = ^init$\n")
    run = report("--rcfile", str(rcfile), "--format", "json,lcov")
    assert run.code == 0, run.err
    init = run.statements(selected_lines(lines_by_label([run.data_file]), {"init"}))
    assert run.executed() == init
    lcov = (run.output / "coverage.lcov").read_text()
    assert sum(int(n) for n in re.findall(r"^LH:(\d+)$", lcov, re.M)) == sum(
        map(len, init.values())
    )
    given = report("--rcfile", str(rcfile), "--context", LIST, "--format", "json", output="given")
    assert given.executed() == given.statements(
        selected_lines(lines_by_label([given.data_file]), {LIST})
    )
