"""``python -m coverage_runtime`` outside Lambda: one clear line, no stack trace."""

import subprocess
import sys

import pytest

from tests.harness import REPO_ROOT, clean_environment


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coverage_runtime", *args],
        cwd=REPO_ROOT,
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("args", [(), ("a.b", "c.d"), ("--help",)])
def test_wrong_arguments_print_the_usage(args):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m coverage_runtime <module.function>")


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_outside_lambda_says_what_is_missing(enabled):
    result = run("app.handler.lambda_handler", COVERAGE_ENABLED=enabled)
    assert result.returncode == 2
    assert "AWS_LAMBDA_RUNTIME_API is not set" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == "", "nothing was started"
