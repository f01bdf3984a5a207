"""How fast ``lambda-coverage report`` merges thousands of environments, vs coverage.py alone.

For each size N (default 1,000 and 5,000) it:

1. builds a synthetic function (K modules of ~150 lines, if/elif/else and
   loops), runs it once under coverage.py, and derives N distinct environment
   data files from that real data (each keeps a random ~90% of the lines or
   arcs, so no two files are alike and nothing can be deduplicated), written
   through coverage.py's `CoverageData`;
2. uploads them to a local moto S3 server (127.0.0.1) under the runtime's key
   layout;
3. times, side by side in one run, each as a fresh CLI process:

   coverage.py   ``coverage combine`` + ``coverage html`` of the same N files
                 already on local disk (the reference: no download at all);
   report        ``lambda-coverage report --format html`` (the same output),
                 cold cache: list + download + merge + HTML; the listing goes
                 on while the first pages download, batches merge in one
                 worker process per core as files arrive (the defaults);
   all formats   the same, writing HTML, XML, LCOV and JSON;
   -j0           the merge in the main process (``--jobs 0``);
   boto3         boto3 ``get_object`` instead of presigned GETs;
   stock moto    against ``python -m moto.server`` instead of scripts/local_s3.py
                 (moto's S3 under gunicorn with keep-alive): what the local S3
                 server itself costs;
   merge warm    ``--format none`` with a warm cache: list + merge only, with
                 workers and with ``--jobs 0``;

Every cold run gets a new cache directory, deleted only after the last round,
as a first report on a fresh machine would find it.

and prints seconds, the ratio against coverage.py, files/minute and peak
memory (RSS of the report process and its workers).

    bench/run_report_bench.sh                    # 1,000 and 5,000 files, line data
    bench/run_report_bench.sh --sizes 200 --kind branch
    bench/run_report_bench.sh --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from coverage_runtime.layout import ObjectKey  # noqa: E402
from tests.harness import FAKE_CREDENTIALS, S3Server, clean_environment  # noqa: E402
from tests.report_samples.synthetic import module_source  # noqa: E402

BIN = Path(sys.executable).parent
BUCKET = "bench-report"
FUNCTION = "bench-fn"


# -- synthetic function and its data --------------------------------------------------


def make_base(work: Path, modules: int, branch: bool) -> dict:
    """Run the synthetic package under coverage.py once; return its lines or arcs."""
    import coverage

    package = work / "src" / "synth"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for i in range(modules):
        (package / f"mod{i:03d}.py").write_text(module_source(i))
    data_file = work / "base.coverage"
    cov = coverage.Coverage(data_file=str(data_file), branch=branch, source=[str(package)])
    sys.path.insert(0, str(work / "src"))
    cov.start()
    import importlib

    for i in range(modules):
        importlib.import_module(f"synth.mod{i:03d}").run(7)
    cov.stop()
    cov.save()
    data = cov.get_data()
    if branch:
        return {f: sorted(data.arcs(f) or ()) for f in data.measured_files()}
    return {f: sorted(data.lines(f) or ()) for f in data.measured_files()}


def _write_files(args: tuple) -> None:
    from coverage import CoverageData

    base, branch, directory, start, stop, seed = args
    rnd = random.Random(seed)
    for i in range(start, stop):
        data = CoverageData(basename=os.path.join(directory, f"env-{i:05d}.coverage"))
        keep = {f: [x for x in items if rnd.random() > 0.1] for f, items in base.items()}
        if branch:
            data.add_arcs(keep)
        else:
            data.add_lines(keep)
        data.write()
        data.close()


def make_files(base: dict, branch: bool, directory: Path, count: int) -> list[Path]:
    directory.mkdir(parents=True)
    chunks = [
        (base, branch, str(directory), s, min(count, s + 250), s) for s in range(0, count, 250)
    ]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_write_files, chunks))
    return sorted(directory.glob("env-*.coverage"))


def _key(prefix: str, path: Path) -> str:
    return ObjectKey(FUNCTION, "$LATEST", "2026-11-25", path.stem).format(prefix)


def upload(client, files: list[Path], prefix: str) -> float:
    started = time.perf_counter()

    def put(path: Path) -> None:
        client.put_object(
            Bucket=BUCKET,
            Key=_key(prefix, path),
            Body=path.read_bytes(),
            Metadata={"invocations": "10", "mode": "full"},
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))
    return time.perf_counter() - started


# -- timing -------------------------------------------------------------------------


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS MB of the process tree, stdout) of one fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(process.pid)
            while not stop.is_set():
                try:
                    rss = root.memory_info().rss + sum(
                        c.memory_info().rss for c in root.children(recursive=True)
                    )
                    peak = max(peak, rss)
                except psutil.Error:
                    pass
                stop.wait(0.02)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({process.returncode}):\n{out}\n{err}")
    return seconds, peak / 2**20, out


def coverage_py(files: list[Path], work: Path, env: dict[str, str]) -> dict:
    """``coverage combine`` + ``coverage html`` on the files already on local disk."""
    run_dir = work / "coveragepy"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir()
    for path in files:  # combine consumes its inputs: a fresh copy each time (not timed)
        shutil.copyfile(path, run_dir / f".coverage.{path.stem}")
    combine_s, combine_mb, _ = timed([str(BIN / "coverage"), "combine", "-q"], run_dir, env)
    html_s, html_mb, _ = timed([str(BIN / "coverage"), "html", "-q", "-d", "htmlcov"], run_dir, env)
    left = [p for p in run_dir.iterdir() if p.name.startswith(".coverage.")]
    assert not left, f"coverage combine left {len(left)} files"
    return {
        "seconds": combine_s + html_s,
        "combine_s": combine_s,
        "html_s": html_s,
        "peak_mb": max(combine_mb, html_mb),
        "data": run_dir / ".coverage",
    }


def report(work: Path, env: dict[str, str], name: str, cache: Path, *extra: str) -> dict:
    out_dir = work / f"out-{name}"
    cmd = [
        sys.executable,
        "-m",
        "coverage_runtime.report.cli",
        "report",
        "--bucket",
        BUCKET,
        "--cache-dir",
        str(cache),
        "-o",
        str(out_dir),
        "--no-progress",
        "-q",
        *extra,
    ]
    seconds, peak, _ = timed(cmd, work, env)
    summary = json.loads((out_dir / "summary.json").read_text())
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "summary": summary,
        "data": out_dir / "merged.coverage",
    }


def same_lines(ours: Path, theirs: Path) -> bool:
    from coverage import CoverageData

    a, b = CoverageData(basename=str(ours)), CoverageData(basename=str(theirs))
    a.read()
    b.read()
    if a.measured_files() != b.measured_files():
        return False
    return all(
        set(a.lines(f) or ()) == set(b.lines(f) or ())
        and set(a.arcs(f) or ()) == set(b.arcs(f) or ())
        for f in a.measured_files()
    )


def brief(run: dict) -> dict:
    return {
        "seconds": run["seconds"],
        "all_seconds": run["all_seconds"],
        "peak_mb": run["peak_mb"],
        "timings": run["summary"]["timings_s"],
    }


def probe_gets(
    server: S3Server, label: str, base: dict, branch: bool, count: int, root: Path
) -> None:
    """What one GET costs against this S3: wall per object, client CPU, server CPU."""
    import urllib3

    files = make_files(base, branch, root / f"probe-{label}", count)
    client = server.client()
    upload(client, files, "probe/")
    keys = [_key("probe/", p) for p in files]
    pool = urllib3.PoolManager(maxsize=16)
    presigned = [
        client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": k})
        for k in keys
    ]
    ways = {
        "boto3 get_object": lambda i: client.get_object(Bucket=BUCKET, Key=keys[i])["Body"].read(),
        "presigned GET": lambda i: pool.request("GET", presigned[i]).data,
        "unsigned GET": lambda i: (
            pool.request("GET", f"{server.endpoint_url}/{BUCKET}/{keys[i]}").data
        ),
    }
    size = sum(p.stat().st_size for p in files) // count // 1024
    print(f"\nGET cost against {label}, {count} objects of {size} KB, 16 threads (ms/object):")
    for name, get in ways.items():
        server_cpu = server.cpu_seconds()
        cpu, started = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(16) as threads:
            list(threads.map(get, range(count)))
        wall = (time.perf_counter() - started) / count * 1e3
        client_cpu = (time.process_time() - cpu) / count * 1e3
        server_ms = (server.cpu_seconds() - server_cpu) / count * 1e3
        print(
            f"  {name:<17} wall {wall:.2f}  client CPU {client_cpu:.2f}  "
            f"S3 server CPU {server_ms:.2f}"
        )


def median_run(runs: list[dict]) -> dict:
    """The run with the median time (its phases and memory go with it)."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["all_seconds"] = [round(r["seconds"], 3) for r in runs]
    return chosen


