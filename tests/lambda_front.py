"""Lambda's Invoke front end, for a pool of real RIEs: what stands between a caller and them.

The AWS RIE serves Invoke's HTTP path for one function name only, the literal
``function`` (``/2015-03-31/functions/function/invocations``, upstream
``internal/lambda/rie/http.go``); it takes one invoke at a time; and it answers
a function error with 200 and the runtime's error document but without the
``X-Amz-Function-Error`` header that Lambda's front end adds
(``internal/lambda/rie/handlers.go`` copies only the status and the body).
This front end does those three things and nothing else: it accepts Invoke
for the function names it is given (anything else gets Lambda's 404
``ResourceNotFoundException``), hands each invoke to an idle environment of
the pool (as Lambda routes concurrent invokes to separate environments; with
all busy, the invoke waits), and marks an error document that the runtime
posted as ``X-Amz-Function-Error: Unhandled``. A boto3 Lambda client pointed
at it (``AWS_ENDPOINT_URL_LAMBDA``) sees what it would see from Lambda.
"""

from __future__ import annotations

import http.client
import http.server
import json
import queue
import re
import threading
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.harness import INVOKE_PATH

_INVOKE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations(?:\?.*)?$")


@dataclass
class Invoked:
    function: str
    event: Any
    status: int
    error: str | None  # the errorType of a function error


class LambdaFront:
    def __init__(self, functions: Iterable[str], backends: Iterable[int]) -> None:
        self.functions = set(functions)
        self.idle: queue.Queue[int] = queue.Queue()
        for port in backends:
            self.idle.put(port)
        self.invoked: list[Invoked] = []
        self._lock = threading.Lock()
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                front._invoke(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self, action: str) -> list[Invoked]:
        with self._lock:
            return [
                i
                for i in self.invoked
                if isinstance(i.event, dict) and i.event.get("action") == action
            ]

    def _invoke(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        match = _INVOKE.match(handler.path)
        name = urllib.parse.unquote(match.group("name")) if match else ""
        if name not in self.functions:
            message = f"Function not found: {name}"
            self._answer(
                handler,
                404,
                json.dumps({"Type": "User", "Message": message}).encode(),
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
            return
        port = self.idle.get()  # an environment that is not busy
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
            connection.request("POST", INVOKE_PATH, body=body)
            response = connection.getresponse()
            status, payload = response.status, response.read()
            connection.close()
        finally:
            self.idle.put(port)
        error = _function_error(status, payload)
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if error is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        with self._lock:
            try:
                event = json.loads(body or b"null")
            except ValueError:
                event = body
            self.invoked.append(Invoked(name, event, status, error))
        self._answer(handler, status, payload, headers)

    @staticmethod
    def _answer(
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)


def _function_error(status: int, payload: bytes) -> str | None:
    """The errorType of the error document awslambdaric posts for a handler's
    exception (``errorMessage``, ``errorType``, ``requestId``, ``stackTrace``)."""
    if status != 200:
        return None
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    if isinstance(document, dict) and {"errorType", "errorMessage", "stackTrace"} <= set(document):
        return str(document["errorType"])
    return None
