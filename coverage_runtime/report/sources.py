"""The checkout's measured source: which recorded paths map into it, and its files never run.

Lambda data only names the files an environment imported; a handler module
that one function never imports is simply absent from its data.  The
checkout knows better: coverage.py's own rule for ``source`` (every
importable ``.py`` file under a source directory, minus ``omit``) lists the
files, and they are added to the merged data with no lines, so every report
shows them at 0% as ``coverage run --source`` would.

A report whose task roots mapped none of the recorded paths would silently
read whatever files exist at the recorded paths on this machine; `check_mapped`
turns that into one sentence naming the roots the data was recorded under.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from coverage_runtime.errors import ReportError
from coverage_runtime.report.paths import PathMap

# What coverage.py warns about when it measures nothing, which is all we ask of it here.
_QUIET = ["no-data-collected", "module-not-imported", "module-not-measured", "no-ctracer"]


def local_roots(path_map: PathMap) -> list[str]:
    """The checkout directories the task roots map to (the measured source)."""
    return sorted({local for _, local in path_map.roots if os.path.isdir(local)})


def measured_source(
    recorded: Iterable[str],
    path_map: PathMap,
    given: Sequence[str],
    source_root: str | Path,
    rcfile: str | None,
) -> list[str]:
    """The checkout's directories of the measured source (see the module's docstring)."""
    import coverage

    root = os.path.abspath(source_root)
    if given:
        chosen = [os.path.normpath(os.path.join(root, path)) for path in given]
        for path in chosen:
            if not os.path.isdir(path):
                raise ReportError(f"--source {path!r} is not a directory of the checkout")
        return chosen
    configured = coverage.Coverage(config_file=rcfile or True).get_option("run:source")
    if configured:
        return [os.path.abspath(str(path)) for path in configured]  # type: ignore[union-attr]
    roots = local_roots(path_map)
    parents = set()
    for path in recorded:
        local = path_map.map(path)[0]
        if os.path.isfile(local) and any(_under(local, r) for r in roots):
            parents.add(os.path.dirname(local))
    return sorted(p for p in parents if not any(p != q and _under(p, q) for q in parents))


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def source_files(roots: Sequence[str], rcfile: str | None, omit: Sequence[str] = ()) -> list[str]:
    """Every Python file coverage.py would measure under ``roots`` (its ``source`` rule).

    The project's configuration (``rcfile``, or ``.coveragerc`` / ``setup.cfg`` /
    ``tox.ini`` / ``pyproject.toml`` as coverage.py finds it) gives ``[run] omit``
    and ``[report] omit``; ``omit`` adds the command line's.  coverage.py is
    started and stopped with nothing run in between: it then lists ("touches")
    the files it could have measured, through its public API only.
    """
    import coverage

    if not roots:
        return []
    probe = coverage.Coverage(config_file=rcfile or True)
    omitted = [
        *(probe.get_option("run:omit") or []),  # type: ignore[misc]
        *(probe.get_option("report:omit") or []),
        *omit,
    ]
    with tempfile.TemporaryDirectory(prefix="lambda-coverage-sources-") as scratch:
        cov = coverage.Coverage(
            data_file=os.path.join(scratch, "probe.coverage"),
            source=list(roots),
            omit=omitted or None,
            config_file=rcfile or True,
        )
        cov.set_option("run:disable_warnings", _QUIET)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cov.start()
            cov.stop()
            cov.save()
        found = cov.get_data().measured_files()
    return sorted(found)


def unexecuted(measured: Iterable[str], files: Iterable[str]) -> list[str]:
    """``files`` that are none of the ``measured`` paths (compared as real paths)."""
    seen = {os.path.realpath(path) for path in measured}
    return [path for path in files if os.path.realpath(path) not in seen]


def recorded_root(recorded: str, roots: Sequence[str]) -> str | None:
    """The directory ``recorded`` was measured under, found by the longest tail of
    it that exists in one of the checkout's ``roots``; None when no tail does."""
    parts = Path(recorded).parts
    for start in range(1, len(parts)):
        tail = os.path.join(*parts[start:])
        if any(os.path.isfile(os.path.join(root, tail)) for root in roots):
            return str(Path(*parts[:start]))
    return None


def check_mapped(recorded: Iterable[str], path_map: PathMap, source_root: str | Path) -> None:
    """A `ReportError` when no recorded path maps into the checkout.

    A path maps when a task root covers it, or when it already lies in one of
    the checkout's directories.  The message names the roots the paths were
    recorded under (and the ``--task-root`` that would map them).
    """
    paths = sorted(set(recorded))
    if not paths:
        return
    roots = [*local_roots(path_map), os.path.abspath(source_root)]
    for path in paths:
        if path_map.map(path)[1]:
            return
        if any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots):
            return
    seen = sorted({r for p in paths if (r := recorded_root(p, roots)) is not None})
    task_roots = ", ".join(old for old, _ in path_map.roots)
    if seen:
        hint = f"the data was recorded under {', '.join(seen)}: pass " + " ".join(
            f"--task-root {root}" for root in seen
        )
    else:
        common = os.path.commonpath(paths) if all(p.startswith("/") for p in paths) else paths[0]
        hint = (
            f"the data was recorded under {common} and none of its files is in "
            f"{os.path.abspath(source_root)}: run from the checkout of the deployed code "
            "or point --source-root at it"
        )
    raise ReportError(
        f"no recorded path maps into the checkout: the task root(s) {task_roots} match none "
        f"of the {len(paths)} measured file(s); {hint}"
    )
