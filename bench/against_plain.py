"""A real function through the RIE: the shim's S3 object against plain coverage.py.

    python bench/against_plain.py SCENARIO.json --python PY [--branch] [--core CORE]

Tries the shim as a new user would, on a function laid out by AWS's recipe for non-AWS base
images (``pip install --target <task root>``; the task root first on ``sys.path``), with
the shim installed into ``PY``'s interpreter.  The scenario (JSON) names:

    task_root, handler, sources (directories; default the task root), plain_sources (what
    plain coverage.py measures to match: the function's own directories, as it would measure
    the vendored packages too; default sources) or plain_include (file patterns, for a
    function whose own code is a module at the task root), env (the function's
    own variables), events: [{"event": {...} | "file": path, "label": str | null}, ...],
    dynamodb: [{"table": name, "key": attribute}]   (optional: a stock moto server)

Per run it starts fresh environments through the real RIE, into the local S3:

* the shim (``PY -m coverage_runtime HANDLER``), every event in order, the ``label`` sent as
  Lambda Invoke's ClientContext ``coverage-label``; then SIGTERM, and its object downloaded;
* plain coverage.py (``PY -m awslambdaric`` with a handler module that starts
  ``coverage.Coverage`` before importing the function's, and saves after each invocation),
  the same events, same Python, core, sources; it switches coverage.py's dynamic context to
  each invocation's label (``init`` for the imports), so labels compare one by one.  On
  sysmon, where coverage.py has no contexts (its callbacks disable each location after one
  event), it re-arms every event at each switch (``sys.monitoring.restart_events()``); with
  lines only, those contexts are checked against a plain C tracer run of the same events.
  With branches on sysmon (3.14) the truth of a label is instead a fresh plain Coverage over
  each of its runs, in a process that runs every other invocation unmeasured (as
  tests/exactness/labels.py has it), since coverage.py's arcs there depend on what ran before;
  the union is always compared with one plain run without contexts, as `coverage run` has it;

and prints one JSON document: the comparisons (lines, and arcs with ``--branch``), the shim's
WARN/ERROR records, X-Ray ``discarded`` lines, and the responses.  Needs only this checkout,
the RIE and the network-free local S3; the function itself is the user's (not shipped here).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness import (  # noqa: E402
    LambdaUnderRIE,
    S3Server,
    clean_environment,
    client_context,
    download_objects,
)

# The plain run's handler module: coverage.py started before the function is imported, as
# `coverage run` would, saved after each invocation (the RIE kills a runtime without an
# extension at shutdown, so nothing at exit would run).
PLAIN_HANDLER = """\
import importlib, json, os, sys
import coverage

_settings = json.loads(os.environ["PLAIN_COVERAGE"])
_only = _settings["only"]  # a label: only its runs, each in a Coverage of its own
_runs = 0


def _new_coverage():
    global _runs
    _runs += 1
    data_file = _settings["data_file"] + (f".{_runs}" if _only is not None else "")
    cov = coverage.Coverage(data_file=data_file, source=_settings["sources"],
                            include=_settings["include"], branch=_settings["branch"],
                            config_file=False)
    cov.set_option("run:core", _settings["core"])
    cov.start()
    return cov


_cov = _new_coverage() if _only in (None, "init") else None
if _settings["contexts"]:
    _cov.switch_context("init")
_module, _name = _settings["handler"].rsplit(".", 1)
_real = getattr(importlib.import_module(_module), _name)
if _only == "init":
    _cov.stop()
    _cov.save()
    _cov = None


def handler(event, context):
    global _cov
    custom = getattr(context.client_context, "custom", None) or {}
    label = custom.get("coverage-label") or ""
    if _only is not None:
        if label == _only and _cov is None:
            _cov = _new_coverage()
        elif label != _only and _cov is not None:
            _cov.stop()
            _cov.save()
            _cov = None
    elif _settings["contexts"]:
        if _cov.switch_context(label) != label and _settings["core"] == "sysmon":
            # coverage.py's sysmon callbacks DISABLE each location after its first event:
            # re-arm them all, so a new context sees every line again (plain only).
            sys.monitoring.restart_events()
    try:
        return _real(event, context)
    finally:
        if _cov is not None:
            _cov.save()
