"""The merge state machine of template.yaml, checked and executed as deployed.

The definition is taken from template.yaml after SAM's own transform
(tests/statemachine.py) and run unchanged by moto's Step Functions interpreter
(``stepfunctions.execute_state_machine``). Its S3 steps (the map's JSON
``ItemReader``) read the local S3 over HTTP (``AWS_ENDPOINT_URL_S3``), and
every ``lambda:invoke`` goes through Lambda's Invoke API
(``AWS_ENDPOINT_URL_LAMBDA``) to the combiner under the real AWS RIE
(tests/lambda_front.py: the RIE serves only the function name ``function``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coverage_runtime.layout import DEFAULT_PREFIX, ObjectKey
from coverage_runtime.report.cli import main
from tests import statemachine
from tests.harness import FAKE_CREDENTIALS, REPO_ROOT, LambdaUnderRIE, clean_environment
from tests.lambda_front import LambdaFront
from tests.report_samples.envs import lines_of
from tests.report_samples.synthetic import Synthetic, env_keys, upload_envs
from tests.s3_proxy import FaultProxy

COMBINER = "lambda-coverage-combiner"
COMBINER_ARN = f"arn:aws:lambda:us-east-1:{statemachine.ACCOUNT}:function:{COMBINER}"
STATE_MACHINE = "lambda-coverage-merge"
ROLE_ARN = f"arn:aws:iam::{statemachine.ACCOUNT}:role/{STATE_MACHINE}-role"
SUMMARY = "coverage/combined/synth-fn/all/latest/summary.json"
MERGED = "coverage/combined/synth-fn/all/latest/merged.coverage"
SUBSTITUTIONS = {
    "CombinerFunctionArn": COMBINER_ARN,
    "BatchSize": "1000",
    "MaxConcurrency": "100",
    "ToleratedFailurePercentage": "0",
}


def cfn_lint(template: dict[str, Any], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "transformed.json"
    path.write_text(json.dumps(template))
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            str(path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def asl_validator() -> str:
    """The npm asl-validator, installed into .local/ by the project's script if missing."""
    found = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "lib" / "asl-validator.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    return found.stdout.strip().splitlines()[-1]


# -- checks of the deployed definition -------------------------------------------------


