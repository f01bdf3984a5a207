"""The S3 layout: the one contract between the shim and the report tooling.

The shim writes one object per execution environment and the report reads
them back; the combiner writes its results beside them.  A Lambda Managed
Instances environment, served by several worker processes, is still one
object: its main process uploads the union of its workers' data
(`coverage_runtime.shim.worker_data`), so the report, the insights (which
count environments) and the combiner read it as any other.  Key format, object
metadata names and content types live here only, so that both sides (and
the tests) agree by construction:

    <prefix><function>/<version>/<init date>/<environment id>.coverage
    <prefix><function>/<version>/<init date>/<environment id>.coverage.delta
    <prefix>combined/<function|all>/<version|all>/latest/merged.coverage
    <prefix>combined/<function|all>/<version|all>/history/<UTC time>.json
    <prefix>combined/_runs/<run id>/<shard id>.coverage
    <prefix>combined/_runs/<run id>/batches.json            the merge state machine's plan
    <prefix>combined/_runs/<run id>/batches/<batch>.json    one batch of it (its shard: <batch>)

An environment's data is its base object (``.coverage``) and, beside it, an
optional delta object (``.coverage.delta``): a coverage.py data file of what
the environment measured since the base's snapshot was taken, written and
uploaded alone so that a checkpoint or a shutdown of a large function sends
what is new, not the whole measured set again (S3 has no append: at 8,000
modules with branches the base is ~80 MB and its PUT outlasts the shutdown
window).  Every object of one environment holds only what it measured, so
their union is its data whatever mix of old and new objects a reader gets;
the delta's invocation count is the newer one.  A reader unions a delta with
its base only when both carry the same `EPOCH` (a `reset()` starts a new one:
a delta from before it must not bring dropped data back), and ignores a delta
without a base.  A reader that fetches the delta before the base never misses
data: the shim uploads a delta only once the base it extends is confirmed.
The suffix keeps the delta out of readers that predate it (they read the base).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import NamedTuple

DEFAULT_PREFIX = "coverage/"
DEFAULT_TASK_ROOT = "/var/task"
DATA_SUFFIX = ".coverage"
DELTA_EXTENSION = ".delta"  # what a delta object's key adds to its base's
DELTA_SUFFIX = DATA_SUFFIX + DELTA_EXTENSION
COMBINED_FOLDER = "combined/"
RUNS_FOLDER = "_runs/"
MERGED_DATA_NAME = "merged.coverage"
BATCHES_FOLDER = "batches/"
MANIFEST_NAME = "batches.json"
CONTENT_TYPE = "application/vnd.sqlite3"
CONTENT_TYPES = {
    DATA_SUFFIX: CONTENT_TYPE,
    DELTA_EXTENSION: CONTENT_TYPE,
    ".json": "application/json",
    ".xml": "application/xml",
    ".lcov": "text/plain",
}

# Object metadata: the names the shim writes (lower case, as S3 returns them)
# and the report and the combiner read.
INVOCATIONS = "invocations"
CODE_REVISION = "code-revision"
GENERATION = "snapshot-generation"
RECORDED_LINES = "recorded-lines"
RECORDED_ARCS = "recorded-arcs"
# "true" on an object a shutdown uploaded with only the files it could replay in
# time (the data of each file it holds is complete), and how many it left out.
# A Managed Instances environment's object: if any worker's last snapshot was,
# and the workers' counts summed.
PARTIAL = "partial"
FILES_NOT_REPLAYED = "files-not-replayed"
# The data's epoch: "0" (or absent) until the environment's first `reset()`, then
# one more at each.  A delta counts only with a base of its own epoch.
EPOCH = "data-epoch"
# On a delta: the generation of the base snapshot it extends.
BASE_GENERATION = "base-generation"
# A distributed-map shard's own (beside INVOCATIONS), read back by the reduce step.
SHARD_ENVIRONMENTS = "environments"
SHARD_SKIPPED = "skipped"

_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"  # compiled on first use: see `errors`


PREFIX_RULE = "a key prefix without a leading '/' or '//' (a trailing '/' is added)"


def parse_prefix(value: str) -> str | None:
    """The key prefix ``value`` names, ending in ``/`` (or empty: keys then start at
    the function name); None when S3 keys cannot start that way (`PREFIX_RULE`)."""
    prefix = value.strip()
    if prefix.startswith("/") or "//" in prefix:
        return None
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


class ObjectKey(NamedTuple):
    """Where one execution environment's data object is."""

    function: str
    version: str
    date: str
    environment_id: str

    def format(self, prefix: str) -> str:
        return (
            f"{prefix}{self.function}/{self.version}/{self.date}/{self.environment_id}{DATA_SUFFIX}"
        )

    def format_delta(self, prefix: str) -> str:
        """The key of this environment's delta object (see the module's docstring)."""
        return self.format(prefix) + DELTA_EXTENSION

    @classmethod
    def parse_delta(cls, prefix: str, key: str) -> ObjectKey | None:
        """The parts of an environment's delta object key; None for any other key."""
        if not key.endswith(DELTA_SUFFIX):
            return None
        return cls.parse(prefix, key.removesuffix(DELTA_EXTENSION))

    @classmethod
    def parse(cls, prefix: str, key: str) -> ObjectKey | None:
        """The parts of an environment's data object key; None for any other key."""
        if not key.startswith(prefix) or not key.endswith(DATA_SUFFIX):
            return None
        rest = key[len(prefix) :]
        if rest.startswith(COMBINED_FOLDER):
            return None  # the combiner's own output
        parts = rest.split("/")
        if len(parts) != 4 or not all(parts) or not re.match(_DATE_RE, parts[2]):
            return None
        try:
            date.fromisoformat(parts[2])
        except ValueError:
            return None
        environment = parts[3][: -len(DATA_SUFFIX)]
        if not environment or environment.startswith("."):
            return None
        return cls(parts[0], parts[1], parts[2], environment)