"""

DISCARDED = re.compile(r"Subsegment .* discarded|discarded", re.IGNORECASE)


def load_events(scenario: dict[str, Any], base: Path) -> list[tuple[Any, str | None]]:
    events = []
    for item in scenario["events"]:
        event = item.get("event")
        if event is None:
            event = json.loads((base / item["file"]).read_text())
        events.append((event, item.get("label")))
    return events


def function_env(
    scenario: dict[str, Any], task_root: Path, extra: dict[str, str]
) -> dict[str, str]:
    env = clean_environment(
        {
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_FUNCTION_NAME": scenario.get("name", "real-fn"),
            **scenario.get("env", {}),
            **extra,
        }
    )
    env.pop("PYTHONPATH", None)  # the shim as installed into the interpreter
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a function's bytecode, as in an image
    return env


def invoke_all(
    function: LambdaUnderRIE, events: list[tuple[Any, str | None]], pause: float = 0
) -> list[Any]:
    """Each event in order; with ``pause``, that many seconds (and a little) between them, so
    that every response after the first is followed by a checkpoint."""
    answers = []
    for number, (event, label) in enumerate(events):
        if pause and number:
            time.sleep(pause + 0.1)
        headers = client_context({"coverage-label": label}) if label else None
        answer = function.invoke(event, headers=headers)
        body = answer.body
        status = body.get("statusCode") if isinstance(body, dict) else None
        answers.append([answer.status, status])
    return answers


def run_shim(
    args: argparse.Namespace,
    scenario: dict[str, Any],
    task_root: Path,
    events: list[tuple[Any, str | None]],
    s3: S3Server | ExternalS3,
    scratch: Path,
    extra: dict[str, str],
) -> dict[str, Any]:
    bucket = f"shim-{uuid.uuid4().hex[:10]}"
    s3.client().create_bucket(Bucket=bucket)
    env = function_env(
        scenario,
        task_root,
        {
            **extra,
            "COVERAGE_S3_BUCKET": bucket,
            "COVERAGE_S3_ENDPOINT_URL": s3.endpoint_url,
            "COVERAGE_SOURCE": ",".join(scenario.get("sources") or [str(task_root)]),
            "COVERAGE_BRANCH": str(args.branch).lower(),
            "COVERAGE_CORE": args.core,
            "COVERAGE_FLUSH_INTERVAL_SECONDS": str(args.checkpoint_seconds),
            "COVERAGE_DATA_DIR": str(scratch / f"data-{bucket}"),
            **dict(item.split("=", 1) for item in args.shim_env),
        },
    )
    function = LambdaUnderRIE(
        task_root,
        scenario["handler"],
        env,
        scratch / f"{bucket}.log",
        command=[args.python, "-m", "coverage_runtime", scenario["handler"]],
    )
    try:
        answers = invoke_all(function, events, pause=args.checkpoint_seconds)
        time.sleep(0.05)
        exit_code = function.terminate()
    finally:
        function.kill()
    logs = function.logs()
    objects = download_objects(s3.client(), bucket, scratch)
    records = function.json_logs()
    uploads = [r.get("reason") for r in records if r.get("message") == "coverage uploaded"]
    return {
        "answers": answers,
        "exit": exit_code,
        "uploads": uploads,
        "objects": [str(p) for p in objects.values()],
        "ours": [
            {k: r.get(k) for k in ("level", "message", "slug", "reason") if k in r}
            for r in records
            if r.get("level") in ("WARN", "WARNING", "ERROR", "CRITICAL")
        ],
        "started": next((r for r in records if r.get("message") == "coverage runtime started"), {}),
        "discarded": [line[:200] for line in logs.splitlines() if DISCARDED.search(line)],
        "log": str(function.log_path),
    }


def run_plain(
    args: argparse.Namespace,
    scenario: dict[str, Any],
    task_root: Path,
    events: list[tuple[Any, str | None]],
    scratch: Path,
    extra: dict[str, str],
    contexts: bool,
    only: str | None = None,
) -> dict[str, Any]:
    wrapper_dir = scratch / "plain-handler"
    wrapper_dir.mkdir(exist_ok=True)
    (wrapper_dir / "plain_coverage_handler.py").write_text(PLAIN_HANDLER)
    data_file = scratch / f"plain-{uuid.uuid4().hex[:10]}.coverage"
    include = scenario.get("plain_include")  # files: coverage.py's source takes directories
    sources = scenario.get("plain_sources") or scenario.get("sources") or [str(task_root)]
    env = function_env(scenario, task_root, extra)
    env["PYTHONPATH"] = str(wrapper_dir)  # after the task root (sys.path[0] is the cwd)
    env["PLAIN_COVERAGE"] = json.dumps(
        {
            "data_file": str(data_file),
            "sources": None if include else sources,
            "include": include,
            "branch": args.branch,
            "core": args.core,
            "contexts": contexts,
            "only": only,
            "handler": scenario["handler"],
        }
    )
    function = LambdaUnderRIE(
        task_root,
        "plain_coverage_handler.handler",
        env,
        scratch / f"{data_file.stem}.log",
        command=[args.python, "-m", "awslambdaric", "plain_coverage_handler.handler"],
    )
    try:
        answers = invoke_all(function, events)
    finally:
        function.kill()
    logs = function.logs()
    discarded = [line for line in logs.splitlines() if DISCARDED.search(line)]
    if only is not None:  # the label's runs, combined into one data file
        from coverage import CoverageData

        combined = CoverageData(basename=str(data_file))
        for part in sorted(scratch.glob(f"{data_file.name}.*")):
            run = CoverageData(basename=str(part))
            run.read()
            combined.update(run)
        combined.write()
    return {"answers": answers, "data_file": str(data_file), "discarded": len(discarded)}


def read(path: str, contexts: list[str] | None = None) -> dict[str, dict[str, list]]:
    """File -> lines and arcs, under ``contexts`` (exact names) or all."""
    from coverage import CoverageData

    data = CoverageData(basename=path)
    data.read()
    if contexts is not None:
        data.set_query_contexts(["^" + re.escape(c) + "$" for c in contexts])
    found: dict[str, dict[str, list[Any]]] = {}
    for name in data.measured_files():
        lines = sorted(data.lines(name) or ())
        arcs = sorted(list(a) for a in (data.arcs(name) or ())) if data.has_arcs() else []
        if lines or arcs:
            found[name] = {"lines": lines, "arcs": arcs}
    return found


def compare(ours: dict, plain: dict) -> dict[str, Any]:
    """Per file, what one has that the other has not; empty when equal."""
    diff = {}
    for name in sorted(set(ours) | set(plain)):
        a = ours.get(name, {"lines": [], "arcs": []})
        b = plain.get(name, {"lines": [], "arcs": []})
        entry = {}
        for kind in ("lines", "arcs"):
            mine = {tuple(x) if isinstance(x, list) else x for x in a[kind]}
            theirs = {tuple(x) if isinstance(x, list) else x for x in b[kind]}
            if mine != theirs:
                entry[kind] = {
                    "only_shim": sorted(mine - theirs)[:20],
                    "only_plain": sorted(theirs - mine)[:20],
                }
        if entry:
            diff[name] = entry
    return {
        "equal": not diff,
        "files": len(plain),
        "lines": sum(len(v["lines"]) for v in plain.values()),
        "arcs": sum(len(v["arcs"]) for v in plain.values()),
        "diff": diff,
    }


def contexts_of(path: str) -> list[str]:
    from coverage import CoverageData

    data = CoverageData(basename=path)
    data.read()
    return sorted(data.measured_contexts())


class ExternalS3:
    """An S3 endpoint already running (the host's scripts/local_s3.py, for a run inside the
    image: ``--network=host``, where moto is not installed)."""

    client = S3Server.client  # the same client, on the given endpoint

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def stop(self) -> None:
        """Not ours to stop."""


class DynamoDB:
    """A stock moto server for the function's DynamoDB tables (the SDKs' service-specific
    endpoint variable points boto3 at it), emptied before each run: every environment starts
    from the same state, so an idempotent write runs its body in each."""

    def __init__(self, tables: list[dict[str, str]], endpoint_url: str | None) -> None:
        import boto3

        self.tables = tables
        self.server = None if endpoint_url else S3Server(stock=True)
        endpoint_url = endpoint_url or self.server.endpoint_url  # type: ignore[union-attr]
        self.env = {"AWS_ENDPOINT_URL_DYNAMODB": endpoint_url}
        self.client = boto3.session.Session().client(
            "dynamodb",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def reset(self) -> None:
        existing = set(self.client.list_tables()["TableNames"])
        for table in self.tables:
            if table["table"] in existing:
                self.client.delete_table(TableName=table["table"])
            self.client.create_table(
                TableName=table["table"],
                KeySchema=[{"AttributeName": table["key"], "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": table["key"], "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--python", required=True, help="a Python with lambda-coverage installed")
    parser.add_argument("--branch", action="store_true")
    parser.add_argument("--core", choices=["sysmon", "ctrace"], required=True)
    parser.add_argument(
        "--checkpoint-seconds",
        type=int,
        default=0,
        help="COVERAGE_FLUSH_INTERVAL_SECONDS, and that long between invocations (0: one upload"
        " at shutdown)",
    )
    parser.add_argument(
        "--label-truth",
        choices=["contexts", "runs"],
        help="contexts: one plain run switching contexts (sysmon: re-armed at each switch);"
        " runs: a fresh plain Coverage per run of a label (default on sysmon with branches)",
    )
    parser.add_argument("--s3-endpoint", help="an S3 already running (default: start one)")
    parser.add_argument("--dynamodb-endpoint", help="a DynamoDB (moto) already running")
    parser.add_argument(
        "--shim-env", action="append", default=[], help="KEY=VALUE for the shim's environment"
    )
    args = parser.parse_args(argv)
    scenario = json.loads(args.scenario.read_text())
    task_root = Path(scenario["task_root"]).resolve()
    events = load_events(scenario, args.scenario.parent)
    scratch = Path(tempfile.mkdtemp(prefix="against-plain-"))
    s3 = ExternalS3(args.s3_endpoint) if args.s3_endpoint else S3Server()
    dynamodb = None
    if scenario.get("dynamodb"):
        dynamodb = DynamoDB(scenario["dynamodb"], args.dynamodb_endpoint)
    extra = dynamodb.env if dynamodb else {}

    def fresh() -> dict[str, str]:
        if dynamodb:
            dynamodb.reset()
        return extra

    try:
        results: dict[str, Any] = {"python": args.python, "core": args.core, "branch": args.branch}
        shim = run_shim(args, scenario, task_root, events, s3, scratch, fresh())
        results["shim"] = {k: v for k, v in shim.items() if k != "objects"}
        [ours_file] = shim["objects"]
        # The union against `coverage run` as a user would have it: no contexts, no re-arming.
        union = run_plain(args, scenario, task_root, events, scratch, fresh(), False)
        results["plain_answers"] = union["answers"]
        results["plain_discarded"] = union["discarded"]
        results["labels"] = contexts_of(ours_file)
        results["union"] = compare(read(ours_file), read(union["data_file"]))
        labels = ["init", *sorted({label or "" for _, label in events})]
        if set(results["labels"]) <= {""}:
            labels = []  # labels off (COVERAGE_LABELS=none): the union is the comparison
        truth = args.label_truth or (
            "runs" if args.core == "sysmon" and args.branch else "contexts"
        )
        results["label_truth"] = truth
        per_label = {}
        if truth == "runs":
            # Each run of a label (its consecutive invocations) measured by a fresh Coverage
            # in a process that ran everything else unmeasured: on sysmon with branches the
            # arcs coverage.py draws from first hits depend on what ran before under the same
            # Coverage, so re-armed contexts are no truth there (tests/exactness/labels.py).
            for label in labels:
                alone = run_plain(args, scenario, task_root, events, scratch, fresh(), False, label)
                per_label[label] = compare(read(ours_file, [label]), read(alone["data_file"]))
        elif labels:
            plain = run_plain(args, scenario, task_root, events, scratch, fresh(), True)
            results["plain_contexts_union_equal"] = compare(
                read(plain["data_file"]), read(union["data_file"])
            )["equal"]
            per_label = {
                label: compare(read(ours_file, [label]), read(plain["data_file"], [label]))
                for label in labels
            }
            if args.core == "sysmon":
                # The plain run's contexts on sysmon rest on re-arming at each switch; check
                # them against the C tracer's (same lines, contexts supported), same events.
                core, args.core = args.core, "ctrace"
                by_ctrace = run_plain(args, scenario, task_root, events, scratch, fresh(), True)
                args.core = core
                results["plain_contexts_equal_ctrace"] = all(
                    compare(
                        read(plain["data_file"], [label]), read(by_ctrace["data_file"], [label])
                    )["equal"]
                    for label in labels
                )
        results["per_label"] = per_label
        results["exact"] = (
            results["union"]["equal"]
            and all(v["equal"] for v in per_label.values())
            and results.get("plain_contexts_equal_ctrace", True)
        )
        print(json.dumps(results, indent=1))
        return 0 if results["exact"] else 1
    finally:
        s3.stop()
        if dynamodb is not None and dynamodb.server is not None:
            dynamodb.server.stop()


if __name__ == "__main__":
    sys.exit(main())
