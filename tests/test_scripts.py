"""The user's scripts, the Dockerfile's form and the SAM template, tested without AWS.

Everything that would reach AWS or a container engine runs against small stubs
on PATH that record their arguments, or as ``--dry-run``.
"""

from __future__ import annotations

import http.server
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness import REPO_ROOT, free_port

SCRIPTS = REPO_ROOT / "scripts"
USER_SCRIPTS = [
    "build.sh",
    "run-local.sh",
    "invoke.sh",
    "push-ecr.sh",
    "deploy.sh",
    "build-layer.sh",
]
ALL_SCRIPTS = [*USER_SCRIPTS, "container-setup.sh"]
ACCOUNT = "123456789012"
IMAGE_URI = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/lambda-coverage:abc123"
# Tools the scripts use besides the engine and the AWS CLI.
BASE_TOOLS = [
    "bash", "sh", "env", "dirname", "basename", "sed", "cat", "git", "grep", "cut", "tr",
    "mkdir", "mktemp", "rm", "ls", "id", "curl", "sleep", "sha256sum", "head", "tail",
    "uname", "chmod", "mv",
]  # fmt: skip

AWS_STUB = r"""#!/bin/bash
echo "aws $*" >> "$STUB_LOG"
case "$*" in
  *"configure get region"*) exit 1 ;;
  *"sts get-caller-identity"*)
    if [ -n "${STUB_NO_CREDENTIALS:-}" ]; then echo "Unable to locate credentials" >&2; exit 255; fi
    echo 123456789012 ;;
  *"ecr describe-repositories"*) [ -n "${STUB_HAS_REPOSITORY:-}" ] || exit 254 ;;
  *"ecr get-login-password"*) echo stub-password ;;
  *"s3api head-bucket"*) [ -z "${STUB_NO_BUCKET:-}" ] || exit 254 ;;
  *"iam get-role"*) [ -n "${STUB_HAS_ROLE:-}" ] || exit 254 ;;
  *"lambda get-function"*) [ -n "${STUB_HAS_FUNCTION:-}" ] || exit 254 ;;
  *"lambda create-function"*) echo "arn:aws:lambda:eu-west-1:123456789012:function:f" ;;
esac
exit 0
"""

ENGINE_STUB = r"""#!/bin/bash
name=$(basename "$0")
if [ "$1" = login ]; then
  echo "$name $* password=$(cat)" >> "$STUB_LOG"
  exit 0
fi
echo "$name $*" >> "$STUB_LOG"
if [ "$1 $2" = "image inspect" ]; then
  [ -z "${STUB_NO_IMAGE:-}" ] || exit 1
  case "$*" in *--format*) echo "rev-from-label" ;; esac
fi
exit 0
"""


def make_bin(path: Path, *, aws: bool = True, engines: tuple[str, ...] = ("docker",)) -> Path:
    """A PATH directory with the basic tools, plus stubs for aws and the engines."""
    path.mkdir(parents=True, exist_ok=True)
    for tool in BASE_TOOLS:
        found = shutil.which(tool)
        if found and not (path / tool).exists():
            (path / tool).symlink_to(found)
    (path / "python3").symlink_to(sys.executable)
    stubs = {"aws": AWS_STUB} if aws else {}
    stubs.update({engine: ENGINE_STUB for engine in engines})
    for name, text in stubs.items():
        (path / name).write_text(text)
        (path / name).chmod(0o755)
    return path


def script_env(tmp_path: Path, bin_dir: Path | None = None, **extra: str) -> dict[str, str]:
    env = {
        "PATH": str(bin_dir) if bin_dir else os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "STUB_LOG": str(tmp_path / "calls.log"),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "LANG": "C.UTF-8",
    }
    env.update(extra)
    return env


