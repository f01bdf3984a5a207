"""``lambda-coverage unused`` and ``diff`` with ``--context``: the verdicts and the changed
lines judged on the selected labels' runs only, against moto's S3 server over HTTP.

The environments really run tests/report_samples under coverage.py with dynamic
contexts (as the shim records labels: ``init`` for the imports, ``""`` for an
invocation with no label, pytest node ids), one with no label at all.  The expected
figures are written out by hand below, and checked again against an oracle that reads
each environment's data file through coverage.py (``contexts_by_lineno``), not through
the evidence.
"""

from __future__ import annotations

import gzip
import html
import io
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from coverage_runtime.report.cli import main
from tests.report_samples.envs import SAMPLES, Env, lines_by_label, run_all, upload
from tests.test_insights import Run, verdicts

T_CIRCLE = "tests/test_shapes.py::test_circle"
T_TOTAL = "tests/test_orders.py::test_total[neg]"  # [param]: a pattern takes it as written
T_ZERO = "tests/test_shapes.py::test_zero"
UNKNOWN_REVISION = "0123456789abcdef0123456789abcdef01234567"
TESTS = {T_CIRCLE, T_TOTAL, T_ZERO}


def _envs(branch: bool) -> list[Env]:
    """Five environments of one function (the checkout's code: no revision recorded)."""
    name = "ins-branch" if branch else "ins-line"

    def env(
        suffix: str,
        calls: list[list[Any]],
        invocations: int,
        init: bool = True,
        revision: str | None = None,
    ) -> Env:
        metadata = {"invocations": str(invocations)}
        if revision:
            metadata["code-revision"] = revision
        return Env(
            f"{name}-{suffix}",
            calls,
            branch=branch,
            init_label="init" if init else None,
            function=f"{name}-fn",
            metadata=metadata,
        )

    return [
        env(
            "a",  # classify at cold start; area for production and for a test
            [
                ["init", "shapes", "classify", [-1]],
                ["", "shapes", "area", ["square", 2]],
                [T_CIRCLE, "shapes", "area", ["circle", 1]],
            ],
            4,
        ),
        env("b", [["", "shapes", "area", ["square", 1]], ["", "orders", "total", [[1]]]], 2),
        env(
            "c",  # integration tests only
            [[T_TOTAL, "orders", "total", [[-1, 2]]], [T_ZERO, "shapes", "classify", [0]]],
            3,
        ),
        env("d", [["init", "shapes", "classify", [5]]], 1),  # only its init ran code
        env("e", [[None, "shapes", "area", ["square", 4]]], 6, init=False),  # no labels at all
        env(  # a revision this checkout does not know: counted, left out
            "f",
            [[T_CIRCLE, "shapes", "area", ["circle", 3]]],
            5,
            revision=UNKNOWN_REVISION,
        ),
    ]


ENVS = {"line": _envs(False), "branch": _envs(True)}
INVOCATIONS = {"a": 4, "b": 2, "c": 3, "d": 1, "e": 6}  # f's 5 are left out

# The units of tests/report_samples/sampleapp and their statements (the docstring of
# __init__.py is none: that module has no unit).
UNITS = {
    "sampleapp/shapes.py:<module>": {1, 4, 12},
    "sampleapp/shapes.py:area": {5, 6, 7, 8, 9},
    "sampleapp/shapes.py:classify": {13, 14, 15, 16, 17},
    "sampleapp/orders.py:<module>": {1, 4},
    "sampleapp/orders.py:total": {5, 6, 7, 8, 9, 10},
}

