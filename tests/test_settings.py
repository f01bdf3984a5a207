"""Settings: every variable of `load_settings`, its default, valid forms and bad values."""

from __future__ import annotations

import os
import sys

import pytest

from coverage_runtime.errors import ConfigProblem, ConfigurationError, CoverageError
from coverage_runtime.settings import (
    DEFAULT_DATA_DIR,
    DEFAULT_FLUSH_INTERVAL_SECONDS,
    DEFAULT_PREFIX,
    DEFAULT_SHUTDOWN_BUDGET_MS,
    MAX_SHUTDOWN_BUDGET_MS,
    MIN_SHUTDOWN_BUDGET_MS,
    Settings,
    load_settings,
    sysmon_supports,
)

TASK_ROOT = "/var/task"
BASE = {"LAMBDA_TASK_ROOT": TASK_ROOT}

# What coverage.py's core should be by default on the Python running the tests.
SYSMON_LINES_HERE = sys.version_info >= (3, 12)
SYSMON_BRANCHES_HERE = sys.version_info >= (3, 14)


def load(**variables: str) -> Settings:
    return load_settings({**BASE, **variables})


def problems_of(**variables: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigurationError) as caught:
        load(**variables)
    return caught.value.problems


def only_problem(**variables: str) -> ConfigProblem:
    problems = problems_of(**variables)
    assert len(problems) == 1, problems
    return problems[0]


# -- defaults -------------------------------------------------------------------


def test_defaults_with_only_the_task_root():
    settings = load_settings(BASE)
    assert settings.enabled is True
    assert settings.mode == "full"
    assert settings.selective is False
    assert settings.branch is False
    assert settings.contexts is False
    assert settings.source == (TASK_ROOT,)
    assert settings.include == ()
    assert settings.omit == ()
    assert settings.core_requested is False
    assert settings.core == ("sysmon" if SYSMON_LINES_HERE else None)
    assert settings.flush_interval_seconds == DEFAULT_FLUSH_INTERVAL_SECONDS == 60
    assert settings.shutdown_budget_ms == DEFAULT_SHUTDOWN_BUDGET_MS == 400
    assert settings.bucket is None
    assert settings.uploads_enabled is False
    assert settings.prefix == DEFAULT_PREFIX == "coverage/"
    assert settings.sse == "AES256"
    assert settings.kms_key_id is None
    assert settings.expected_owner is None
    assert settings.endpoint_url is None
    assert settings.region is None
    assert settings.data_dir == DEFAULT_DATA_DIR
    assert settings.code_revision is None


def test_empty_environment_measures_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).source == (str(tmp_path),)


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch):
    for name in list(os.environ):
        if name.startswith("COVERAGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/srv/fn")
    monkeypatch.setenv("COVERAGE_MODE", "selective")
    settings = load_settings()
    assert settings.source == ("/srv/fn",)
    assert settings.mode == "selective"


def test_blank_values_count_as_unset():
    settings = load(
        COVERAGE_ENABLED="  ",
        COVERAGE_MODE="",
        COVERAGE_BRANCH=" ",
        COVERAGE_CORE=" ",
        COVERAGE_FLUSH_INTERVAL_SECONDS="",
        COVERAGE_S3_BUCKET="",
        COVERAGE_S3_SSE="",
    )
    assert settings.enabled is True
    assert settings.mode == "full"
    assert settings.branch is False
    assert settings.core_requested is False
    assert settings.flush_interval_seconds == 60
    assert settings.bucket is None
    assert settings.sse == "AES256"


# -- booleans: COVERAGE_ENABLED, COVERAGE_BRANCH, COVERAGE_CONTEXTS -----------------

BOOLEANS = {
    "COVERAGE_ENABLED": "enabled",
    "COVERAGE_BRANCH": "branch",
    "COVERAGE_CONTEXTS": "contexts",
}


@pytest.mark.parametrize("variable", sorted(BOOLEANS))
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" Yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_boolean_forms(variable, value, expected):
    assert getattr(load(**{variable: value}), BOOLEANS[variable]) is expected


@pytest.mark.parametrize("variable", sorted(BOOLEANS))
@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "t"])
def test_boolean_bad_values(variable, value):
    problem = only_problem(**{variable: value})
    assert problem.variable == variable
    assert problem.value == value
    for word in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        assert word in problem.allowed


# -- COVERAGE_MODE ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mode"),
    [("full", "full"), ("selective", "selective"), ("Selective", "selective"), ("FULL", "full")],
)
def test_mode_forms(value, mode):
    settings = load(COVERAGE_MODE=value)
    assert settings.mode == mode
    assert settings.selective is (mode == "selective")


@pytest.mark.parametrize("value", ["sometimes", "partial", "full,selective"])
def test_mode_bad_values(value):
    problem = only_problem(COVERAGE_MODE=value)
    assert (problem.variable, problem.value) == ("COVERAGE_MODE", value)
    assert "full" in problem.allowed
    assert "selective" in problem.allowed