def test_sam_transform_then_cfn_lint_validate_the_state_machine(tmp_path):
    template = statemachine.transformed()
    types = {name: r["Type"] for name, r in template["Resources"].items()}
    assert types["MergeStateMachine"] == "AWS::StepFunctions::StateMachine"
    assert types["CombinerFunction"] == "AWS::Lambda::Function"
    assert types["MergeScheduleRule"] == "AWS::Scheduler::Schedule"
    result = cfn_lint(template, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # cfn-lint checks the ASL only as an object (rule E3601): give it one, and show
    # that it does look inside by breaking it.
    as_object = statemachine.with_definition_object(template, SUBSTITUTIONS)
    # (The substituted parameters are then unused: W2001.)
    result = cfn_lint(as_object, tmp_path, "--ignore-checks", "W2001")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = statemachine.with_definition_object(template, SUBSTITUTIONS)
    states = broken["Resources"]["MergeStateMachine"]["Properties"]["Definition"]["States"]
    states["Reduce"]["Type"] = "Taks"
    assert "E3601" in cfn_lint(broken, tmp_path, "--ignore-checks", "W2001").stdout


def test_the_merge_is_off_unless_asked_for():
    template = statemachine.transformed({"EnableMergeStateMachine": "false"})
    conditions = {
        name: resource.get("Condition")
        for name, resource in template["Resources"].items()
        if name.startswith(("Merge", "Combiner"))
    }
    assert conditions and set(conditions.values()) <= {"CreateMerge", "CreateMergeSchedule"}
    assert template["Conditions"]["CreateMerge"] == {
        "Fn::Equals": [{"Ref": "EnableMergeStateMachine"}, "true"]
    }


def test_asl_validator_accepts_the_definition_and_catches_a_broken_one(tmp_path):
    validator = asl_validator()
    definition = json.loads(statemachine.definition(statemachine.transformed(), SUBSTITUTIONS))

    def validate(name: str, document: dict) -> subprocess.CompletedProcess:
        path = tmp_path / name
        path.write_text(json.dumps(document))
        return subprocess.run(
            [validator, "--json-path", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    result = validate("merge.asl.json", definition)
    assert result.returncode == 0, result.stdout + result.stderr
    del definition["States"]["MergeBatches"]["ItemReader"]["Resource"]
    result = validate("broken.asl.json", definition)
    assert result.returncode != 0
    assert "ItemReader" in result.stdout + result.stderr


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = template["Resources"][role]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_roles_are_least_privilege():
    template = statemachine.transformed({"MergeSchedule": "rate(1 day)"})
    text = json.dumps(template)
    combiner = _statements(template, "CombinerFunctionRole")
    by_action = {a: s for s in combiner for a in _actions(s)}
    assert set(by_action) == {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    assert by_action["s3:ListBucket"]["Condition"]["StringLike"]["s3:prefix"] == {
        "Fn::Sub": "${CoveragePrefix}*"
    }
    assert "combined/*" in json.dumps(by_action["s3:PutObject"]["Resource"])
    machine = _statements(template, "MergeStateMachineRole")
    actions = {a: s for s in machine for a in _actions(s)}
    assert set(actions) == {
        "lambda:InvokeFunction",
        "s3:GetObject",
        "states:StartExecution",
        "states:DescribeExecution",
        "states:StopExecution",
    }
    # StartExecution only on the state machine's own ARN, named as the resource is.
    own = json.dumps(actions["states:StartExecution"]["Resource"])
    name = template["Resources"]["MergeStateMachine"]["Properties"]["StateMachineName"]
    assert name == {"Fn::Sub": "${FunctionName}-merge"}
    assert own.endswith(':stateMachine:${FunctionName}-merge"}')
    assert "combined/_runs/*" in json.dumps(actions["s3:GetObject"]["Resource"])
    schedule = _statements(template, "MergeScheduleRole")
    assert [_actions(s) for s in schedule] == [["states:StartExecution"]]
    assert schedule[0]["Resource"] == {"Ref": "MergeStateMachine"}
    assert '"Resource": "*"' not in text
    outputs = template["Outputs"]
    assert "merge-in-aws.sh" in json.dumps(outputs["MergeCommand"])
    combiner_fn = template["Resources"]["CombinerFunction"]["Properties"]
    assert combiner_fn["ImageConfig"]["Command"] == [
        "coverage_runtime.report.combiner.lambda_handler"
    ]
    assert combiner_fn["Environment"]["Variables"]["COVERAGE_ENABLED"] == "false"


# -- executed locally: moto's interpreter, the combiner under the RIE ------------------


class LocalStepFunctions:
    """moto's Step Functions interpreter in this process; Lambda and S3 over HTTP."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, lambda_url: str, s3_url: str) -> None:
        from moto import mock_aws

        for name, value in FAKE_CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_url)
        self.mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self.mock.start()
        import boto3

        self.client = boto3.client("stepfunctions", region_name=statemachine.REGION)

    def create(self, definition: str) -> str:
        return self.client.create_state_machine(
            name=STATE_MACHINE, definition=definition, roleArn=ROLE_ARN
        )["stateMachineArn"]

    def run(self, arn: str, name: str, execution_input: dict, timeout: float = 600) -> dict:
        execution = self.client.start_execution(
            stateMachineArn=arn, name=name, input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            described = self.client.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                return described
            assert time.monotonic() < deadline, f"{name} still running after {timeout}s"
            time.sleep(0.2)

    def stop(self) -> None:
        self.mock.stop()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    return Synthetic(tmp_path_factory.mktemp("synthetic") / "task", modules=6, branch=False)


@pytest.fixture
def combiners(
    s3_server: Any, bucket: str, synthetic: Synthetic, tmp_path: Path
) -> Iterator[tuple[FaultProxy, LambdaFront]]:
    """Two combiner environments under the RIE behind Lambda's front end, their S3
    through the fault proxy."""
    proxy = FaultProxy(s3_server.port)
    started = []
    try:
        for number in range(2):
            tmp = tmp_path / f"env{number}-tmp"
            tmp.mkdir()
            env = clean_environment(
                {
                    "COVERAGE_S3_BUCKET": bucket,
                    "COVERAGE_S3_ENDPOINT_URL": proxy.endpoint_url,
                    "COVERAGE_ENABLED": "false",
                    "AWS_LAMBDA_FUNCTION_NAME": COMBINER,
                    "AWS_LAMBDA_FUNCTION_TIMEOUT": "900",
                    "TMPDIR": str(tmp),
                }
            )
            started.append(
                LambdaUnderRIE(
                    synthetic.root,
                    "coverage_runtime.report.combiner.lambda_handler",
                    env,
                    tmp_path / f"rie-{number}.log",
                )
            )
        front = LambdaFront({COMBINER_ARN}, [f.port for f in started])
        yield proxy, front
        front.stop()
    finally:
        for function in started:
            function.kill()
        proxy.stop()


def fetch(s3: Any, bucket: str, key: str, path: Path) -> Path:
    path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return path


def cli_merge(s3_server: Any, bucket: str, synthetic: Synthetic, out: Path, *filters: str) -> Path:
    args = [
        "report",
        "--bucket",
        bucket,
        "--endpoint-url",
        s3_server.endpoint_url,
        "--source-root",
        str(synthetic.root),
        "--format",
        "json",
        "-o",
        str(out),
        "-q",
        "--no-progress",
        "--cache-dir",
        str(out / "cache"),
        *filters,
    ]
    err = io.StringIO()
    assert main(args, out=io.StringIO(), err=err) == 0, err.getvalue()
    return out / "merged.coverage"


@pytest.mark.rie
@pytest.mark.slow
def test_the_deployed_state_machine_merges_like_the_report_and_tolerates_a_failed_batch(
    s3_server, s3, bucket, synthetic, combiners, monkeypatch, tmp_path
):
    proxy, front = combiners
    keys = upload_envs(s3, bucket, synthetic, env_keys(1150), tmp_path / "envs")
    # Another function's environments: the selection leaves them out.
    upload_envs(s3, bucket, synthetic, env_keys(30, function="other-fn"), tmp_path / "other")
    # Four environments (two on a batch boundary) have a delta object beside their base,
    # holding a rare line no base has (seeds past the bases' pick it), and the newer count.
    rare = []
    for number, index in enumerate((0, 99, 100, 1149)):
        seed = 1500 + 10 * number
        where = ObjectKey.parse(DEFAULT_PREFIX, keys[index])
        assert where is not None
        body = synthetic.write_env(tmp_path / f"delta-{index}.coverage", seed=seed).read_bytes()
        s3.put_object(
            Bucket=bucket,
            Key=where.format_delta(DEFAULT_PREFIX),
            Body=body,
            Metadata={"invocations": "5"},
        )
        recorded, line = synthetic.rare[(seed // 10) % len(synthetic.rare)]
        rare.append((str(synthetic.root / recorded.removeprefix("/var/task/")), line))
    template = statemachine.transformed()
    definition = statemachine.definition(template, SUBSTITUTIONS)
    local = LocalStepFunctions(monkeypatch, front.endpoint_url, s3_server.endpoint_url)
    try:
        arn = local.create(definition)
        selection = {"function": "synth-fn", "batch_size": 100, "max_concurrency": 4}

        clean = local.run(arn, "run-clean", selection)
        assert clean["status"] == "SUCCEEDED", clean
        output = json.loads(clean["output"])
        plans = front.events("plan")
        assert len(plans) == 1 and plans[0].event["run_id"] == "run-clean"
        batches = [i for i in front.events("batch") if i.event["run_id"] == "run-clean"]
        assert len(batches) == 12 and all(i.error is None for i in batches)
        assert output["environments"]["merged"] == len(keys) == 1150
        assert output["environments"]["invocations"] == 1150 * 3 + 4 * (5 - 3)
        assert output["batches"] == {
            "planned": 12,
            "merged": 12,
            "failed": [],
            "environments_not_merged": 0,
        }
        assert output["complete"] is True
        reduced = fetch(s3, bucket, MERGED, tmp_path / "reduced.coverage")
        expected = cli_merge(
            s3_server, bucket, synthetic, tmp_path / "cli", "--function", "synth-fn"
        )
        assert lines_of(reduced) == lines_of(expected)
        assert all(line in lines_of(reduced)[path] for path, line in rare), rare
        summary = json.loads((tmp_path / "cli" / "coverage.json").read_text())["totals"]
        assert output["lines"]["covered"] == summary["covered_lines"]
        assert output["lines"]["statements"] == summary["num_statements"]

        # One batch cannot be read (S3 refuses it): its child fails, the map tolerates
        # it, and the reduce merges the rest and says which batch is missing.
        proxy.set("GET", "status", 403, match="/run-faulty/batches/000003.json")
        faulty = local.run(arn, "run-faulty", {**selection, "tolerated_failure_percentage": 10})
        assert faulty["status"] == "SUCCEEDED", faulty
        output = json.loads(faulty["output"])
        failed = [i for i in front.events("batch") if i.event["run_id"] == "run-faulty" and i.error]
        assert failed and {i.error for i in failed} == {"ReportError"}
        assert output["batches"]["failed"] == ["000003"]
        assert output["batches"]["environments_not_merged"] == 100
        assert output["complete"] is False
        assert output["environments"]["merged"] == 1050
        assert any("1 of 12 batches failed" in w for w in output["warnings"])
        proxy.clear()
        batch = "coverage/combined/_runs/run-faulty/batches/000003.json"
        lost = json.loads(fetch(s3, bucket, batch, tmp_path / "lost.json").read_text())
        for item in lost:
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        fetch(s3, bucket, MERGED, reduced)
        expected = cli_merge(
            s3_server, bucket, synthetic, tmp_path / "cli-rest", "--function", "synth-fn"
        )
        assert lines_of(reduced) == lines_of(expected)
        assert lines_of(reduced) != lines_of(tmp_path / "cli" / "merged.coverage")

        # Beyond the tolerated share (0% by default) the run fails, and publishes nothing.
        # (On AWS the map fails first; moto parses ToleratedFailurePercentage but
        # ignores it, so here the reduce's own check is what fails the run.)
        published = s3.head_object(Bucket=bucket, Key=SUMMARY)["ETag"]
        proxy.set("GET", "status", 403, match="/run-over/batches/000001.json")
        over = local.run(arn, "run-over", {**selection, "batch_size": 500})
        assert over["status"] == "FAILED", over
        assert "1 of 3 batches failed (33.3%), more than the 0% tolerated" in over["cause"]
        assert s3.head_object(Bucket=bucket, Key=SUMMARY)["ETag"] == published
    finally:
        local.stop()


@pytest.mark.rie
@pytest.mark.slow
def test_merge_in_aws_starts_follows_and_downloads_a_run(
    s3_server, s3, bucket, synthetic, combiners, monkeypatch, tmp_path
):
    """scripts/merge-in-aws.sh's command against the local interpreter: --dry-run
    prints the calls and makes none; a run by name goes to the end and downloads
    what the reduce wrote; a run that fails says why."""
    from coverage_runtime.report import aws_merge

    _, front = combiners
    upload_envs(s3, bucket, synthetic, env_keys(120), tmp_path / "envs")
    definition = statemachine.definition(statemachine.transformed(), SUBSTITUTIONS)
    local = LocalStepFunctions(monkeypatch, front.endpoint_url, s3_server.endpoint_url)
    try:
        arn = local.create(definition)
        out, err = io.StringIO(), io.StringIO()
        args = ["--function", "synth-fn", "--batch-size", "50", "--max-concurrency", "2"]
        assert aws_merge.main(["--state-machine", arn, *args, "--dry-run"], out, err) == 0
        printed = out.getvalue()
        assert f"aws stepfunctions start-execution --state-machine-arn {arn}" in printed
        assert '\'{"function":["synth-fn"],"batch_size":50,"max_concurrency":2}\'' in printed
        assert local.client.list_executions(stateMachineArn=arn)["executions"] == []
        assert front.invoked == []

        out, err = io.StringIO(), io.StringIO()
        target = tmp_path / "downloaded"
        run = [
            "--state-machine",
            STATE_MACHINE,
            *args,
            "-o",
            str(target),
            "--name",
            "cli-run",
            "--poll-seconds",
            "0.2",
            "--endpoint-url",
            s3_server.endpoint_url,
        ]
        assert aws_merge.main(run, out, err) == 0, err.getvalue()
        assert "started arn:aws:states:us-east-1:123456789012:execution:" in err.getvalue()
        assert "succeeded: 3 of 3 batches merged, 0 failed" in err.getvalue(), err.getvalue()
        names = {p.name for p in target.iterdir()}
        assert {
            "merged.coverage",
            "summary.json",
            "coverage.json",
            "coverage.xml",
            "coverage.lcov",
            "execution-output.json",
        } <= names
        assert "120 environments merged from 3 of 3 batches" in out.getvalue()
        expected = cli_merge(
            s3_server, bucket, synthetic, tmp_path / "cli", "--function", "synth-fn"
        )
        assert lines_of(target / "merged.coverage") == lines_of(expected)

        out, err = io.StringIO(), io.StringIO()
        failing = [
            "--state-machine",
            arn,
            "--function",
            "nothing-here",
            "-o",
            str(target),
            "--poll-seconds",
            "0.2",
        ]
        assert aws_merge.main(failing, out, err) == 1
        assert "error: the merge FAILED" in err.getvalue()
        assert "no coverage data objects matched" in err.getvalue()
    finally:
        local.stop()


@pytest.mark.container
def test_the_state_machine_runs_with_the_combiner_in_the_image(
    s3_server, s3, bucket, synthetic, monkeypatch, tmp_path
):
    """Once in the image: the same definition, its lambda:invoke reaching the image's
    combiner (its command replaced, coverage off, read-only with /tmp only, the
    image's Python and RIE) over 1,050 environments, equal to the report's merge.
    The image has a name of its own, so other checkouts' container tests keep theirs."""
    import shutil
    import uuid

    from tests.containers import build_image, podman, start_with_local_s3

    if shutil.which("podman") is None and os.geteuid() != 0:
        pytest.skip("podman is not installed and installing it needs root")
    image = build_image("localhost/lambda-coverage-merge-test")
    upload_envs(s3, bucket, synthetic, env_keys(1050), tmp_path / "envs")
    name = f"lc-merge-{uuid.uuid4().hex[:10]}"
    front = None
    local = None
    try:
        port, _ = start_with_local_s3(
            name,
            image,
            s3_server,
            bucket,
            "--volume",
            f"{synthetic.root / 'synth'}:/var/task/synth:ro",
            command=("coverage_runtime.report.combiner.lambda_handler",),
            COVERAGE_ENABLED="false",
            AWS_LAMBDA_FUNCTION_NAME=COMBINER,
        )
        front = LambdaFront({COMBINER_ARN}, [port])
        definition = statemachine.definition(statemachine.transformed(), SUBSTITUTIONS)
        local = LocalStepFunctions(monkeypatch, front.endpoint_url, s3_server.endpoint_url)
        arn = local.create(definition)
        selection = {"function": "synth-fn", "batch_size": 100, "max_concurrency": 3}
        run = local.run(arn, "in-image", selection)
        assert run["status"] == "SUCCEEDED", run
        output = json.loads(run["output"])
        assert output["batches"]["planned"] == 11 and output["complete"] is True
        assert output["environments"]["merged"] == 1050
        assert len(front.events("batch")) == 11
        reduced = fetch(s3, bucket, MERGED, tmp_path / "reduced.coverage")
        in_image = {
            f.replace("/var/task", str(synthetic.root), 1): lines
            for f, lines in lines_of(reduced).items()
        }
        expected = cli_merge(
            s3_server, bucket, synthetic, tmp_path / "cli", "--function", "synth-fn"
        )
        assert in_image == lines_of(expected)
        assert output["files"] == 7 and 0 < output["percent"] < 100, "the reports read the source"
    finally:
        if local is not None:
            local.stop()
        if front is not None:
            front.stop()
        podman("rm", "--force", "--time", "0", name, check=False)


def test_merge_in_aws_script_help_and_dry_run(tmp_path):
    script = str(REPO_ROOT / "scripts" / "merge-in-aws.sh")
    env = clean_environment({"LAMBDA_COVERAGE_PYTHON": sys.executable, "HOME": str(tmp_path)})
    helped = subprocess.run(
        ["bash", script, "--help"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert helped.returncode == 0 and helped.stdout.startswith("usage: scripts/merge-in-aws.sh")
    arn = f"arn:aws:states:us-east-1:{statemachine.ACCOUNT}:stateMachine:{STATE_MACHINE}"
    dry = subprocess.run(
        [
            "bash",
            script,
            "--state-machine",
            arn,
            "--function",
            "orders,payments",
            "--since",
            "7d",
            "--tolerated-failure-percentage",
            "5",
            "--name",
            "nightly",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[1] == (
        f"aws stepfunctions start-execution --state-machine-arn {arn} --name nightly --input "
        '\'{"function":["orders","payments"],"since":"7d","tolerated_failure_percentage":5.0}\''
    )
    assert any(line.startswith("aws stepfunctions describe-execution") for line in lines)
    bad = subprocess.run(
        ["bash", script, "--state-machine", arn, "--batch-size", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "--batch-size must be positive" in bad.stderr
