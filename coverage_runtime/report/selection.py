"""What to report on: the bucket and prefix, and the filters on the environments.

The function, version and init-date filters work on the key alone (the layout
puts them there, see `coverage_runtime.layout`), so a listing narrowed to
``<prefix><function>/<version>/`` reads only what is asked for; the code
revision lives in the object metadata and is filtered once that is known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from coverage_runtime import layout
from coverage_runtime.errors import ReportError
from coverage_runtime.layout import DEFAULT_PREFIX, ObjectKey

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RELATIVE_RE = re.compile(r"^(\d+)d$")


def _parse_day(value: str, option: str, today: date) -> date:
    text = value.strip().lower()
    if text == "today":
        return today
    relative = _RELATIVE_RE.match(text)
    if relative:
        return today - timedelta(days=int(relative.group(1)))
    if _DATE_RE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ReportError(
        f"invalid date for {option}: {value!r}; expected YYYY-MM-DD, 'today' or Nd (N days ago)"
    )


@dataclass(frozen=True)
class DateRange:
    """Inclusive range of environment init dates (UTC); either end may be open."""

    since: date | None = None
    until: date | None = None

    @classmethod
    def parse(
        cls,
        since: str | None,
        until: str | None,
        today: date | None = None,
        names: tuple[str, str] = ("--since", "--until"),
    ) -> DateRange:
        """``names``: what the user called the two ends (CLI options, event fields)."""
        today = today or datetime.now(UTC).date()
        start = _parse_day(str(since), names[0], today) if since else None
        end = _parse_day(str(until), names[1], today) if until else None
        if start and end and start > end:
            raise ReportError(
                f"invalid date range: {names[0]} {start.isoformat()} is after "
                f"{names[1]} {end.isoformat()}"
            )
        return cls(start, end)

    def __contains__(self, day: str) -> bool:
        value = date.fromisoformat(day)
        return (self.since is None or value >= self.since) and (
            self.until is None or value <= self.until
        )

    def describe(self) -> str:
        if self.since is None and self.until is None:
            return "any date"
        start = self.since.isoformat() if self.since else "..."
        end = self.until.isoformat() if self.until else "..."
        return f"{start} to {end}"


@dataclass(frozen=True)
class Selection:
    """What to report on: where the objects are and which of them."""

    bucket: str
    prefix: str = DEFAULT_PREFIX
    functions: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    dates: DateRange = field(default_factory=DateRange)
    revisions: tuple[str, ...] = ()
    expected_owner: str | None = None

    def list_prefixes(self) -> list[str]:
        """The narrowest S3 prefixes that hold every object the filters can match."""
        if not self.functions:
            return [self.prefix]
        if not self.versions:
            return [f"{self.prefix}{name}/" for name in self.functions]
        return [f"{self.prefix}{name}/{ver}/" for name in self.functions for ver in self.versions]

    def matches_key(self, parsed: ObjectKey) -> bool:
        return (
            (not self.functions or parsed.function in self.functions)
            and (not self.versions or parsed.version in self.versions)
            and parsed.date in self.dates
        )

    def matches_metadata(self, metadata: Mapping[str, str] | None) -> bool:
        if not self.revisions:
            return True
        return (metadata or {}).get(layout.CODE_REVISION) in self.revisions

    def describe(self) -> str:
        parts = [f"s3://{self.bucket}/{self.prefix}"]
        if self.functions:
            parts.append("function " + ",".join(self.functions))
        if self.versions:
            parts.append("version " + ",".join(self.versions))
        if self.dates.since or self.dates.until:
            parts.append("dates " + self.dates.describe())
        if self.revisions:
            parts.append("revision " + ",".join(self.revisions))
        return ", ".join(parts)