# -- COVERAGE_SOURCE, include/exclude patterns --------------------------------------


def test_source_is_a_comma_list_of_normalised_absolute_paths():
    settings = load(COVERAGE_SOURCE=" /var/task/app/ , /opt/python/lib/../shared,,")
    assert settings.source == ("/var/task/app", "/opt/python/shared")


def test_source_overrides_the_task_root():
    assert load(COVERAGE_SOURCE="/srv/code").source == ("/srv/code",)


def test_relative_source_paths_are_rejected_each():
    problems = problems_of(COVERAGE_SOURCE="/var/task,app,lib/x")
    assert [(p.variable, p.value) for p in problems] == [
        ("COVERAGE_SOURCE", "app"),
        ("COVERAGE_SOURCE", "lib/x"),
    ]
    assert all("absolute" in p.allowed for p in problems)


def test_include_and_exclude_patterns():
    settings = load(
        COVERAGE_INCLUDE_PATTERNS="*/app/*, */lib/*.py",
        COVERAGE_EXCLUDE_PATTERNS="*/tests/*,,*_pb2.py ",
    )
    assert settings.include == ("*/app/*", "*/lib/*.py")
    assert settings.omit == ("*/tests/*", "*_pb2.py")


# -- COVERAGE_CORE ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "core"),
    [("sysmon", "sysmon"), ("ctrace", "ctrace"), ("pytrace", "pytrace"), ("CTrace", "ctrace")],
)
def test_core_is_passed_through_when_requested(value, core):
    settings = load(COVERAGE_CORE=value)
    assert settings.core == core
    assert settings.core_requested is True


def test_requested_core_is_kept_even_where_sysmon_cannot_do_it():
    # The user asked: coverage.py decides about the fallback and says so.
    settings = load(COVERAGE_CORE="sysmon", COVERAGE_BRANCH="true", COVERAGE_CONTEXTS="1")
    assert settings.core == "sysmon"


@pytest.mark.parametrize("value", ["ctracer", "sys.monitoring", "fast"])
def test_core_bad_values(value):
    problem = only_problem(COVERAGE_CORE=value)
    assert (problem.variable, problem.value) == ("COVERAGE_CORE", value)
    for core in ("sysmon", "ctrace", "pytrace"):
        assert core in problem.allowed


def test_default_core_for_lines_on_this_python():
    settings = load()
    assert settings.core == ("sysmon" if SYSMON_LINES_HERE else None)


def test_default_core_for_branches_on_this_python():
    settings = load(COVERAGE_BRANCH="true")
    assert settings.core == ("sysmon" if SYSMON_BRANCHES_HERE else None)


def test_contexts_keep_the_default_core_and_add_the_kind_label():
    settings = load(COVERAGE_CONTEXTS="true")
    assert settings.core == ("sysmon" if SYSMON_LINES_HERE else None)
    assert settings.labels == ("client-context", "kind")


# -- COVERAGE_LABELS, COVERAGE_MAX_LABELS --------------------------------------------


def test_labels_default_to_the_client_context():
    settings = load()
    assert settings.labels == ("client-context",)
    assert settings.labelled
    assert settings.max_labels == 1000


def test_labels_none_switches_labels_off():
    settings = load(COVERAGE_LABELS="none")
    assert settings.labels == ()
    assert not settings.labelled


def test_labels_sources_in_fixed_order_any_case():
    assert load(COVERAGE_LABELS="KIND, header,client-context").labels == (
        "client-context",
        "header",
        "kind",
    )
    assert load(COVERAGE_LABELS="header").labels == ("header",)


@pytest.mark.parametrize("value", ["headers", "client-context,bogus", "none,kind"])
def test_unknown_label_sources_are_refused(value):
    with pytest.raises(ConfigurationError) as caught:
        load(COVERAGE_LABELS=value)
    (problem,) = caught.value.problems
    assert problem.variable == "COVERAGE_LABELS"
    assert "client-context, header, kind" in problem.allowed


@pytest.mark.parametrize("value", ["0", "-1", "many", "100001"])
def test_max_labels_is_bounded(value):
    with pytest.raises(ConfigurationError) as caught:
        load(COVERAGE_MAX_LABELS=value)
    assert caught.value.problems[0].variable == "COVERAGE_MAX_LABELS"


@pytest.mark.parametrize(
    ("version", "branch", "expected"),
    [
        ((3, 11), False, False),
        ((3, 11), True, False),
        ((3, 12), False, True),
        ((3, 12), True, False),
        ((3, 13), False, True),
        ((3, 13), True, False),
        ((3, 14), False, True),
        ((3, 14), True, True),
        ((3, 15), True, True),
    ],
)
def test_sysmon_supports(version, branch, expected):
    assert sysmon_supports(branch=branch, version=version) is expected


