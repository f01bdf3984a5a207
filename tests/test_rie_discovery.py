"""One way to find the RIE (scripts/lib/rie.sh) for the scripts, the tests and the
container tests, and a fresh clone with no RIE anywhere: ``scripts/test.sh`` downloads
the official release (here from a ``file://`` mirror, as ``RIE_RELEASE_URL`` allows)
and the RIE tests then run on it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT, find_rie

LIB = REPO_ROOT / "scripts" / "lib" / "rie.sh"


def checkout(tmp_path: Path) -> Path:
    """A copy of the scripts with no ../shared beside it."""
    root = tmp_path / "clone" / "repo"
    shutil.copytree(REPO_ROOT / "scripts", root / "scripts")
    return root


def mirror_with_release(tmp_path: Path) -> Path:
    """A directory laid out like the GitHub release: the asset for this machine."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    asset = (
        "aws-lambda-rie-arm64" if os.uname().machine in ("aarch64", "arm64") else "aws-lambda-rie"
    )
    shutil.copy(find_rie(), mirror / asset)
    return mirror


def no_rie_path(tmp_path: Path) -> str:
    """PATH with the usual tools and no aws-lambda-rie."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("bash", "uname", "dirname", "mkdir", "chmod", "mv", "rm", "curl", "python3"):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def locate(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(root / "scripts" / "lib" / "rie.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(root.parent), **env},
        check=False,
    )


def test_order_environment_then_shared_then_path_then_local_bin(tmp_path):
    root = checkout(tmp_path)
    path = no_rie_path(tmp_path)

    def executable(place: Path) -> Path:
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_text("#!/bin/sh\n")
        place.chmod(0o755)
        return place

    local = executable(root / ".local" / "bin" / "aws-lambda-rie")
    assert locate(root, "--no-download", PATH=path).stdout.strip() == str(local)
    on_path = executable(tmp_path / "bin" / "aws-lambda-rie")
    assert locate(root, "--no-download", PATH=path).stdout.strip() == str(on_path)
    shared = executable(root.parent / "shared" / "bin" / "aws-lambda-rie")
    assert locate(root, "--no-download", PATH=path).stdout.strip() == str(shared)
    chosen = executable(tmp_path / "elsewhere" / "rie")
    found = locate(root, "--no-download", PATH=path, AWS_LAMBDA_RIE=str(chosen))
    assert found.stdout.strip() == str(chosen)


def test_a_wrong_aws_lambda_rie_is_an_error_not_a_fallback(tmp_path):
    root = checkout(tmp_path)
    result = locate(root, PATH=no_rie_path(tmp_path), AWS_LAMBDA_RIE=str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: AWS_LAMBDA_RIE={tmp_path / 'missing'} is not an executable file"
    ]


def test_downloads_the_release_once_into_local_bin(tmp_path):
    root = checkout(tmp_path)
    mirror = mirror_with_release(tmp_path)
    env = {"PATH": no_rie_path(tmp_path), "RIE_RELEASE_URL": mirror.as_uri()}
    first = locate(root, **env)
    assert first.returncode == 0, first.stderr
    target = root / ".local" / "bin" / "aws-lambda-rie"
    assert first.stdout.strip() == str(target)
    assert "downloading" in first.stderr
    assert target.read_bytes() == Path(find_rie()).read_bytes()
    assert os.access(target, os.X_OK)
    (mirror / next(mirror.iterdir()).name).unlink()  # the mirror is gone: no second download
    again = locate(root, **env)
    assert again.returncode == 0
    assert again.stdout.strip() == str(target)
    assert "downloading" not in again.stderr


def test_offline_without_rie_says_what_to_do_in_one_line(tmp_path):
    root = checkout(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = locate(root, PATH=no_rie_path(tmp_path), RIE_RELEASE_URL=empty.as_uri())
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "AWS_LAMBDA_RIE=" in errors[0] and "RIE_RELEASE_URL" in errors[0]
    assert not (root / ".local" / "bin" / "aws-lambda-rie").exists()
    assert not (root / ".local" / "bin" / "aws-lambda-rie.tmp").exists()


def test_harness_finds_what_the_scripts_find():
    script = subprocess.run(
        ["bash", str(LIB), "--no-download"], capture_output=True, text=True, check=True
    )
    assert find_rie() == script.stdout.strip()


@pytest.mark.slow
def test_fresh_clone_without_shared_or_rie_runs_the_rie_tests(tmp_path):
    """``scripts/test.sh`` in a clone with no ../shared and no RIE on the machine: it
    downloads the release, and an end-to-end test through the RIE passes on it."""
    clone = tmp_path / "home" / "lambda-coverage"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO_ROOT), str(clone)], check=True)
    for changed in subprocess.run(  # the work tree as it is now, committed or not
        ["git", "ls-files", "--modified", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split():  # fmt: skip
        if (REPO_ROOT / changed).is_file():
            (clone / changed).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO_ROOT / changed, clone / changed)
    (clone / ".venv").symlink_to(REPO_ROOT / ".venv")  # the same requirements: no reinstall
    mirror = mirror_with_release(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COVERAGE_", "RIE_"))}
    env.update(PATH=no_rie_path(tmp_path) + ":/usr/bin:/bin", RIE_RELEASE_URL=mirror.as_uri())
    assert shutil.which("aws-lambda-rie", path=env["PATH"]) is None
    done = subprocess.run(
        ["bash", "scripts/test.sh", "-p", "no:cacheprovider", "-q",
         "tests/test_shim_rie.py", "-k", "sigterm_while_idle or selective_mode_measures_only"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "downloading" in done.stderr
    assert (clone / ".local" / "bin" / "aws-lambda-rie").exists()
    assert " passed" in done.stdout and " failed" not in done.stdout
