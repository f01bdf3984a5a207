"""A loopback HTTP proxy in front of the local S3 that injects faults on request.

Faults are set per HTTP method, for the next N requests or until cleared:
``delay`` (seconds, then forward), ``stall`` (hold the request until `release`
or the client gives up), ``reset`` (close the connection without an answer)
``status`` (answer with an S3 error: 500, 503, 403 ...) and ``redirect`` (301
PermanentRedirect naming the bucket's region, `REDIRECT_REGION`, as S3 answers
a request signed for another region).  With ``tls``, it serves HTTPS.  With ``owner``,
it also enforces ``x-amz-expected-bucket-owner`` as S3 does (moto accepts any):
a request naming another account gets 403 AccessDenied.  With ``then_release``,
a refusal (``status``) lets the stalled requests through once it is answered, as
`release` does: what reaches S3 next then follows the refusal without waiting for
the test's own thread to be scheduled (inside a shutdown's window of a few
hundred ms).  With ``then``, a fault for N requests is followed by another (a
refusal, then a stall for the retry: no test thread has to be scheduled between
them, inside the client's random pause).  With ``secret``, it
checks every request's Signature Version 4 as S3 does (moto checks none),
recomputed by botocore's own signer from what arrived, and the body against
its signed SHA-256: 403 SignatureDoesNotMatch or 400
XAmzContentSHA256Mismatch otherwise.  Every request is
recorded (method, path, S3 metadata headers, what was done), so a test can
assert how many attempts were made and in which order snapshots landed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import http.server
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

ERROR_CODES = {403: "AccessDenied", 500: "InternalError", 503: "SlowDown"}
REDIRECT_REGION = "eu-west-1"
_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/s3/"
    r"aws4_request, SignedHeaders=(?P<names>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass
class Fault:
    action: str  # "delay" | "stall" | "stall_503" | "reset" | "status" | "redirect"
    value: float = 0
    remaining: int | None = None  # None: until cleared
    match: str | None = None  # only requests whose path contains this
    then_release: bool = False  # a refusal, once answered, lets stalled requests through
    then: Fault | None = None  # the fault once this one's requests are done


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    action: str
    at: float = field(default_factory=time.monotonic)
    peer: tuple[str, int] | None = None  # the client's end of the connection


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        owner: str | None = None,
        secret: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.owner = owner
        self.secret = secret
        self.scheme = "https" if tls is not None else "http"
        self.faults: dict[str, Fault] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._arrived = threading.Condition(self._lock)
        self._open: set[socket.socket] = set()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._open.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._open.discard(self.connection)
                super().finish()

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:  # HTTPS, as S3 is reached in Lambda
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # -- control -------------------------------------------------------------

    def set(
        self,
        method: str,
        action: str,
        value: float = 0,
        times: int | None = None,
        match: str | None = None,
        then_release: bool = False,
        then: Fault | None = None,
    ) -> None:
        with self._lock:
            self.faults[method] = Fault(action, value, times, match, then_release, then)
            if action.startswith("stall") or (then is not None and then.action.startswith("stall")):
                self._released.clear()

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
        self._released.set()

    def release(self) -> None:
        """Let stalled requests through (to the upstream)."""
        self._released.set()

    def wait_for(self, method: str, count: int = 1, timeout: float = 30) -> list[Seen]:
        """Block until ``count`` requests of ``method`` have arrived."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests(method)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{count} {method} requests did not arrive: {self.seen}")
                self._arrived.wait(left)
            return self.requests(method)

    def drop_connections(self) -> None:
        """Close every kept-alive client connection, as S3 drops idle ones."""
        with self._lock:
            for connection in self._open:
                connection.shutdown(socket.SHUT_RDWR)

    def requests(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    # -- serving -------------------------------------------------------------

    def _fault_for(self, method: str, path: str) -> Fault | None:
        fault = self.faults.get(method)
        if fault is None or (fault.match is not None and fault.match not in path):
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                if fault.then is None:
                    del self.faults[method]
                else:
                    self.faults[method] = fault.then
        return fault

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._arrived:
            fault = self._fault_for(handler.command, handler.path)
            self.seen.append(
                Seen(
                    handler.command,
                    handler.path,
                    headers,
                    fault.action if fault else "pass",
                    peer=handler.client_address[:2],
                )
            )
            self._arrived.notify_all()
        refusal = self._signature_refusal(handler, headers, body)
        if refusal is not None:
            self._answer_error(handler, *refusal)
            return
        expected = headers.get("x-amz-expected-bucket-owner")
        if self.owner is not None and expected is not None and expected != self.owner:
            self._answer_error(handler, 403)
            return
        if fault is not None:
            if fault.action == "delay":
                time.sleep(fault.value)
            elif fault.action in ("stall", "stall_503"):
                self._released.wait(120)
                if fault.action == "stall_503":
                    self._answer_error(handler, 503)
                    return
            elif fault.action == "reset":
                handler.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                handler.close_connection = True
                handler.connection.close()
                return
            elif fault.action == "status":
                self._answer_error(handler, int(fault.value))
                if fault.then_release:
                    self._released.set()
                return
            elif fault.action == "redirect":
                self._answer_error(handler, 301, "PermanentRedirect", REDIRECT_REGION)
                return
        self._forward(handler, body)

    def _signature_refusal(
        self, handler: http.server.BaseHTTPRequestHandler, headers: dict[str, str], body: bytes
    ) -> tuple[int, str] | None:
        """S3's check of a request's SigV4, done by botocore's signer (None: it passes)."""
        if self.secret is None:
            return None
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        found = _SIGV4.fullmatch(headers.get("authorization", ""))
        timestamp = headers.get("x-amz-date", "")
        if found is None or not timestamp.startswith(found["date"]):
            return 403, "SignatureDoesNotMatch"
        if headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
            return 400, "XAmzContentSHA256Mismatch"
        names = found["names"].split(";")
        if "host" not in names or any(
            name.startswith("x-amz-") and name not in names for name in headers
        ):
            return 403, "AccessDenied"  # S3: every x-amz-* header sent must be signed
        request = AWSRequest(
            method=handler.command,
            url=f"{self.scheme}://{headers['host']}{handler.path}",
            headers={name: headers[name] for name in names},
            data=body,
        )
        request.context["timestamp"] = timestamp
        signer = S3SigV4Auth(Credentials(found["key"], self.secret), "s3", found["region"])
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        if not hmac.compare_digest(expected, found["signature"]):
            return 403, "SignatureDoesNotMatch"
        return None

    def _answer_error(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        code: str | None = None,
        region: str | None = None,
    ) -> None:
        code = code or ERROR_CODES.get(status, "InternalError")
        payload = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>injected by the test proxy</Message></Error>"
        ).encode()
        handler.send_response(status)
        if region is not None:
            handler.send_header("x-amz-bucket-region", region)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)

    def _forward(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            upstream.request(
                handler.command, handler.path, body=body, headers=dict(handler.headers)
            )
            response = upstream.getresponse()
            data = response.read()
            handler.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(data)
        except OSError:
            handler.close_connection = True
        finally:
            upstream.close()


@contextmanager
def fault_proxy(
    upstream_port: int,
    owner: str | None = None,
    secret: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_port, owner, secret, tls)
    try:
        yield proxy
    finally:
        proxy.stop()
