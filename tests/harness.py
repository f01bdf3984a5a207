"""Real parts for tests: moto's S3 server and the AWS Runtime Interface Emulator.

Both run as subprocesses on 127.0.0.1 with free ports, so tests talk HTTP to
them exactly as the function does in Lambda.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def pinned_version(package: str) -> str:
    """The version ``requirements.txt`` pins for ``package``."""
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package.lower():
            return version.strip()
    raise LookupError(f"{package} is not pinned in requirements.txt")


FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


# What a build of the package never needs: copied around it, they only cost time.
_NOT_BUILT = (".git", ".venv", ".local", "*_cache", ".hypothesis", "build", "*.egg-info",
              "__pycache__", "coverage-report", "node_modules")  # fmt: skip


def build_wheel(destination: Path) -> Path:
    """A wheel of this checkout in ``destination``, built from a throwaway copy:
    setuptools writes ``build/`` and ``*.egg-info`` next to the sources it builds,
    and a test must not leave them in the user's checkout."""
    source = Path(tempfile.mkdtemp(prefix="lambda-coverage-src-"))
    try:
        shutil.copytree(
            REPO_ROOT, source, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_NOT_BUILT)
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
             "--disable-pip-version-check", "-w", str(destination), str(source)],
            check=True, timeout=300,
        )  # fmt: skip
    finally:
        shutil.rmtree(source, ignore_errors=True)
    (wheel,) = destination.glob("lambda_coverage-*.whl")
    return wheel


# How often `LambdaUnderRIE` starts the RIE on new ports when its own were taken.
PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@functools.cache
def find_rie() -> str:
    """The RIE as the scripts find it (scripts/lib/rie.sh, without downloading):
    $AWS_LAMBDA_RIE, ../shared/bin beside the checkout, PATH, .local/bin."""
    found = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "lib" / "rie.sh"), "--no-download"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if found.returncode != 0:
        raise FileNotFoundError(found.stderr.strip() or "aws-lambda-rie not found")
    return found.stdout.strip().splitlines()[-1]


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The host environment without anything that configures AWS or coverage."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "COVERAGE_", "LAMBDA_", "_HANDLER", "ADMIN_", "HEALTH_"))
    }
    env.update(FAKE_CREDENTIALS)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


class S3Server:
    """moto's S3 as a real HTTP endpoint that boto3 talks SigV4 to (scripts/local_s3.py).

    ``stock=True`` runs ``python -m moto.server`` instead (werkzeug's development
    server, every moto service), which the report benchmark compares against.
    """

    def __init__(self, stock: bool = False) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)  # noqa: SIM115
        if stock:
            command = ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        else:
            command = [str(REPO_ROOT / "scripts" / "local_s3.py"), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [sys.executable, *command],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=clean_environment(),
        )
        wait_for_port(self.port, timeout=30, process=self.process)

    def cpu_seconds(self) -> float:
        """CPU time of the server so far, with its worker processes (gunicorn forks one)."""
        import psutil

        root = psutil.Process(self.process.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()
        os.unlink(self._log.name)


@dataclass
class Invocation:
    status: int
    body: Any
    raw: bytes


def post_invocation(
    port: int, body: bytes, timeout: float = 60, headers: Mapping[str, str] | None = None
) -> Invocation:
    """POST an event to an RIE's invoke endpoint on 127.0.0.1, as ``curl`` would
    (``headers``: e.g. ``X-Amz-Client-Context``, as Lambda's Invoke API sends it)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{INVOKE_PATH}",
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Invocation(status=status, body=parsed, raw=raw)


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


@contextlib.contextmanager
def imported_sample(directory: Path, source: str, prefix: str) -> Iterator[ModuleType]:
    """Write ``source`` as a uniquely named module under ``directory`` and import it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(source)
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop(name, None)


class RIEProcess:
    """An RIE process, and the log of it and its runtime (``log_path``, via ``_log``)."""

    process: subprocess.Popen
    log_path: Path
    _log: Any

    def signal_shutdown(self) -> None:
        """SIGTERM to the RIE without waiting: it passes it on to the runtime."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 15) -> int:
        """Wait for the RIE (and so the runtime) to exit; its exit code."""
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def json_logs(self) -> list[dict[str, Any]]:
        return runtime_records(self.logs())


class LambdaUnderRIE(RIEProcess):
    """One execution environment: the RIE running ``python -m coverage_runtime``.

    The RIE starts the runtime on the first invoke, and crashes on overlapping
    invokes (an upstream bug), so `invoke` is strictly one at a time.
    """

    def __init__(
        self,
        task_root: Path,
        handler: str,
        env: Mapping[str, str],
        log_path: Path,
        command: list[str] | None = None,
    ) -> None:
        self.log_path = log_path
        cmd = command or [sys.executable, "-m", "coverage_runtime", handler]
        # A port `free_port` found free can be taken by another process before the RIE
        # binds it (this machine runs other sessions' tests): the RIE then panics with
        # "address already in use" before listening, and is started again on new ports.
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            self.api_port = free_port()
            while self.api_port == self.port:
                self.api_port = free_port()
            self._log = open(log_path, "wb")  # noqa: SIM115
            self.process = subprocess.Popen(
                [
                    find_rie(),
                    "--runtime-interface-emulator-address",
                    f"127.0.0.1:{self.port}",
                    "--runtime-api-address",
                    f"127.0.0.1:{self.api_port}",
                    *cmd,
                ],
                cwd=task_root,
                env=dict(env),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_for_port(self.port, timeout=15, process=self.process)
                return
            except RuntimeError:
                self._log.close()
                taken = b"address already in use" in log_path.read_bytes()
                if not taken or attempt == PORT_ATTEMPTS:
                    raise

    def invoke(
        self, event: Any, timeout: float = 60, headers: Mapping[str, str] | None = None
    ) -> Invocation:
        return post_invocation(self.port, json.dumps(event).encode(), timeout, headers)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM to the RIE, as ``docker stop`` or Lambda's shutdown does."""
        self.signal_shutdown()
        return self.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


_RECORD_START = '{"timestamp": '


def logged_at(record: dict[str, Any]) -> float:
    """A runtime record's ``timestamp`` (UTC, milliseconds) as `time.time()` counts."""
    moment = datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=UTC).timestamp()