def run(script: str, *args: str, env: dict[str, str], stdin: str = "", cwd: Path = REPO_ROOT):
    return subprocess.run(
        ["bash", str(cwd / "scripts" / script), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def revision() -> str:
    rev = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return rev or "unknown"


# ---------------------------------------------------------------- every script


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_help_describes_usage_and_exits_zero(script, tmp_path):
    result = run(script, "--help", env=script_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: scripts/{script}")
    assert "-h, --help" in result.stdout or "--help" in result.stdout.splitlines()[0]
    assert calls(tmp_path) == [], "--help runs nothing"


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_scripts_are_strict_bash_and_parse(script):
    text = (SCRIPTS / script).read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(SCRIPTS / script, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(SCRIPTS / script)], check=True)


@pytest.mark.parametrize("script", USER_SCRIPTS)
def test_unknown_argument_is_a_clear_error(script, tmp_path):
    result = run(script, "--no-such-option", env=script_env(tmp_path))
    assert result.returncode == 1
    assert "--no-such-option" in result.stderr
    assert "--help" in result.stderr


def test_invalid_engine_is_refused(tmp_path):
    env = script_env(tmp_path, CONTAINER_ENGINE="nerdctl")
    result = run("build.sh", "--dry-run", env=env)
    assert result.returncode == 1
    assert "CONTAINER_ENGINE must be 'docker' or 'podman'" in result.stderr


# ---------------------------------------------------------------- build.sh


def test_build_dry_run_makes_a_lambda_compatible_single_platform_image(tmp_path):
    result = run("build.sh", "--dry-run", env=script_env(tmp_path))
    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stderr.splitlines() if line.startswith("+ "))
    assert command.startswith("+ docker build --platform linux/amd64 --provenance=false ")
    rev = revision()
    assert f"--build-arg CODE_REVISION={rev}" in command
    assert f"--tag lambda-coverage:{rev}" in command
    assert "--tag lambda-coverage:latest" in command
    assert command.endswith(f" {REPO_ROOT}")
    assert result.stdout.strip().splitlines()[-1].startswith(f"lambda-coverage:{rev}")
    assert calls(tmp_path) == []


def test_build_with_podman_base_image_rie_and_extra_arguments(tmp_path):
    env = script_env(tmp_path, CONTAINER_ENGINE="podman")
    result = run(
        "build.sh",
        "--dry-run",
        "--name",
        "my/fn",
        "--tag",
        "v1",
        "--base-image",
        "localhost/debian-python:forky",
        "--with-rie",
        "official",
        "--",
        "--pull=never",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stderr.splitlines() if line.startswith("+ "))
    assert command.startswith("+ podman build --platform linux/amd64 ")
    assert "--provenance" not in command, "podman has no attestations to turn off"
    assert "--build-arg BASE_IMAGE=localhost/debian-python:forky" in command
    assert (
        "--build-arg RIE_SOURCE=https://github.com/aws/aws-lambda-runtime-interface-emulator/"
        in (command)
    )
    assert "--tag my/fn:v1 --tag my/fn:latest --pull=never" in command
    assert result.stdout.strip() == "my/fn:v1"


def test_build_runs_the_engine(tmp_path):
    bin_dir = make_bin(tmp_path / "bin")
    result = run("build.sh", "--tag", "t1", env=script_env(tmp_path, bin_dir))
    assert result.returncode == 0, result.stderr
    [call] = calls(tmp_path)
    assert call.startswith("docker build --platform linux/amd64 --provenance=false")
    assert result.stdout.strip() == "lambda-coverage:t1"


def test_build_without_docker_says_what_to_do(tmp_path):
    bin_dir = make_bin(tmp_path / "bin", engines=())
    result = run("build.sh", env=script_env(tmp_path, bin_dir))
    assert result.returncode == 1
    assert "'docker' not found" in result.stderr
    assert "CONTAINER_ENGINE=podman" in result.stderr


def test_build_without_podman_when_asked_for(tmp_path):
    bin_dir = make_bin(tmp_path / "bin", engines=("docker",))
    result = run("build.sh", env=script_env(tmp_path, bin_dir, CONTAINER_ENGINE="podman"))
    assert result.returncode == 1
    assert "'podman' not found" in result.stderr


# ---------------------------------------------------------------- run-local.sh


def test_run_local_dry_run_is_lambda_like(tmp_path):
    rie = tmp_path / "aws-lambda-rie"
    rie.write_text("#!/bin/sh\n")
    rie.chmod(0o755)
    result = run(
        "run-local.sh",
        "--dry-run",
        "--rie",
        str(rie),
        "--bucket",
        "my-bucket",
        "--env",
        "COVERAGE_MODE=selective",
        env=script_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stderr.splitlines() if line.startswith("+ "))
    assert command.startswith(
        "+ docker run --rm --name lambda-coverage-local --read-only --tmpfs /tmp "
    )
    assert f"--volume {rie}:/aws-lambda/aws-lambda-rie:ro" in command
    assert "--publish 127.0.0.1:9000:8080" in command, "published on loopback only"
    assert "--env COVERAGE_S3_BUCKET=my-bucket" in command
    assert "--env COVERAGE_MODE=selective" in command
    assert command.endswith(" lambda-coverage:latest")


def test_run_local_host_network_with_local_s3(tmp_path):
    env = script_env(tmp_path, CONTAINER_ENGINE="podman", AWS_LAMBDA_RIE=shutil.which("true"))
    result = run(
        "run-local.sh",
        "--dry-run",
        "--host-network",
        "--port",
        "9100",
        "--s3-endpoint",
        "http://127.0.0.1:5000",
        "--",
        "app.other.handler",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stderr.splitlines() if line.startswith("+ "))
    assert command.startswith("+ podman run ")
    for part in [
        "--network=host",
        "--env RIE_ADDRESS=127.0.0.1:9100",
        "--env RIE_API_ADDRESS=127.0.0.1:9101",
        "--env COVERAGE_S3_ENDPOINT_URL=http://127.0.0.1:5000",
        "--env AWS_ACCESS_KEY_ID=testing",
    ]:
        assert part in command
    assert "--publish" not in command
    assert command.endswith(" lambda-coverage:latest app.other.handler")
    assert "no --bucket" in result.stderr


def test_run_local_without_rie_explains_how_to_get_it(tmp_path):
    checkout = tmp_path / "checkout"  # no ../shared/bin beside this one
    shutil.copytree(SCRIPTS, checkout / "scripts")
    bin_dir = make_bin(tmp_path / "bin")
    mirror = tmp_path / "empty-mirror"  # offline: the download finds nothing
    mirror.mkdir()
    env = script_env(tmp_path, bin_dir, RIE_RELEASE_URL=mirror.as_uri())
    result = run("run-local.sh", env=env, cwd=checkout)
    assert result.returncode == 1
    assert "could not download the RIE" in result.stderr
    assert "AWS_LAMBDA_RIE=" in result.stderr
    assert "--no-rie-mount" in result.stderr
    assert calls(tmp_path) == []


# ---------------------------------------------------------------- invoke.sh


@pytest.fixture
def fake_rie() -> Iterator[tuple[int, list[bytes]]]:
    """An HTTP endpoint on 127.0.0.1 that answers like the RIE and records bodies."""
    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert self.path == "/2015-03-31/functions/function/invocations"
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            body = b'{"statusCode": 200, "body": "ok"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], received
    server.shutdown()
    server.server_close()


def first_event() -> Path:
    events = sorted((REPO_ROOT / "events").glob("*.json"))
    assert events, "events/ has sample events"
    return events[0]


def test_invoke_by_name_posts_the_event_and_pretty_prints(fake_rie, tmp_path):
    port, received = fake_rie
    event = first_event()
    result = run("invoke.sh", "--port", str(port), event.stem, env=script_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert received == [event.read_bytes()]
    assert json.loads(result.stdout) == {"statusCode": 200, "body": "ok"}
    assert '\n  "statusCode": 200' in result.stdout, "indented"


def test_invoke_from_file_and_stdin(fake_rie, tmp_path):
    port, received = fake_rie
    event = tmp_path / "my-event.json"
    event.write_text('{"a": 1}')
    assert (
        run("invoke.sh", "--port", str(port), str(event), env=script_env(tmp_path)).returncode == 0
    )
    piped = run("invoke.sh", "--port", str(port), "-", env=script_env(tmp_path), stdin='{"b": 2}')
    assert piped.returncode == 0, piped.stderr
    assert received == [b'{"a": 1}', b'{"b": 2}']


def test_invoke_dry_run_and_errors(tmp_path):
    event = first_event()
    dry = run("invoke.sh", "--dry-run", "--port", "9123", event.name, env=script_env(tmp_path))
    assert dry.returncode == 0, dry.stderr
    assert "+ curl -sS -XPOST http://127.0.0.1:9123/2015-03-31/functions/function/invocations" in (
        dry.stderr
    )
    missing = run("invoke.sh", "no-such-event", env=script_env(tmp_path))
    assert missing.returncode == 1
    assert "no event file 'no-such-event'" in missing.stderr
    none = run("invoke.sh", env=script_env(tmp_path))
    assert none.returncode == 1
    assert event.stem in none.stderr, "lists the events it knows"
    down = run("invoke.sh", "--port", str(free_port()), event.name, env=script_env(tmp_path))
    assert down.returncode == 1
    assert "is the function running?" in down.stderr


# ---------------------------------------------------------------- push-ecr.sh


def test_push_dry_run_prints_every_step_without_aws(tmp_path):
    bin_dir = make_bin(tmp_path / "bin", aws=False)
    env = script_env(tmp_path, bin_dir)
    result = run("push-ecr.sh", "--dry-run", "--region", "eu-west-1", "--tag", "v7", env=env)
    assert result.returncode == 0, result.stderr
    registry = "<account-id>.dkr.ecr.eu-west-1.amazonaws.com"
    assert result.stdout.strip() == f"{registry}/lambda-coverage:v7"
    assert "scanOnPush=true" in result.stderr
    assert (
        f"+ aws ecr get-login-password --region eu-west-1 | docker login --username AWS "
        f"--password-stdin {registry}"
    ) in result.stderr
    assert f"+ docker push '{registry}/lambda-coverage:v7'" in result.stderr
    assert calls(tmp_path) == [], "a dry run calls neither AWS nor the engine"


def test_push_creates_the_repository_logs_in_tags_and_pushes(tmp_path):
    bin_dir = make_bin(tmp_path / "bin")
    env = script_env(tmp_path, bin_dir, AWS_REGION="eu-west-1")
    result = run("push-ecr.sh", env=env)
    assert result.returncode == 0, result.stderr
    uri = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/lambda-coverage:rev-from-label"
    assert result.stdout.strip().splitlines()[-1] == uri
    log = calls(tmp_path)
    create = next(c for c in log if "ecr create-repository" in c)
    assert "--repository-name lambda-coverage" in create
    assert "--image-scanning-configuration scanOnPush=true" in create
    login = next(c for c in log if c.startswith("docker login"))
    assert login.endswith(
        f"--password-stdin {ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com password=stub-password"
    )
    assert f"docker tag lambda-coverage:latest {uri}" in log
    assert log[-1] == f"docker push {uri}"


def test_push_keeps_an_existing_repository(tmp_path):
    bin_dir = make_bin(tmp_path / "bin", engines=("podman",))
    env = script_env(
        tmp_path,
        bin_dir,
        AWS_REGION="eu-west-1",
        STUB_HAS_REPOSITORY="1",
        CONTAINER_ENGINE="podman",
    )
    result = run("push-ecr.sh", "--tag", "v2", env=env)
    assert result.returncode == 0, result.stderr
    log = calls(tmp_path)
    assert not any("create-repository" in c for c in log)
    assert log[-1].startswith("podman push --format v2s2 ")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"aws": False}, "'aws' not found"),
        ({"engines": ()}, "'docker' not found"),
        ({"env": {"AWS_REGION": ""}}, "no AWS region"),
        ({"env": {"STUB_NO_CREDENTIALS": "1"}}, "no usable AWS credentials"),
        ({"env": {"STUB_NO_IMAGE": "1"}}, "build it first (scripts/build.sh)"),
    ],
)
def test_push_prerequisites_fail_clearly(tmp_path, setup, message):
    bin_dir = make_bin(
        tmp_path / "bin", aws=setup.get("aws", True), engines=setup.get("engines", ("docker",))
    )
    env = script_env(tmp_path, bin_dir, AWS_REGION="eu-west-1")
    env.update(setup.get("env", {}))
    result = run("push-ecr.sh", env=env)
    assert result.returncode == 1
    assert message in result.stderr
    assert not any(" push " in c or "create-repository" in c for c in calls(tmp_path))


