"""Every use of coverage.py internals, in one place.

coverage.py's public API can only switch collection with ``Coverage.stop()`` /
``start()``, and both are wrong for a function that opens a measured block per
request:

* on ``sysmon``, ``start()`` calls ``sys.monitoring.restart_events()``, which
  re-arms every line event the process ever disabled, so each switch makes all
  code that runs afterwards report its lines again (77-86 µs per block on
  3.14, and the code after it pays a "first hit" per line);
* on ``ctrace`` and ``pytrace``, ``stop()`` removes the trace function from
  each thread on its next event and ``start()`` installs one on the calling
  thread only, so every other live thread is never traced again.

So collection is never restarted.  A *gate* decides what is recorded instead:

* `SysmonGate` keeps coverage.py's monitor running, with one callback per
  event in front of coverage.py's.  While paused it records nothing and
  leaves every location armed; a long paused window takes the callbacks off
  the tool (`init_recorder.Muting`), so the rest of it costs nothing, and
  resuming puts them back.  A switch is a flag (0.5 µs for a block's enter
  and exit on 3.14), plus the muting of a long window.
* `TraceGate` keeps every thread's tracer installed.  Pausing takes what was
  recorded so far out of the tracers' live sets; resuming throws away what was
  recorded meanwhile.  Every thread stays traced, whenever it started.
* `RestartGate` is the public-API fallback (``stop()``/``start()``) for a
  coverage.py whose internals no longer match; the adapter's tests fail
  loudly when that happens.

Data goes through `take_recorded` (drain the tracers' live sets) and
`write_recorded` (add to coverage.py's `CoverageData`), so the data file stays
coverage.py's own.
"""

from __future__ import annotations

import contextlib
import inspect
import operator
import os
import stat
import sys
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from types import CodeType
from typing import Any, Protocol

from coverage_runtime.shim import init_recorder

# Items recorded for one file: line numbers, or arcs (tuples, or the C
# tracer's packed integers).
Recorded = dict[str, set[Any]]

CORE_NAMES = {"CTracer": "ctrace", "PyTracer": "pytrace", "SysMonitor": "sysmon"}


class InternalsChanged(Exception):
    """coverage.py's internals are not what this adapter was written for."""


# -- importing coverage.py ------------------------------------------------------

# What ``coverage.control`` imports at module level only to call it in its
# report (and multiprocessing) methods.  Nothing a measured function does
# needs it: ~17 ms of every cold start on 3.14, so it loads on first use.
DEFERRED_IMPORTS: dict[str, tuple[str, ...]] = {
    "coverage.annotate": ("AnnotateReporter",),
    "coverage.html": ("HtmlReporter",),
    "coverage.jsonreport": ("JsonReporter",),
    "coverage.lcovreport": ("LcovReporter",),
    "coverage.report": ("SummaryReporter",),
    "coverage.xmlreport": ("XmlReporter",),
    "coverage.report_core": ("render_report",),
    "coverage.results": ("Analysis", "analysis_from_file_reporter"),
    "coverage.multiproc": ("patch_multiprocessing",),
}


