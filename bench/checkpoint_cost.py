"""What a checkpoint costs the invocation it follows (Lambda bills until the runtime asks for
the next event): the RIE's REPORT Duration of invocations followed by a checkpoint that has
new data to write, against the others.  The upload itself runs on the shipping thread.

    .venv/bin/python bench/checkpoint_cost.py [-r ROUNDS]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.harness import LambdaUnderRIE, S3Server, clean_environment  # noqa: E402

REPORT_RE = re.compile(r"^REPORT .*?\tDuration: ([0-9.]+) ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--rounds", type=int, default=40)
    args = parser.parse_args()
    s3 = S3Server()
    scratch = Path(tempfile.mkdtemp())
    try:
        s3.client().create_bucket(Bucket="checkpoint-cost")
        env = clean_environment(
            {
                "COVERAGE_S3_BUCKET": "checkpoint-cost",
                "COVERAGE_S3_ENDPOINT_URL": s3.endpoint_url,
                "COVERAGE_DATA_DIR": str(scratch / "data"),
                "LAMBDA_TASK_ROOT": str(REPO_ROOT),
                "COVERAGE_SOURCE": str(REPO_ROOT / "app"),
                "AWS_LAMBDA_FUNCTION_NAME": "checkpoint-cost",
                "COVERAGE_FLUSH_INTERVAL_SECONDS": "1",
                "ADMIN_ALLOW_DIRECT_WITHOUT_TOKEN": "true",
            }
        )
        function = LambdaUnderRIE(REPO_ROOT, "app.handler.lambda_handler", env, scratch / "rie.log")
        events = REPO_ROOT / "events"
        business = [json.loads(p.read_text()) for p in sorted(events.glob("business*.json"))]
        reset = json.loads((events / "admin-coverage-reset.json").read_text())
        for _ in range(args.rounds):
            function.invoke(reset)  # so that the checkpoint has new data to write
            for i in range(9):
                function.invoke(business[i % len(business)])
            time.sleep(1.05)  # the checkpoint interval passes: the next invoke checkpoints
            function.invoke(business[0])
        function.terminate()
        durations = [float(m[1]) for m in map(REPORT_RE.match, function.logs().splitlines()) if m]
        durations = durations[1:]  # the first includes init
        after = [d for i, d in enumerate(durations) if i % 11 == 10]
        others = [d for i, d in enumerate(durations) if i % 11 not in (0, 10)]
        uploads = function.logs().count('"coverage uploaded"')
        print(
            f"REPORT Duration, median: followed by a checkpoint {statistics.median(after):.2f} ms "
            f"({len(after)}), others {statistics.median(others):.2f} ms ({len(others)}); "
            f"{uploads} uploads"
        )
    finally:
        s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
