"""Lambda Managed Instances: coverage in every worker process of an environment.

With ``AWS_LAMBDA_MAX_CONCURRENCY`` set, awslambdaric's main process starts
that many workers (`MultiConcurrentRunner`: ``fork`` in 4.2.2), and each
imports the handler and serves invocations on its own; ``/tmp`` is shared and
the environment is never frozen.  The worker layer of the shim:

- **main process** (`run_environment`): measures nothing (it runs no
  function code, so nothing of it is inherited by a forked worker); it
  registers the internal extension (SIGTERM at shutdown), exports the
  environment's identity for the workers, and after the workers are started
  merges what they publish (`worker_data.WorkersUnion`) into the
  environment's one S3 object, on a timer and at shutdown.
- **each worker** (`CoverageWorkers.run_single`, awslambdaric's worker entry
  point): starts its own coverage session before the handler is imported
  there, whatever the start method (a forked copy, or a fresh interpreter
  under forkserver/spawn that imports this module), with its own data file,
  its own SIGTERM watcher and a checkpoint timer; its checkpoints go to the
  shared directory (`worker_data.WorkerPublisher`).
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

from awslambdaric.lambda_multi_concurrent_utils import MultiConcurrentRunner
from awslambdaric.lambda_runtime_client import LambdaMultiConcurrentRuntimeClient

from coverage_runtime import env as names
from coverage_runtime.settings import Settings, load_settings
from coverage_runtime.shim import api, coverage_adapter, extension, structured_log
from coverage_runtime.shim.identity import EnvironmentIdentity
from coverage_runtime.shim.runtime_client import CoverageRuntimeClient
from coverage_runtime.shim.session import CoverageSession
from coverage_runtime.shim.shutdown import ShutdownWatcher
from coverage_runtime.shim.uploader import SnapshotUploader, UploadResult
from coverage_runtime.shim.worker_data import (
    STATE_SUFFIX,
    WORKERS_SHARE_OF_BUDGET,
    WorkerPublisher,
    WorkersUnion,
    workers_dir,
)

# The timer looks this often (a fraction of the checkpoint interval, within bounds)
# whether a checkpoint is due; the check itself is a clock comparison.
MIN_TICK_SECONDS = 0.1
MAX_TICK_SECONDS = 5.0
WORKERS_AWAITED_SECONDS = 30.0


def tick_seconds(settings: Settings) -> float:
    return min(max(settings.flush_interval_seconds / 4, MIN_TICK_SECONDS), MAX_TICK_SECONDS)


class Ticker:
    """A daemon thread that offers the session a checkpoint every tick."""

    def __init__(self, session: CoverageSession) -> None:
        self._session = session
        self._period = tick_seconds(session.settings)

    def start(self) -> None:
        if self._session.settings.flush_interval_seconds <= 0:
            return  # only at shutdown, as configured
        threading.Thread(target=self._run, name="coverage-timer", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self._period)
            try:
                self._session.periodic_checkpoint()
            except Exception as exc:  # the timer lives on; the next tick retries
                structured_log.error("coverage timer failed", error_message=str(exc))


# -- each worker ---------------------------------------------------------------


class WorkerSession(CoverageSession):
    """A worker's session: measures as any environment does; ships to the shared
    directory, where the main process merges it (`worker_data`)."""

    publisher: WorkerPublisher
    SHIPPED = "coverage published for the environment's upload"
    # All workers shut down at once: N builds of coverage.py in the window, on a
    # few cores, would not fit; each builds it when its shipping thread starts.
    BUILD_AT_START = True
    # The main process merges whole worker files (`WorkersUnion`).
    DELTAS = False

    def uploader(self, timeout: float | None = None) -> SnapshotUploader:
        return self.publisher

    def between_invocations(self) -> None:
        super().between_invocations()
        # From the end of the init on (not the first response): all workers
        # shut down at once, and building coverage.py then, N times over on a
        # few cores, would not fit in the window.
        self._shipper.start()

    def _shipped_to(self, result: UploadResult) -> dict[str, str]:
        return {"path": result.key}

    def shutdown(self, reason: str) -> bool:
        did = super().shutdown(reason)
        if did:
            self.publisher.finish(self.invocations)
        return did

    def _window(self, reason: str) -> tuple[float, float]:
        """The main process waits for the workers' last snapshots only
        `WORKERS_SHARE_OF_BUDGET` of the budget: a worker's shutdown work (its
        replay sized to end by its deadline) must publish within that share."""
        started, deadline = super()._window(reason)
        if reason == "exit":
            return started, deadline
        share = self.settings.shutdown_budget_ms / 1000 * WORKERS_SHARE_OF_BUDGET
        return started, min(deadline, started + share)


class WorkerRuntimeClient(CoverageRuntimeClient):
    """The coverage hooks on awslambdaric's multi-concurrent client: a failed
    post is logged, not fatal, and a 403 on an init error means another worker
    has already reported it."""

    handle_exception = LambdaMultiConcurrentRuntimeClient.handle_exception
    handle_init_error = LambdaMultiConcurrentRuntimeClient.handle_init_error
    _get_next_with_backoff = LambdaMultiConcurrentRuntimeClient._get_next_with_backoff


def worker_name() -> str:
    """Unique among the environment's workers, now and later: the pid, which a
    later process could reuse, and a random part."""
    return f"w{os.getpid()}-{os.urandom(3).hex()}"


def start_worker(settings: Settings, environ: Mapping[str, str]) -> WorkerSession:
    """Start measuring in this worker, before it imports the handler."""
    identity = EnvironmentIdentity.imported(environ.get(names.WORKERS_ENVIRONMENT, ""))
    identity = identity or EnvironmentIdentity.detect(environ)
    publisher = WorkerPublisher(workers_dir(settings, identity), worker_name())
    publisher.register()
    session = WorkerSession.start(settings, identity, data_file=publisher.live_path)
    assert isinstance(session, WorkerSession)
    session.publisher = publisher
    publisher.partial = lambda: session.measurement.partial
    api.install(session)
    session.watcher = ShutdownWatcher(session.shutdown)
    session.watcher.install()
    Ticker(session).start()
    return session


class CoverageWorkers(MultiConcurrentRunner):
    """awslambdaric's runner, with coverage started first in each worker.

    ``run_single`` is the worker's entry point under every start method
    (under spawn/forkserver it is found again by name, in a fresh interpreter).
    """

    settings: Settings | None = None  # the main process's (a forked worker inherits it)

    @classmethod
    def run_single(cls, handler: str, api_addr: str, use_thread: bool, socket_path: str) -> None:
        if socket_path:
            cls._redirect_output(socket_path)
        session: WorkerSession | None = None
        try:
            session = start_worker(cls.settings or load_settings(os.environ), os.environ)
        except Exception as exc:  # measuring must never stop the worker from serving
            structured_log.error(
                "coverage could not start in this worker; it serves without it",
                error_message=str(exc),
                error_type=type(exc).__name__,
            )
        from awslambdaric import bootstrap

        if session is None:
            client: Any = LambdaMultiConcurrentRuntimeClient(api_addr, use_thread)
            bootstrap.run(handler, client)
            return
        try:
            bootstrap.run(handler, WorkerRuntimeClient(api_addr, session))
        finally:
            # An init error ends in sys.exit(1), and a multiprocessing worker
            # runs no atexit hook: ship what was measured here.
            session.shutdown("exit")


# -- the main process ----------------------------------------------------------


class EnvironmentSession(CoverageSession):
    """The main process's session: its data is the union of the workers'."""

    measurement: WorkersUnion
    BUILD_AT_START = True  # (coverage.py's data layer: `WorkersUnion.materialize`)

    @property
    def invocations(self) -> int:
        return self.measurement.invocations

    @invocations.setter
    def invocations(self, value: int) -> None:
        """(The main process serves no invocation itself.)"""

    def workers_started(self) -> None:
        """After the forks: build the S3 client and start the timer, off any
        fork (a thread importing boto3 while the process forks could leave a
        worker with an import lock that nobody releases)."""
        self._shipper.start()
        Ticker(self).start()

    def shutdown(self, reason: str) -> bool:
        did = super().shutdown(reason)
        if did:
            self.measurement.end()
        return did

    def _check_growth_fits(self, deadline: float) -> None:
        """Not here: the union is complete only once the workers' last snapshots are
        in (`WorkersUnion.finish`), and giving up before that would end the
        shutdown and stop every worker at once (`end`), their own SIGTERM
        handling cut.  The check after the snapshot (`_check_upload_fits`) stays."""


def _parent_state_is_not_the_workers() -> None:
    """In a freshly forked worker: the main process's SIGTERM handling is not its own."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):  # not the main thread: the worker installs its own anyway
        pass


