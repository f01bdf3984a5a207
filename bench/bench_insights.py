"""``lambda-coverage unused`` on 10,000 environments, against ``lambda-coverage report``.

The issue's target: the verdicts of 10,000 environments within 1.5x of the report of the
same data.  For each data shape it

1. builds the synthetic function of bench/bench_report.py (``--modules`` files of ~150
   lines), runs it once under coverage.py and derives the environments' data files:

   distinct   every environment keeps its own random ~90% of the lines: no two alike,
              the worst case for the evidence (one profile per environment and file);
   paths      every environment runs one of 32 request paths (random ~90% subsets): what
              a deployment's environments look like, many alike;
   labelled   as paths, with labels as the shim records them: each file's first fifth
              under ``init`` (the imports), the rest of the path under ``""`` (the
              invocations), so the evidence keeps every profile's lines per label;

   spread over 3 function versions and 7 init dates, 1-20 invocations each;
2. uploads them to the local S3 (scripts/local_s3.py) and warms the download cache once
   (both commands download the same objects; the rows compare what each computes);
3. times, side by side and interleaved in each round (fresh CLI processes, medians):

   report     ``lambda-coverage report`` (HTML, XML, LCOV, JSON; the evidence file)
   unused     ``lambda-coverage unused`` (the same merge and evidence, coverage.py's analysis,
              units, verdicts, vulture, unused.json / .md / .html)

and checks that the answers agree: a unit is ``never_run`` exactly when the report's
coverage.json shows none of its statements executed (not with ``--context``, which
judges fewer runs than the report reports).

    bench/run_insights_bench.sh                     # 10,000 environments, both shapes
    bench/run_insights_bench.sh --envs 2000 --shapes paths -r 1
    bench/run_insights_bench.sh --shapes labelled --context ''   # unused --context ''
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_report import BUCKET, FUNCTION, make_base, make_files, timed  # noqa: E402

from coverage_runtime.layout import ObjectKey  # noqa: E402
from tests.harness import FAKE_CREDENTIALS, S3Server, clean_environment  # noqa: E402

TARGET = 1.5
VERSIONS = ("1", "2", "3")
DATES = tuple(f"2026-11-{day:02d}" for day in range(20, 27))
PATHS = 32


def labelled_paths(base: dict, directory: Path) -> list[Path]:
    """`PATHS` request paths with the shim's labels: ``init``, then ``""``."""
    from coverage import CoverageData

    directory.mkdir(parents=True)
    rnd = random.Random(5)
    found = []
    for i in range(PATHS):
        path = directory / f"path-{i:02d}.coverage"
        data = CoverageData(basename=str(path))
        init = {f: lines[: len(lines) // 5] for f, lines in base.items()}
        served = {f: [n for n in lines[len(lines) // 5 :] if rnd.random() > 0.1]
                  for f, lines in base.items()}  # fmt: skip
        data.set_context("init")
        data.add_lines(init)
        data.set_context("")
        data.add_lines(served)
        data.write()
        data.close()
        found.append(path)
    return found


def environments(base: dict, shape: str, count: int, directory: Path) -> list[Path]:
    """The environments' data files of one shape."""
    if shape == "distinct":
        return make_files(base, False, directory, count)
    if shape == "labelled":
        paths = labelled_paths(base, directory.parent / f"{shape}-paths")
    else:
        paths = make_files(base, False, directory.parent / f"{shape}-paths", PATHS)
    directory.mkdir(parents=True)
    rnd = random.Random(7)
    found = []
    for i in range(count):
        target = directory / f"env-{i:05d}.coverage"
        shutil.copyfile(rnd.choice(paths), target)
        found.append(target)
    return found


def upload(server: S3Server, files: list[Path], prefix: str) -> None:
    client = server.client()
    rnd = random.Random(11)
    plan = [(p, rnd.choice(VERSIONS), rnd.choice(DATES), rnd.randint(1, 20)) for p in files]

    def put(item: tuple[Path, str, str, int]) -> None:
        path, version, date, invocations = item
        client.put_object(
            Bucket=BUCKET,
            Key=ObjectKey(FUNCTION, version, date, path.stem).format(prefix),
            Body=path.read_bytes(),
            Metadata={"invocations": str(invocations), "mode": "full"},
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, plan))


def command(name: str, prefix: str, out: Path, cache: Path) -> list[str]:
    cmd = [sys.executable, "-m", "coverage_runtime.report.cli", name, "--bucket", BUCKET,
           "--prefix", prefix, "--cache-dir", str(cache), "-o", str(out), "--no-progress",
           "-q"]  # fmt: skip
    return cmd


def agree(out_report: Path, out_unused: Path) -> bool:
    """never_run units are exactly those with no executed statement in the report."""
    from coverage_runtime.report.units import units_of

    root = out_unused.parent  # where both ran: the checkout
    files = json.loads((out_report / "coverage.json").read_text())["files"]
    document = json.loads((out_unused / "unused.json").read_text())
    verdicts = {
        (u["path"], u["qualname"], u["start_line"]): u["verdict"] for u in document["units"]
    }
    never = ("never_run", "safe_to_delete")
    for relative, entry in files.items():
        ran = set(entry["executed_lines"])
        statements = ran | set(entry["missing_lines"])
        for unit in units_of(relative, (root / relative).read_text(), statements):
            if unit.lines and (verdicts[(relative, unit.qualname, unit.start_line)] in never) != (
                not unit.lines & ran
            ):
                return False
    return True


def run_shape(
    server: S3Server,
    base: dict,
    shape: str,
    count: int,
    root: Path,
    rounds: int,
    contexts: tuple[str, ...] = (),
) -> dict:
    prefix = f"{shape}/"
    files = environments(base, shape, count, root / shape)
    started = time.perf_counter()
    upload(server, files, prefix)
    upload_s = time.perf_counter() - started
    env = clean_environment({"COVERAGE_S3_ENDPOINT_URL": server.endpoint_url})
    env.update(FAKE_CREDENTIALS)
    cache = root / f"cache-{shape}"
    outs = {name: root / f"out-{shape}-{name}" for name in ("report", "unused")}
    # Warm the cache (not timed): both commands then read the same objects from it.
    timed(command("report", prefix, root / "warm", cache), root, env)
    times: dict[str, list[float]] = {"report": [], "unused": []}
    peaks: dict[str, float] = {"report": 0.0, "unused": 0.0}
    labels = [a for p in contexts for a in ("--context", p)]
    for number in range(rounds):
        order = ("report", "unused") if number % 2 == 0 else ("unused", "report")
        for name in order:
            cmd = command(name, prefix, outs[name], cache) + (labels if name == "unused" else [])
            seconds, peak, _ = timed(cmd, root, env)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], peak)
    evidence = outs["report"] / "evidence.json.gz"
    profiles = sum(len(rows) for rows in _evidence_rows(evidence))
    return {
        "shape": shape,
        "environments": count,
        "upload_s": upload_s,
        "report_s": statistics.median(times["report"]),
        "unused_s": statistics.median(times["unused"]),
        "runs": times,
        "peak_mb": peaks,
        "profiles": profiles,
        "evidence_kib": evidence.stat().st_size / 1024,
        "agree": None if contexts else agree(outs["report"], outs["unused"]),
    }


def _evidence_rows(path: Path) -> list[list]:
    import gzip

    with gzip.open(path, "rt") as handle:
        return list(json.load(handle)["files"].values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", type=int, default=10_000, help="environments per shape")
    parser.add_argument(
        "--shapes", default="paths,distinct", help="comma list: paths, distinct, labelled"
    )
    parser.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="PATTERN",
        help="time unused --context PATTERN (repeatable; the agreement check is skipped)",
    )
    parser.add_argument("--modules", type=int, default=20, help="measured files per environment")
    parser.add_argument("-r", "--rounds", type=int, default=3, help="rounds; medians shown")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    import coverage

    print(
        f"python {platform.python_version()}, coverage {coverage.__version__}, "
        f"{os.cpu_count()} cores, {args.envs} environments, {args.modules} files each, "
        f"{args.rounds} round(s), warm download cache"
    )
    root = Path(tempfile.mkdtemp(prefix="bench-insights-"))
    server = S3Server()
    results = []
    try:
        server.client().create_bucket(Bucket=BUCKET)
        base = make_base(root, args.modules, False)
        for shape in args.shapes.split(","):
            results.append(
                run_shape(server, base, shape, args.envs, root, args.rounds, tuple(args.context))
            )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{'shape':<9} {'report s':>9} {'unused s':>9} {'ratio':>6} {'target':>7} "
        f"{'result':>6} {'profiles':>9} {'evidence':>9} {'agree':>6}"
    )
    failed = False
    for r in results:
        ratio = r["unused_s"] / r["report_s"]
        ok = ratio <= TARGET and r["agree"] is not False
        failed |= not ok
        print(
            f"{r['shape']:<9} {r['report_s']:>9.2f} {r['unused_s']:>9.2f} {ratio:>6.2f} "
            f"{'<= ' + str(TARGET):>7} {'pass' if ok else 'FAIL':>6} {r['profiles']:>9} "
            f"{r['evidence_kib']:>7.0f}Ki {r['agree']!s:>6}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
