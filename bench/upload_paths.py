"""The uploader's S3 client, side by side: boto3, botocore's pieces, the light one.

    bench/upload_paths.py                                     # the venv's Python, 5 rounds
    bench/upload_paths.py --python .local/venvs/runtime-3.13.0/bin/python -r 8 --puts 1000
    bench/upload_paths.py --json /tmp/upload-paths.json

Each sample is a fresh interpreter that first imports what the shim has
loaded when the shipping thread builds its client (coverage.py, the shim's
modules, ``http.client`` for the extension), then, for one path:

* ``boto3``: ``boto3`` and the client `s3.make_client` built before this
  change (what the uploader used);
* ``botocore``: botocore's pieces without the service model:
  ``S3SigV4Auth`` + ``AWSRequest`` + ``EnvProvider`` + ``URLLib3Session``;
* ``light``: `s3.ObjectClient` (SigV4 with ``hmac``/``hashlib``, ``http.client``);
* ``awscrt`` (only where it is installed: not a dependency): its
  credentials provider, event loop, resolver and bootstrap.

It measures, from that point: **ready** (wall and CPU until the client can
send: imports and build), the **first PUT** of a 64 KiB snapshot to the local
S3 (wall, CPU), and the **RSS added** after the build and after ``--puts``
PUTs.  Paths run interleaved in rotating order; medians.  Targets: ready in
<= 1 ms of CPU (so it may be built at init or inside the shutdown window);
RSS after the PUTs <= 10 MB (issue 17 item 4's whole budget).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness import FAKE_CREDENTIALS, S3Server, clean_environment  # noqa: E402

PATHS = ("boto3", "botocore", "light", "awscrt")
METRICS = (
    "ready_ms",
    "ready_cpu_ms",
    "first_put_ms",
    "first_put_cpu_ms",
    "rss_ready_mb",
    "rss_after_puts_mb",
)
READY_CPU_TARGET_MS = 1.0
RSS_TARGET_MB = 10.0

# One sample, in a fresh interpreter: argv = path, endpoint, bucket, puts.
PROBE = r"""
import json, os, sys, time
import coverage, http.client, sqlite3, threading
import coverage_runtime.shim.bootstrap, coverage_runtime.shim.session
import psutil

def rss():
    return psutil.Process().memory_info().rss / 2**20

path, endpoint, bucket, puts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
body = os.urandom(64 * 1024)
rss0 = rss()
cpu0, wall0 = time.process_time(), time.perf_counter()
if path == "boto3":
    from coverage_runtime.s3 import make_client
    client = make_client(purpose="uploader", endpoint_url=endpoint, attempts=3,
                         connect_timeout=2, read_timeout=5)
    def put(key):
        client.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256")
elif path == "botocore":
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import EnvProvider
    from botocore.httpsession import URLLib3Session
    signer = S3SigV4Auth(EnvProvider().load(), "s3", "us-east-1")
    session = URLLib3Session(timeout=(2, 5))
    def put(key):
        request = AWSRequest("PUT", f"{endpoint}/{bucket}/{key}", data=body,
                             headers={"x-amz-server-side-encryption": "AES256"})
        signer.add_auth(request)
        answer = session.send(request.prepare())
        assert answer.status_code == 200, answer.content
elif path == "light":
    from coverage_runtime.s3 import make_client
    client = make_client(purpose="uploader", endpoint_url=endpoint, attempts=3,
                         connect_timeout=2, read_timeout=5, light=True)
    def put(key):
        client.put_object({"Bucket": bucket, "Key": key, "Body": body,
                           "ServerSideEncryption": "AES256"})
elif path == "awscrt":
    from awscrt import auth, io
    provider = auth.AwsCredentialsProvider.new_environment()
    loop = io.EventLoopGroup(1)
    bootstrap = io.ClientBootstrap(loop, io.DefaultHostResolver(loop))
    put = None
cpu1, wall1 = time.process_time(), time.perf_counter()
rss1 = rss()
result = {"ready_ms": (wall1 - wall0) * 1000, "ready_cpu_ms": (cpu1 - cpu0) * 1000,
          "rss_ready_mb": rss1 - rss0}
if put is not None:
    put("first")
    cpu2, wall2 = time.process_time(), time.perf_counter()
    result.update(first_put_ms=(wall2 - wall1) * 1000, first_put_cpu_ms=(cpu2 - cpu1) * 1000)
    for n in range(puts):
        put(f"again-{n % 8}")
    result["rss_after_puts_mb"] = rss() - rss0
print(json.dumps(result))
"""


def available(python: str, path: str) -> bool:
    if path != "awscrt":
        return True
    found = subprocess.run([python, "-c", "import awscrt"], capture_output=True, check=False)
    return found.returncode == 0


def sample(python: str, path: str, endpoint: str, bucket: str, puts: int) -> dict[str, Any]:
    env = clean_environment({**FAKE_CREDENTIALS, "PYTHONPATH": str(REPO_ROOT)})
    done = subprocess.run(
        [python, "-c", PROBE, path, endpoint, bucket, str(puts)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{path}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--puts", type=int, default=100, help="PUTs after the first, per sample")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    paths = [path for path in PATHS if available(args.python, path)]
    server = S3Server()
    samples: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
    try:
        bucket = f"paths-{uuid.uuid4().hex[:8]}"
        server.client().create_bucket(Bucket=bucket)
        for round_ in range(args.rounds):
            order = paths[round_ % len(paths) :] + paths[: round_ % len(paths)]
            for path in order:
                found = sample(args.python, path, server.endpoint_url, bucket, args.puts)
                samples[path].append(found)
    finally:
        server.stop()

    def median(path: str, metric: str) -> float | None:
        values = [s[metric] for s in samples[path] if metric in s]
        return statistics.median(values) if values else None

    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"Python {version}, {args.rounds} rounds, {args.puts} PUTs of 64 KiB after the first; "
          "medians, from the shim's imports on")  # fmt: skip
    print("| path | ready ms | ready CPU ms | first PUT ms | first PUT CPU ms | RSS ready MB "
          f"| RSS after PUTs MB | ready CPU <= {READY_CPU_TARGET_MS:g} ms "
          f"| RSS <= {RSS_TARGET_MB:g} MB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    for path in paths:
        ready_cpu = median(path, "ready_cpu_ms")
        rss_after = median(path, "rss_after_puts_mb")
        cpu_ok = "pass" if ready_cpu is not None and ready_cpu <= READY_CPU_TARGET_MS else "FAIL"
        rss_ok = "-" if rss_after is None else ("pass" if rss_after <= RSS_TARGET_MB else "FAIL")
        cells = [median(path, metric) for metric in METRICS]
        print(f"| {path} | " + " | ".join(cell(value) for value in cells)
              + f" | {cpu_ok} | {rss_ok} |")  # fmt: skip
    light, boto3 = median("light", "ready_cpu_ms"), median("boto3", "ready_cpu_ms")
    if light and boto3:
        print(f"ready CPU, boto3 / light: {boto3 / light:.0f}x")
    if args.json:
        args.json.write_text(json.dumps({"python": version, "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
