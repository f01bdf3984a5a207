"""Many distinct environments of a synthetic function, for the merge at scale.

The package (``synth/modNNN.py``, ~150 lines each with branches and loops) runs
once under coverage.py in a fresh process; each environment then keeps a random
~90% of three quarters of those lines or arcs and one of the rest (the "rare"
ones: environments 10n to 10n+9 share the n-th), recorded under the image's
task root (``/var/task/synth/...``). No two environments are alike, and a
merge that loses a run of consecutive environments loses lines. Used by the
state machine tests and bench/bench_scale.py.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from coverage import CoverageData

from coverage_runtime.layout import DEFAULT_PREFIX, ObjectKey

IMAGE_ROOT = "/var/task"
PACKAGE = "synth"


def module_source(index: int) -> str:
    """~150 lines: 13 functions with branches and loops."""
    out = [f'"""Synthetic module {index}."""', ""]
    for f in range(13):
        out += [
            f"def f{f}(n):",
            "    total = 0",
            "    for i in range(n):",
            "        if i % 3 == 0:",
            "            total += i",
            "        elif i % 3 == 1:",
            "            total -= 1",
            "        else:",
            "            total *= 1",
            "    if total > 100:",
            "        return total",
            "    return -total",
            "",
        ]
    names = ", ".join(f"f{f}" for f in range(13))
    out += ["", "def run(n):", f"    return sum(f(n) for f in ({names}))", ""]
    return "\n".join(out)


_RUN = """
import importlib, json, sys
import coverage
root, modules, branch, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
cov = coverage.Coverage(data_file=None, branch=branch, source=[root + "/synth"])
sys.path.insert(0, root)
cov.start()
for i in range(modules):
    importlib.import_module(f"synth.mod{i:03d}").run(7)
cov.stop()
data = cov.get_data()
get = data.arcs if branch else data.lines
json.dump({f: sorted(get(f) or ()) for f in data.measured_files()}, open(out, "w"))
"""


class Synthetic:
    """A synthetic function's source (its task root) and the data of one real run."""

    def __init__(self, root: Path, modules: int, branch: bool) -> None:
        self.root = root
        self.branch = branch
        package = root / PACKAGE
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text("")
        for i in range(modules):
            (package / f"mod{i:03d}.py").write_text(module_source(i))
        out = root.parent / f"{root.name}-base.json"
        subprocess.run(
            [sys.executable, "-c", _RUN, str(root), str(modules), "1" if branch else "0", str(out)],
            check=True,
            timeout=300,
        )
        recorded = json.loads(out.read_text())
        prefix = str(root.resolve()) + os.sep
        # As the image records them: under /var/task.
        self.base: dict[str, list[Any]] = {
            IMAGE_ROOT + "/" + path.removeprefix(prefix).replace(os.sep, "/"): items
            for path, items in recorded.items()
            if path.startswith(prefix)
        }
        self.items = [(f, x) for f, items in sorted(self.base.items()) for x in items]
        self.rare = self.items[::4]

    def write_env(self, path: Path, seed: int) -> Path:
        """One environment's data file (see the module docstring)."""
        rnd = random.Random(seed)
        rare_file, rare_item = self.rare[(seed // 10) % len(self.rare)]
        keep: dict[str, Any] = {}
        for number, (f, x) in enumerate(self.items):
            if (number % 4 and rnd.random() > 0.1) or (f, x) == (rare_file, rare_item):
                keep.setdefault(f, []).append(tuple(x) if self.branch else x)
        data = CoverageData(basename=str(path))
        if self.branch:
            data.add_arcs(keep)
        else:
            data.add_lines(keep)
        data.write()
        data.close()
        return path


def env_keys(count: int, function: str = "synth-fn", prefix: str = DEFAULT_PREFIX) -> Iterator[str]:
    """``count`` keys over two versions and three init dates, in runs of
    consecutive numbers (so consecutive environments are listed together)."""
    for i in range(count):
        version = "7" if i < count // 4 else "$LATEST"
        day = f"2026-11-{24 + i * 3 // count:02d}"
        yield ObjectKey(function, version, day, f"env-{i:06d}").format(prefix)


def upload_envs(
    s3: Any, bucket: str, synthetic: Synthetic, keys: Iterable[str], directory: Path
) -> list[str]:
    """Write and upload one distinct environment per key (seeded by its position)."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = list(keys)

    def put(numbered: tuple[int, str]) -> None:
        number, key = numbered
        path = synthetic.write_env(directory / f"{number:06d}.coverage", seed=number)
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=path.read_bytes(),
            Metadata={"invocations": "3", "mode": "full", "code-revision": f"rev{number % 2}"},
        )
        path.unlink()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, enumerate(keys)))
    return keys