# (verdict, environments that ran it, observed environments) per unit, by hand:
# a-e above, and which labels ran which lines of each unit.
EXPECTED = {
    (): {  # no --context: every environment, every label
        "sampleapp/shapes.py:<module>": ("active", 5, 5),
        "sampleapp/shapes.py:area": ("active", 3, 5),
        "sampleapp/shapes.py:classify": ("active", 3, 5),  # c's test ran it after init
        "sampleapp/orders.py:<module>": ("active", 2, 5),
        "sampleapp/orders.py:total": ("active", 2, 5),
    },
    ("",): {  # production traffic: a, b (their "" invocations) and e (no labels at all)
        "sampleapp/shapes.py:<module>": ("active", 1, 3),  # a and b imported it under init
        "sampleapp/shapes.py:area": ("active", 3, 3),
        "sampleapp/shapes.py:classify": ("never_run", 0, 3),  # init and a test ran it
        "sampleapp/orders.py:<module>": ("never_run", 0, 3),
        "sampleapp/orders.py:total": ("active", 1, 3),
    },
    ("tests/*",): {  # the integration tests: a and c
        "sampleapp/shapes.py:<module>": ("never_run", 0, 2),
        "sampleapp/shapes.py:area": ("active", 1, 2),
        "sampleapp/shapes.py:classify": ("active", 1, 2),
        "sampleapp/orders.py:<module>": ("never_run", 0, 2),
        "sampleapp/orders.py:total": ("active", 1, 2),
    },
    ("init",): {  # the cold starts: a, b, c, d (e labelled nothing)
        "sampleapp/shapes.py:<module>": ("active", 4, 4),
        "sampleapp/shapes.py:area": ("never_run", 0, 4),
        "sampleapp/shapes.py:classify": ("init_only", 2, 4),  # what the init runs
        "sampleapp/orders.py:<module>": ("active", 2, 4),
        "sampleapp/orders.py:total": ("never_run", 0, 4),
    },
    ("", "init"): {  # production with its cold starts: a test's run of classify is not
        "sampleapp/shapes.py:<module>": ("active", 5, 5),
        "sampleapp/shapes.py:area": ("active", 3, 5),
        "sampleapp/shapes.py:classify": ("init_only", 2, 5),
        "sampleapp/orders.py:<module>": ("active", 2, 5),
        "sampleapp/orders.py:total": ("active", 1, 5),
    },
}
CHOSEN = {
    (): None,
    ("",): {""},
    ("tests/*",): TESTS,
    ("init",): {"init"},
    ("", "init"): {"", "init"},
}
OBSERVED = {  # the environments each selection observes; f when it is left out
    (): ("abcde", True),
    ("",): ("abe", False),  # f served no unlabelled invocation
    ("tests/*",): ("ac", True),
    ("init",): ("abcd", True),
    ("", "init"): ("abcde", True),
}


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Env]]:
    run_all(ENVS["line"] + ENVS["branch"], tmp_path_factory.mktemp("label-insights"))
    return ENVS


@pytest.fixture(autouse=True)
def aws_env(report_credentials: None) -> None:
    """Every test runs the CLI in process (tests/conftest.py)."""


@pytest.fixture
def cli(s3_server: Any, bucket: str, tmp_path: Path):
    def run(command: str, *args: str, output: str = "out", s3: bool = True) -> Run:
        out, err = io.StringIO(), io.StringIO()
        where = ["--bucket", bucket, "--endpoint-url", s3_server.endpoint_url] if s3 else []
        argv = [command, *where, "-o", str(tmp_path / output), "--cache-dir",
                str(tmp_path / "cache"), "--source-root", str(SAMPLES), "--no-progress",
                *args]  # fmt: skip
        code = main(argv, out=out, err=err)
        return Run(code, out.getvalue(), err.getvalue(), tmp_path / output)

    return run


def contexts(patterns: tuple[str, ...]) -> list[str]:
    return [a for p in patterns for a in ("--context", p)]


def oracle(envs: list[Env], chosen: set[str] | None) -> dict[str, tuple[int, int, int]]:
    """(environments that ran it, their invocations, observed environments) per unit, from
    each environment's own data file read by coverage.py: an environment is observed when
    a chosen label ran a line in it, and ran a unit when a chosen label ran one of its."""
    found = {unit: [0, 0, 0] for unit in UNITS}
    for env in envs:
        assert env.path is not None
        if env.metadata.get("code-revision") == UNKNOWN_REVISION:
            continue  # left out: its lines are not the checkout's
        by_label = lines_by_label([env.path])
        ran: dict[str, set[int]] = {}
        for label, files in by_label.items():
            if chosen is None or label in chosen:
                for path, lines in files.items():
                    relative = str(Path(path).relative_to(SAMPLES))
                    ran.setdefault(relative, set()).update(lines)
        if not any(ran.values()):
            continue
        for unit, statements in UNITS.items():
            path = unit.split(":")[0]
            found[unit][2] += 1
            if ran.get(path, set()) & statements:
                found[unit][0] += 1
                found[unit][1] += int(env.metadata["invocations"])
    return {unit: (counts[0], counts[1], counts[2]) for unit, counts in found.items()}


# -- unused -------------------------------------------------------------------------------


