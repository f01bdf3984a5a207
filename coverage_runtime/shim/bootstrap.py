"""The shim: start coverage, arrange for SIGTERM, hand over to awslambdaric.

Order matters.  Coverage starts before awslambdaric imports the handler, so
module-level code of the function is measured.  The extension registers
before awslambdaric's first request for an event, as Lambda requires (on
its own thread, while the function's imports run).  Then
awslambdaric's own ``bootstrap.run`` takes over, so init errors, handler
errors and logging behave exactly as with ``python -m awslambdaric``.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping

from coverage_runtime import env as names
from coverage_runtime.errors import ConfigurationError
from coverage_runtime.settings import Settings, load_settings
from coverage_runtime.shim import api, extension, structured_log
from coverage_runtime.shim.session import CoverageSession
from coverage_runtime.shim.shutdown import ShutdownWatcher


def run_awslambdaric(handler: str) -> None:
    """awslambdaric's normal path, untouched."""
    from awslambdaric.__main__ import main

    main(["awslambdaric", handler])


def _settings_or_none(environ: Mapping[str, str]) -> Settings | None:
    try:
        return load_settings(environ)
    except ConfigurationError as exc:
        for problem in exc.problems:
            structured_log.error(
                f"invalid configuration: {problem}; coverage is disabled for this environment",
                variable=problem.variable,
                value=problem.value,
                allowed=problem.allowed,
            )
        api.install(None, reason=f"invalid configuration: {exc}")
        return None


def start_session(
    settings: Settings, environ: Mapping[str, str]
) -> tuple[CoverageSession, extension.Registration | None]:
    """Everything before the hand-over: measure, register (under way: the runtime
    client waits for it before its first request for an event), watch for SIGTERM."""
    session = CoverageSession.start(settings)
    api.install(session)

    runtime_api = environ.get(names.RUNTIME_API)
    registration = extension.Registration(runtime_api) if runtime_api else None
    session.watcher = ShutdownWatcher(session.shutdown)
    session.watcher.install()
    # Init errors end in sys.exit(1) inside awslambdaric: ship what was measured.
    atexit.register(session.shutdown, "exit")
    structured_log.info(
        "coverage runtime started",
        mode=settings.mode,
        core=session.measurement.core_name(),
        branch=settings.branch,
        source=list(settings.source),
        s3_uri=session.s3_uri,
        flush_interval_seconds=settings.flush_interval_seconds,
    )
    return session, registration


def main(handler: str, environ: Mapping[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    settings = _settings_or_none(env)
    if settings is None or not settings.enabled:
        run_awslambdaric(handler)
        return
    if env.get(names.MAX_CONCURRENCY):  # Lambda Managed Instances: one session per worker
        from coverage_runtime.shim import workers

        workers.run_environment(handler, settings, env)
        return

    from coverage_runtime.shim.function_packages import foreign_coverage

    foreign = foreign_coverage()
    if foreign is not None:
        structured_log.error(
            foreign.describe(), coverage_version=foreign.version, coverage_path=foreign.path
        )
        api.install(None, reason=f"the function's own coverage.py {foreign.version}")
        run_awslambdaric(handler)
        return

    try:
        session, registration = start_session(settings, env)
    except Exception as exc:
        # Measuring must never stop the function from serving.
        structured_log.error(
            "coverage could not start; the function runs without it",
            error_message=str(exc),
            error_type=type(exc).__name__,
        )
        api.install(None, reason=f"coverage could not start: {exc}")
        run_awslambdaric(handler)
        return

    from awslambdaric import bootstrap

    from coverage_runtime.shim.runtime_client import CoverageRuntimeClient

    client = CoverageRuntimeClient(env[names.RUNTIME_API], session, registration)
    if bootstrap.run.__code__.co_varnames[:1] == ("app_root",):
        # awslambdaric 2.x/3.x, which a managed runtime or base image may ship (the
        # layer uses the runtime's own): its run() builds the client itself.
        bootstrap.LambdaRuntimeClient = lambda *args, **kwargs: client
        bootstrap.run(os.getcwd(), handler, env[names.RUNTIME_API])
        return
    bootstrap.run(handler, client)