def combined_scope(prefix: str, function: str, version: str) -> str:
    """Where the combiner writes the results for ``function``/``version`` (or ``all``)."""
    return f"{prefix}{COMBINED_FOLDER}{function}/{version}/"


def shard_key(prefix: str, run_id: str, shard_id: str) -> str:
    return f"{runs_prefix(prefix, run_id)}{shard_id}{DATA_SUFFIX}"


def runs_prefix(prefix: str, run_id: str) -> str:
    return f"{prefix}{COMBINED_FOLDER}{RUNS_FOLDER}{run_id}/"


def is_shard_key(prefix: str, run_id: str, key: str) -> bool:
    """Whether ``key`` is a shard file of the run (not its plan or a batch of it)."""
    rest = key.removeprefix(runs_prefix(prefix, run_id))
    return rest != key and "/" not in rest and rest.endswith(DATA_SUFFIX)


def manifest_key(prefix: str, run_id: str) -> str:
    """The merge state machine's plan of a run: the list of its batches."""
    return f"{runs_prefix(prefix, run_id)}{MANIFEST_NAME}"


def batch_key(prefix: str, run_id: str, name: str) -> str:
    """One batch of a run: the listing entries of the environments it merges."""
    return f"{runs_prefix(prefix, run_id)}{BATCHES_FOLDER}{name}.json"


def epoch(metadata: Mapping[str, str] | None) -> int:
    """The object's `EPOCH` (0 when absent: objects written before deltas existed)."""
    return metadata_int(metadata, EPOCH) or 0


def delta_applies(base: Mapping[str, str] | None, delta: Mapping[str, str] | None) -> bool:
    """Does ``delta`` (an environment's delta object's metadata) add to ``base``
    (its base object's)?  Only from the same epoch: see the module's docstring."""
    return epoch(base) == epoch(delta)


def folded_metadata(base: Mapping[str, str], delta: Mapping[str, str]) -> dict[str, str]:
    """The metadata of an environment whose base and delta are read together: the
    delta's (newer: its invocation count, snapshot time), partial if either was
    (a shutdown's partial upload may be either object)."""
    folded = {**base, **delta}
    folded.pop(BASE_GENERATION, None)
    if base.get(PARTIAL) == "true" and delta.get(PARTIAL) != "true":
        folded[PARTIAL] = "true"
        folded[FILES_NOT_REPLAYED] = base.get(FILES_NOT_REPLAYED, "0")
    return folded


def metadata_int(metadata: Mapping[str, str] | None, name: str) -> int | None:
    """An integer metadata value, or None when absent or not a number."""
    try:
        return int((metadata or {})[name])
    except (KeyError, ValueError, TypeError):
        return None


def base_outdated(base: Mapping[str, str] | None, delta: Mapping[str, str] | None) -> bool:
    """Is ``base`` older than the base snapshot ``delta`` extends?  A reader that
    listed or cached the base before the shim replaced it, and then read the newer
    delta, must read the base again: the old one lacks what the new one added."""
    if epoch(base) != epoch(delta):
        return epoch(base) < epoch(delta)
    have, extended = metadata_int(base, GENERATION), metadata_int(delta, BASE_GENERATION)
    return have is not None and extended is not None and have < extended


def delta_newer(base: Mapping[str, str] | None, delta: Mapping[str, str] | None) -> bool:
    """Is ``delta`` (applying to ``base``) the newer of the two, so its metadata is the
    environment's (`folded_metadata`)?  Not when both generations are known and the
    base's is at least the delta's: a base read after a newer one replaced the base
    the delta extends, which holds the delta's data already (their union is that
    base's data) and the newer counts."""
    have, newer = metadata_int(base, GENERATION), metadata_int(delta, GENERATION)
    return have is None or newer is None or newer > have
