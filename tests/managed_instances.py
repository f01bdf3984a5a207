"""A Lambda Managed Instances environment on the host: the RIE in its multi-concurrent mode.

With ``AWS_LAMBDA_MAX_CONCURRENCY`` set, the RIE ignores the command it is given
and runs the first of ``/var/runtime/bootstrap``, ``/var/task/bootstrap`` and
``/opt/bootstrap``, in ``/var/task``, as uid 993 (see
/work/shared/research/managed-instances.md).  So each environment runs in a
private mount namespace (``unshare --mount``, which needs root: the container
tests cover a machine without it), where

- ``/var`` is a fresh tmpfs whose ``task`` is the staged function with its
  ``bootstrap`` (nothing of the host's ``/var`` is touched or seen);
- ``/tmp`` is a directory of the test's, shared by the workers as in Lambda,
  and inspected by the test afterwards;
- a directory that uid 993 may not cross on the way to the interpreter (pyenv
  under ``/root``) is replaced by a tmpfs holding only that way through.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from tests.harness import (
    FAKE_CREDENTIALS,
    REPO_ROOT,
    Invocation,
    RIEProcess,
    find_rie,
    free_port,
    post_invocation,
    wait_for_port,
)

TASK_ROOT = "/var/task"
RUNTIME_UID = 993


def closed_ancestors(path: Path) -> list[tuple[Path, Path]]:
    """(directory, child on the way to ``path``) for each directory on the way
    that other users may not cross."""
    found = []
    parts = path.resolve().parts
    for depth in range(1, len(parts) - 1):
        directory = Path(*parts[: depth + 1])
        if not os.stat(directory).st_mode & 0o001:
            found.append((directory, Path(*parts[: depth + 2])))
    return found


def namespace_script(task: Path, shared_tmp: Path, python: Path, rie: list[str]) -> str:
    lines = [
        "set -e",
        "mount -t tmpfs -o mode=755 lmi-var /var",
        "mkdir /var/task",
        f"mount --bind {shlex.quote(str(task))} /var/task",
    ]
    for number, (closed, child) in enumerate(closed_ancestors(python)):
        keep = f"/var/.keep{number}"
        lines += [
            f"mkdir {keep}",
            f"mount --bind {shlex.quote(str(child))} {keep}",
            f"mount -t tmpfs -o mode=755 lmi-open {shlex.quote(str(closed))}",
            f"mkdir -p {shlex.quote(str(child))}",
            f"mount --move {keep} {shlex.quote(str(child))}",
        ]
    lines += [
        f"mount --bind {shlex.quote(str(shared_tmp))} /tmp",
        "exec " + " ".join(shlex.quote(part) for part in rie),
    ]
    return "\n".join(lines) + "\n"


def can_run() -> str | None:
    """Why Managed Instances environments cannot run here, or None."""
    if os.geteuid() != 0:
        return "the RIE's Managed Instances mode needs /var/task: unshare --mount needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"unshare --mount failed: {probe.stderr.decode(errors='replace').strip()}"
    return None


class ManagedInstance(RIEProcess):
    """One multi-concurrent execution environment on the host: the RIE with N workers.

    ``env`` is the RIE's whole environment (`harness.clean_environment`)."""

    PYTHONPATH: str | None = str(REPO_ROOT)  # the checkout's shim (the image has its own)
    START_SECONDS = 15.0

    def __init__(
        self,
        work: Path,
        python: str,
        handler: str,
        sources: list[Path],
        env: Mapping[str, str],
        workers: int,
        bootstrap: str | None = None,
    ) -> None:
        self.workers = workers
        self.task = work / "task"
        self.tmp = work / "shared-tmp"
        self.task.mkdir(parents=True)
        self.tmp.mkdir(parents=True)
        os.chmod(self.task, 0o755)
        os.chmod(self.tmp, 0o1777)
        for source in sources:
            if source.is_dir():  # (a package: readable by the runtime's user)
                shutil.copytree(source, self.task / source.name)
                for path in (self.task / source.name).rglob("*"):
                    os.chmod(path, 0o755 if path.is_dir() else 0o644)
                os.chmod(self.task / source.name, 0o755)
                continue
            shutil.copy(source, self.task / source.name)
            os.chmod(self.task / source.name, 0o644)
        script = bootstrap or f"exec {shlex.quote(python)} -m coverage_runtime {handler}"
        path = f" PYTHONPATH={shlex.quote(self.PYTHONPATH)}" if self.PYTHONPATH else ""
        (self.task / "bootstrap").write_text(
            f"#!/bin/sh\nexport PYTHONDONTWRITEBYTECODE=1{path}\n{script}\n"
        )
        os.chmod(self.task / "bootstrap", 0o755)
        self.port = free_port()
        self.api_port = free_port()
        self.log_path = work / "rie.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self._runtime: list[psutil.Process] = []
        self.process = self._launch(
            work, python, {**env, "AWS_LAMBDA_MAX_CONCURRENCY": str(workers)}
        )
        wait_for_port(self.port, timeout=self.START_SECONDS, process=self.process)

    def _launch(self, work: Path, python: str, env: Mapping[str, str]) -> subprocess.Popen:
        rie = [
            find_rie(),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{self.api_port}",
        ]
        script_path = work / "namespace.sh"
        script_path.write_text(namespace_script(self.task, self.tmp, Path(python), rie))
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", str(script_path)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    # -- invoking --------------------------------------------------------------

    def invoke(
        self, event: Any, timeout: float = 60, headers: Mapping[str, str] | None = None
    ) -> Invocation:
        return post_invocation(self.port, json.dumps(event).encode(), timeout, headers)

    def invoke_as_lambda_caller(
        self, event: Any, attempts: int = 200, headers: Mapping[str, str] | None = None
    ) -> Invocation:
        """Retry ``Runtime.Unavailable`` (every worker busy) with a short back-off,
        as Lambda's front end retries another environment or throttles."""
        for _ in range(attempts):
            answer = self.invoke(event, headers=headers)
            if not unavailable(answer):
                return answer
            time.sleep(0.02)
        raise AssertionError(f"still Runtime.Unavailable after {attempts} attempts")

    def invoke_together(
        self, events: list[Any], headers: list[Mapping[str, str]] | None = None
    ) -> list[Invocation]:
        """Send ``events`` at once (each on its own thread, as a Lambda caller:
        a worker still initialising answers ``Runtime.Unavailable``); answers in order."""
        answers: list[Invocation | None] = [None] * len(events)

        def send(index: int) -> None:
            answers[index] = self.invoke_as_lambda_caller(
                events[index], headers=headers[index] if headers else None
            )

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(events))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(answer is not None for answer in answers)
        return [answer for answer in answers if answer is not None]

    def wait_for_barrier(self, count: int, timeout: float = 20) -> None:
        """Until ``count`` invocations wait at the function's barrier (all in flight)."""
        barrier = self.tmp / "barrier"
        deadline = time.monotonic() + timeout
        while not (barrier.exists() and len(list(barrier.iterdir())) >= count):
            assert time.monotonic() < deadline, self.logs()[-3000:]
            time.sleep(0.01)

    def wait_for_log(self, message: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while sum(r["message"] == message for r in self.json_logs()) < count:
            assert time.monotonic() < deadline, f"no {message!r}: {self.logs()[-3000:]}"
            time.sleep(0.02)

    # -- the runtime's processes and files --------------------------------------

    def runtime_processes(self) -> list[psutil.Process]:
        """The runtime's processes (uid 993), remembered for the clean-up."""
        found = []
        for process in psutil.process_iter(["uids", "environ"]):
            with contextlib.suppress(psutil.Error):
                if process.info["uids"] and process.info["uids"].real == RUNTIME_UID:
                    environ = process.environ()
                    if environ.get("AWS_LAMBDA_RUNTIME_API") == f"127.0.0.1:{self.api_port}":
                        found.append(process)
        self._runtime = [*{p.pid: p for p in [*self._runtime, *found]}.values()]
        return found

    def worker_states(self) -> dict[str, dict[str, Any]]:
        """The workers' published states (worker name -> state)."""
        states = {}
        for path in (self.tmp / "lambda-coverage").glob("*.workers/*.json"):
            with contextlib.suppress(OSError, ValueError):
                states[path.stem] = json.loads(path.read_text())
        return states

    def published(self, worker: str) -> Path:
        return next((self.tmp / "lambda-coverage").glob(f"*.workers/{worker}.coverage"))

    def wait_for_states(self, check: Any, timeout: float = 20) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            states = self.worker_states()
            if check(states):
                return states
            assert time.monotonic() < deadline, (states, self.logs()[-3000:])
            time.sleep(0.02)

    def leftovers(self) -> list[Path]:
        return sorted(p for p in self.tmp.rglob("*") if "barrier" not in p.parts)

    # -- ending ----------------------------------------------------------------

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM to the RIE, as Lambda's shutdown does; its exit code."""
        self.runtime_processes()
        self.signal_shutdown()
        return self.wait(timeout)

    def kill(self) -> None:
        """The clean-up: the RIE and every runtime process it started."""
        if self.process.poll() is None:
            self.runtime_processes()
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for process in self._runtime:
            with contextlib.suppress(psutil.Error):
                process.kill()
        self._log.close()


class ImageInstance(ManagedInstance):
    """The same environment in the project's image (its Python, 3.14, and its own
    installed shim), run by podman on the host network as the container tests
    run it: the image's entry point starts the mounted RIE, which in this mode
    runs the mounted ``/var/task/bootstrap`` as uid 993.  ``/tmp`` is the same
    shared test directory, so the test sees the workers' files; ``env`` holds
    only what the container is given (`image_environment`).  Signals to the
    ``podman run`` client reach the RIE (PID 1) through its signal proxy."""

    PYTHONPATH = None
    PYTHON = "/opt/venv/bin/python"
    START_SECONDS = 90.0

    def __init__(self, *args: Any, image: str, **kwargs: Any) -> None:
        self.image = image
        super().__init__(*args, **kwargs)

    def _launch(self, work: Path, python: str, env: Mapping[str, str]) -> subprocess.Popen:
        self.name = f"lc-mi-{uuid.uuid4().hex[:10]}"
        variables = {
            **env,
            "RIE_ADDRESS": f"127.0.0.1:{self.port}",
            "RIE_API_ADDRESS": f"127.0.0.1:{self.api_port}",
        }
        return subprocess.Popen(
            [
                "podman", "run", "--rm", "--name", self.name, "--network=host", "--read-only",
                # The host's pid namespace: the pids the function and the workers'
                # states report are the ones the test may signal (a worker frozen).
                "--pid=host", "--sig-proxy=true",
                "--volume", f"{find_rie()}:/aws-lambda/aws-lambda-rie:ro",
                "--volume", f"{self.task}:/var/task:ro",
                "--volume", f"{self.tmp}:/tmp",
                *(f"--env={key}={value}" for key, value in variables.items()),
                self.image,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def kill(self) -> None:
        if self.process.poll() is None:
            self.runtime_processes()
            subprocess.run(
                ["podman", "rm", "--force", "--time", "0", self.name],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        super().kill()


def image_environment(explicit: Mapping[str, str]) -> dict[str, str]:
    """What a container is given: fake credentials and the test's own variables
    (not the host's environment)."""
    return {**FAKE_CREDENTIALS, **explicit}


def unavailable(answer: Invocation) -> bool:
    return (
        answer.status == 400
        and isinstance(answer.body, dict)
        and answer.body.get("errorType") == "Runtime.Unavailable"
    )
