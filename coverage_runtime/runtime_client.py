"""awslambdaric's runtime client, with the coverage runtime's lifecycle hooks.

Subclassing keeps awslambdaric's own bootstrap in charge of everything
(handler import, init errors, logging, error responses); we only learn when
an event arrives and when the previous response has been posted.

Polling for the next event happens on a worker thread, as awslambdaric does
on AWS's own Python 3.12+ runtimes: the main thread then stays free to run
Python signal handlers (the user's own SIGTERM handler included), which a
non-AWS base image does not get by default because it sets no
``AWS_EXECUTION_ENV``.
"""

from __future__ import annotations

from typing import Any

from awslambdaric.lambda_runtime_client import LambdaRuntimeClient

from coverage_runtime import structured_log
from coverage_runtime.runtime import CoverageRuntime


class CoverageRuntimeClient(LambdaRuntimeClient):
    def __init__(self, runtime_api: str, runtime: CoverageRuntime) -> None:
        super().__init__(runtime_api, use_thread_for_polling_next=True)
        self._coverage = runtime

    def wait_next_invocation(self) -> Any:
        try:
            self._coverage.between_invocations()
        except Exception as exc:  # never let coverage stop the runtime loop
            structured_log.error("coverage checkpoint crashed", error=str(exc))
        request = super().wait_next_invocation()
        self._coverage.invocation_arrived()
        return request