@pytest.mark.parametrize("measure", ["line", "branch"])
@pytest.mark.parametrize("patterns", list(EXPECTED))
def test_unused_judges_only_what_the_selected_labels_ran(envs, s3, bucket, cli, measure, patterns):
    chosen = envs[measure]
    upload(s3, bucket, chosen)
    run = cli("unused", "--all", "--no-static", *contexts(patterns))
    assert run.code == 0, run.err
    assert verdicts(run) == EXPECTED[patterns]
    document = run.json("unused.json")
    got = {
        f"{u['path']}:{u['qualname']}": (
            u["environments"],
            u["invocations"],
            u["observed_environments"],
        )
        for u in document["units"]
    }
    assert got == oracle(chosen, CHOSEN[patterns])
    observed, left_out = OBSERVED[patterns]
    assert document["observed"]["environments"] == len(observed)
    assert document["observed"]["invocations"] == sum(INVOCATIONS[e] for e in observed)
    assert document["observed"]["environments_left_out"] == int(left_out)
    assert document["observed"]["unknown_revision_ids"] == [UNKNOWN_REVISION] * left_out
    assert document["observed"]["environments_without_revision"] == len(observed)
    if not patterns:
        assert document["labels"] is None
        assert "labels:" not in run.out
        return
    labels = CHOSEN[patterns]
    assert labels is not None
    assert document["labels"]["patterns"] == list(patterns)
    assert document["labels"]["selected"] == sorted(labels)
    assert "invocations per label" in document["labels"]["meaning"]
    said = f"labels: only the runs of --context {shlex.join(patterns)}"
    assert said in run.out
    markdown = (run.output / "unused.md").read_text()
    assert said.replace("*", "\\*") in markdown  # labels are text: no Markdown in them
    if patterns == ("tests/*",):
        assert "tests/test\\_orders.py::test\\_total\\[neg\\]" in markdown
    assert html.escape(said) in (run.output / "unused.html").read_text()
    assert "labels " in (run.output / "unused.html").read_text().split("</title>")[0]


def test_unused_context_from_the_data_of_an_earlier_run(envs, s3, bucket, cli):
    """--data reads the evidence file: the labels are in it (version 2), also when worker
    processes merged it."""
    upload(s3, bucket, envs["line"])
    first = cli("unused", "--all", "--no-static", "--format", "json", "--jobs", "2")  # workers
    assert first.code == 0, first.err
    again = cli("unused", "--all", "--no-static", "--data", str(first.output),
                "--context", "tests/*", output="again", s3=False)  # fmt: skip
    assert again.code == 0, again.err
    assert verdicts(again) == EXPECTED[("tests/*",)]
    # An evidence file of the first format kept no labels: --context says to rebuild it.
    evidence = first.output / "evidence.json.gz"
    with gzip.open(evidence, "rt") as handle:
        document = json.load(handle)
    document["version"] = 1
    document.pop("label_sets")
    for rows in document["files"].values():
        for row in rows:
            del row[6:]
    with gzip.open(evidence, "wt") as handle:
        json.dump(document, handle)
    old = cli("unused", "--no-static", "--data", str(first.output), "--context", "tests/*",
              output="old", s3=False)  # fmt: skip
    assert old.code == 1
    assert "--context needs an evidence file with labels" in old.err
    plain = cli("unused", "--all", "--no-static", "--data", str(first.output), output="plain",
                s3=False)  # fmt: skip
    assert plain.code == 0, plain.err
    assert verdicts(plain) == EXPECTED[()]  # without --context a first-format file serves


def test_unused_context_that_matches_no_label_is_the_reports_error(envs, s3, bucket, cli):
    upload(s3, bucket, envs["line"])
    run = cli("unused", "--no-static", "--context", "tests/test_shapez.py::*")
    assert run.code == 1
    assert "no label matches --context 'tests/test_shapez.py::*'" in run.err
    assert T_TOTAL in run.err and '""' in run.err and "init" in run.err
    some = cli("unused", "--all", "--no-static", "--context", "init", "--context", "nope",
               output="some")  # fmt: skip
    assert some.code == 0, some.err
    assert "warning: --context 'nope' matches no label of the data" in some.err
    assert verdicts(some) == EXPECTED[("init",)]
    exact = cli("unused", "--all", "--no-static", "--context", T_TOTAL, output="exact")
    assert exact.code == 0, exact.err
    assert exact.json("unused.json")["labels"]["selected"] == [T_TOTAL]
    assert verdicts(exact)["sampleapp/orders.py:total"] == ("active", 1, 1)


# -- diff ---------------------------------------------------------------------------------

# A change to the statements marked square (6), circle (8), negative (14), zero (16) of
# shapes.py and skip-negative (8), add (9) of orders.py, as a unified diff of the checkout.
CHANGE = """\
--- a/tests/report_samples/sampleapp/shapes.py
+++ b/tests/report_samples/sampleapp/shapes.py
@@ -6 +6 @@
-        return size*size
+        return size * size  # marker: square
@@ -8 +8 @@
-        return 3*size*size
+        return 3 * size * size  # marker: circle
@@ -14 +14 @@
-        return 'negative'
+        return "negative"  # marker: negative
@@ -16 +16 @@
-        return 'zero'
+        return "zero"  # marker: zero
--- a/tests/report_samples/sampleapp/orders.py
+++ b/tests/report_samples/sampleapp/orders.py
@@ -8,2 +8,2 @@
-            continue
-        result = result + item
+            continue  # marker: skip-negative
+        result += item  # marker: add
"""