class Deferred:
    """Stands in ``coverage.control`` for a class or function until it is called."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def load(self) -> Any:
        import importlib

        real = getattr(importlib.import_module(self.module), self.name)
        control = sys.modules.get("coverage.control")
        if control is not None and getattr(control, self.name, None) is self:
            setattr(control, self.name, real)
        return real

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)


# What coverage.py's modules import from outside it (3.11-3.14, `DEFERRED_IMPORTS`
# left out), each before what imports it.  ``import coverage`` runs the package's
# ``__init__``, which imports all of coverage.py in one step the shipping thread
# cannot cut: 33-38 ms of CPU in the image after the runtime's own imports, one
# frozen invocation's.  Imported first one at a time, with a turn between them
# (`import_coverage`), no step exceeds ~7 ms and ``import coverage`` is left with
# coverage.py's own modules, ~13 ms.  A module missing here only makes that last
# step larger: `tests.exactness.coverage_dependencies` says which.
DEPENDENCIES: tuple[str, ...] = (
    "atexit", "math", "datetime", "signal", "warnings", "platform", "sysconfig", "struct",
    "binascii", "base64", "configparser", "weakref", "copy", "json", "string", "tomllib",
    "errno", "hashlib", "importlib.util", "fnmatch", "glob", "pwd", "grp", "fcntl",
    "ipaddress", "urllib.parse", "pathlib", "textwrap", "dataclasses", "_colorize",
    "traceback", "pprint", "bisect", "random", "selectors", "socket", "sqlite3", "uuid",
    "zlib",
)  # fmt: skip


def import_coverage(between: Callable[[], object] | None = None) -> Any:
    """``import coverage``, with `DEFERRED_IMPORTS` loaded on first use, and its
    data file out of the function's tracers' sight (`untrace_data_file`).

    ``between`` (the shipping thread's `pacing.turn`): the `DEPENDENCIES` not yet
    imported first, one at a time, ``between`` called after each."""
    if between is not None and "coverage" not in sys.modules:
        for name in DEPENDENCIES:
            if name in sys.modules:
                continue
            with contextlib.suppress(ImportError):  # (not on this platform or Python)
                __import__(name)
                between()
    coverage = _import_coverage()
    untrace_data_file()
    fast_multiline_maps()
    resolve_paths_once()
    return coverage


def _import_coverage() -> Any:
    if "coverage" in sys.modules:
        return sys.modules["coverage"]
    stubs = {}
    for module, names in DEFERRED_IMPORTS.items():
        stub = types.ModuleType(module, "deferred by coverage_runtime.shim.coverage_adapter")
        for name in names:
            setattr(stub, name, Deferred(module, name))
        stubs[module] = sys.modules[module] = stub
    try:
        import coverage
    except ImportError:
        # Another module wants more of a deferred module: import it all, plainly.
        for module in [m for m in sys.modules if m == "coverage" or m.startswith("coverage.")]:
            del sys.modules[module]
        import coverage
    finally:
        for module, stub in stubs.items():
            if sys.modules.get(module) is stub:
                del sys.modules[module]
    return coverage


# -- coverage.py's multiline maps, from the C tokenizer's own tuples --------------


def fast_multiline_maps() -> bool:
    """Let coverage.py's ``sys.monitoring`` core tokenize a file without wrapping
    every token in a ``TokenInfo``.

    With branches (3.14), a file's first branch event makes coverage.py
    tokenize all of it for its multiline map
    (``coverage.sysmon.compute_multiline_map``): at 2,000 measured modules,
    85% of building coverage.py and replaying the init, which an early
    SIGTERM must finish within the shutdown window (bench/README.md).
    ``tokenize.generate_tokens`` makes a ``TokenInfo`` of each tuple the C
    tokenizer yields; coverage.py's own ``multiline_map_from_tokens`` only
    unpacks them, so it is given the tuples themselves: the same tokens, the
    same map (`test_coverage_adapter` compares both on every module of the
    standard library), in about half the time.  Returns whether it is in place
    (3.12+, where the C tokenizer is reachable and coverage.py has the core).
    """
    if getattr(sys, "monitoring", None) is None:
        return False
    try:
        import _tokenize
        import io

        from coverage import sysmon
        from coverage.parser import multiline_map_from_tokens
    except ImportError:
        return False
    original = getattr(sysmon, "compute_multiline_map", None)
    if getattr(original, "fast", False):
        return True
    tokenizer = getattr(_tokenize, "TokenizerIter", None)
    source_of = getattr(sysmon, "get_python_source", None)
    no_source = getattr(sysmon, "NoSource", None)
    if original is None or tokenizer is None or source_of is None or no_source is None:
        return False

    def compute_multiline_map(filename: str) -> dict[int, int]:
        """``coverage.sysmon.compute_multiline_map``, fed untouched tokens (or
        the map computed when the image was built: `use_known_maps`)."""
        known = _known_maps
        if known is not None:
            found = known(filename)
            if found is not None:
                return found
        try:
            text = source_of(filename)
        except (OSError, no_source):
            return {}
        try:
            tokens = tokenizer(io.StringIO(text).readline, extra_tokens=True)
            return multiline_map_from_tokens(tokens)
        except SyntaxError:  # (IndentationError too; tokenize's TokenError wraps these)
            return {}

    compute_multiline_map.fast = True  # type: ignore[attr-defined]
    sysmon.compute_multiline_map = compute_multiline_map
    return True


# Where `fast_multiline_maps` looks first: a file's map computed ahead (None: not known).
_known_maps: Callable[[str], dict[int, int] | None] | None = None


def use_known_maps(lookup: Callable[[str], dict[int, int] | None] | None) -> None:
    """Let coverage.py's multiline maps come from ``lookup`` where it knows the file
    (`maps_cache`: computed with `multiline_map` when the image was built, for
    a file of the same size and modification time), tokenized as before where
    it does not.  None: always tokenized."""
    global _known_maps  # noqa: PLW0603 - one coverage.py per process
    _known_maps = lookup


def multiline_map(filename: str) -> dict[int, int]:
    """coverage.py's multiline map of ``filename`` (of its ``sys.monitoring`` core,
    which asks for it at a file's first branch event), as the image's build
    computes it (`maps_cache`); `InternalsChanged` where the core has none."""
    import_coverage()
    try:
        from coverage import sysmon
    except ImportError as exc:
        raise InternalsChanged("coverage.sysmon is missing") from exc
    compute = getattr(sysmon, "compute_multiline_map", None)
    if compute is None:
        raise InternalsChanged("coverage.sysmon.compute_multiline_map is missing")
    return dict(compute(filename))


# -- real paths, each resolved once ---------------------------------------------


class RealPaths:
    """``coverage.files.abs_file`` with each path and each directory resolved once.

    coverage.py resolves a measured file's real path (``os.path.realpath``:
    an ``lstat`` per component) four times: in ``should_trace``
    (``canonical_filename``, then two ``TreeMatcher.match``) and in the data's
    file mapper.  With coverage.py's first sight of a file deferred past the
    init, all of them fall in the first replay, which an early SIGTERM runs in
    its window: 100 ms at 2,000 modules in the image (bench/README.md).  Here
    a path's answer is kept, and a new path costs one ``lstat`` of its last
    component once its directory is known.  The code of a running function
    does not move (coverage.py keeps ``canonical_filename``'s answers for the
    life of the process too).  Only answers an ``lstat`` settled are kept: a
    path that is not a real file or directory of its own (a symbolic link, a
    missing one, an error) and a relative or unnormalized path are asked of
    ``realpath`` itself each time, so a directory made or linked later is seen.
    """

    def __init__(self, original: Callable[[str], str]) -> None:
        self.original = original
        self._paths: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        found = self._paths.get(path)
        return found if found is not None else self._resolve(path)

    def _resolve(self, path: str) -> str:
        head, tail = os.path.split(path)
        if (
            not os.path.isabs(path)
            or not tail
            or tail in (os.curdir, os.pardir)
            or os.path.normpath(path) != path
        ):
            return self.original(path)
        joined = os.path.join(self(head), tail)
        try:
            link = stat.S_ISLNK(os.lstat(joined).st_mode)
        except OSError:
            return self.original(path)  # (missing or unreadable: realpath's own rules)
        if link:
            return self.original(path)
        self._paths[path] = joined
        return joined


def resolve_paths_once() -> bool:
    """Put a `RealPaths` in place of coverage.py's ``abs_file`` (in
    ``coverage.files``, and ``coverage.control``'s copy that becomes a
    Coverage's file mapper); False if its internals are not what this was
    written for, or on Windows, where ``abs_file`` also fixes the case."""
    if sys.platform == "win32":
        return False
    files = sys.modules.get("coverage.files")
    control = sys.modules.get("coverage.control")
    original = getattr(files, "abs_file", None)
    if isinstance(original, RealPaths):
        return True
    if original is None or control is None or getattr(control, "abs_file", None) is not original:
        return False
    paths = RealPaths(original)
    files.abs_file = paths  # type: ignore[union-attr]
    control.abs_file = paths  # type: ignore[attr-defined]
    return True


# -- the data file, out of the function's tracers' sight -------------------------


class UntracedSqlite3(types.ModuleType):
    """``sqlite3`` as ``coverage.sqlitedb`` sees it: the real module, except that
    ``connect`` is the original, whatever patched ``sqlite3.connect``.

    The X-Ray SDK's ``patch_all()`` and OpenTelemetry's sqlite3 instrumentation
    wrap ``sqlite3.connect`` (with wrapt) so that every statement on the
    connection is a subsegment or span.  coverage.py's writes of our data file
    are not the function's work: traced, they would fill its traces, and its
    logs with X-Ray's ``Subsegment ... discarded`` warnings.  ``connect`` looks
    the original up on each call (peeling ``__wrapped__``), so a patch made
    after coverage.py was imported is bypassed too; the function's own
    ``sqlite3.connect`` stays patched.
    """

    def __init__(self) -> None:
        super().__init__("sqlite3", "sqlite3 with its original connect, for coverage.py")

    def __getattr__(self, name: str) -> Any:
        import sqlite3

        return getattr(sqlite3, name)

    @staticmethod
    def connect(*args: Any, **kwargs: Any) -> Any:
        import sqlite3

        return inspect.unwrap(sqlite3.connect)(*args, **kwargs)


def untrace_data_file() -> bool:
    """Give ``coverage.sqlitedb`` an `UntracedSqlite3`; False if its internals
    are not what this was written for (it connects with ``sqlite3.connect``
    through its module global ``sqlite3``) and its writes stay visible."""
    import sqlite3  # imported already by coverage.py's data layer

    sqlitedb = sys.modules.get("coverage.sqlitedb")
    current = getattr(sqlitedb, "sqlite3", None)
    if isinstance(current, UntracedSqlite3):
        return True
    if current is not sqlite3:
        return False
    sqlitedb.sqlite3 = UntracedSqlite3()  # type: ignore[union-attr]
    return True


# -- configuring a Coverage before it starts -----------------------------------


def route_warnings(cov: Any, log: Callable[..., None]) -> None:
    """Send coverage.py's warnings to ``log`` instead of ``warnings.warn``.

    coverage.py warns through Python's warnings machinery, which prints a raw
    ``CoverageWarning: ...`` line to stderr: in a Lambda log of JSON records
    that is noise nobody can query.  Its ``disable_warnings`` setting and
    ``once`` still apply.
    """
    seen: set[str] = set()

    def warn(msg: str, slug: str | None = None, once: bool = False) -> None:
        if slug and (slug in cov.config.disable_warnings or slug in seen):
            return
        if once and slug:
            seen.add(slug)
        log(msg, slug=slug, source="coverage.py")

    cov._warn = warn


def narrow_to(cov: Any, patterns: Iterable[str], sources: Iterable[str]) -> None:
    """Measure only the files under the sources that match ``patterns``.

    coverage.py ignores ``include`` whenever ``source`` is given, and source
    is always given here (the task root by default), so the patterns are
    applied on top of its decision.  A pattern that is not absolute and does
    not start with a wildcard is relative to each source directory.
    """
    from coverage.files import GlobMatcher

    globs = []
    for pattern in patterns:
        if os.path.isabs(pattern) or pattern.startswith(("*", "?")):
            globs.append(pattern)
        else:
            globs += [os.path.join(source, pattern) for source in sources]
    matcher = GlobMatcher(globs, name="COVERAGE_INCLUDE_PATTERNS")
    original = cov._should_trace

    def should_trace(filename: str, frame: Any) -> Any:
        disposition = original(filename, frame)
        if disposition.trace and not matcher.match(disposition.source_filename or filename):
            disposition.trace = False
            disposition.reason = "not matched by COVERAGE_INCLUDE_PATTERNS"
        return disposition

    cov._should_trace = should_trace


# -- reading coverage.py's collector -------------------------------------------


def collector(cov: Any) -> Any:
    found = getattr(cov, "_collector", None)
    if found is None:
        raise InternalsChanged("Coverage._collector is missing (coverage not started?)")
    return found


def core_name(cov: Any) -> str | None:
    """The core coverage.py really uses (it may fall back from sysmon)."""
    core = getattr(getattr(cov, "_collector", None), "core", None)
    tracer = getattr(core, "tracer_class", None)
    return CORE_NAMES.get(getattr(tracer, "__name__", ""))


def live_data(cov: Any) -> Recorded:
    """The sets the tracers add to (the collector's ``data``)."""
    data = getattr(collector(cov), "data", None)
    if not isinstance(data, dict):
        raise InternalsChanged("Collector.data is not a dict")
    return data


def coverage_data(cov: Any) -> Any:
    """coverage.py's `CoverageData` that the collector writes to."""
    data = getattr(collector(cov), "covdata", None)
    if data is None:
        raise InternalsChanged("Collector.covdata is missing")
    return data


def packed_arcs(cov: Any) -> bool:
    return bool(getattr(collector(cov).core, "packed_arcs", False))


# The C tracer's arc integer (see coverage.py's ``flush_data``): two 28-bit line
# numbers, and a sign bit for each.
_LINE_BITS = 0xFFFFFFF
_NEGATIVE_FROM = 1 << 56
_NEGATIVE_TO = 1 << 57


def unpack_arc(packed: int) -> tuple[int, int]:
    """The C tracer's arc integer as a pair (see coverage.py's ``flush_data``)."""
    l1 = packed & _LINE_BITS
    l2 = (packed >> 28) & _LINE_BITS
    if packed & _NEGATIVE_FROM:
        l1 = -l1
    if packed & _NEGATIVE_TO:
        l2 = -l2
    return l1, l2


def unpack_arcs(packed: Iterable[int]) -> list[tuple[int, int]]:
    """`unpack_arc` of each, inlined: a shutdown unpacks every arc of the init
    (80,000 at 2,000 modules), and a call per arc doubled the time."""
    bits = _LINE_BITS
    return [
        (
            -(p & bits) if p & _NEGATIVE_FROM else p & bits,
            -((p >> 28) & bits) if p & _NEGATIVE_TO else (p >> 28) & bits,
        )
        for p in packed
    ]


def arc_lines(arcs: set[Any], *, packed: bool) -> set[int]:
    """The line numbers (> 0) that ``arcs`` (pairs, or packed integers) join.

    Set comprehensions over each end rather than a pass per pair: the tally
    counts every arc of the init this way at the first snapshot."""
    if packed:
        bits = _LINE_BITS
        found = {p & bits for p in arcs if not p & _NEGATIVE_FROM}
        found.update([(p >> 28) & bits for p in arcs if not p & _NEGATIVE_TO])
        found.discard(0)
        return found
    found = {a for a, _ in arcs if a > 0}
    found.update([b for _, b in arcs if b > 0])
    return found


_second = operator.itemgetter(1)


def drain(items: set[Any]) -> set[Any]:
    """Move what one live set holds out of it, keeping the set object.

    Running frames hold references to the live sets, so they are emptied in
    place; ``copy`` and ``difference_update`` are each atomic under the GIL,
    so an item another thread adds in between stays for the next call.
    """
    snapshot = items.copy()
    items.difference_update(snapshot)
    return snapshot


def take_recorded(live: Recorded) -> Recorded:
    """Move what the tracers recorded out of their sets (see `drain`)."""
    # The filter runs in C: with 1,000 files and few of them new, this costs
    # what is new, not a Python step per file.
    return {name: drain(items) for name, items in list(filter(_second, live.items()))}


def discard_recorded(live: Recorded) -> None:
    for items in list(filter(None, live.values())):
        items.clear()


def merge_into(target: Recorded, new: Recorded) -> None:
    for name, items in new.items():
        existing = target.get(name)
        if existing is None:
            target[name] = items
        else:
            existing |= items


def write_recorded(cov: Any, recorded: Recorded, *, arcs: bool) -> None:
    """Add recorded items to the `CoverageData` (and so to the data file)."""
    if not recorded:
        return
    _add_recorded(cov, coverage_data(cov), recorded, arcs=arcs)


def _add_recorded(cov: Any, data: Any, recorded: Recorded, *, arcs: bool) -> None:
    """Add recorded items to ``data`` as ``cov``'s collector would: its file
    mapping, and the C tracer's packed arcs unpacked."""
    mapped = collector(cov).mapped_file_dict(recorded)
    if not arcs:
        data.add_lines(mapped)
    elif packed_arcs(cov):
        data.add_arcs({name: unpack_arcs(items) for name, items in mapped.items()})
    else:
        data.add_arcs(mapped)


def _context(cov: Any, label: str | None) -> str | None:
    """The coverage.py context of what runs under ``label``: the static context,
    the label, or both (as ``Collector.switch_context`` names it)."""
    static = getattr(collector(cov), "static_context", None)
    return f"{static}|{label}" if static and label else (static or label or None)


def write_data_file(
    cov: Any, path: str, recorded: Mapping[str, Recorded], *, arcs: bool, fresh: bool
) -> None:
    """Add ``recorded`` (by label) to the coverage.py data file at ``path`` (a new
    one when ``fresh``), written as ``cov`` writes its own (its file mapping, its
    contexts, its arcs' form): an environment's delta object
    (`layout.DELTA_SUFFIX`).  Created even when nothing is in it (the delta of a
    shutdown that ships only the invocation count)."""
    from coverage import CoverageData

    for stale in (path, path + "-journal") if fresh else ():
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    data = CoverageData(basename=path)
    if not fresh:
        data.read()  # (else its first write erases it)
    try:
        if arcs:
            data.add_arcs({})  # (creates the file, and says it holds arcs)
        else:
            data.add_lines({})
        for label, items in recorded.items():
            data.set_context(_context(cov, label))
            _add_recorded(cov, data, items, arcs=arcs)
    finally:
        data.close()


def set_context(cov: Any, label: str | None) -> None:
    """Label what is written from now on, as ``Collector.switch_context`` does
    but without its flush of the live sets (which may hold paused data)."""
    coverage_data(cov).set_context(_context(cov, label))


def start(cov: Any) -> None:
    """``cov.start()``, without the debugging stack coverage.py records.

    ``Collector.__init__`` keeps ``short_stack()`` (an ``inspect.stack()``
    that reads the source of every frame) for an error message: 7 ms of
    every cold start on 3.14.
    """
    try:
        import coverage.collector as collector_module

        original = collector_module.short_stack
    except (ImportError, AttributeError):
        cov.start()
        return
    collector_module.short_stack = lambda *args, **kwargs: "(not recorded)"
    try:
        cov.start()
    finally:
        collector_module.short_stack = original


def start_deferred(cov: Any, tool: int) -> None:
    """Start ``cov`` on the ``sysmon`` core with its monitor on ``tool``, a tool
    id the init recorder holds, without touching ``sys.monitoring``.

    ``SysMonitor.start`` would take a tool id of its own, register its
    callbacks and call ``restart_events()``, which re-arms every location any
    tool ever disabled: every line of the init would report again (and other
    tools' events too).  Here the monitor only adopts the tool; the gate
    registers its callbacks once the recorded events are replayed.  The
    warning about files imported before the start is off: they were measured,
    by the recorder.
    """
    try:
        import coverage.sysmon as sysmon_module

        monitor_class = sysmon_module.SysMonitor
        original = monitor_class.start
    except (ImportError, AttributeError) as exc:
        raise InternalsChanged(f"coverage.sysmon.SysMonitor.start is missing: {exc}") from exc
    if not hasattr(cov, "_warn_preimported_source"):
        raise InternalsChanged("Coverage._warn_preimported_source is missing")

    def adopt(monitor: Any) -> None:
        monitor.myid = tool
        monitor.sysmon_on = True

    cov.set_option("run:core", "sysmon")
    cov._warn_preimported_source = False
    monitor_class.start = adopt  # type: ignore[method-assign]
    try:
        start(cov)
    finally:
        monitor_class.start = original  # type: ignore[method-assign]
    tracers = collector(cov).tracers
    if len(tracers) != 1 or getattr(tracers[0], "myid", None) != tool:
        raise InternalsChanged(f"the deferred start did not adopt tool {tool}: {tracers!r}")


def abandon(cov: Any) -> None:
    """Stop a `Coverage` whose `start_deferred` went wrong, leaving the tool id (the
    init recorder's) alone."""
    if getattr(cov, "_started", False):
        collector(cov).tracers.clear()
        cov.stop()


def _tracer_callbacks(tracer: Any) -> dict[int, Callable[..., Any]]:
    """The callbacks ``SysMonitor.start`` would register, by event."""
    events = getattr(sys, "monitoring", None)
    if events is None:
        raise InternalsChanged("sys.monitoring is missing")
    events = events.events
    names = {events.PY_START: "sysmon_py_start"}
    if tracer.trace_arcs:
        names |= {
            events.LINE: "sysmon_line_arcs",
            events.PY_RETURN: "sysmon_py_return",
            events.BRANCH_LEFT: "sysmon_branch_either",
            events.BRANCH_RIGHT: "sysmon_branch_either",
        }
    else:
        names[events.LINE] = "sysmon_line_lines"
    found = {}
    for event, name in names.items():
        method = getattr(tracer, name, None)
        if method is None:
            raise InternalsChanged(f"SysMonitor.{name} is missing")
        found[event] = method
    return found


def local_events(cov: Any) -> int:
    """The local events coverage.py arms on the code objects it traces."""
    tracer = collector(cov).tracers[0]
    return int(tracer.local_events())


# -- gates ---------------------------------------------------------------------


class Gate(Protocol):
    """Switches recording on and off without restarting coverage.py, and
    attributes what is recorded to the current label."""

    kind: str
    has_tracers: bool  # per-thread tracers that `compact` may let go of
    retires: bool  # takes the events off code that recorded all it can (`retire`)
    label: str

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def relabel(self, label: str) -> None: ...
    def prearm(self) -> int: ...
    def take_labelled(self) -> list[tuple[str, Recorded]]: ...
    def take_parked(self) -> list[tuple[str, Recorded]]: ...
    def take(self) -> Recorded: ...
    def forget(self) -> None: ...
    def compact(self, max_tracers: int) -> int: ...
    def retire(self, stop: Callable[[], bool] = ...) -> int: ...
    def stop(self) -> None: ...


class Labelled:
    """What every gate does with labels: what was recorded before a switch
    belongs to the label before it, and waits (parked) until it is taken."""

    label: str = ""
    _parked: list[tuple[str, Recorded]]

    def take(self) -> Recorded:
        raise NotImplementedError

    def _park(self) -> None:
        taken = self.take()
        if taken:
            self._parked.append((self.label, taken))

    def relabel(self, label: str) -> None:
        """What runs from now on is ``label``'s."""
        self._park()
        self.label = label

    def prearm(self) -> int:
        """Ready a label switch ahead of it, off the invocation path: what was
        recorded so far is parked under the current label, so the switch
        parks only what is recorded meanwhile.  Returns how many code objects
        were re-armed (`SysmonGate.prearm`)."""
        self._park()
        return 0

    def take_labelled(self) -> list[tuple[str, Recorded]]:
        """Everything recorded since the last call, by label, in order."""
        self._park()
        return self.take_parked()

    def take_parked(self) -> list[tuple[str, Recorded]]:
        """What the label switches parked since the last take, by label, in order;
        what was recorded since the last switch stays (`take_labelled` takes it)."""
        parked, self._parked = self._parked, []
        return parked


class SysmonGate(Labelled):
    """Gate coverage.py's ``sys.monitoring`` callbacks (see the module docstring).

    coverage.py's own callbacks stay the ones that record, wrapped to note
    which code objects recorded something (so taking the data costs what is
    new, not a pass over every file) and, with branches, which locations of
    each code object fired (so a code object with nothing left to record can
    lose its events: see `retire`).

    It also answers PY_START for code outside the measured directories
    itself: coverage.py would run its file checks (``should_trace``, about
    60 µs a file on 3.14) and keep a record for every such code object, on
    the cold-start path where the function's imports run.

    With labels (``labelled``), every location must report once per label,
    but coverage.py's callbacks return ``DISABLE``: a label switch re-arms
    what they disabled (`rearm_for_label`), or `prearm` did ahead of it, off
    the invocation path.  The steady state stays free: nothing fires between
    switches that would not fire without labels.
    """

    kind = "gate"
    has_tracers = False
    retires = True

    def __init__(
        self,
        cov: Any,
        source_dirs: Iterable[str] = (),
        *,
        deferred: bool = False,
        labelled: bool = False,
        label: str = "",
        fed: bool = False,
    ) -> None:
        monitoring = getattr(sys, "monitoring", None)
        if monitoring is None:
            raise InternalsChanged("sys.monitoring is missing")
        # ``fed``: by the init recorder for good (labels: `InitRecorder.drain`): never
        # paused, never retiring (the recorder does both), so what fired is not kept.
        self._cov, self._fed = cov, fed
        tracers = collector(cov).tracers
        if len(tracers) != 1 or type(tracers[0]).__name__ != "SysMonitor":
            raise InternalsChanged(f"expected one SysMonitor, found {tracers!r}")
        tracer = tracers[0]
        for name in (
            "myid", "code_infos", "code_objects", "local_events", "data", "trace_arcs", "sysmon_on"
        ):  # fmt: skip
            if not hasattr(tracer, name):
                raise InternalsChanged(f"SysMonitor.{name} is missing")
        self._monitoring = monitoring
        self._tracer = tracer
        self._live: Recorded = tracer.data
        self._tool = tracer.myid
        self._arcs = bool(tracer.trace_arcs)
        self._code_infos: dict[int, Any] = tracer.code_infos
        self._disable = monitoring.DISABLE
        # Code objects that recorded something since the last `take`, and
        # since the last `retire`.
        self._dirty: dict[int, CodeType] = {}
        self._to_check: dict[int, CodeType] = {}
        self._names: dict[int, str] = {}  # live set -> its file name
        # coverage.py's decision per file name (``should_trace``'s, cached): the
        # name a new file's set has in the data (`_name`).
        self._dispositions: dict[str, Any] = getattr(tracer, "should_trace_cache", {})
        # Arcs: the locations that fired while measuring, per code object.  (Keyed by
        # id, as ``_cut`` and ``_expected`` are, with no reference to the code: each
        # code object that reaches these callbacks is one coverage.py's monitor saw
        # start, and it keeps them all alive, ``code_objects``, for its own
        # ``code_infos`` keyed by id: no id names another code object meanwhile.)
        self._fired: dict[int, set[Any]] = {}
        # Arcs: code objects cut by a pause (`cut`) that fired nothing measured since:
        # their paused events are answered at once (the example's batch answers 700 an
        # invocation).  One set for good (the callbacks hold it): emptied, never replaced.
        self._cut: set[int] = set()
        self._expected = init_recorder.Expected(self._arcs)
        # Lines already taken out of the live sets, by live set: a line that
        # is recorded can be disabled when it runs while paused (lines only:
        # with branches the fired locations say it).
        self._taken: dict[int, set[int]] = {}
        # While paused: the callbacks come off in a long window (`_paused_event`),
        # under this lock.
        self.paused = False
        self._pause_lock = threading.Lock()
        self.label = label
        self._parked = []
        self._labelled = labelled
        self._retired: dict[int, CodeType] = {}  # (labels: re-armed at their next call)
        # Labels: code outside the sources that started again since the last
        # `restart_events()` (the price of a restart), and the switches so far.
        self._rearming = init_recorder.RearmChoice()
        self._switches = 0
        # Labels: code objects that recorded since they were last re-armed (the
        # others' events are all armed still: a switch leaves them alone).
        self._ran: dict[int, CodeType] = {}
        # Does what reaches the callbacks run now (`go_live`, then `install`)?  Until
        # then events are replayed into them, and whoever owns the tool's callbacks
        # (the init recorder) arms and re-arms.
        self._is_live = not deferred
        events = monitoring.events
        originals = _tracer_callbacks(tracer) if deferred else {}
        self._gated_callbacks = self._wrap(originals)
        self._muting = init_recorder.Muting(self._tool, self._gated_callbacks, arcs=self._arcs)
        self._prefixes = init_recorder.source_prefixes(source_dirs)
        if deferred:
            if not self._prefixes:
                raise InternalsChanged("a deferred start needs the source directories")
            self._py_start = originals[events.PY_START]
            return  # `install` registers, after the recorded events are replayed
        for event, callback in self._gated_callbacks.items():
            monitoring.register_callback(self._tool, event, callback)
        if self._prefixes or labelled:
            self._py_start = monitoring.register_callback(self._tool, events.PY_START, None)
            if self._py_start is None:
                raise InternalsChanged("coverage.py registered no PY_START callback")
            monitoring.register_callback(self._tool, events.PY_START, self._filter_start)

    def _wrap(self, originals: dict[int, Callable[..., Any]]) -> dict[int, Callable[..., Any]]:
        """The gated callback of each event, around coverage.py's own (``originals``,
        or else the ones coverage.py registered, taken off the tool)."""
        events = self._monitoring.events
        skippers: dict[int, Callable[..., Any]] = {
            events.LINE: self._skip_line_arcs if self._arcs else self._skip_line
        }
        if self._arcs:  # coverage.py measures branches with sysmon from 3.14 only
            skippers[events.PY_RETURN] = self._skip_other
            skippers[events.BRANCH_LEFT] = self._skip_branch
            skippers[events.BRANCH_RIGHT] = self._skip_branch
        gated = {}
        for event, skipper in skippers.items():
            original = originals.get(event) or self._monitoring.register_callback(
                self._tool, event, None
            )
            if original is None:
                raise InternalsChanged(f"coverage.py registered no callback for event {event}")
            gated[event] = self._gated(event, original, skipper)
        return gated

    # Taking over from the init recorder (`init_recorder.InitRecorder.hand_over`).

    def callbacks(self) -> dict[int, Callable[..., Any]]:
        events = self._monitoring.events
        found = {init_recorder.START: self._filter_start}
        for kind, name in (
            (init_recorder.LINE, "LINE"),
            (init_recorder.RETURN, "PY_RETURN"),
            (init_recorder.BRANCH_LEFT, "BRANCH_LEFT"),  # 3.14+
            (init_recorder.BRANCH_RIGHT, "BRANCH_RIGHT"),
        ):
            event = getattr(events, name, None)
            if event in self._gated_callbacks:
                found[kind] = self._gated_callbacks[event]
        return found

    def traced(self, code: CodeType) -> bool:
        info = self._code_infos.get(id(code))
        return bool(info is not None and info.tracing and info.file_data is not None)

    def data_name(self, code: CodeType) -> str | None:
        """The name ``code``'s file has in the data, as `take` keys it (coverage.py's
        canonical file name), or None if coverage.py records nothing for it."""
        info = self._code_infos.get(id(code))
        if info is None or info.file_data is None:
            return None
        return self._name(id(info.file_data), code)

    def _name(self, key: int, code: CodeType) -> str | None:
        """The data's name of the live set ``key`` (``code`` records into it).

        A file not named before is looked up by coverage.py's disposition of
        ``code``'s file (the name it made that set under), checked against the
        live data; only if that fails are all live files scanned.  (The scan
        for each new file made a replay file by file, as the shutdown's is,
        quadratic: 2,000 files with labels, 150 ms more than the whole replay.)
        """
        names = self._names
        name = names.get(key)
        if name is not None:
            return name
        found = getattr(self._dispositions.get(code.co_filename), "source_filename", None)
        if found is not None and id(self._live.get(found)) == key:
            names[key] = found
            return found
        names.update((id(items), name) for name, items in list(self._live.items()))
        return names.get(key)

    def cut(self, code: CodeType) -> None:
        """A pause came: no sequential arc joins the lines around it."""
        info = self._code_infos.get(id(code))
        if info is not None:
            info.last_line = None
            self._cut.add(id(code))

    def adopt(self, retired: dict[int, CodeType]) -> None:
        """What the init recorder retired: re-armed at its first call under a new
        label.  (A window it muted is unmuted by `install`.)"""
        if self._labelled:
            self._retired.update(retired)

    def go_live(self) -> None:
        """What reaches the callbacks from now on runs now (after a deferred start):
        the init recorder forwards its events here, and then `install` registers
        the callbacks.  A start is armed from now on, not only noted as replayed."""
        self._is_live = True

    def install(self) -> None:
        """Take the tool's events (after `go_live`: the order of the registrations
        does not matter, since what reaches the recorder's callbacks meanwhile is
        forwarded here)."""
        self.go_live()  # (already: before PY_START is ours, a live start is armed)
        register = self._monitoring.register_callback
        for event, callback in self._gated_callbacks.items():
            register(self._tool, event, callback)
        register(self._tool, self._monitoring.events.PY_START, self._filter_start)

    def _gated(
        self, event: int, original: Callable[..., Any], skipper: Callable[..., Any]
    ) -> Callable[..., Any]:
        """The one callback registered for ``event``: coverage.py's while
        measuring (noting who recorded, after it did), ``skipper`` while paused.

        Switching is then only the `paused` flag, and the callbacks come off
        only in a long paused window (`_paused_event`).
        Callbacks run at first hits only, so the flag test costs nothing in
        steady state.
        """
        events = self._monitoring.events
        dirty = self._dirty_marker
        gate = self
        if self._fed:
            return self._replayed(event, original)
        if not self._arcs:

            def line(code: CodeType, number: int) -> Any:
                if gate.paused:
                    return skipper(code, number)
                result = original(code, number)
                dirty(code)
                return result

            return line
        fired = self._fired
        # A paused event in code cut already (its last line forgotten, nothing fired
        # since) is answered at once: the skipper would only cut it again.  A measured
        # event un-cuts its code object first: a pause meanwhile cuts it again.
        cut = self._cut
        # The bookkeeping after coverage.py's callback is inlined in each (no call
        # to a helper): a replay of a large init runs it 100,000 times and more.
        # ``gate._dirty`` is read each time: `take` replaces the dict.
        if event == events.LINE:

            def line_arcs(code: CodeType, number: int) -> Any:
                key = id(code)
                if gate.paused:
                    return None if key in cut else skipper(code, number)
                cut.discard(key)
                result = original(code, number)
                gate._dirty[key] = code
                found = fired.get(key)
                if found is None:
                    fired[key] = {number}
                else:
                    found.add(number)
                return result

            return line_arcs
        if event == events.PY_RETURN:

            def returned(code: CodeType, offset: int, value: object) -> Any:
                key = id(code)
                if gate.paused:
                    return None if key in cut else skipper(code, offset, value)
                cut.discard(key)
                result = original(code, offset, value)
                gate._dirty[key] = code
                found = fired.get(key)
                if found is None:
                    fired[key] = {("return", offset)}
                else:
                    found.add(("return", offset))
                return result

            return returned

        def branch(code: CodeType, offset: int, destination: int) -> Any:
            key = id(code)
            if gate.paused:
                return None if key in cut else skipper(code, offset, destination)
            cut.discard(key)
            result = original(code, offset, destination)
            gate._dirty[key] = code
            found = fired.get(key)
            if found is None:
                fired[key] = {(offset, destination)}
            else:
                found.add((offset, destination))
            return result

        return branch

    def _replayed(self, event: int, original: Callable[..., Any]) -> Callable[..., Any]:
        """A fed gate's callback: the recorder replays into it (never paused, never
        retiring: the recorder does both), so it only notes who recorded.  One per
        arity and the note inlined: a replay runs it per event (116,000 for the
        init of 2,000 modules with branches), and ``*args`` with a call to
        `_dirty_marker` cost as much as coverage.py's own callback."""
        events = self._monitoring.events
        gate = self
        if event == events.LINE:

            def replayed_line(code: CodeType, number: int) -> Any:
                result = original(code, number)
                gate._dirty[id(code)] = code
                return result

            return replayed_line
        if event == events.PY_RETURN:

            def replayed_return(code: CodeType, offset: int, value: object) -> Any:
                result = original(code, offset, value)
                gate._dirty[id(code)] = code
                return result

            return replayed_return

        def replayed_branch(code: CodeType, offset: int, destination: int) -> Any:
            result = original(code, offset, destination)
            gate._dirty[id(code)] = code
            return result

        return replayed_branch

    def _dirty_marker(self, code: CodeType) -> None:
        self._dirty[id(code)] = code

    def _filter_start(self, code: CodeType, offset: int) -> Any:
        filename = code.co_filename
        if filename.startswith(self._prefixes) or not filename.startswith(os.sep):
            if self._labelled:
                info = self._code_infos.get(id(code))
                if info is not None:  # known: its first call since a label switch
                    if info.tracing and info.file_data is not None:
                        self._fresh_under_label(code, info)
                    return self._disable
            if not self._is_live:
                return self._replayed_start(code, offset)
            return self._py_start(code, offset)
        self._rearming.outside_starts += 1
        return self._disable

    def _replayed_start(self, code: CodeType, offset: int) -> Any:
        """coverage.py's first sight of ``code``, replayed: without its arming.

        ``sysmon_py_start`` arms each code object it traces (``set_local_events``)
        when its monitor is on.  Replayed, the code object's events are the
        recorder's: it armed them when the code first started, and `retire` may
        have taken them off since (every location fired).  Arming again would
        undo that, and a change of local events re-enables every location that
        returned ``DISABLE``: the code would report again under the same label,
        and with branches coverage.py would join the last line its earlier
        frames left to the first line it reports again (an arc that never ran).
        The monitor is off for the call only: until the gate goes live only a
        replay calls this (`go_live` comes before the recorder forwards and
        `install` takes PY_START, so a live start is armed), replays run one at a time (the
        recorder's ``_replaying``), and `Measurement.finish` seals the recorder
        (`InitRecorder.seal`: the replay under way ends first) before `stop`,
        which reads the flag.
        """
        tracer = self._tracer
        tracer.sysmon_on = False
        try:
            return self._py_start(code, offset)
        finally:
            tracer.sysmon_on = True

    def _fresh_under_label(self, code: CodeType, info: Any) -> None:
        """``code`` runs for the first time under the current label."""
        info.last_line = None  # no sequential arc from a frame of another label
        key = id(code)
        self._fired.pop(key, None)
        if self._retired.pop(key, None) is not None:  # `retire` took its events off
            with contextlib.suppress(ValueError):  # the tool was freed: coverage.py stopped
                self._monitoring.set_local_events(self._tool, code, self._tracer.local_events())

    def relabel(self, label: str) -> None:
        super().relabel(label)
        if not self._labelled:
            return
        self._taken = {}  # lines taken under the last label say nothing about this one
        if not self._is_live:
            return  # a replayed switch: the init recorder re-armed when it came
        infos = self._code_infos
        self._switches += 1
        ran, self._ran = self._ran, {}  # (the cheaper way: `init_recorder.RearmChoice`)
        if not ran:
            return  # nothing disabled since the last re-arming (`prearm`)
        how = init_recorder.rearm_for_label(
            self._tool,
            lambda: [c for c in ran.values() if infos[id(c)].file_data is not None],
            self._tracer.local_events(),
            each=lambda code: self._fresh_under_label(code, infos[id(code)]),
            per_code=self._rearming.per_code(self._switches, len(ran)),
        )
        self._rearming.done(how)

    def prearm(self) -> int:
        """Re-arm, ahead of a label switch, what `relabel` would re-arm, the
        label staying the current one (see `init_recorder.InitRecorder.prearm`,
        which does the same while the recorder is the receiver): the switch
        then parks and re-arms only what recorded since (normally nothing).
        Code object by code object, never ``restart_events()``.

        What was recorded so far is parked first, under the current label.
        What runs between this and the switch reports again under it, is
        marked dirty and so re-armed at the switch.  Each re-armed code object
        is made fresh here (`_fresh_under_label`): with branches no sequential
        arc joins a line it ran before to one it runs after, and what fired
        stops counting for `retire` and the paused callbacks, as do the lines
        taken (lines): they are armed again, and would otherwise be disabled
        without being re-armed at the switch.  Returns how many code objects
        were re-armed.
        """
        if not (self._labelled and self._is_live):
            return 0  # (fed by the init recorder: it pre-arms)
        self._park()  # (`take` notes what recorded in ``_ran``)
        self._taken = {}
        ran, self._ran = self._ran, {}
        infos = self._code_infos
        return init_recorder.rearm(
            self._tool,
            [code for key, code in ran.items() if infos[key].file_data is not None],
            self._tracer.local_events(),
            each=lambda code: self._fresh_under_label(code, infos[id(code)]),
        )

    # The callbacks while paused.  A window's events past `init_recorder.MUTE_AFTER`
    # mute the tool: the rest of it fires nothing.

    def _paused_event(self, code: CodeType, fired: bool) -> Any:
        """Nothing is recorded, and the location stays armed (``DISABLE`` only
        when it has nothing left to record: ``fired`` under the current
        label); past `init_recorder.MUTE_AFTER` events the tool is muted until
        `resume` (`init_recorder.Muting`).  With branches, no sequential arc
        joins ``code``'s lines around the pause.

        If another thread resumed meanwhile, nothing is muted (the resume may
        have unmuted already)."""
        if self._arcs:
            self.cut(code)
        muting = self._muting
        muting.seen += 1
        if muting.seen > muting.limit:
            with self._pause_lock:
                if self.paused:
                    muting.mute()
        return self._disable if fired else None

    def _skip_line(self, code: CodeType, line: int) -> Any:
        info = self._code_infos.get(id(code))
        fired = False
        if info is not None:
            recorded = info.file_data
            taken = self._taken.get(id(recorded))
            fired = line in recorded or (taken is not None and line in taken)
        return self._paused_event(code, fired)

    def _skip_line_arcs(self, code: CodeType, line: int) -> Any:
        fired = self._fired.get(id(code))
        return self._paused_event(code, fired is not None and line in fired)

    def _skip_other(self, code: CodeType, offset: int, value: object) -> Any:
        fired = self._fired.get(id(code))
        return self._paused_event(code, fired is not None and ("return", offset) in fired)

    def _skip_branch(self, code: CodeType, offset: int, destination: int) -> Any:
        fired = self._fired.get(id(code))
        return self._paused_event(code, fired is not None and (offset, destination) in fired)

    # Switching.

    def pause(self) -> None:
        self._muting.seen = 0
        self.paused = True

    def resume(self) -> None:
        muting = self._muting
        with self._pause_lock:  # (with `_paused_event`'s: never muted once resumed)
            self.paused = False
            if muting.muted:  # (never with arcs: `init_recorder.Muting`)
                muting.unmute()

    def _rearm(self, codes: Iterable[CodeType]) -> None:
        init_recorder.rearm(self._tool, codes, self._tracer.local_events())

    # Data.

    def take(self) -> Recorded:
        """What the code objects that recorded since the last call recorded."""
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return {}
        self._to_check.update(dirty)
        if self._labelled:  # (`relabel` takes first, so this is complete when it re-arms)
            self._ran.update(dirty)
        infos = self._code_infos
        sets: dict[int, tuple[set[Any], CodeType]] = {}
        for key, code in dirty.items():
            info = infos.get(key)
            if info is not None and info.file_data is not None:
                sets[id(info.file_data)] = (info.file_data, code)
        taken: Recorded = {}
        arcs = self._arcs
        for key, (items, code) in sets.items():
            name = self._name(key, code) if items else None
            if name is not None:
                snapshot = taken[name] = drain(items)
                if not arcs:  # (only `_skip_line` and `retire` read it: lines only)
                    self._taken.setdefault(key, set()).update(snapshot)
        return taken

    def forget(self) -> None:
        """Drop what was recorded and make every traced line report again."""
        discard_recorded(self._live)
        self._dirty = {}
        self._to_check = {}
        self._ran = {}  # (everything traced is re-armed below)
        # Cleared in place: the gated callbacks hold these very dicts.
        self._fired.clear()
        self._taken.clear()
        infos = self._code_infos
        self._rearm([c for c in list(self._tracer.code_objects) if infos[id(c)].tracing])

    def compact(self, max_tracers: int) -> int:
        return 0  # one monitor serves every thread

    def retire(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Take the local events off code objects with nothing left to record.

        On 3.12-3.14 code that carries LINE events runs about 1.2x slower
        even when every event in it has returned ``DISABLE`` (bench/README.md).
        Lines: a code object whose every line is recorded.  Branches: one
        whose every line, branch direction and return has fired, so that
        coverage.py itself would record nothing more from it.  Only code that
        recorded since the last call is looked at; call `take` first.  Safe
        without the measurement lock: it only takes events off code that has
        nothing left to record.  Between its steps ``stop()`` may end it: the
        rest waits for the next call.
        """
        to_check, self._to_check = self._to_check, {}
        set_local = self._monitoring.set_local_events
        retired = 0
        for key, code in init_recorder.paced_codes(to_check, stop, self._to_check):
            if not init_recorder.retirable(code):
                continue  # a body: runs once
            if self._arcs:
                fired = self._fired.get(key)
            else:
                info = self._code_infos.get(key)
                fired = self._taken.get(id(info.file_data)) if info is not None else None
            if self._expected.done(key, code, fired):
                try:
                    set_local(self._tool, code, 0)
                except ValueError:  # the tool was freed meanwhile: coverage.py stopped
                    break
                self._expected.forget(key)
                if self._labelled:
                    self._retired[key] = code
                retired += 1
        return retired

    def stop(self) -> None:
        # Paused first: before 3.14, freeing the tool id leaves the per-code
        # events and their callbacks in place, and nothing more may be recorded.
        self.pause()
        self._cov.stop()


class TraceGate(Labelled):
    """Gate the trace-function cores (``ctrace``, ``pytrace``) by what is kept.

    A trace function records every line each time it runs, so a label switch
    is only taking what was recorded so far for the label before it."""

    kind = "gate"
    has_tracers = True
    retires = False  # a trace function sees every line anyway

    def __init__(self, cov: Any, *, label: str = "") -> None:
        self._cov = cov
        self.label = label
        self._parked = []
        coll = collector(cov)
        for name in ("tracers", "_start_tracer", "data", "mapped_file_dict"):
            if not hasattr(coll, name):
                raise InternalsChanged(f"Collector.{name} is missing")
        self._collector = coll
        self._live = live_data(cov)
        self._kept: Recorded = {}
        # Which thread each tracer serves, so that compaction drops only the
        # tracers of threads that have ended.
        self._owners: dict[int, int] = {id(t): threading.get_ident() for t in coll.tracers}
        original = coll._start_tracer

        def start_tracer() -> Any:
            fn = original()
            tracer = getattr(fn, "__self__", fn)
            self._owners[id(tracer)] = threading.get_ident()
            return fn

        coll._start_tracer = start_tracer
        self.paused = False

    def pause(self) -> None:
        if self.paused:
            return
        merge_into(self._kept, take_recorded(self._live))
        self.paused = True

    def resume(self) -> None:
        if not self.paused:
            return
        discard_recorded(self._live)
        self.paused = False

    def take(self) -> Recorded:
        if self.paused:
            discard_recorded(self._live)
        else:
            merge_into(self._kept, take_recorded(self._live))
        taken, self._kept = self._kept, {}
        return taken

    def forget(self) -> None:
        discard_recorded(self._live)
        self._kept = {}

    def compact(self, max_tracers: int) -> int:
        """Let go of the tracers of ended threads; live threads keep theirs."""
        tracers = self._collector.tracers
        if len(tracers) <= max_tracers:
            return 0
        alive = set(sys._current_frames())
        keep: list[Any] = []
        dropped: list[Any] = []
        for tracer in tracers:
            owner = self._owners.get(id(tracer))
            (keep if owner is None or owner in alive else dropped).append(tracer)
        for tracer in dropped:
            tracer.stop()  # only a flag: its thread is gone
            self._owners.pop(id(tracer), None)
        tracers[:] = keep
        return len(dropped)

    def retire(self, stop: Callable[[], bool] = lambda: False) -> int:
        return 0  # a trace function sees every line anyway

    def stop(self) -> None:
        self._cov.stop()
        self._kept = self.take()  # kept for the last `take`, live sets settled
        self.paused = False


class RestartGate(Labelled):
    """coverage.py's public ``stop()``/``start()``: the fallback when the
    internals above do not match (a coverage.py upgrade changed them).

    On ``sysmon`` a label switch restarts coverage.py (``restart_events()``,
    which re-arms other tools' events too: only in this fallback)."""

    kind = "restart"
    has_tracers = False
    retires = False

    def __init__(self, cov: Any, *, label: str = "") -> None:
        self._cov = cov
        self.paused = False
        self.label = label
        self._parked = []

    def relabel(self, label: str) -> None:
        super().relabel(label)
        if not self.paused and core_name(self._cov) == "sysmon":
            self._cov.stop()
            self._cov.start()

    def pause(self) -> None:
        if not self.paused:
            self._cov.stop()
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._cov.start()
            self.paused = False

    def take(self) -> Recorded:
        try:
            return take_recorded(live_data(self._cov))
        except InternalsChanged:
            self._cov.get_data()  # coverage.py's own flush
            return {}

    def forget(self) -> None:
        self._cov.get_data()
        self._cov.erase()

    def compact(self, max_tracers: int) -> int:
        return 0

    def retire(self, stop: Callable[[], bool] = lambda: False) -> int:
        return 0

    def stop(self) -> None:
        if not self.paused:
            self._cov.stop()
        self.paused = False


def attach(
    cov: Any,
    source_dirs: Iterable[str] = (),
    *,
    deferred: bool = False,
    labelled: bool = False,
    label: str = "",
) -> Gate:
    """The gate for a started `Coverage`; `InternalsChanged` if none fits.

    ``source_dirs``: every file that can be measured is under one of them.
    ``deferred``: started by `start_deferred`; the gate takes the events
    once the init recorder hands them over.  ``labelled``: every location
    reports again under each new label (``label`` is the first).
    """
    name = core_name(cov)
    if name == "sysmon":
        return SysmonGate(cov, source_dirs, deferred=deferred, labelled=labelled, label=label)
    if deferred:
        raise InternalsChanged(f"a deferred start needs the sysmon core, not {name!r}")
    if name in ("ctrace", "pytrace"):
        return TraceGate(cov, label=label)
    raise InternalsChanged(f"unknown coverage.py core {name!r}")


# -- Managed Instances: counting a merged data file (shim/worker_data) ---------


def count_data_file(path: str) -> tuple[int, int, int, int]:
    """(files, lines, arcs, entries) recorded in the coverage.py data file at ``path``.

    `CoverageData.lines()` costs one query per file (0.2 ms each: 200 ms at
    1,000 files); this reads the schema's two tables once.  ``entries``
    counts a line (or arc) once per context it ran under, so it grows when
    known code runs under a new label.  Raises `InternalsChanged` if the
    schema is not what it reads.
    """
    import sqlite3

    from coverage.numbits import numbits_to_nums

    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        lines: dict[int, set[int]] = {}
        entries = arcs = 0
        for file_id, numbits in connection.execute("select file_id, numbits from line_bits"):
            numbers = numbits_to_nums(numbits)
            entries += len(numbers)
            lines.setdefault(file_id, set()).update(numbers)
        distinct_arcs: set[tuple[int, int, int]] = set()
        for file_id, start, end in connection.execute("select file_id, fromno, tono from arc"):
            entries += 1
            distinct_arcs.add((file_id, start, end))
            known = lines.setdefault(file_id, set())
            known.update(n for n in (start, end) if n > 0)
        arcs = len(distinct_arcs)
    except sqlite3.Error as exc:
        raise InternalsChanged(f"coverage.py's data file schema changed: {exc}") from exc
    finally:
        connection.close()
    files = sum(1 for numbers in lines.values() if numbers)
    return files, sum(len(numbers) for numbers in lines.values()), arcs, entries
