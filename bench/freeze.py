"""Lambda's freeze between invocations, emulated with the container engine's
cgroup freezer (``podman pause`` / ``podman unpause``), for the image benchmarks'
``--freeze``.

In Lambda, once the runtime has asked for the next event and none is pending,
the whole execution environment is frozen until the next invocation: the shim's
shipping thread (checkpoints, maintenance, the first hand-over, the label
pre-arm), which "runs while the runtime waits for the next event", then gets the
CPU only while the next invocations run, and is billed there.  The RIE never
freezes, so without this that work looks free.

A container is frozen only once the RIE has logged the REPORT of the invocation
just answered: the RIE writes it when the runtime asks for the next event (its
Duration ends there), so the freeze never catches the runtime before ``/next``;
if it did, the frozen seconds would be counted in that invocation's Duration.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.containers import podman

REPORT = b"REPORT RequestId:"
REPORT_WAIT_SECONDS = 30.0


class Freezer:
    """The freezer of one container: `freeze` after each response, `thaw` before
    the next invocation and before the container is stopped (a paused
    container's processes get no signal until it is thawed).  Disabled, every
    call does nothing, so callers need no branches."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self.frozen = False
        self._answered = 0  # invocations answered, so REPORT lines to wait for
        self._log: Path | None = None  # the container's log file, once looked up
        self._looked_up = False
        self._offset = 0
        self._reports = 0

    def freeze(self) -> None:
        """After a response: wait until the runtime has asked for the next event
        (its REPORT is logged), then pause the container."""
        if not self.enabled:
            return
        self._answered += 1
        self._wait_for_reports(self._answered)
        podman("pause", self.name)
        self.frozen = True

    def thaw(self) -> None:
        """Before the next invocation is sent, or the container stopped."""
        if self.frozen:
            podman("unpause", self.name)
            self.frozen = False

    def _wait_for_reports(self, count: int) -> None:
        deadline = time.monotonic() + REPORT_WAIT_SECONDS
        while self._count_reports() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name}: no REPORT for invocation {count} after "
                    f"{REPORT_WAIT_SECONDS:g} s (the runtime never asked for the next event)"
                )
            time.sleep(0.001)

    def _count_reports(self) -> int:
        """REPORT lines so far, read on from where the last look stopped (the
        container's log file: podman's k8s-file driver; else `podman logs`)."""
        if not self._looked_up:
            found = podman(
                "inspect", "--format", "{{.HostConfig.LogConfig.Path}}", self.name
            ).stdout.strip()
            self._log = Path(found) if found and Path(found).is_file() else None
            self._looked_up = True
        if self._log is None:
            result = podman("logs", self.name)
            return (result.stdout + result.stderr).encode().count(REPORT)
        with self._log.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk.rfind(b"\n") + 1  # a line still being written: next look
        self._reports += chunk[:complete].count(REPORT)
        self._offset += complete
        return self._reports
