"""A local S3 on 127.0.0.1 for the tests, the demo and the benchmarks: moto's S3 behind gunicorn.

``python -m moto.server`` serves every moto service through werkzeug's
development server. That server closes the connection after every response and
starts a thread per connection, and moto's dispatcher picks the service of each
request by listing moto's packages on disk: about 1.7 ms of server CPU per GET
here, more than ``coverage combine`` spends on a data file. A report benchmark
against it measures moto, not the report.

This serves the same moto S3 application (``create_backend_app("s3")``: moto's
own S3 code, the same responses and errors) through gunicorn: one worker
process (moto keeps its state in memory) with a thread pool and HTTP/1.1
keep-alive. About 0.65 ms of server CPU per GET (2 threads). Only S3 is served; nothing
here needs another service. (waitress is a little cheaper but capitalizes
response headers, so boto3 would see metadata ``Invocations`` where S3 says
``invocations``.)

    python scripts/local_s3.py --port 5000
"""

from __future__ import annotations

import argparse
import ipaddress
import os

# Loopback only: this is a test double with no authentication.
LOOPBACK_HINT = "use 127.0.0.1 (the local S3 must only listen on loopback)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve moto's S3 on 127.0.0.1 with keep-alive (tests, demo, benchmarks)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, required=True, help="TCP port")
    parser.add_argument("--threads", type=int, default=2, help="request threads (default 2)")
    args = parser.parse_args(argv)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        parser.error(f"--host {args.host} is not a loopback address; {LOOPBACK_HINT}")
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port (1-65535)")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # moto signs nothing and checks no credentials; region and keys only need to exist.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    try:
        from gunicorn.app.base import BaseApplication
        from moto.server import create_backend_app
    except ImportError as exc:
        raise SystemExit(
            f"local_s3.py: {exc.name or exc} is missing: it needs moto[server] and gunicorn "
            "from requirements-dev.txt (scripts/setup-venv.sh installs them)"
        ) from None

    settings = {
        "bind": f"{args.host}:{args.port}",
        "workers": 1,  # moto's buckets live in this one process
        "worker_class": "gthread",
        "threads": args.threads,
        "keepalive": 60,
        "graceful_timeout": 1,  # tests stop it often; nothing to drain
        "loglevel": "warning",
        "accesslog": None,
    }

    class LocalS3(BaseApplication):
        def load_config(self) -> None:
            for name, value in settings.items():
                self.cfg.set(name, value)

        def load(self):  # noqa: ANN202 - a WSGI application
            return create_backend_app("s3")

    print(f"local S3 (moto's S3 under gunicorn) on http://{args.host}:{args.port}", flush=True)
    LocalS3().run()


if __name__ == "__main__":
    main()
