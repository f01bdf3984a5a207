"""The one reading of the environment (`coverage_runtime.env`), shared by the shim, the
report tooling and the example function."""

from __future__ import annotations

import pytest

from coverage_runtime import env
from coverage_runtime.env import EnvReader, coverage_enabled, parse_bool, parse_list

# -- coverage_enabled: the master switch alone ---------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, True),
        ({"COVERAGE_ENABLED": "true"}, True),
        ({"COVERAGE_ENABLED": ""}, True),
        ({"COVERAGE_ENABLED": "garbage"}, True),  # full validation reports it
        ({"COVERAGE_ENABLED": "false"}, False),
        ({"COVERAGE_ENABLED": " OFF "}, False),
        ({"COVERAGE_ENABLED": "0"}, False),
        ({"COVERAGE_ENABLED": "no"}, False),
    ],
)
def test_coverage_enabled(environ, expected):
    assert coverage_enabled(environ) is expected


def test_coverage_enabled_ignores_other_bad_values():
    assert coverage_enabled({"COVERAGE_ENABLED": "false", "COVERAGE_MODE": "sometimes"}) is False


def test_coverage_enabled_reads_os_environ(monkeypatch):
    monkeypatch.setenv("COVERAGE_ENABLED", "false")
    assert coverage_enabled() is False
    monkeypatch.delenv("COVERAGE_ENABLED")
    assert coverage_enabled() is True


# -- the parsers -----------------------------------------------------------------------------


@pytest.mark.parametrize("word", [*env.TRUE_WORDS, "TRUE", " Yes ", "On"])
def test_true_words(word):
    assert parse_bool(word) is True


@pytest.mark.parametrize("word", [*env.FALSE_WORDS, "FALSE", " No ", "Off"])
def test_false_words(word):
    assert parse_bool(word) is False


@pytest.mark.parametrize("word", ["", "2", "enabled", "t", "nope"])
def test_other_words_are_neither(word):
    assert parse_bool(word) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ()),
        ("", ()),
        (" , ,", ()),
        ("a", ("a",)),
        (" a , b,,c ", ("a", "b", "c")),
        ("b,a,b", ("b", "a")),  # repeats dropped, order kept
        (["a,b", " c "], ("a", "b", "c")),  # repeated options, each a list
        (("x",), ("x",)),
    ],
)
def test_parse_list(value, expected):
    assert parse_list(value) == expected


def test_region_prefers_aws_region():
    assert env.region({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"}) == "eu-west-1"
    assert env.region({"AWS_REGION": " ", "AWS_DEFAULT_REGION": "us-west-2"}) == "us-west-2"
    assert env.region({}) is None


# -- the reader ------------------------------------------------------------------------------


def test_the_reader_collects_every_refused_value_and_keeps_defaults():
    read = EnvReader(
        {
            "A": "maybe",
            "B": "12x",
            "C": "7",
            "D": "nan",
            "E": "ftp://host/",
            "F": "http://user:secret@host:99999/",
            "G": " x , y ",
            "H": "  ",
        }
    )
    assert read.boolean("A", True) is True
    assert read.integer("B", 3, 0, None) == 3
    assert read.integer("C", 3, 0, 5) == 3
    assert read.number("D", 1.5, 0.0, 10.0, "a number from 0 to 10") == 1.5
    assert read.url("E", ("http", "https"), "an http(s) URL") is None
    assert read.url("F", ("http", "https"), "an http(s) URL") is None
    assert read.list("G") == ("x", "y")
    assert read.raw("H") is None
    assert read.boolean("H", False) is False, "blank is unset, not refused"
    assert [p.variable for p in read.problems] == ["A", "B", "C", "D", "E", "F"]
    assert read.problems[1].allowed == "an integer >= 0"
    assert read.problems[2].allowed == "an integer from 0 to 5"
    assert "secret" not in read.problems[5].value, "a refused URL is shown without credentials"


def test_the_reader_accepts_good_values():
    read = EnvReader({"A": "ON", "B": "4", "C": "0.25", "D": "https://h:8443/x", "E": "Full"})
    assert read.boolean("A", False) is True
    assert read.integer("B", 0, 1, 5) == 4
    assert read.number("C", 1.0, 0.05, 30.0, "seconds") == 0.25
    assert read.url("D", ("https",), "an https URL") == "https://h:8443/x"
    assert read.choice("E", "selective", ("full", "selective"), fold=True) == "full"
    assert read.problems == []


def test_the_shim_and_the_example_function_read_booleans_alike():
    """One parser: a word the shim takes for a yes/no is one the app takes too."""
    from app.config import load_config
    from coverage_runtime.settings import load_settings

    for word in ("yes", "OFF", "1", "maybe"):
        app = load_config({"ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN": word})
        try:
            shim = load_settings({"LAMBDA_TASK_ROOT": "/var/task", "COVERAGE_BRANCH": word}).branch
        except Exception:
            shim = None
        refused = bool(app.invalid)
        assert (shim is None) == refused, word
        if shim is not None:
            assert app.admin_allow_direct is shim, word
