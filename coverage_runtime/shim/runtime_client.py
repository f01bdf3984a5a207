"""awslambdaric's runtime client, with the coverage session's lifecycle hooks.

Subclassing keeps awslambdaric's own bootstrap in charge of everything
(handler import, init errors, logging, error responses); we only learn when
an event arrives and when the previous response has been posted.

Polling for the next event stays on the main thread (awslambdaric's default
off AWS's managed runtimes).  Its thread-polling mode would free the main
thread for Python signal handlers, but it starts a new thread per
invocation, and coverage.py's ``ctrace`` core keeps one tracer per thread it
ever saw: a slow leak over a long-lived environment.  SIGTERM does not need
the main thread anyway: see `coverage_runtime.shim.shutdown`.
"""

from __future__ import annotations

from typing import Any

from awslambdaric.lambda_runtime_client import LambdaRuntimeClient

from coverage_runtime.shim import extension, structured_log
from coverage_runtime.shim.session import CoverageSession


class CoverageRuntimeClient(LambdaRuntimeClient):
    def __init__(
        self,
        runtime_api: str,
        session: CoverageSession,
        registration: extension.Registration | None = None,
    ) -> None:
        super().__init__(runtime_api, use_thread_for_polling_next=False)
        self._coverage = session
        self._registration = registration

    def wait_next_invocation(self) -> Any:
        if self._registration is not None:  # the first request ends the init: Lambda
            self._registration.wait()  # accepts extensions until then only
            self._registration = None
        try:
            self._coverage.between_invocations()
        except Exception as exc:  # never let coverage stop the runtime loop
            structured_log.error("coverage checkpoint crashed", error_message=str(exc))
        request = super().wait_next_invocation()
        self._coverage.invocation_arrived(
            getattr(request, "deadline_time_in_ms", None),
            client_context=getattr(request, "client_context", None),
            event_body=getattr(request, "event_body", None),
        )
        return request