def run_environment(handler: str, settings: Settings, environ: Mapping[str, str]) -> None:
    """The main process of a Managed Instances environment: start the workers with coverage."""
    from awslambdaric.lambda_config import LambdaConfigProvider

    from coverage_runtime.shim.bootstrap import run_awslambdaric

    config = LambdaConfigProvider(["awslambdaric", handler], environ)
    try:
        workers = int(config.max_concurrency)
    except ValueError:
        structured_log.error(
            "AWS_LAMBDA_MAX_CONCURRENCY is not a number: coverage is disabled, and "
            "awslambdaric says what it makes of it",
            variable=names.MAX_CONCURRENCY,
            value=config.max_concurrency,
        )
        run_awslambdaric(handler)
        return
    try:
        session = start_environment(settings, environ, config.api_address, workers)
    except Exception as exc:  # measuring must never stop the function from serving
        structured_log.error(
            "coverage could not start; the function runs without it",
            error_message=str(exc),
            error_type=type(exc).__name__,
        )
        run_awslambdaric(handler)
        return
    CoverageWorkers.run_concurrent(
        handler, config.api_address, config.use_thread_polling, config.lmi_socket_path, workers
    )
    # Every worker has ended (an init error, or all crashed): ship now, before the
    # interpreter exits, while a client build under way on the shipping thread
    # can still finish (at exit, its imports would fail).
    session.shutdown("exit")


