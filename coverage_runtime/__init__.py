"""Code coverage of an AWS Lambda function, measured while it runs in Lambda.

Start the function with ``python -m coverage_runtime <module.function>``;
handler code may use the names below, which are safe no-ops anywhere else.

The names are loaded on first use (PEP 562), so starting with coverage
disabled imports nothing of ours but the entry point.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see above
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_API = {
    "coverage_handler": "coverage_runtime.shim.api",
    "CoverageContext": "coverage_runtime.shim.api",
    "without_coverage": "coverage_runtime.shim.api",
    "status": "coverage_runtime.shim.api",
    "flush": "coverage_runtime.shim.api",
    "reset": "coverage_runtime.shim.api",
    "pause": "coverage_runtime.shim.api",
    "resume": "coverage_runtime.shim.api",
    "CoverageError": "coverage_runtime.errors",
    "ConfigurationError": "coverage_runtime.errors",
    "UploadError": "coverage_runtime.errors",
    "NotActiveError": "coverage_runtime.errors",
    "StorageError": "coverage_runtime.errors",
    "CoverageStatus": "coverage_runtime.shim.status",
    "ActiveStatus": "coverage_runtime.shim.status",
    "InactiveStatus": "coverage_runtime.shim.status",
    "LastUpload": "coverage_runtime.shim.status",
}

__all__ = [
    "ActiveStatus",
    "ConfigurationError",
    "CoverageContext",
    "CoverageError",
    "CoverageStatus",
    "InactiveStatus",
    "LastUpload",
    "NotActiveError",
    "StorageError",
    "UploadError",
    "coverage_handler",
    "flush",
    "pause",
    "reset",
    "resume",
    "status",
    "without_coverage",
]

if TYPE_CHECKING:
    from coverage_runtime.errors import (
        ConfigurationError,
        CoverageError,
        NotActiveError,
        StorageError,
        UploadError,
    )
    from coverage_runtime.shim.api import (
        CoverageContext,
        coverage_handler,
        flush,
        pause,
        reset,
        resume,
        status,
        without_coverage,
    )
    from coverage_runtime.shim.status import (
        ActiveStatus,
        CoverageStatus,
        InactiveStatus,
        LastUpload,
    )


def __getattr__(name: str) -> Any:
    module_name = _API.get(name)
    if module_name is None:
        raise AttributeError(f"module 'coverage_runtime' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
