"""The exception family of the coverage runtime.

Code that calls the public API explicitly (``flush()``, ``reset()``, the CLI)
sees these.  The decorator and the shim catch them and log them instead, so a
coverage problem never becomes a failed Lambda invocation.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Compiled on first use (`re` caches it): the init imports this module, and
# compiling a pattern costs 0.2-0.5 ms there.  The same holds for the patterns
# of `settings`, `layout`, `shim.identity` and `shim.labels`.
_URL_CREDENTIALS = r"(?<=://)[^/@\s]*@"


def redacted(value: str) -> str:
    """``value`` with the user and password of any URL in it replaced by ``***``:
    a setting shown back in a log or a response never carries credentials."""
    return re.sub(_URL_CREDENTIALS, "***@", value) if "://" in value else value


class CoverageError(Exception):
    """Base class of every error raised by ``coverage_runtime``."""


class ConfigProblem(NamedTuple):
    """One invalid environment variable: what it was, and what is allowed.

    Built by `found`, which redacts the value.  A `NamedTuple`, not a frozen
    dataclass: the shim's init imports this module, and on 3.14 a dataclass
    costs 0.5-1 ms to create, a `NamedTuple` a tenth of that.
    """

    variable: str
    value: str
    allowed: str

    @classmethod
    def found(cls, variable: str, value: str, allowed: str) -> ConfigProblem:
        return cls(variable, redacted(value), allowed)

    def __str__(self) -> str:
        return f"{self.variable}={self.value!r} is invalid: expected {self.allowed}"

    def as_dict(self) -> dict[str, str]:
        return {"variable": self.variable, "value": self.value, "allowed": self.allowed}


class ConfigurationError(CoverageError):
    """One or more environment variables hold values that are not allowed."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class UploadError(CoverageError):
    """A coverage snapshot could not be uploaded to S3."""


class StorageError(CoverageError):
    """The data directory could not be written (full, read-only, damaged)."""


class ReportError(CoverageError):
    """Bad input or an S3 problem that stops a report: one clear sentence for the user."""


class NotActiveError(CoverageError):
    """The call needs the coverage runtime, but this process was not started by it."""