# ---------------------------------------------------------------- deploy.sh


def deploy_commands(stderr: str) -> list[str]:
    return [line[2:] for line in stderr.splitlines() if line.startswith("+ ")]


def quoted_json(command: str, option: str) -> dict:
    match = re.search(rf"{option} '([^']*)'", command)
    assert match, f"{option} not in {command}"
    return json.loads(match.group(1))


def test_deploy_dry_run_least_privilege_role_and_environment(tmp_path):
    bin_dir = make_bin(tmp_path / "bin", aws=False)
    result = run(
        "deploy.sh",
        "--dry-run",
        "--region",
        "eu-west-1",
        "--image-uri",
        IMAGE_URI,
        "--bucket",
        "my-coverage",
        "--function",
        "orders",
        "--branch",
        "--env",
        "COVERAGE_SOURCE=/var/task/app,/var/task/lib",
        "--env",
        "COVERAGE_MODE=selective",
        env=script_env(tmp_path, bin_dir),
    )
    assert result.returncode == 0, result.stderr
    commands = deploy_commands(result.stderr)
    policy = quoted_json(next(c for c in commands if "put-role-policy" in c), "--policy-document")
    assert policy["Statement"] == [
        {
            "Sid": "PutCoverageObjects",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::my-coverage/coverage/orders/*",  # its own key space
        },
        {
            "Sid": "HealthCheckHeadBucket",  # HeadBucket needs s3:ListBucket
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::my-coverage",
        },
    ]
    trust = quoted_json(
        next(c for c in commands if "create-role" in c), "--assume-role-policy-document"
    )
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert any("AWSLambdaBasicExecutionRole" in c for c in commands)
    create = next(c for c in commands if "lambda create-function" in c)
    assert "--package-type Image" in create
    assert f"--code ImageUri={IMAGE_URI}" in create
    assert f"--role arn:aws:iam::{ACCOUNT}:role/orders-role" in create
    assert quoted_json(create, "--environment") == {
        "Variables": {
            "COVERAGE_S3_BUCKET": "my-coverage",
            "COVERAGE_S3_PREFIX": "coverage/",
            "COVERAGE_ENABLED": "true",
            "COVERAGE_MODE": "selective",
            "COVERAGE_BRANCH": "true",
            "COVERAGE_S3_EXPECTED_OWNER": ACCOUNT,
            "COVERAGE_SOURCE": "/var/task/app,/var/task/lib",
        }
    }
    assert (
        commands[-1] == "aws --region eu-west-1 lambda wait function-active --function-name orders"
    )
    assert calls(tmp_path) == []


def test_deploy_never_prints_secret_env_values(tmp_path):
    bin_dir = make_bin(tmp_path / "bin")
    secrets = ["PLANTED-ADMIN-TOKEN", "PLANTED-DB-PASSWORD", "PLANTED-API-KEY"]
    for dry_run in (["--dry-run"], []):
        result = run(
            "deploy.sh", *dry_run,
            "--region", "eu-west-1", "--image-uri", IMAGE_URI, "--bucket", "my-coverage",
            "--env", "ADMIN_TOKEN=PLANTED-ADMIN-TOKEN",
            "--env", "HEALTH_DATABASE_URL=postgres://app:PLANTED-DB-PASSWORD@db:5432/x",
            "--env", "PAYMENTS_API_KEY=PLANTED-API-KEY",
            "--env", "COVERAGE_MODE=selective",
            env=script_env(tmp_path, bin_dir, STUB_HAS_ROLE="1"),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        for secret in secrets:
            assert secret not in result.stderr + result.stdout, (dry_run, secret)
        assert "COVERAGE_MODE" in result.stderr and "selective" in result.stderr
    sent = "\n".join(calls(tmp_path))  # what reached the AWS CLI is the real value
    assert "PLANTED-ADMIN-TOKEN" in sent


def test_deploy_refuses_an_empty_prefix(tmp_path):
    result = run(
        "deploy.sh", "--dry-run", "--region", "eu-west-1", "--image-uri", IMAGE_URI,
        "--bucket", "my-coverage", "--prefix", "",
        env=script_env(tmp_path, make_bin(tmp_path / "bin", aws=False)),
    )  # fmt: skip
    assert result.returncode == 1
    assert "--prefix must not be empty" in result.stderr


def test_deploy_with_kms_adds_the_key_to_env_and_role(tmp_path):
    result = run(
        "deploy.sh",
        "--dry-run",
        "--region",
        "eu-west-1",
        "--image-uri",
        IMAGE_URI,
        "--bucket",
        "my-coverage",
        "--kms-key-id",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        env=script_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    commands = deploy_commands(result.stderr)
    policy = quoted_json(next(c for c in commands if "put-role-policy" in c), "--policy-document")
    assert policy["Statement"][2]["Action"] == "kms:GenerateDataKey"
    env = quoted_json(next(c for c in commands if "create-function" in c), "--environment")
    assert env["Variables"]["COVERAGE_S3_SSE"] == "aws:kms"


def test_deploy_creates_role_and_function_and_waits(tmp_path):
    bin_dir = make_bin(tmp_path / "bin")
    env = script_env(tmp_path, bin_dir, AWS_REGION="eu-west-1")
    result = run("deploy.sh", "--image-uri", IMAGE_URI, "--bucket", "my-coverage", env=env)
    assert result.returncode == 0, result.stderr
    log = calls(tmp_path)
    assert "aws sts get-caller-identity --query Account --output text" in log
    assert "aws s3api head-bucket --bucket my-coverage" in log
    assert any(c.startswith("aws iam create-role --role-name lambda-coverage-role") for c in log)
    assert any(
        c.startswith("aws iam put-role-policy --role-name lambda-coverage-role") for c in log
    )
    assert any("lambda create-function --function-name lambda-coverage" in c for c in log)
    assert (
        log[-1]
        == "aws --region eu-west-1 lambda wait function-active --function-name lambda-coverage"
    )


def test_deploy_updates_an_existing_function(tmp_path):
    bin_dir = make_bin(tmp_path / "bin")
    env = script_env(
        tmp_path, bin_dir, AWS_REGION="eu-west-1", STUB_HAS_FUNCTION="1", STUB_HAS_ROLE="1"
    )
    result = run("deploy.sh", "--image-uri", IMAGE_URI, "--bucket", "my-coverage", env=env)
    assert result.returncode == 0, result.stderr
    lambda_calls = [c.split(" lambda ", 1)[1] for c in calls(tmp_path) if " lambda " in c]
    assert [c.split(" --")[0] for c in lambda_calls] == [
        "get-function",
        "update-function-code",
        "wait function-updated",
        "update-function-configuration",
        "wait function-updated",
    ]
    assert not any("create-role" in c for c in calls(tmp_path))
    assert any("put-role-policy" in c for c in calls(tmp_path)), "the policy is kept current"


URI_AND_BUCKET = ["--image-uri", IMAGE_URI, "--bucket", "b-1"]


@pytest.mark.parametrize(
    ("args", "setup", "message"),
    [
        (["--bucket", "b-1"], {}, "--image-uri is required"),
        (["--image-uri", IMAGE_URI], {}, "no coverage bucket"),
        (["--image-uri", "nginx:latest", "--bucket", "b-1"], {}, "must be an ECR image URI"),
        (["--image-uri", IMAGE_URI, "--bucket", "B_1"], {}, "not a valid S3 bucket name"),
        ([*URI_AND_BUCKET, "--region", "us-east-1"], {}, "ECR repository in the function's region"),
        (URI_AND_BUCKET, {"aws": False}, "'aws' not found"),
        (URI_AND_BUCKET, {"env": {"AWS_REGION": ""}}, "no AWS region"),
        (URI_AND_BUCKET, {"env": {"STUB_NO_CREDENTIALS": "1"}}, "no usable AWS credentials"),
        (URI_AND_BUCKET, {"env": {"STUB_NO_BUCKET": "1"}}, "bucket 'b-1' does not exist"),
    ],
)
def test_deploy_prerequisites_fail_clearly(tmp_path, args, setup, message):
    bin_dir = make_bin(tmp_path / "bin", aws=setup.get("aws", True))
    env = script_env(tmp_path, bin_dir, AWS_REGION="eu-west-1")
    env.update(setup.get("env", {}))
    result = run("deploy.sh", *args, env=env)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert not any(" iam " in c or " lambda " in c for c in calls(tmp_path))


# ---------------------------------------------------------------- entry script


@pytest.fixture
def entry_bin(tmp_path: Path) -> Path:
    """python and aws-lambda-rie stubs that print how they were called."""
    bin_dir = tmp_path / "entry-bin"
    bin_dir.mkdir()
    for name in ("python", "aws-lambda-rie", "setpriv"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*"\n')
        (bin_dir / name).chmod(0o755)
    return bin_dir


def entrypoint(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SCRIPTS / "entrypoint.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_entrypoint_in_lambda_execs_the_shim(entry_bin):
    env = {"PATH": f"{entry_bin}:/usr/bin:/bin", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}
    result = entrypoint(env, "app.handler.lambda_handler")
    assert result.stdout == "python -m coverage_runtime app.handler.lambda_handler\n"


def test_entrypoint_locally_runs_the_shim_under_the_rie(entry_bin):
    env = {
        "PATH": f"{entry_bin}:/usr/bin:/bin",
        "AWS_LAMBDA_RIE": str(entry_bin / "aws-lambda-rie"),
    }
    result = entrypoint(env, "app.handler.lambda_handler")
    assert result.stdout == (  # the RIE starts this script again, as the runtime
        "aws-lambda-rie --runtime-interface-emulator-address 0.0.0.0:8080 "
        f"--runtime-api-address 127.0.0.1:9001 {SCRIPTS / 'entrypoint.sh'} "
        "app.handler.lambda_handler\n"
    )
    env.update(RIE_ADDRESS="127.0.0.1:9100", RIE_API_ADDRESS="127.0.0.1:9101")
    assert "address 127.0.0.1:9100 --runtime-api-address 127.0.0.1:9101 " in (
        entrypoint(env, "h.h").stdout
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="started as root only")
def test_entrypoint_started_as_root_runs_the_function_unprivileged(entry_bin, tmp_path):
    env = {
        "PATH": f"{entry_bin}:/usr/bin:/bin",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "LAMBDA_RUN_AS": "nobody",  # the image's is `lambda` (uid 993)
    }
    uid, gid = str(pwd.getpwnam("nobody").pw_uid), str(pwd.getpwnam("nobody").pw_gid)
    result = entrypoint(env, "app.handler.lambda_handler")
    assert result.stdout == (
        f"setpriv --reuid={uid} --regid={gid} --clear-groups "
        "python -m coverage_runtime app.handler.lambda_handler\n"
    )
    (entry_bin / "setpriv").unlink()  # a base image without setpriv: Python drops privileges
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    for tool in ("id", "sh"):
        (bare / tool).symlink_to(shutil.which(tool))
    env["PATH"] = f"{entry_bin}:{bare}"
    result = entrypoint(env, "app.handler.lambda_handler")
    assert result.stdout.startswith("python -c import os, sys")
    assert result.stdout.rstrip().endswith(f"{uid} {gid} app.handler.lambda_handler")


def test_entrypoint_without_rie_outside_lambda_fails_clearly(entry_bin):
    if Path("/usr/local/bin/aws-lambda-rie").exists() or Path("/aws-lambda").exists():
        pytest.skip("this machine has an RIE in a standard place")
    result = entrypoint({"PATH": f"{entry_bin}:/usr/bin:/bin"}, "h.h")
    assert result.returncode == 1
    assert "AWS_LAMBDA_RUNTIME_API is not set" in result.stderr


# ---------------------------------------------------------------- Dockerfile and SAM


def test_dockerfile_follows_the_recipe_and_builds_without_buildkit():
    text = (REPO_ROOT / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "ARG BASE_IMAGE=python:3.14-slim"
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\}", text, re.M)) == 2, "multi-stage"
    final = text.split(
        "# ---------------------------------------------------------------- final stage"
    )[1]
    assert "pip install" not in final, "no pip in the final stage"
    assert not re.search(r"^USER ", final, re.M), "root, for SAM's overlay: the entry point drops"
    assert "useradd --system --uid 993" in final, "the function's unprivileged user"
    for name in ["PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "LAMBDA_TASK_ROOT=/var/task"]:
        assert name in final
    assert "ARG CODE_REVISION" in final
    assert "ARG RIE_SOURCE" in text
    assert 'ENTRYPOINT ["/usr/local/bin/lambda-entrypoint"]' in text
    assert 'CMD ["app.handler.lambda_handler"]' in text
    # sam build drives the classic builder: no BuildKit-only syntax
    code = "\n".join(instructions)
    assert "--mount" not in code
    assert "--chmod" not in code
    assert "<<" not in code


def test_dockerignore_keeps_tests_caches_and_local_data_out():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    for entry in [
        ".git",
        ".venv",
        "tests",
        "**/__pycache__",
        ".pytest_cache",
        ".coverage",
        ".local",
    ]:
        assert entry in ignored
    assert "!scripts/entrypoint.sh" in ignored


class _CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict:
    return yaml.load((REPO_ROOT / "template.yaml").read_text(), Loader=_CfnLoader)


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            path,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_sam_template_passes_cfn_lint():
    result = cfn_lint(REPO_ROOT / "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_template(tmp_path):
    broken = tmp_path / "template.yaml"
    broken.write_text(
        (REPO_ROOT / "template.yaml").read_text().replace("MemorySize: !Ref", "MemorySizes: !Ref")
    )
    assert cfn_lint(broken).returncode != 0


def test_sam_template_is_an_image_function_with_least_privilege():
    template = load_template()
    function = template["Resources"]["CoverageFunction"]
    assert function["Type"] == "AWS::Serverless::Function"
    assert function["Properties"]["PackageType"] == "Image"
    assert function["Metadata"]["Dockerfile"] == "Dockerfile"
    assert function["Metadata"]["DockerContext"] == "."
    variables = function["Properties"]["Environment"]["Variables"]
    for name in ["COVERAGE_S3_BUCKET", "COVERAGE_S3_PREFIX", "COVERAGE_ENABLED", "COVERAGE_MODE"]:
        assert name in variables
    [policy] = function["Properties"]["Policies"]
    statement, head_bucket = policy["Statement"]
    assert statement["Action"] == "s3:PutObject"
    assert head_bucket["Action"] == "s3:ListBucket"
    assert "${Bucket}/${CoveragePrefix}${FunctionName}/*" in statement["Resource"]["Sub"][0]
    assert function["Properties"]["FunctionName"] == {"Ref": "FunctionName"}
    assert template["Parameters"]["CoveragePrefix"]["AllowedPattern"] == "^[^/].*/$", "not empty"
    bucket = template["Resources"]["CoverageBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())


# -- local S3 --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0", "--port", "5000"], "is not a loopback address"),
        (["--host", "localhost", "--port", "5000"], "is not a loopback address"),
        (["--port", "70000"], "is not a TCP port"),
        (["--port", "5000", "--threads", "0"], "--threads must be at least 1"),
        ([], "--port"),
    ],
)
def test_local_s3_refuses_bad_arguments_in_one_line(args, message):
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "local_s3.py"), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_local_s3_keeps_s3_header_case_and_connections(s3_server, s3, bucket):
    """moto's S3 behind the local server answers like S3: lower-case metadata, keep-alive."""
    import urllib3

    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"invocations": "2"})
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == {"invocations": "2"}
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    pool = urllib3.HTTPConnectionPool("127.0.0.1", s3_server.port, maxsize=1)
    for _ in range(3):
        response = pool.urlopen("GET", url[len(s3_server.endpoint_url) :])
        assert response.status == 200 and response.data == b"x"
    assert pool.num_connections == 1, "one connection served every request"


def test_local_s3_without_its_dependencies_says_how_to_get_them():
    hide_gunicorn = (
        "import runpy, sys; sys.modules['gunicorn'] = None; "
        "sys.argv = ['local_s3.py', '--port', '5999']; "
        f"runpy.run_path({str(SCRIPTS / 'local_s3.py')!r}, run_name='__main__')"
    )
    run = subprocess.run(
        [sys.executable, "-c", hide_gunicorn],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "needs moto[server] and gunicorn" in run.stderr and "setup-venv.sh" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--python", "3.10"], "--python must be 3.11-3.14, not 3.10"),
        (["--arch", "s390x"], "--arch must be x86_64 or arm64, not s390x"),
    ],
)
def test_build_layer_refuses_what_lambda_does_not_run(tmp_path, args, message):
    result = run("build-layer.sh", *args, "--out", str(tmp_path), env=script_env(tmp_path))
    assert result.returncode == 1
    assert message in result.stderr
    assert list(tmp_path.glob("*.zip")) == []