def test_sysmon_supports_defaults_to_the_running_python():
    assert sysmon_supports(branch=False) is SYSMON_LINES_HERE
    assert sysmon_supports(branch=True) is SYSMON_BRANCHES_HERE


# -- COVERAGE_FLUSH_INTERVAL_SECONDS, COVERAGE_SHUTDOWN_BUDGET_MS -------------------


@pytest.mark.parametrize(
    ("value", "seconds"), [("0", 0), ("1", 1), (" 300 ", 300), ("86400", 86400)]
)
def test_flush_interval_forms(value, seconds):
    assert load(COVERAGE_FLUSH_INTERVAL_SECONDS=value).flush_interval_seconds == seconds


@pytest.mark.parametrize("value", ["-1", "1.5", "soon", "60s"])
def test_flush_interval_bad_values(value):
    problem = only_problem(COVERAGE_FLUSH_INTERVAL_SECONDS=value)
    assert (problem.variable, problem.value) == ("COVERAGE_FLUSH_INTERVAL_SECONDS", value)
    assert problem.allowed == "an integer >= 0"


@pytest.mark.parametrize("value", [str(MIN_SHUTDOWN_BUDGET_MS), "250", str(MAX_SHUTDOWN_BUDGET_MS)])
def test_shutdown_budget_forms(value):
    assert load(COVERAGE_SHUTDOWN_BUDGET_MS=value).shutdown_budget_ms == int(value)


@pytest.mark.parametrize(
    "value",
    [str(MIN_SHUTDOWN_BUDGET_MS - 1), str(MAX_SHUTDOWN_BUDGET_MS + 1), "0", "fast", "400ms"],
)
def test_shutdown_budget_bad_values(value):
    problem = only_problem(COVERAGE_SHUTDOWN_BUDGET_MS=value)
    assert (problem.variable, problem.value) == ("COVERAGE_SHUTDOWN_BUDGET_MS", value)
    assert (
        problem.allowed == f"an integer from {MIN_SHUTDOWN_BUDGET_MS} to {MAX_SHUTDOWN_BUDGET_MS}"
    )


# -- COVERAGE_S3_BUCKET ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "my-bucket", "cov.data.2026", "a" * 63, "0bucket9"])
def test_bucket_forms(value):
    settings = load(COVERAGE_S3_BUCKET=value)
    assert settings.bucket == value
    assert settings.uploads_enabled is True


@pytest.mark.parametrize(
    "value", ["ab", "a" * 64, "My-Bucket", "bucket_name", "-bucket", "bucket-", "s3://bucket"]
)
def test_bucket_bad_values(value):
    problem = only_problem(COVERAGE_S3_BUCKET=value)
    assert (problem.variable, problem.value) == ("COVERAGE_S3_BUCKET", value)
    assert "S3 bucket name" in problem.allowed


# -- COVERAGE_S3_PREFIX ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prefix"),
    [
        ("coverage/", "coverage/"),
        ("coverage", "coverage/"),
        ("teams/payments/cov", "teams/payments/cov/"),
        ("teams/payments/cov/", "teams/payments/cov/"),
        (" spaced ", "spaced/"),
    ],
)
def test_prefix_gets_exactly_one_trailing_slash(value, prefix):
    assert load(COVERAGE_S3_PREFIX=value).prefix == prefix


@pytest.mark.parametrize("value", ["", "   "])
def test_explicitly_empty_prefix_means_keys_start_at_the_function(value):
    assert load(COVERAGE_S3_PREFIX=value).prefix == ""


def test_unset_prefix_is_the_default():
    assert "COVERAGE_S3_PREFIX" not in BASE
    assert load().prefix == "coverage/"


@pytest.mark.parametrize("value", ["/coverage", "a//b", "coverage//", "/"])
def test_prefix_bad_values(value):
    problem = only_problem(COVERAGE_S3_PREFIX=value)
    assert (problem.variable, problem.value) == ("COVERAGE_S3_PREFIX", value)
    assert "leading '/'" in problem.allowed


# -- SSE, KMS key, expected owner ------------------------------------------------------


@pytest.mark.parametrize("value", ["AES256", "aws:kms", "aws:kms:dsse"])
def test_sse_forms(value):
    assert load(COVERAGE_S3_SSE=value).sse == value


@pytest.mark.parametrize("value", ["aes256", "AWS:KMS", "kms", "none"])
def test_sse_bad_values_are_case_sensitive(value):
    problem = only_problem(COVERAGE_S3_SSE=value)
    assert (problem.variable, problem.value) == ("COVERAGE_S3_SSE", value)
    assert problem.allowed == "one of AES256, aws:kms, aws:kms:dsse"


