"""Register an internal Lambda extension, so that shutdown sends SIGTERM.

Lambda (and the RIE) SIGKILL a runtime at shutdown unless at least one
extension is registered; with one, the runtime gets SIGTERM and 500 ms.  An
internal extension registered from the runtime process during init, with no
events and a thread parked on ``event/next``, is enough: the pattern of
aws-lambda-go's ``EnableSIGTERM``.  Subscribing to no events means Lambda
never waits for it between invocations, so it adds no latency.
"""

from __future__ import annotations

import http.client
import json
import threading

from coverage_runtime.errors import CoverageError
from coverage_runtime.shim import structured_log

EXTENSION_NAME = "lambda-coverage"
API_VERSION = "2020-01-01"
REGISTER_TIMEOUT_SECONDS = 2.0


class ExtensionError(CoverageError):
    """The Extensions API refused or failed the registration."""


def register(runtime_api: str, name: str = EXTENSION_NAME) -> str:
    """Register and return the extension id; park a daemon thread on ``next``."""
    connection = http.client.HTTPConnection(runtime_api, timeout=REGISTER_TIMEOUT_SECONDS)
    try:
        connection.request(
            "POST",
            f"/{API_VERSION}/extension/register",
            body=json.dumps({"events": []}),
            headers={"Lambda-Extension-Name": name, "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        body = response.read()
        extension_id = response.getheader("Lambda-Extension-Identifier")
    except OSError as exc:
        raise ExtensionError(f"Extensions API at {runtime_api} unreachable: {exc}") from exc
    finally:
        connection.close()
    if response.status != 200 or not extension_id:
        raise ExtensionError(
            f"Extensions API refused registration: HTTP {response.status} "
            f"{body.decode(errors='replace')[:300]}"
        )
    threading.Thread(
        target=_park, args=(runtime_api, extension_id), name="coverage-extension", daemon=True
    ).start()
    return extension_id


def register_or_log(runtime_api: str) -> None:
    """`register`; a failure is logged, since the function serves on without it."""
    try:
        register(runtime_api)
    except ExtensionError as exc:
        structured_log.error(
            "could not register the internal extension: Lambda will not send SIGTERM at "
            "shutdown, so only checkpoints reach S3",
            error_message=str(exc),
        )


def _park(runtime_api: str, extension_id: str) -> None:
    """Wait on ``event/next`` for the life of the environment.

    With no subscribed events the call does not return; no timeout is set, as
    the Extensions API asks.  Should it return anyway, wait again.
    """
    while True:
        connection = http.client.HTTPConnection(runtime_api)
        try:
            connection.request(
                "GET",
                f"/{API_VERSION}/extension/event/next",
                headers={"Lambda-Extension-Identifier": extension_id},
            )
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                structured_log.warning(
                    "extension event/next failed; SIGTERM at shutdown is still registered",
                    status=response.status,
                )
                return
        except OSError:
            # The API goes away at shutdown; nothing to do about it.
            return
        finally:
            connection.close()
