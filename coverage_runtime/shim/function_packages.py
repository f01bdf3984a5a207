"""The function's own coverage.py, when it brings one.

The shim never swaps a package the function brings for its own: whatever the
function's path finds first (its task root, its layers' ``/opt/python``) is
what both of them import, and ``coverage`` is the one package the shim cannot
share with a different version, because it drives coverage.py's internals
(`coverage_adapter`).  So when the ``coverage`` that the path finds first is
not the one installed beside the shim and is another version, the shim does
not measure this environment and says so once, and the function keeps its
coverage.py untouched.  The same version, wherever it lies, is simply used.

This costs one ``find_spec`` at init, which the later import reuses.
"""

from __future__ import annotations

import os
from typing import NamedTuple


class ForeignCoverage(NamedTuple):
    """The function's coverage.py, and the one the shim was installed with.

    (A `NamedTuple` because the init imports this module: see `errors.ConfigProblem`.)
    """

    version: str
    path: str
    shim_version: str

    def describe(self) -> str:
        return (
            f"the function brings its own coverage.py {self.version} ({self.path}), which comes "
            f"first on its path; the shim was installed with {self.shim_version} and drives "
            "coverage.py's internals, so it does not measure this environment and the "
            f"function keeps its coverage.py (bring {self.shim_version}, or none)"
        )


def _version_in(directory: str) -> str | None:
    from importlib import metadata

    for distribution in metadata.distributions(name="coverage", path=[directory]):
        return distribution.version
    return None


def foreign_coverage() -> ForeignCoverage | None:
    """The function's coverage.py if it differs from the shim's; None otherwise,
    or when there is no shim's own to compare with (a checkout on the path)."""
    import importlib.util

    spec = importlib.util.find_spec("coverage")
    if spec is None or not spec.origin:
        return None
    found_in = os.path.dirname(os.path.dirname(os.path.realpath(spec.origin)))
    ours = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    if found_in == ours:
        return None
    shim_version = _version_in(ours)
    version = _version_in(found_in)
    if shim_version is None or version is None or version == shim_version:
        return None
    return ForeignCoverage(version=version, path=found_in, shim_version=shim_version)
