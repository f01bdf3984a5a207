"""Register an internal Lambda extension, so that shutdown sends SIGTERM.

Lambda (and the RIE) SIGKILL a runtime at shutdown unless at least one
extension is registered; with one, the runtime gets SIGTERM and 500 ms.  An
internal extension registered from the runtime process during init, with no
events and a thread parked on ``event/next``, is enough: the pattern of
aws-lambda-go's ``EnableSIGTERM``.  Subscribing to no events means Lambda
never waits for it between invocations, so it adds no latency.
"""

from __future__ import annotations

import socket
import threading

from coverage_runtime.errors import CoverageError
from coverage_runtime.shim import structured_log

EXTENSION_NAME = "lambda-coverage"
API_VERSION = "2020-01-01"
REGISTER_TIMEOUT_SECONDS = 2.0
_REGISTER_BODY = b'{"events": []}'


class ExtensionError(CoverageError):
    """The Extensions API refused or failed the registration."""


class Response:
    """What `exchange` read: the status, the headers (names in lower case), the body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def _host(host: str) -> str | bytes:
    """``host`` as `socket.getaddrinfo` takes it without the ``idna`` codec:
    given a `str` it encodes it with that codec, whose import (with
    `stringprep` and `unicodedata`) was 5% of what measuring added to the
    example's init, in instructions (bench/README.md)."""
    bare = host.strip("[]")
    try:
        return bare.encode("ascii")
    except UnicodeEncodeError:
        return bare


def exchange(
    runtime_api: str,
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    body: bytes = b"",
    timeout: float | None = None,
) -> Response:
    """One HTTP/1.1 request to the Runtime API (``host:port``), the connection
    closed after it.

    Not `http.client`: importing it brings `ssl`, `email` and `urllib` along,
    10-30 ms of CPU on the cold start of a function that does not import them
    itself (bench/README.md), for two fixed requests over loopback.  With
    ``Connection: close`` the response ends where the stream does.  Raises
    `OSError` when the API cannot be reached or answers something else than HTTP.
    """
    host, _, port = runtime_api.rpartition(":")
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {runtime_api}",
        "Connection: close",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    address = (_host(host), int(port))  # bytes are fine: create_connection passes them on
    with socket.create_connection(address, timeout=timeout) as connection:  # type: ignore[arg-type]
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    head, found, rest = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, _, status = status_line.partition(" ")
    if not found or not version.startswith("HTTP/") or not status[:3].isdigit():
        raise OSError(f"not an HTTP response from {runtime_api}: {head[:100]!r}")
    fields = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return Response(int(status[:3]), fields, rest)


def register(runtime_api: str, name: str = EXTENSION_NAME) -> str:
    """Register and return the extension id; park a daemon thread on ``next``."""
    extension_id = _register(runtime_api, name)
    threading.Thread(
        target=_park, args=(runtime_api, extension_id), name="coverage-extension", daemon=True
    ).start()
    return extension_id


def _register(runtime_api: str, name: str) -> str:
    try:
        response = exchange(
            runtime_api,
            "POST",
            f"/{API_VERSION}/extension/register",
            {"Lambda-Extension-Name": name, "Content-Type": "application/json"},
            body=_REGISTER_BODY,
            timeout=REGISTER_TIMEOUT_SECONDS,
        )
    except (OSError, ValueError) as exc:
        raise ExtensionError(f"Extensions API at {runtime_api} unreachable: {exc}") from exc
    extension_id = response.headers.get("lambda-extension-identifier")
    if response.status != 200 or not extension_id:
        raise ExtensionError(
            f"Extensions API refused registration: HTTP {response.status} "
            f"{response.body.decode(errors='replace')[:300]}"
        )
    return extension_id


def register_or_log(runtime_api: str) -> None:
    """`register`; a failure is logged, since the function serves on without it."""
    try:
        register(runtime_api)
    except ExtensionError as exc:
        _log_failure(exc)


def _log_failure(exc: ExtensionError) -> None:
    structured_log.error(
        "could not register the internal extension: Lambda will not send SIGTERM at "
        "shutdown, so only checkpoints reach S3",
        error_message=str(exc),
    )


class Registration:
    """The registration, on its own thread while the init goes on.

    Its round trip took 2-4 ms of wall time on the init path (host, through
    the RIE), time the runtime only waited.  It has to be over before the
    runtime's first request for an event, and the runtime client waits for it
    there (`wait`); meanwhile the function's imports run.  The thread then
    parks on ``event/next`` itself.
    """

    def __init__(self, runtime_api: str, name: str = EXTENSION_NAME) -> None:
        self._done = threading.Event()
        self._error: ExtensionError | None = None
        self._waited = False
        threading.Thread(
            target=self._run, args=(runtime_api, name), name="coverage-extension", daemon=True
        ).start()

    def _run(self, runtime_api: str, name: str) -> None:
        try:
            extension_id = _register(runtime_api, name)
        except ExtensionError as exc:
            self._error = exc
            return
        finally:
            self._done.set()
        _park(runtime_api, extension_id)

    def wait(self) -> bool:
        """Until the registration is answered (at most its timeout, and a second);
        whether it succeeded.  A failure is logged on the first call."""
        done = self._done.wait(REGISTER_TIMEOUT_SECONDS + 1.0)
        first, self._waited = not self._waited, True
        if done and self._error is None:
            return True
        if first:
            _log_failure(self._error or ExtensionError("the Extensions API did not answer"))
        return False


def _park(runtime_api: str, extension_id: str) -> None:
    """Wait on ``event/next`` for the life of the environment.

    With no subscribed events the call does not return; no timeout is set, as
    the Extensions API asks.  Should it return anyway, wait again.
    """
    while True:
        try:
            response = exchange(
                runtime_api,
                "GET",
                f"/{API_VERSION}/extension/event/next",
                {"Lambda-Extension-Identifier": extension_id},
            )
        except (OSError, ValueError):
            # The API goes away at shutdown; nothing to do about it.
            return
        if response.status != 200:
            structured_log.warning(
                "extension event/next failed; SIGTERM at shutdown is still registered",
                status=response.status,
            )
            return