@pytest.mark.parametrize("sse", ["aws:kms", "aws:kms:dsse"])
def test_kms_key_with_kms_encryption(sse):
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    settings = load(COVERAGE_S3_SSE=sse, COVERAGE_S3_KMS_KEY_ID=key)
    assert settings.sse == sse
    assert settings.kms_key_id == key


def test_kms_without_a_key_uses_the_bucket_default_key():
    settings = load(COVERAGE_S3_SSE="aws:kms")
    assert settings.kms_key_id is None


@pytest.mark.parametrize("sse", [None, "AES256"])
def test_kms_key_only_with_kms_encryption(sse):
    variables = {"COVERAGE_S3_KMS_KEY_ID": "alias/coverage"}
    if sse:
        variables["COVERAGE_S3_SSE"] = sse
    problem = only_problem(**variables)
    assert (problem.variable, problem.value) == ("COVERAGE_S3_KMS_KEY_ID", "alias/coverage")
    assert "aws:kms" in problem.allowed


def test_expected_owner():
    assert load(COVERAGE_S3_EXPECTED_OWNER="123456789012").expected_owner == "123456789012"


@pytest.mark.parametrize(
    "value", ["12345678901", "1234567890123", "12345678901a", "owner", "\uff11" * 12]
)
def test_expected_owner_bad_values(value):
    problem = only_problem(COVERAGE_S3_EXPECTED_OWNER=value)
    assert (problem.variable, problem.value) == ("COVERAGE_S3_EXPECTED_OWNER", value)
    assert problem.allowed == "a 12-digit AWS account id"


# -- endpoint, region, data dir, code revision -----------------------------------------


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:5000", "https://s3.local.example", "http://localhost:4566/"]
)
def test_endpoint_url_forms(value):
    assert load(COVERAGE_S3_ENDPOINT_URL=value).endpoint_url == value


@pytest.mark.parametrize("value", ["127.0.0.1:5000", "ftp://host", "http://", "localhost"])
def test_endpoint_url_bad_values(value):
    problem = only_problem(COVERAGE_S3_ENDPOINT_URL=value)
    assert (problem.variable, problem.value) == ("COVERAGE_S3_ENDPOINT_URL", value)
    assert "http://" in problem.allowed


def test_region_from_aws_region_then_default_region():
    assert load(AWS_REGION="eu-west-1", AWS_DEFAULT_REGION="us-east-2").region == "eu-west-1"
    assert load(AWS_DEFAULT_REGION="us-east-2").region == "us-east-2"


def test_data_dir():
    assert load(COVERAGE_DATA_DIR="/tmp/cov-data").data_dir == "/tmp/cov-data"


def test_data_dir_must_be_absolute():
    problem = only_problem(COVERAGE_DATA_DIR="cov-data")
    assert (problem.variable, problem.value, problem.allowed) == (
        "COVERAGE_DATA_DIR",
        "cov-data",
        "an absolute path",
    )


def test_code_revision():
    assert load(CODE_REVISION="3f2a9c1").code_revision == "3f2a9c1"


# -- reporting ---------------------------------------------------------------------------


def test_several_bad_values_are_reported_together():
    problems = problems_of(
        COVERAGE_MODE="sometimes",
        COVERAGE_SHUTDOWN_BUDGET_MS="fast",
        COVERAGE_S3_BUCKET="Bad_Bucket",
        COVERAGE_ENABLED="perhaps",
        COVERAGE_S3_SSE="rot13",
    )
    assert {p.variable: p.value for p in problems} == {
        "COVERAGE_MODE": "sometimes",
        "COVERAGE_SHUTDOWN_BUDGET_MS": "fast",
        "COVERAGE_S3_BUCKET": "Bad_Bucket",
        "COVERAGE_ENABLED": "perhaps",
        "COVERAGE_S3_SSE": "rot13",
    }


def test_the_error_message_names_variable_value_and_what_is_allowed():
    with pytest.raises(ConfigurationError) as caught:
        load(COVERAGE_MODE="sometimes", COVERAGE_FLUSH_INTERVAL_SECONDS="-5")
    error = caught.value
    assert isinstance(error, CoverageError)
    message = str(error)
    assert "COVERAGE_MODE='sometimes' is invalid: expected one of full, selective" in message
    assert "COVERAGE_FLUSH_INTERVAL_SECONDS='-5' is invalid: expected an integer >= 0" in message
    assert message.count(";") == 1


def test_settings_are_immutable():
    settings = load()
    with pytest.raises(AttributeError):
        settings.mode = "selective"  # type: ignore[misc]


@pytest.mark.parametrize("variables", [{"COVERAGE_SOURCE": "/"}, {"LAMBDA_TASK_ROOT": "/"}])
def test_a_file_system_root_is_not_a_source(variables):
    with pytest.raises(ConfigurationError) as caught:
        load_settings(variables)
    assert caught.value.problems[0].value == "/"
