"""Lambda's freeze between invocations, emulated with the cgroup freezer of the
container, for the image benchmarks' ``--freeze``.

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

The freeze is written to the container's cgroup freezer directly (the file
``podman pause`` has its OCI runtime write): ``podman pause`` took 70-120 ms
here, all of it after ``/next`` and before the freeze, a window in which the
shipping thread works for free and which would hide any checkpoint shorter than
it.  Where the cgroup cannot be found or written, ``podman pause`` and
``podman unpause`` do it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.containers import podman

REPORT = b"REPORT RequestId:"
WAIT_SECONDS = 30.0
CGROUP_ROOT = Path("/sys/fs/cgroup")


class CgroupFreezer:
    """The freezer file of one cgroup: v1 (``freezer.state``) or v2 (``cgroup.freeze``)."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path = path
        self.v2 = v2

    @classmethod
    def of_process(cls, pid: int) -> CgroupFreezer | None:
        """The freezer of process ``pid``'s cgroup, if this process may write it."""
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            _, controllers, group = line.split(":", 2)
            if "freezer" in controllers.split(","):
                found = cls(CGROUP_ROOT / "freezer" / group.lstrip("/") / "freezer.state", False)
                break
        else:
            group = next((g for h, c, g in (x.split(":", 2) for x in lines) if h == "0"), "")
            found = cls(CGROUP_ROOT / group.lstrip("/") / "cgroup.freeze", True)
        return found if found.path.is_file() and os.access(found.path, os.W_OK) else None

    def freeze(self) -> None:
        self.path.write_text("1" if self.v2 else "FROZEN")
        self._wait(frozen=True)

    def thaw(self) -> None:
        self.path.write_text("0" if self.v2 else "THAWED")
        self._wait(frozen=False)

    def frozen(self) -> bool:
        if self.v2:
            return "frozen 1" in (self.path.parent / "cgroup.events").read_text()
        return self.path.read_text().strip() == "FROZEN"

    def _wait(self, frozen: bool) -> None:
        """Until every process is (FREEZING in v1, until ``frozen 1`` in v2)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while self.frozen() != frozen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.path}: still not {'frozen' if frozen else 'thawed'}")
            time.sleep(0.0002)


class Freezer:
    """The freeze of one container: `freeze` after each response, `thaw` before
    the next invocation and before the container is stopped (a frozen
    container's processes get no signal until it is thawed: podman 4.3 refuses
    to stop a paused container, ``container state improper``).  Disabled, every
    call does nothing, so callers need no branches."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self.frozen = False
        self._answered = 0  # invocations answered, so REPORT lines to wait for
        self._log: Path | None = None  # the container's log file (podman's k8s-file driver)
        self._offset = 0
        self._reports = 0
        self.cgroup: CgroupFreezer | None = None
        if enabled:  # looked up now: not in the window between /next and the freeze
            pid, log = (
                podman("inspect", "--format", "{{.State.Pid}}|{{.HostConfig.LogConfig.Path}}", name)
                .stdout.strip()
                .split("|", 1)
            )
            self._log = Path(log) if log and Path(log).is_file() else None
            self.cgroup = CgroupFreezer.of_process(int(pid))

    def freeze(self) -> None:
        """After a response: wait until the runtime has asked for the next event
        (its REPORT is logged), then freeze the container."""
        if not self.enabled:
            return
        self._answered += 1
        self._wait_for_reports(self._answered)
        if self.cgroup is not None:
            self.cgroup.freeze()
        else:
            podman("pause", self.name)
        self.frozen = True

    def thaw(self) -> None:
        """Before the next invocation is sent, or the container stopped."""
        if not self.frozen:
            return
        if self.cgroup is not None:
            self.cgroup.thaw()
        else:
            podman("unpause", self.name)
        self.frozen = False

    def _wait_for_reports(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while self._count_reports() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name}: no REPORT for invocation {count} after "
                    f"{WAIT_SECONDS:g} s (the runtime never asked for the next event)"
                )
            time.sleep(0.0005)

    def _count_reports(self) -> int:
        """REPORT lines so far, read on from where the last look stopped (else
        from `podman logs`)."""
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
