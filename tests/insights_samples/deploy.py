"""The sample repository at its revisions, and environments really run at three of them."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import LambdaUnderRIE, S3Server, clean_environment
from tests.insights_samples.revisions import REVISIONS

FUNCTION = "shop-fn"
UNKNOWN_REVISION = "0123abcd" * 5  # a commit id the repository does not have


@dataclass(frozen=True)
class Environment:
    revision: int  # index into REVISIONS; its files run
    version: str
    events: tuple[dict[str, Any], ...]
    unknown: bool = False  # recorded under UNKNOWN_REVISION instead of its commit


ENVIRONMENTS = (
    Environment(0, "1", ({"op": "order", "items": [5, 7]}, {"op": "refund", "amount": 3},
                         {"op": "quote", "amount": 150})),
    Environment(0, "1", ({"op": "order", "items": [1]},)),
    Environment(1, "2", ({"op": "order", "items": [2]}, {"op": "cancel", "order": 9})),
    Environment(1, "2", ({"op": "quote", "amount": 50},)),
    Environment(2, "3", ({"op": "order", "items": [4]},)),
    Environment(2, "3", ({"op": "refund", "amount": 1},), unknown=True),
)  # fmt: skip


# The test's own handler around the revision's: it uploads the snapshot on request
# (coverage_runtime.flush), so no environment's data depends on the shutdown window on a
# busy machine.  It is not measured, and not part of the revisions.
FLUSHER = """\
import coverage_runtime
import handler as revision


def handler(event, context):
    if event.get("op") == "flush":
        return {"uploaded": coverage_runtime.flush() is not None}
    return revision.handler(event, context)
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def write_tree(root: Path, files: dict[str, str]) -> None:
    if root.exists():
        shutil.rmtree(root)
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


def make_repository(repo: Path) -> list[str]:
    """A git repository with one commit per revision; the work tree at the last. Commit ids."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "user.name", "test")
    commits = []
    for number, files in enumerate(REVISIONS, 1):
        for old in [p for p in repo.rglob("*.py")]:
            old.unlink()
        for relative, text in files.items():
            (repo / relative).parent.mkdir(parents=True, exist_ok=True)
            (repo / relative).write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"r{number}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    return commits


def deploy(
    s3_server: S3Server, bucket: str, task_root: Path, commits: list[str], work: Path
) -> None:
    """Run every environment through the RIE; each uploads its data (`FLUSHER`).

    Every environment serves one invocation more than its events: the flush."""
    for index, env in enumerate(ENVIRONMENTS):
        write_tree(task_root, {**REVISIONS[env.revision], "flusher.py": FLUSHER})
        variables = clean_environment(
            {
                "COVERAGE_S3_BUCKET": bucket,
                "COVERAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
                "COVERAGE_DATA_DIR": str(work / f"data-{index}"),
                "LAMBDA_TASK_ROOT": str(task_root),
                "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
                "AWS_LAMBDA_FUNCTION_VERSION": env.version,
                "CODE_REVISION": UNKNOWN_REVISION if env.unknown else commits[env.revision],
                "COVERAGE_EXCLUDE_PATTERNS": "*/flusher.py",
            }
        )
        function = LambdaUnderRIE(
            task_root, "flusher.handler", variables, work / f"rie-{index}.log"
        )
        try:
            for event in env.events:
                result = function.invoke(event)
                assert result.status == 200 and "errorType" not in str(result.body), result.body
            flushed = function.invoke({"op": "flush"})
            assert flushed.body == {"uploaded": True}, function.logs()
            assert function.terminate() == 0, function.logs()
        finally:
            function.kill()