# (path, line) -> (status, environments that ran it, observed environments, invocations)
DIFF_EXPECTED = {
    (): {
        ("sampleapp/shapes.py", 6): ("ran", 3, 5, 12),  # a, b, e
        ("sampleapp/shapes.py", 8): ("ran", 1, 5, 4),
        ("sampleapp/shapes.py", 14): ("ran", 1, 5, 4),  # a's init
        ("sampleapp/shapes.py", 16): ("ran", 1, 5, 3),
        ("sampleapp/orders.py", 8): ("ran", 1, 5, 3),
        ("sampleapp/orders.py", 9): ("ran", 2, 5, 5),
    },
    ("tests/*",): {  # which changed lines did no integration test run?
        ("sampleapp/shapes.py", 6): ("never_ran", 0, 2, 0),
        ("sampleapp/shapes.py", 8): ("ran", 1, 2, 4),
        ("sampleapp/shapes.py", 14): ("never_ran", 0, 2, 0),  # only a's init ran it
        ("sampleapp/shapes.py", 16): ("ran", 1, 2, 3),
        ("sampleapp/orders.py", 8): ("ran", 1, 2, 3),
        ("sampleapp/orders.py", 9): ("ran", 1, 2, 3),
    },
    ("",): {
        ("sampleapp/shapes.py", 6): ("ran", 3, 3, 12),
        ("sampleapp/shapes.py", 8): ("never_ran", 0, 3, 0),
        ("sampleapp/shapes.py", 14): ("never_ran", 0, 3, 0),
        ("sampleapp/shapes.py", 16): ("never_ran", 0, 3, 0),
        ("sampleapp/orders.py", 8): ("never_ran", 0, 3, 0),
        ("sampleapp/orders.py", 9): ("ran", 1, 3, 2),
    },
}


@pytest.mark.parametrize("measure", ["line", "branch"])
@pytest.mark.parametrize("patterns", list(DIFF_EXPECTED))
def test_diff_classifies_the_changed_lines_on_the_selected_labels(
    envs, s3, bucket, cli, tmp_path, measure, patterns
):
    upload(s3, bucket, envs[measure])
    change = tmp_path / "change.diff"
    change.write_text(CHANGE)
    run = cli("diff", "--diff-file", str(change), *contexts(patterns))
    assert run.code == 0, run.err
    document = run.json("diff.json")
    got = {
        (line["path"], line["line"]): (
            line["status"],
            line["environments"],
            line["observed_environments"],
            line["invocations"],
        )
        for line in document["changed_lines"]
    }
    assert got == DIFF_EXPECTED[patterns]
    ran = [k for k, v in got.items() if v[0] == "ran"]
    assert document["ran_percent"] == round(100 * len(ran) / len(got), 2)
    markdown = (run.output / "diff.md").read_text()
    if patterns:
        chosen = CHOSEN[patterns]
        assert chosen is not None
        assert document["labels"]["selected"] == sorted(chosen)
        said = f"labels: only the runs of --context {shlex.join(patterns)}"
        assert said in run.out and said.replace("*", "\\*") in markdown
        assert markdown.splitlines()[0].endswith(f", labels {shlex.join(patterns)}")
    else:
        assert document["labels"] is None and "labels:" not in markdown


def test_diff_fail_under_gates_the_selected_labels(envs, s3, bucket, cli, tmp_path):
    upload(s3, bucket, envs["line"])
    change = tmp_path / "change.diff"
    change.write_text(CHANGE)
    everything = cli("diff", "--diff-file", str(change), "--fail-under", "60", output="all")
    assert everything.code == 0, everything.err
    tests = cli("diff", "--diff-file", str(change), "--fail-under", "70", "--context", "tests/*")
    assert tests.code == 2  # 4 of 6 changed lines ran under a test: 66.7%
    assert "66.7% of the changed lines" in tests.err
    none = cli("diff", "--diff-file", str(change), "--context", "nope", output="none")
    assert none.code == 1 and "no label matches --context 'nope'" in none.err


def test_data_without_labels_is_all_the_empty_label(envs, s3, bucket, cli):
    """Environments that recorded no label (labels off): ``--context ''`` is all of it."""
    unlabelled = [e for e in envs["line"] if e.init_label is None]
    assert [e.name for e in unlabelled] == ["ins-line-e"]
    upload(s3, bucket, unlabelled)
    plain = cli("unused", "--all", "--no-static", output="plain")
    empty = cli("unused", "--all", "--no-static", "--context", "", output="empty")
    assert plain.code == 0 and empty.code == 0, plain.err + empty.err
    assert verdicts(empty) == verdicts(plain)
    assert verdicts(empty)["sampleapp/shapes.py:area"] == ("active", 1, 1)
    assert empty.json("unused.json")["labels"]["selected"] == [""]
    init = cli("unused", "--no-static", "--context", "init", output="init")
    assert init.code == 1
    assert "no label matches --context 'init'; the data holds 1 label(s): \"\"" in init.err
