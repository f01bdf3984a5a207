"""Run the merge state machine in AWS: start, wait with progress, download the reports.

``scripts/merge-in-aws.sh`` runs this. The state machine (template.yaml with
``EnableMergeStateMachine=true``, its ``MergeStateMachineArn`` output) plans,
merges batches in a distributed map and reduces into
``combined/<function>/<version>/latest/``; this starts one execution for a
selection, prints the map's progress while it runs, and downloads what the
reduce wrote (merged data file, summary, JSON/XML/LCOV reports).

    scripts/merge-in-aws.sh --state-machine ARN --function orders --since 7d
    scripts/merge-in-aws.sh --state-machine ARN --function orders --dry-run

``--dry-run`` prints the calls (as AWS CLI commands) and makes none.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from coverage_runtime import env
from coverage_runtime.errors import ReportError
from coverage_runtime.report.client import explain_s3_error, make_client

FILTERS = ("function", "version", "revision")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="merge-in-aws",
        description="Merge coverage with the deployed merge state machine and download "
        "the reports (template.yaml, EnableMergeStateMachine=true).",
    )
    parser.add_argument(
        "--state-machine",
        required=True,
        metavar="ARN",
        help="the state machine's ARN (the stack's MergeStateMachineArn output) or name",
    )
    which = parser.add_argument_group("which environments (filters combine with AND)")
    for name in FILTERS:
        which.add_argument(
            f"--{name}", action="append", metavar="NAME", help="repeat or comma list"
        )
    which.add_argument("--since", metavar="DATE", help="first init date: YYYY-MM-DD, today, Nd")
    which.add_argument("--until", metavar="DATE", help="last init date (inclusive)")
    which.add_argument("--measure", choices=("auto", "line", "branch"), help="default auto")
    run = parser.add_argument_group("the run (default: the state machine's)")
    run.add_argument("--batch-size", type=int, metavar="N", help="environments per batch")
    run.add_argument("--max-concurrency", type=int, metavar="N", help="batches at once")
    run.add_argument(
        "--tolerated-failure-percentage", type=float, metavar="P", help="batches that may fail"
    )
    run.add_argument("--name", help="the execution's name (default: merge-<UTC time>-<random>)")
    out = parser.add_argument_group("waiting and output")
    out.add_argument("-o", "--output", default="coverage-report", help="download directory")
    out.add_argument("--poll-seconds", type=float, default=5.0, help="progress interval")
    out.add_argument("--timeout", type=float, default=3600, help="give up waiting after (s)")
    out.add_argument("--no-wait", action="store_true", help="start it and print its ARN only")
    out.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    out.add_argument(
        "--endpoint-url",
        default=os.environ.get(env.S3_ENDPOINT_URL) or None,
        help="S3 endpoint for the downloads, for a local S3 only",
    )
    out.add_argument("--dry-run", action="store_true", help="print the calls, make none")
    args = parser.parse_args(argv)
    for name in ("batch_size", "max_concurrency", "poll_seconds", "timeout"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def execution_input(args: argparse.Namespace) -> dict[str, Any]:
    """The state machine's input: the filters and run options given, nothing else."""
    fields: dict[str, Any] = {}
    for name in FILTERS:
        values = [v.strip() for value in getattr(args, name) or () for v in value.split(",")]
        if any(values):
            fields[name] = [v for v in values if v]
    for name in ("since", "until", "measure", "batch_size", "max_concurrency"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.tolerated_failure_percentage is not None:
        fields["tolerated_failure_percentage"] = args.tolerated_failure_percentage
    return fields


def _aws(*words: str) -> str:
    return "aws " + " ".join(shlex.quote(w) for w in words)


class Merge:
    """One execution: start it, follow it, fetch what it wrote."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.name = (
            args.name
            or time.strftime("merge-%Y%m%dT%H%M%SZ-", time.gmtime()) + (uuid.uuid4().hex[:8])
        )
        self.input = execution_input(args)

    def _client(self) -> Any:
        import boto3

        return boto3.client("stepfunctions", region_name=self.args.region)

    def dry_run(self) -> int:
        arn = self.args.state_machine
        body = json.dumps(self.input, separators=(",", ":"))
        print("# the calls merge-in-aws would make (none made: --dry-run)", file=self.out)
        if not arn.startswith("arn:"):
            print(
                _aws("stepfunctions", "list-state-machines"), f"  # the ARN of {arn}", file=self.out
            )
        if not arn.startswith("arn:"):
            arn = f"<stateMachineArn of {arn}>"
        print(
            _aws(
                "stepfunctions",
                "start-execution",
                "--state-machine-arn",
                arn,
                "--name",
                self.name,
                "--input",
                body,
            ),
            file=self.out,
        )
        execution = f"<executionArn of {self.name}>"
        every = f"  # every {self.args.poll_seconds:g} s until not RUNNING"
        print(
            _aws("stepfunctions", "describe-execution", "--execution-arn", execution),
            every,
            file=self.out,
        )
        print(_aws("stepfunctions", "list-map-runs", "--execution-arn", execution), file=self.out)
        print(
            _aws("stepfunctions", "describe-map-run", "--map-run-arn", "<mapRunArn>"),
            "  # the map's progress",
            file=self.out,
        )
        print(
            f'# then, for each URL of the execution output\'s "s3": '
            f"{_aws('s3', 'cp', 'URL', self.args.output + '/')}",
            file=self.out,
        )
        return 0

    def resolve(self, client: Any) -> str:
        wanted = self.args.state_machine
        if wanted.startswith("arn:"):
            return str(wanted)
        for page in client.get_paginator("list_state_machines").paginate():
            for machine in page["stateMachines"]:
                if machine["name"] == wanted:
                    return str(machine["stateMachineArn"])
        raise ReportError(f"no state machine named {wanted!r} in this account and region")

    def run(self) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = self._client()
            arn = self.resolve(client)
            started = client.start_execution(
                stateMachineArn=arn, name=self.name, input=json.dumps(self.input)
            )
        except (ClientError, BotoCoreError) as exc:
            raise ReportError(f"cannot start {self.args.state_machine}: {exc}") from exc
        execution = started["executionArn"]
        print(f"started {execution}", file=self.err)
        if self.args.no_wait:
            print(execution, file=self.out)
            return 0
        described = self.wait(client, execution)
        if described["status"] != "SUCCEEDED":
            print(
                f"error: the merge {described['status']}: {described.get('error', '')}: "
                f"{described.get('cause', '')}",
                file=self.err,
            )
            return 1
        summary = json.loads(described["output"])
        self.download(summary)
        return 0

    def wait(self, client: Any, execution: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.args.timeout
        shown = ""
        while True:
            time.sleep(self.args.poll_seconds)  # a run takes seconds at least
            described: dict[str, Any] = client.describe_execution(executionArn=execution)
            line = f"{described['status'].lower()}: {self.progress(client, execution)}"
            if line != shown:
                print(line, file=self.err)
                shown = line
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                raise ReportError(
                    f"{execution} still running after {self.args.timeout:g} s; it goes on "
                    f"in AWS (aws stepfunctions describe-execution --execution-arn {execution})"
                )

    @staticmethod
    def progress(client: Any, execution: str) -> str:
        """The map run's item counts, or where the run is before the map starts."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            runs = client.list_map_runs(executionArn=execution).get("mapRuns", [])
            if not runs:
                return "planning"
            counts = client.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]
        except (ClientError, BotoCoreError) as exc:  # e.g. no states:ListMapRuns: go on
            return f"progress unknown ({exc})"
        return (
            f"{counts.get('succeeded', 0)} of {counts.get('total', 0)} batches merged, "
            f"{counts.get('failed', 0)} failed, {counts.get('running', 0)} running"
        )

    def download(self, summary: dict[str, Any]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        output = Path(self.args.output)
        output.mkdir(parents=True, exist_ok=True)
        client = make_client(self.args.endpoint_url, self.args.region)
        for name, url in sorted(summary.get("s3", {}).items()):
            where = urlparse(url)
            target = output / Path(where.path).name
            try:
                client.download_file(where.netloc, where.path.lstrip("/"), str(target))
            except (ClientError, BotoCoreError) as exc:
                raise explain_s3_error(exc, where.netloc, f"downloading {url}") from exc
            print(f"{name}: {target}", file=self.out)
        (output / "execution-output.json").write_text(json.dumps(summary, indent=2) + "\n")
        environments = summary.get("environments", {})
        batches = summary.get("batches", {})
        line = (
            f"{summary.get('percent', 0):.2f}% covered, {environments.get('merged', 0)} "
            f"environments merged from {batches.get('merged', '?')} of "
            f"{batches.get('planned', '?')} batches"
        )
        print(line, file=self.out)
        for warning in summary.get("warnings", []):
            print(f"warning: {warning}", file=self.err)


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = parse_args(argv)
    merge = Merge(args, out, err)
    if args.dry_run:
        return merge.dry_run()
    try:
        return merge.run()
    except ReportError as exc:
        print(f"error: {exc}", file=err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