def runtime_records(logs: str) -> list[dict[str, Any]]:
    """The runtime's own JSON log records in ``logs``.

    A record is one ``write`` of a whole line, so it is never split; but with
    several worker processes on one stdout (Managed Instances) another process's
    ``print`` (two writes: the text, then the newline) can put its unfinished
    text before it on the same line.  The record is then the line's suffix from
    the last record start, and it must parse whole."""
    records = []
    for line in logs.splitlines():
        if '"logger": "coverage_runtime"' not in line:
            continue
        start = line.rfind(_RECORD_START)
        assert start >= 0, f"a runtime record without its start: {line!r}"
        records.append(json.loads(line[start:]))
    return records


def shut_down_and_download(
    function: LambdaUnderRIE, s3: Any, bucket: str, destination: Path
) -> tuple[str, Path, str]:
    """SIGTERM right away; the runtime exits cleanly (no SIGKILL, no loss record)
    and leaves one object: its key, its downloaded path and the runtime's logs."""
    function.signal_shutdown()
    assert function.wait(timeout=15) == 0
    logs = function.logs()
    assert "did not exit after deadline" not in logs, "SIGKILLed: " + logs[-3000:]
    assert "coverage upload at shutdown failed" not in logs, logs[-3000:]
    objects = download_objects(s3, bucket, destination)
    assert len(objects) == 1, logs[-3000:]
    key, path = next(iter(objects.items()))
    return key, path, logs


def download_objects(s3: Any, bucket: str, destination: Path) -> dict[str, Path]:
    """Every object in the bucket, downloaded; key -> local path.  An environment's
    delta object (`layout.DELTA_SUFFIX`) is read as the contract says: its data
    joins its base's (same epoch) in one data file, under the base's key."""
    from coverage_runtime import layout

    raw = download_raw_objects(s3, bucket, destination)
    found = {key: path for key, path in raw.items() if not key.endswith(layout.DELTA_SUFFIX)}
    for key, path in raw.items():
        base_key = key.removesuffix(layout.DELTA_EXTENSION)
        if base_key == key or base_key not in found:
            continue
        base_meta = s3.head_object(Bucket=bucket, Key=base_key)["Metadata"]
        delta_meta = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
        if layout.delta_applies(base_meta, delta_meta):
            found[base_key] = union_of(found[base_key], path)
    return found


def download_raw_objects(s3: Any, bucket: str, destination: Path) -> dict[str, Path]:
    """Every object in the bucket, downloaded as it is; key -> local path."""
    found: dict[str, Path] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            path = destination / item["Key"].replace("/", "__").replace("$", "")
            s3.download_file(bucket, item["Key"], str(path))
            found[item["Key"]] = path
    return found


def union_of(base: Path, delta: Path) -> Path:
    """One data file holding both (coverage.py's own update), beside ``base``."""
    from coverage import CoverageData

    joined = base.with_name(base.name + ".joined")
    data = CoverageData(basename=str(joined))
    for part in (base, delta):
        source = CoverageData(basename=str(part))
        source.read()
        data.update(source)
    data.write()
    return joined


def client_context(custom: Mapping[str, Any]) -> dict[str, str]:
    """The ``X-Amz-Client-Context`` header of a Lambda Invoke call with ``custom``
    (what boto3's ``invoke(ClientContext=...)`` sends: base64 of the JSON)."""
    import base64

    encoded = base64.b64encode(json.dumps({"custom": dict(custom)}).encode()).decode()
    return {"X-Amz-Client-Context": encoded}


def lines_by_label(data_file: Path, source_file: Path) -> dict[int, set[str]]:
    """Each executed line of ``source_file`` and the labels (contexts) it ran under."""
    import coverage

    data = coverage.CoverageData(str(data_file))
    data.read()
    return {line: set(labels) for line, labels in data.contexts_by_lineno(str(source_file)).items()}


def executed_lines(data_file: Path, source_file: Path) -> set[int]:
    """Lines of ``source_file`` recorded in a coverage.py data file."""
    from coverage import CoverageData

    data = CoverageData(basename=str(data_file))
    data.read()
    return set(data.lines(str(source_file)) or ())


def line_of(source_file: Path, marker: str) -> int:
    """The 1-based number of the line that contains ``marker``."""
    for number, text in enumerate(source_file.read_text().splitlines(), start=1):
        if marker in text:
            return number
    raise AssertionError(f"{marker!r} not in {source_file}")


def headless_dom(chromium: str, page: Path, profile: Path) -> str:
    """The DOM of a local page after its scripts ran in headless Chromium (the page tests)."""
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