def start_environment(
    settings: Settings, environ: Mapping[str, str], runtime_api: str, workers: int
) -> EnvironmentSession:
    """Everything the main process does before awslambdaric starts the workers."""
    identity = EnvironmentIdentity.detect(environ)
    os.environ[names.WORKERS_ENVIRONMENT] = identity.exported()
    directory = workers_dir(settings, identity)
    os.makedirs(directory, exist_ok=True)
    union = WorkersUnion(
        settings, directory, os.path.join(settings.data_dir, f"{identity.environment_id}.coverage")
    )
    session = EnvironmentSession(settings, identity, union)
    if settings.bucket is None:
        session.upload_problem = (
            "COVERAGE_S3_BUCKET is not set: coverage is measured but never uploaded"
        )
        structured_log.error(session.upload_problem, variable="COVERAGE_S3_BUCKET")
    extension.register_or_log(runtime_api)
    # Each worker builds coverage.py at the end of its init (`WorkerSession`) and
    # this process builds its own for the union: imported here, once, before the
    # forks, each forked worker inherits it instead of importing it while the
    # others start on the same few cores (~6 ms of CPU and ~18 ms of each
    # worker's init in the image, bench/bench_workers.py).
    coverage_adapter.import_coverage()
    session.watcher = ShutdownWatcher(session.shutdown)
    session.watcher.install()
    atexit.register(session.shutdown, "exit")

    started = _WorkersStarted(workers, directory)
    os.register_at_fork(
        after_in_parent=started.one_more, after_in_child=_parent_state_is_not_the_workers
    )
    threading.Thread(
        target=started.then, args=(session.workers_started,), name="coverage-start", daemon=True
    ).start()
    CoverageWorkers.settings = settings
    structured_log.info(
        "coverage runtime started",
        mode=settings.mode,
        workers=workers,
        branch=settings.branch,
        source=list(settings.source),
        s3_uri=session.s3_uri,
        flush_interval_seconds=settings.flush_interval_seconds,
    )
    return session


class _WorkersStarted:
    """When are all the workers started, so that this process may import and
    start threads without a fork copying a lock held meanwhile?  Forked: the
    fork hook counts them; another start method forks nothing here, and each
    worker registers in the shared directory as it starts."""

    def __init__(self, expected: int, directory: str) -> None:
        self._expected = expected
        self._directory = directory
        self._forks = 0
        self._forked = threading.Event()

    def one_more(self) -> None:
        self._forks += 1
        if self._forks >= self._expected:
            self._forked.set()

    def _registered(self) -> int:
        try:
            return sum(name.endswith(STATE_SUFFIX) for name in os.listdir(self._directory))
        except OSError:
            return 0

    def then(self, action: Any) -> None:
        """Wait (holding no lock a fork could copy), then ``action()``."""
        deadline = time.monotonic() + WORKERS_AWAITED_SECONDS
        while not self._forked.wait(0.01):
            if self._registered() >= self._expected or time.monotonic() > deadline:
                break
        action()
