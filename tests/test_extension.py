"""The internal extension's two requests to the Extensions API, through the real RIE.

`extension.exchange` speaks HTTP itself (so the shim's start does not import
`http.client`): these check it against the RIE's own server, and what it makes
of an endpoint that is not there or does not speak HTTP.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from coverage_runtime.shim import extension
from tests.harness import REPO_ROOT, free_port


def test_registration_parks_and_refusals_are_errors(start_function, function_env):
    """The RIE completes the init only once every registered extension asks for
    its next event: the 200 says the parked thread's request arrived.  A second
    registration of a name and one after the init are refused with the RIE's
    answer; the runtime then gets SIGTERM at shutdown (an extension is registered)."""
    function = start_function(
        "extension_probe.handler", command=[sys.executable, "-m", "awslambdaric",
                                            "extension_probe.handler"],
    )  # fmt: skip
    result = function.invoke({})
    assert result.status == 200, result.raw
    answer = result.body
    assert len(answer["first"]["id"]) >= 8, answer
    assert "HTTP 403" in answer["again"]["error"], answer
    assert "HTTP 403" in answer["late"]["error"], answer
    assert function.terminate() == 0
    logs = function.logs()
    assert "Internal agent probe-a" in logs, logs


def test_an_endpoint_nobody_listens_on_is_unreachable():
    port = free_port()
    with pytest.raises(extension.ExtensionError, match="unreachable"):
        extension.register(f"127.0.0.1:{port}")


@pytest.fixture
def not_http() -> Iterator[int]:
    """A loopback server that answers every connection with a line that is not HTTP."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_an_answer_that_is_not_http_is_an_error(not_http):
    with pytest.raises(extension.ExtensionError, match="not an HTTP response"):
        extension.register(f"127.0.0.1:{not_http}")


def test_the_shims_start_does_not_import_http_client():
    """What the shim imports before the handler beyond what awslambdaric imports
    itself: `http.client` would bring `ssl`, `email` and `urllib`; the shutdown's
    partial replay (`partial_replay`) is imported by the shutdown that needs it, `uuid`
    by an environment without Lambda's log stream name, the build's multiline maps
    (`maps_cache`) when coverage.py first asks for one."""
    probe = (
        "import sys\n"
        "import awslambdaric.bootstrap, awslambdaric.lambda_runtime_client\n"
        "before = set(sys.modules)\n"
        "import coverage_runtime.__main__, coverage_runtime.shim.bootstrap\n"
        "import coverage_runtime.shim.runtime_client, coverage_runtime.shim.session\n"
        "print(sorted(m for m in ('http.client', 'ssl', 'email', 'urllib.parse',\n"
        "    'coverage_runtime.shim.partial_replay', 'uuid', 'coverage_runtime.shim.maps_cache')\n"
        "    if m in sys.modules and m not in before))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_an_exchange_does_not_import_the_idna_codec(host):
    """`socket.getaddrinfo` encodes a `str` host with the ``idna`` codec, which
    imports `encodings.idna`, `stringprep` and `unicodedata` at every cold start;
    the Runtime API's host is given to it as ASCII bytes instead."""
    probe = (
        "import socket, sys, threading\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "def answer():\n"
        "    connection, _ = server.accept()\n"
        "    connection.recv(65536)\n"
        "    connection.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')\n"
        "    connection.close()\n"
        "threading.Thread(target=answer).start()\n"
        "from coverage_runtime.shim import extension\n"
        "api = sys.argv[1] + ':' + str(server.getsockname()[1])\n"
        "response = extension.exchange(api, 'GET', '/', {}, timeout=10)\n"
        "print(response.status, response.body, 'encodings.idna' in sys.modules)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe, host],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.split() == ["200", "b'ok'", "False"]


def test_a_registration_in_flight_fails_once_and_is_logged_once(capsys):
    """`Registration` runs on its own thread during the init; the runtime client
    waits for it before its first request for an event.  A failure is an error
    record at that wait, once."""
    registration = extension.Registration(f"127.0.0.1:{free_port()}")
    assert registration.wait() is False
    assert registration.wait() is False
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["message"] for r in records] == [
        "could not register the internal extension: Lambda will not send SIGTERM at "
        "shutdown, so only checkpoints reach S3"
    ]
    assert "unreachable" in records[0]["error_message"]


def test_a_registration_nobody_answers_gives_up_at_its_timeout(hanging_endpoint, monkeypatch):
    monkeypatch.setattr(extension, "REGISTER_TIMEOUT_SECONDS", 0.2)
    registration = extension.Registration(hanging_endpoint.removeprefix("http://"))
    assert registration.wait() is False
