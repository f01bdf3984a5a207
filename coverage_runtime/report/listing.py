"""The listing of data objects, continued on a thread while the first pages download.

S3 lists 1,000 keys per request, and each request needs the previous one's
continuation token, so a long listing is a chain of round trips (100-300 ms
each on S3). Waiting for its end before the first GET leaves the downloads
idle all that time. Here the first page is read at once, on the caller's
thread, which then knows enough to size the merge (and fork its workers
before any thread exists); the remaining pages are listed on a thread and
handed over as each one arrives.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from coverage_runtime.report.objects import DataObject, list_pages
from coverage_runtime.report.selection import Selection

_END = object()


class GivenObjects:
    """A listing known in advance (a distributed map's batch, a run's shards), read
    like `BackgroundListing`, so one pipeline merges either."""

    more = False
    seconds = 0.0

    def __init__(self, objects: Iterable[DataObject]) -> None:
        self.first = list(objects)
        self.count = len(self.first)

    def start(self) -> None:
        """Nothing to list."""

    def __iter__(self) -> Iterator[DataObject]:
        return iter(self.first)


class BackgroundListing:
    """Iterate over every matching object; pages after the first are listed on a thread."""

    def __init__(self, client: Any, selection: Selection) -> None:
        self._started = time.perf_counter()
        self._pages = list_pages(client, selection)
        self.first, self.more = next(self._pages, ([], False))
        self.count = len(self.first)  # objects handed over so far
        self.seconds: float | None = None if self.more else time.perf_counter() - self._started
        self._handoff: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """List the remaining pages in the background (once; a no-op for one page)."""
        if self.more and self._thread is None:
            self._thread = threading.Thread(target=self._list, name="s3-list", daemon=True)
            self._thread.start()

    def _list(self) -> None:
        try:
            for page, _ in self._pages:
                if self._stop.is_set():
                    return
                self._handoff.put(page)
        except BaseException as exc:  # re-raised on the consuming thread
            self._handoff.put(exc)
        finally:
            self.seconds = time.perf_counter() - self._started
            self._handoff.put(_END)

    def __iter__(self) -> Iterator[DataObject]:
        yield from self.first
        if not self.more:
            return
        self.start()
        try:
            while (page := self._handoff.get()) is not _END:
                if isinstance(page, BaseException):
                    raise page
                self.count += len(page)
                yield from page
            # Ended: reap the thread, so that the report's later forks (the HTML
            # worker) happen in a process with one thread.
            if self._thread is not None:
                self._thread.join()
        finally:
            self._stop.set()  # or the consumer gave up: list no further


@dataclass
class ListingSummary:
    """Count, size and invocation totals of a set of environments (a base and its
    delta are one, of both sizes)."""

    objects: int = 0
    bytes: int = 0
    invocations: int = 0
    without_invocations: int = 0
    partial: int = 0  # uploaded by a shutdown with only the files it could replay in time
    by_scope: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def of(cls, objects: Iterable[DataObject]) -> ListingSummary:
        summary = cls()
        for obj in objects:
            summary.objects += 1
            summary.bytes += obj.total_size
            if obj.invocations is None:
                summary.without_invocations += 1
            else:
                summary.invocations += obj.invocations
            summary.partial += obj.partial
            scope = (obj.function, obj.version)
            summary.by_scope[scope] = summary.by_scope.get(scope, 0) + 1
        return summary


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - the loop always returns
