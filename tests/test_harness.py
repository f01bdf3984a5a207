"""The test harness's own promises (tests/harness.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import harness


def test_the_rie_starts_again_on_new_ports_when_its_port_was_taken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another process can bind the port `free_port` found before the RIE does (the
    RIE then panics before listening); the harness starts it again on new ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: the RIE's bind fails
        busy = taken.getsockname()[1]
        real = harness.free_port
        ports: Iterator[int] = iter([busy])

        def first_busy() -> int:
            return next(ports, None) or real()

        monkeypatch.setattr(harness, "free_port", first_busy)
        log = tmp_path / "rie.log"
        function = harness.LambdaUnderRIE(
            harness.REPO_ROOT / "tests" / "functions", "uses_api.handler", {}, log
        )
        try:
            assert function.port != busy
            assert function.process.poll() is None
        finally:
            function.kill()