def run_size(
    servers: dict[str, S3Server], base: dict, branch: bool, count: int, root: Path, repeats: int
) -> dict:
    work = root / f"n{count}"
    work.mkdir()
    files = make_files(base, branch, work / "files", count)
    prefix = f"n{count}/"
    upload_s = upload(servers["local"].client(), files, prefix)
    upload(servers["stock"].client(), files, prefix)
    env, env_stock = (
        clean_environment(
            {
                "COVERAGE_S3_ENDPOINT_URL": servers[name].endpoint_url,
                "COVERAGE_S3_PREFIX": prefix,
                **FAKE_CREDENTIALS,
            }
        )
        for name in ("local", "stock")
    )
    html = ("--format", "html")
    runs: dict[str, list[dict]] = {}
    # Round-robin: every configuration once per round, so machine noise spreads evenly.
    for r in range(repeats):

        def cold(name: str, *extra: str, environment: dict = env, r: int = r) -> dict:
            return report(work, environment, name, work / f"cache-{name}-{r}", *extra)

        rounds = {
            "coverage_py": lambda: coverage_py(files, work, env),
            "report": lambda: cold("html", *html),
            "report_all": lambda: cold("all"),
            "report_j0": lambda: cold("j0", *html, "--jobs", "0"),
            "report_boto3": lambda: cold("boto3", *html, "--downloader", "boto3"),
            "report_stock": lambda: cold("stock", *html, environment=env_stock),
            "merge_warm": lambda r=r: report(
                work, env, "warm", work / f"cache-html-{r}", "--format", "none"
            ),
            "merge_warm_j0": lambda r=r: report(
                work, env, "warm-j0", work / f"cache-html-{r}", "--format", "none", "--jobs", "0"
            ),
        }
        for name, run in rounds.items():
            runs.setdefault(name, []).append(run())
        print(f"  {count} files: round {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    for cache in work.glob("cache-*"):
        shutil.rmtree(cache)
    cold_run, warm = runs["report"][-1], runs["merge_warm"][-1]
    assert cold_run["summary"]["environments"]["merged"] == count
    assert warm["summary"]["from_cache"] == count
    reference = runs["coverage_py"][-1]["data"]
    identical = all(
        same_lines(runs[name][-1]["data"], reference)
        for name in ("report", "report_all", "report_stock", "merge_warm_j0")
    )
    result = {
        "files": count,
        "repeats": repeats,
        "bytes_per_file": sum(p.stat().st_size for p in files) // count,
        "upload_s": upload_s,
        "identical_to_coverage_combine": identical,
    }
    ref = median_run(runs.pop("coverage_py"))
    result["coverage_py"] = {k: v for k, v in ref.items() if k != "data"}
    for name, values in runs.items():
        result[name] = brief(median_run(values))
    return result


MERGE_ONLY = """
import json, resource, sys, time
from pathlib import Path
from coverage_runtime.report.merge import Merger, write_data, choose_measure
directory, jobs = Path(sys.argv[1]), int(sys.argv[2])
started = time.perf_counter()
files = sorted(directory.glob("env-*.coverage"))
with Merger(jobs=jobs, batch_size=256) as merger:
    for path in files:
        merger.add(path.name, path.read_bytes())
    partial = merger.finish()
branch, _ = choose_measure(partial, "auto")
write_data(partial, directory.parent / f"merged-j{jobs}.coverage", branch)
seconds = time.perf_counter() - started
assert partial.merged == len(files), partial.skipped[:3]
print(json.dumps({"seconds": seconds, "files": len(files)}))
"""


def merge_only(base: dict, branch: bool, count: int, root: Path, with_combine: bool) -> dict:
    """Our merge vs ``coverage combine`` on local files only: no S3, no reports."""
    work = root / f"merge-{count}"
    work.mkdir()
    files = make_files(base, branch, work / "files", count)
    env = clean_environment()
    result: dict = {"files": count, "bytes_per_file": sum(p.stat().st_size for p in files) // count}
    for jobs in (0, 2):
        wall, peak, out = timed(
            [sys.executable, "-c", MERGE_ONLY, str(work / "files"), str(jobs)], work, env
        )
        inner = json.loads(out)["seconds"]
        result[f"j{jobs}"] = {"seconds": wall, "merge_s": inner, "peak_mb": peak}
    if with_combine:
        run_dir = work / "combine"
        run_dir.mkdir()
        for path in files:
            shutil.copyfile(path, run_dir / f".coverage.{path.stem}")
        seconds, peak, _ = timed([str(BIN / "coverage"), "combine", "-q"], run_dir, env)
        result["combine"] = {"seconds": seconds, "peak_mb": peak}
        assert same_lines(work / "merged-j0.coverage", run_dir / ".coverage")
    shutil.rmtree(work / "files")
    return result


def print_merge_only(results: list[dict], kind: str) -> None:
    print(f"\nmerge only, local files, {kind} data (fresh process each; wall s incl. startup):")
    print(
        f"{'files':>7} {'in-process':>10} {'MB':>5} {'2 workers':>9} {'MB':>5} "
        f"{'combine':>8} {'MB':>5} {'files/min (best)':>16}"
    )
    for r in results:
        best = min(r["j0"]["seconds"], r["j2"]["seconds"])
        combine = r.get("combine", {})
        nan = float("nan")
        print(
            f"{r['files']:>7} {r['j0']['seconds']:>10.2f} {r['j0']['peak_mb']:>5.0f} "
            f"{r['j2']['seconds']:>9.2f} {r['j2']['peak_mb']:>5.0f} "
            f"{combine.get('seconds', nan):>8.2f} {combine.get('peak_mb', nan):>5.0f} "
            f"{r['files'] / best * 60:>16.0f}"
        )


def print_table(results: list[dict], kind: str) -> None:
    print(
        f"\n{kind} data; median wall seconds of fresh CLI processes over "
        f"{results[0]['repeats']} interleaved rounds; ratio = seconds / coverage.py"
    )
    columns = [
        ("files", 6),
        ("KB/file", 7),
        ("coverage.py", 11),
        ("combine", 7),
        ("html", 5),
        ("report", 6),
        ("ratio", 5),
        ("MB", 4),
        ("all fmt", 7),
        ("ratio", 5),
        ("-j0", 5),
        ("boto3", 5),
        ("stock moto", 10),
        ("ratio", 5),
        ("warm", 5),
        ("warm-j0", 7),
        ("files/min", 9),
        ("same", 4),
    ]
    header = " ".join(f"{name:>{width}}" for name, width in columns)
    print(header)
    print("-" * len(header))
    for r in results:
        ref = r["coverage_py"]["seconds"]
        seconds = {name: r[name]["seconds"] for name in r if name.startswith(("report", "merge"))}
        values = [
            r["files"],
            f"{r['bytes_per_file'] / 1024:.0f}",
            f"{ref:.2f}",
            f"{r['coverage_py']['combine_s']:.2f}",
            f"{r['coverage_py']['html_s']:.2f}",
            f"{seconds['report']:.2f}",
            f"{seconds['report'] / ref:.2f}",
            f"{r['report']['peak_mb']:.0f}",
            f"{seconds['report_all']:.2f}",
            f"{seconds['report_all'] / ref:.2f}",
            f"{seconds['report_j0']:.2f}",
            f"{seconds['report_boto3']:.2f}",
            f"{seconds['report_stock']:.2f}",
            f"{seconds['report_stock'] / ref:.2f}",
            f"{seconds['merge_warm']:.2f}",
            f"{seconds['merge_warm_j0']:.2f}",
            f"{r['files'] / seconds['report'] * 60:.0f}",
            "yes" if r["identical_to_coverage_combine"] else "NO",
        ]
        print(" ".join(f"{v!s:>{w}}" for v, (_, w) in zip(values, columns, strict=True)))
    print("\nall rounds (s):")
    for r in results:
        print(f"  {r['files']:>6} files  coverage.py {r['coverage_py']['all_seconds']}")
        for name in (n for n in r if n.startswith(("report", "merge"))):
            print(f"  {'':>6}        {name} {r[name]['all_seconds']}")
    print("\nphases (s) of the median runs (the listing overlaps the downloads):")
    for r in results:
        print(f"  {r['files']:>6} files  cold: {r['report']['timings']}")
        print(f"  {'':>6}        warm: {r['merge_warm']['timings']}")
        print(f"  {'':>6}  (upload to the local S3 before: {r['upload_s']:.1f} s)")
    print(
        "\nreport = lambda-coverage report --format html, cold cache (list + download + merge + "
        "HTML, like coverage.py's column);\nall fmt = HTML, XML, LCOV and JSON; -j0 = merge in "
        "the main process (--jobs 0); boto3 = --downloader boto3;\nstock moto = against "
        "`python -m moto.server`; warm = --format none with a warm cache (list + merge only),\n"
        "warm-j0 = the same in one process; same = merged data identical to coverage combine"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,5000", help="comma list of file counts")
    parser.add_argument("--kind", choices=("line", "branch"), default="line")
    parser.add_argument(
        "--modules", type=int, default=20, help="measured source files per environment"
    )
    parser.add_argument("-r", "--repeats", type=int, default=3, help="rounds; medians shown")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--merge-only",
        metavar="SIZES",
        help="instead: merge local files only (no S3, no reports), e.g. 5000,20000,50000",
    )
    parser.add_argument(
        "--no-combine", action="store_true", help="with --merge-only: skip coverage combine"
    )
    parser.add_argument(
        "--probe-gets",
        type=int,
        metavar="N",
        help="instead: time N GETs against the local S3 (boto3, presigned, unsigned)",
    )
    args = parser.parse_args()

    import coverage

    print(
        f"python {platform.python_version()}, coverage {coverage.__version__}, "
        f"{os.cpu_count()} cores, {args.kind} data, {args.modules} measured files per environment"
    )
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    if args.merge_only:
        try:
            base = make_base(root, args.modules, args.kind == "branch")
            merged = [
                merge_only(base, args.kind == "branch", int(size), root, not args.no_combine)
                for size in args.merge_only.split(",")
            ]
            print_merge_only(merged, args.kind)
            if args.json:
                Path(args.json).write_text(json.dumps(merged, indent=2))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    servers = {"local": S3Server(), "stock": S3Server(stock=True)}
    try:
        for server in servers.values():
            server.client().create_bucket(Bucket=BUCKET)
        base = make_base(root, args.modules, args.kind == "branch")
        if args.probe_gets:
            for label, server in (
                ("the local S3 (scripts/local_s3.py)", servers["local"]),
                ("python -m moto.server", servers["stock"]),
            ):
                probe_gets(server, label, base, args.kind == "branch", args.probe_gets, root)
            return
        results = []
        for size in (int(s) for s in args.sizes.split(",")):
            results.append(run_size(servers, base, args.kind == "branch", size, root, args.repeats))
        print_table(results, args.kind)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    finally:
        for server in servers.values():
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"work directory kept: {root}")


if __name__ == "__main__":
    main()
