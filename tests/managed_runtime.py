"""An emulated Lambda managed Python runtime (and AWS base image), for the layer's tests.

Lambda's Python runtimes start ``/var/runtime/bootstrap``, a shell script that
exports ``AWS_EXECUTION_ENV`` and runs ``python /var/runtime/bootstrap.py``, or,
when ``AWS_LAMBDA_EXEC_WRAPPER`` is set, that same command line as arguments of
the wrapper (after checking it exists and is executable: exit 127 / 126).
``bootstrap.py`` puts the task root first on ``sys.path``, then (only without
``PYTHONPATH``) ``/opt/python/lib/pythonN.N/site-packages``, ``/opt/python`` and
the runtime's site-packages, adds the task root and those ``/opt`` directories
as site directories (their ``.pth`` files), sets ``PYTHONPATH`` to the runtime
directory for child processes, and calls awslambdaric's ``main([task root,
handler])``.  (Published in aws/aws-lambda-base-images as the image contents,
and shown by anyone who ``cat``s them; written here from that description.)

`ManagedRuntime` lays this out under a temporary root in place of ``/``: the
runtime's interpreter is a venv with awslambdaric and boto3 (what the runtime
ships) and nothing of ours; layers are unpacked under ``<root>/opt``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.harness import REPO_ROOT, pinned_version

BOOTSTRAP_SH = """#!/bin/bash
export AWS_EXECUTION_ENV=AWS_Lambda_python{version}
if [ -z "$AWS_LAMBDA_EXEC_WRAPPER" ]; then
  exec {python} {runtime}/bootstrap.py
fi
wrapper="$AWS_LAMBDA_EXEC_WRAPPER"
if [ ! -f "$wrapper" ]; then echo "$wrapper: does not exist"; exit 127; fi
if [ ! -x "$wrapper" ]; then echo "$wrapper: is not an executable"; exit 126; fi
exec -- "$wrapper" {python} {runtime}/bootstrap.py
"""

# An AWS base image's /lambda-entrypoint.sh: the handler from CMD becomes _HANDLER, then
# the bootstrap runs (under the image's RIE when AWS_LAMBDA_RUNTIME_API is unset).
ENTRYPOINT_SH = """#!/bin/sh
if [ $# -ne 1 ]; then echo "entrypoint requires the handler name" 1>&2; exit 142; fi
export _HANDLER="$1"
exec {runtime}/bootstrap
"""

BOOTSTRAP_PY = '''"""A managed runtime's bootstrap.py, as tests/managed_runtime.py describes it."""
import os
import site
import sys

import awslambdaric.__main__ as awslambdaric_main

OPT = {opt!r}
RUNTIME_SITE = {runtime_site!r}
OPT_SITE = OPT + "/python/lib/python%d.%d/site-packages" % sys.version_info[:2]


def main():
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    own_path = "PYTHONPATH" in os.environ
    if not own_path:
        sys.path.insert(0, RUNTIME_SITE)
        sys.path.insert(0, OPT + "/python")
        sys.path.insert(0, OPT_SITE)
    sys.path.insert(0, task_root)
    site.addsitedir(task_root)
    if not own_path:
        site.addsitedir(OPT_SITE)
        site.addsitedir(OPT + "/python")
        os.environ["PYTHONPATH"] = os.environ["LAMBDA_RUNTIME_DIR"]
    awslambdaric_main.main([task_root, os.environ["_HANDLER"]])


if __name__ == "__main__":
    main()
'''


def python_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip


def runtime_python(base_python: str, awslambdaric: str | None = None) -> str:
    """A venv of ``base_python`` with what a managed runtime ships (awslambdaric,
    pinned unless given, and boto3) and nothing of lambda-coverage; made once."""
    version = python_version(base_python)
    ric = awslambdaric or pinned_version("awslambdaric")
    suffix = "" if awslambdaric is None else f"-ric{awslambdaric}"
    venv = REPO_ROOT / ".local" / "venvs" / f"managed-runtime-{version}{suffix}"
    wanted = [f"awslambdaric=={ric}", f"boto3=={pinned_version('boto3')}"]
    stamp = venv / ".wanted"
    if not (stamp.exists() and stamp.read_text() == "\n".join(wanted)):
        subprocess.run([base_python, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", *wanted],
            check=True, timeout=600, capture_output=True,
        )  # fmt: skip
        stamp.write_text("\n".join(wanted))
    return str(venv / "bin" / "python")


def build_layer(version: str, out: Path) -> Path:
    """scripts/build-layer.sh for Python ``version``; the zip's path."""
    built = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-layer.sh"), "--python", version,
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return Path(built.stdout.strip().splitlines()[-1])


def unzip_preserving_modes(archive: Path, destination: Path) -> None:
    """Unpack as Lambda unpacks a layer: the executable bits the zip records are kept."""
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            path = Path(zipped.extract(info, destination))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                path.chmod(mode & 0o777)


@dataclass
class ManagedRuntime:
    root: Path
    python: str

    @property
    def opt(self) -> Path:
        return self.root / "opt"

    @property
    def task_root(self) -> Path:
        return self.root / "var" / "task"

    @property
    def runtime_dir(self) -> Path:
        return self.root / "var" / "runtime"

    @property
    def bootstrap(self) -> Path:
        return self.runtime_dir / "bootstrap"

    @property
    def entrypoint(self) -> Path:
        """The base image's ``/lambda-entrypoint.sh`` (its ``ENTRYPOINT``)."""
        return self.root / "lambda-entrypoint.sh"

    @classmethod
    def lay_out(cls, root: Path, python: str) -> ManagedRuntime:
        runtime = cls(root, python)
        for directory in (runtime.opt, runtime.task_root, runtime.runtime_dir):
            directory.mkdir(parents=True, exist_ok=True)
        site_packages = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
        runtime.bootstrap.write_text(
            BOOTSTRAP_SH.format(
                version=python_version(python), python=python, runtime=runtime.runtime_dir
            )
        )
        runtime.bootstrap.chmod(0o755)
        runtime.entrypoint.write_text(ENTRYPOINT_SH.format(runtime=runtime.runtime_dir))
        runtime.entrypoint.chmod(0o755)
        (runtime.runtime_dir / "bootstrap.py").write_text(
            BOOTSTRAP_PY.format(opt=str(runtime.opt), runtime_site=site_packages)
        )
        return runtime

    def environment(self, base: dict[str, str], handler: str) -> dict[str, str]:
        """What Lambda sets for the runtime (no PYTHONPATH: the function did not set one)."""
        env = {k: v for k, v in base.items() if k != "PYTHONPATH"}
        env.update(
            {
                "_HANDLER": handler,
                "LAMBDA_TASK_ROOT": str(self.task_root),
                "LAMBDA_RUNTIME_DIR": str(self.runtime_dir),
            }
        )
        return env
