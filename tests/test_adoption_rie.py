"""The adoption paths, end to end through the real RIE and local S3.

- an existing image or checkout: the package installed from a wheel built from
  this repository into a fresh venv, ``python -m coverage_runtime`` as the
  entry point, the function in a task root elsewhere;
- a zip function on a managed Python runtime (and an AWS base image, which
  starts the same ``/var/runtime/bootstrap``): the layer from
  scripts/build-layer.sh unpacked under ``<root>/opt`` and
  ``AWS_LAMBDA_EXEC_WRAPPER`` pointing at its wrapper, on an emulation of the
  runtime's start (tests/managed_runtime.py).

Each checks that the init was measured (coverage started before the
function's module was imported), that a checkpoint followed a response, that
SIGTERM shipped the rest, and that the function saw the packages it sees
without the shim.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from coverage_runtime.report.cli import main as report_main
from tests.conftest import FUNCTIONS_DIR
from tests.harness import (
    build_wheel,
    download_objects,
    executed_lines,
    line_of,
    pinned_version,
)
from tests.managed_runtime import (
    ManagedRuntime,
    build_layer,
    python_version,
    runtime_python,
    unzip_preserving_modes,
)
from tests.test_exactness import other_pythons

pytestmark = pytest.mark.rie

SOURCE = FUNCTIONS_DIR / "adopted.py"
HANDLER = "adopted.handler"
PROBE = {"import": ["boto3", "botocore"]}


def uploads(function) -> list[str]:
    return [r["reason"] for r in function.json_logs() if r["message"] == "coverage uploaded"]


def wait_for_upload(function, reason: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reason in uploads(function):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {reason} upload:\n{function.logs()}")


def wait_for_record(function, message: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not any(r["message"] == message for r in function.json_logs()):
        assert time.monotonic() < deadline, function.logs()
        time.sleep(0.05)


def exercise(function, probe: dict = PROBE) -> list[dict]:
    """Three invocations with a checkpoint between, then SIGTERM; the responses."""
    first = function.invoke({**probe, "path": "a"})
    assert first.status == 200, first.body
    time.sleep(1.1)  # COVERAGE_FLUSH_INTERVAL_SECONDS=1 passes
    second = function.invoke({**PROBE, "path": "a"})
    assert second.status == 200, second.body
    wait_for_upload(function, "checkpoint")
    third = function.invoke({**PROBE, "path": "b"})  # new lines for the shutdown
    assert third.status == 200, third.body
    assert function.terminate() == 0, function.logs()
    assert uploads(function)[-1] == "SIGTERM", function.logs()
    return [first.body, second.body, third.body]


def check_shipped(s3, bucket: str, tmp_path: Path, task_file: Path) -> dict:
    """The one object: the init and both paths measured, three invocations counted."""
    (tmp_path / "downloaded").mkdir(exist_ok=True)
    objects = download_objects(s3, bucket, tmp_path / "downloaded")
    assert len(objects) == 1, objects
    key, path = next(iter(objects.items()))
    lines = executed_lines(path, task_file)
    for marker in ("module-level", "path-a", "path-b"):
        assert line_of(task_file, marker) in lines, (marker, sorted(lines))
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["invocations"] == "3"
    return head["Metadata"]


def extension_registered_before_first_next(function) -> None:
    """The RIE logs the extension's registration; it must precede the runtime's
    first request for an event (which ends the init: ``INIT RTDONE``), or Lambda
    would not send SIGTERM."""
    logs = function.logs()
    registered = logs.find("Internal agent lambda-coverage")
    assert registered != -1, logs
    assert registered < logs.find("INIT RTDONE"), logs


# -- a zip function on a managed runtime, through the layer ---------------------


def runtime_pythons() -> list:
    """The host's Python (the C tracer) and, marked slow, the newest 3.12+ (sysmon)."""
    params = [pytest.param(sys.executable, id="host")]
    newer = [p for p in other_pythons() if p.parent.parent.name >= "3.12"]
    if newer:
        params.append(pytest.param(str(newer[-1]), id="sysmon", marks=pytest.mark.slow))
    return params


OLDER_AWSLAMBDARIC = "3.1.1"
# What scripts/build-layer.sh names its zip (the README copies the name).
LAYER_ZIP = "lambda-coverage-layer-python{version}-{arch}.zip"


def managed_python_for(base: str, out: Path) -> tuple[str, Path]:
    """The runtime's interpreter and the layer built for its Python version."""
    layer = build_layer(python_version(base), out)
    return runtime_python(base), layer


@pytest.fixture(scope="module", params=runtime_pythons())
def managed_python(request, tmp_path_factory) -> tuple[str, Path]:
    return managed_python_for(request.param, tmp_path_factory.mktemp("layer"))


def managed_runtime(tmp_path: Path, managed_python, layer: bool = True) -> ManagedRuntime:
    python, layer_zip = managed_python
    runtime = ManagedRuntime.lay_out(tmp_path / "root", python)
    shutil.copy(SOURCE, runtime.task_root / SOURCE.name)
    if layer:
        unzip_preserving_modes(layer_zip, runtime.opt)
    return runtime


def start_with_layer(
    start_function, runtime: ManagedRuntime, function_env, handler: str = HANDLER, **env: str
):
    """The function on the emulated runtime, started as Lambda starts it with the
    layer's ``AWS_LAMBDA_EXEC_WRAPPER`` set; ``env`` adds variables."""
    merged = runtime.environment(function_env, handler)
    merged["AWS_LAMBDA_EXEC_WRAPPER"] = str(runtime.opt / "lambda-coverage")
    merged.update(env)
    return start_function(
        handler, task_root=runtime.task_root, env=merged, command=[str(runtime.bootstrap)]
    )


def test_layer_on_a_managed_runtime(
    start_function, function_env, managed_python, s3, bucket, tmp_path
):
    version = python_version(managed_python[0])
    assert managed_python[1].name == LAYER_ZIP.format(version=version, arch="x86_64")
    runtime = managed_runtime(tmp_path, managed_python)
    function = start_with_layer(
        start_function, runtime, function_env, COVERAGE_FLUSH_INTERVAL_SECONDS="1"
    )
    responses = exercise(function)
    extension_registered_before_first_next(function)
    assert responses[0]["handler_env"] == HANDLER
    metadata = check_shipped(s3, bucket, tmp_path, runtime.task_root / SOURCE.name)
    assert metadata["python-version"].startswith(version)

    # The same function without the layer's wrapper: the same path and packages.
    plain = start_function(
        HANDLER,
        task_root=runtime.task_root,
        env={**runtime.environment(function_env, HANDLER), "COVERAGE_ENABLED": "false"},
        command=[str(runtime.bootstrap)],
    )
    alone = plain.invoke({**PROBE, "path": "a"}).body
    plain.kill()
    layer_lib = str(runtime.opt / "lambda-coverage-lib")
    measured_path = responses[0]["sys_path"]
    assert [p for p in measured_path if p != layer_lib] == alone["sys_path"]
    # The layer's packages come after every directory that exists on the path.
    existing = [p for p in alone["sys_path"] if Path(p).exists()]
    assert measured_path.index(layer_lib) > max(measured_path.index(p) for p in existing)
    assert responses[0]["modules"] == alone["modules"]
    # Before the function's module ran, the shim loaded nothing the function might
    # import but coverage.py, and that only on the C tracer (sysmon defers it).
    assert set(responses[0]["preloaded"]) - set(alone["preloaded"]) <= {"coverage"}


def test_the_layer_switched_off(start_function, function_env, managed_python, s3, bucket, tmp_path):
    """``COVERAGE_ENABLED=false`` with the layer still attached: the runtime's own
    awslambdaric serves, and nothing of coverage is loaded or uploaded."""
    runtime = managed_runtime(tmp_path, managed_python)
    function = start_with_layer(start_function, runtime, function_env, COVERAGE_ENABLED="false")
    response = function.invoke({**PROBE, "path": "a"})
    assert response.status == 200, function.logs()
    assert response.body["preloaded"] == []
    assert function.terminate() == 0
    assert function.json_logs() == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_an_unknown_start_still_starts(start_function, function_env, managed_python, tmp_path):
    """A runtime command line the wrapper does not know (here an interpreter option)
    starts unchanged and unmeasured, with one line saying so: never a failed init."""
    runtime = managed_runtime(tmp_path, managed_python)
    env = runtime.environment(function_env, HANDLER)
    wrapper = str(runtime.opt / "lambda-coverage")
    bootstrap_py = str(runtime.runtime_dir / "bootstrap.py")
    function = start_function(
        HANDLER,
        task_root=runtime.task_root,
        env=env,
        command=[wrapper, managed_python[0], "-X", "utf8", bootstrap_py],
    )
    response = function.invoke({**PROBE, "path": "a"})
    assert response.status == 200, function.logs()
    assert response.body["taken"] == "a"
    assert function.terminate() == 0
    assert "lambda-coverage: not measuring: unexpected command line" in function.logs()
    assert function.json_logs() == []


@pytest.mark.parametrize("start", ["base-image", "entry-script"])
def test_the_wrapper_on_other_starts(
    start_function, function_env, managed_python, s3, bucket, tmp_path, start
):
    """An AWS base image: the layer's tree copied into /opt (a Dockerfile's ``COPY``),
    started by its ``/lambda-entrypoint.sh <handler>`` (``CMD``).  An image on
    another base whose entry script runs ``$AWS_LAMBDA_EXEC_WRAPPER python -m
    awslambdaric <handler>``."""
    python, layer_zip = managed_python
    runtime = managed_runtime(tmp_path, (python, layer_zip), layer=False)
    shutil.copytree(layer_zip.with_suffix(""), runtime.opt, dirs_exist_ok=True)
    env = runtime.environment(function_env, HANDLER)
    del env["_HANDLER"]  # (the entry point or the command line names it)
    wrapper = str(runtime.opt / "lambda-coverage")
    env["AWS_LAMBDA_EXEC_WRAPPER"] = wrapper
    env["COVERAGE_FLUSH_INTERVAL_SECONDS"] = "1"
    command = (
        [str(runtime.entrypoint), HANDLER]
        if start == "base-image"
        else [wrapper, python, "-m", "awslambdaric", HANDLER]
    )
    function = start_function(HANDLER, task_root=runtime.task_root, env=env, command=command)
    responses = exercise(function)
    extension_registered_before_first_next(function)
    assert responses[0]["handler_env"] == HANDLER
    check_shipped(s3, bucket, tmp_path, runtime.task_root / SOURCE.name)


@pytest.mark.parametrize("version", ["7.6.0", pinned_version("coverage")])
def test_the_functions_own_coverage(
    start_function, function_env, managed_python, s3, bucket, tmp_path, version
):
    """A function that vendors coverage.py gets its own.  Another version than the
    layer's: the shim measures nothing and says why in one record; the same
    version: the shim measures with the function's copy."""
    runtime = managed_runtime(tmp_path, managed_python)
    subprocess.run(
        [managed_python[0], "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-compile", "--target", str(runtime.task_root), f"coverage=={version}"],
        check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    function = start_with_layer(start_function, runtime, function_env)
    response = function.invoke({"import": ["coverage"], "path": "a"})
    assert response.status == 200, function.logs()
    own = response.body["modules"]["coverage"]
    assert own["file"].startswith(str(runtime.task_root)), own
    assert own["version"] == version
    assert function.terminate() == 0
    records = function.json_logs()
    refusals = [r for r in records if r.get("coverage_version") == version]
    if version == pinned_version("coverage"):
        assert refusals == [] and uploads(function) == ["SIGTERM"], function.logs()
        return
    (refusal,) = refusals
    assert refusal["level"] == "ERROR"
    assert refusal["message"].startswith(f"the function brings its own coverage.py {version}")
    assert refusal["coverage_path"] == str(runtime.task_root)
    assert [r for r in records if r["level"] == "ERROR"] == [refusal]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_layer_with_an_older_awslambdaric(start_function, function_env, s3, bucket, tmp_path):
    """A runtime whose own awslambdaric predates 4.0 (``run(app_root, handler,
    address)``, which builds its runtime client itself) is measured the same."""
    _, layer = managed_python_for(sys.executable, tmp_path)
    python = runtime_python(sys.executable, awslambdaric=OLDER_AWSLAMBDARIC)
    runtime = managed_runtime(tmp_path, (python, layer))
    function = start_with_layer(
        start_function, runtime, function_env, COVERAGE_FLUSH_INTERVAL_SECONDS="1"
    )
    responses = exercise(function, {"import": ["awslambdaric"]})
    assert responses[0]["modules"]["awslambdaric"]["version"] == OLDER_AWSLAMBDARIC
    extension_registered_before_first_next(function)
    check_shipped(s3, bucket, tmp_path, runtime.task_root / SOURCE.name)


# -- the report from the adopter's checkout (README, "From your own checkout") --------

CHECKOUT = {
    "product/__init__.py": "",
    "product/common.py": (
        "def respond(status, body):\n"
        "    return {'statusCode': status, 'body': body}  # marker: respond\n"
        "\n\n"
        "def unused():\n"
        "    return None  # marker: never-called\n"
    ),
    "product/create.py": (
        "from product.common import respond\n\n\n"
        "def handler(event, context):\n"
        "    return respond(201, 'created')  # marker: create\n"
    ),
    "product/get.py": (
        "from product.common import respond\n\n\n"
        "def handler(event, context):\n"
        "    return respond(200, 'found')  # marker: get\n"
    ),
    "product/stream.py": "def handler(event, context):\n    return None  # marker: stream\n",
}


def test_the_report_from_the_adopters_checkout(
    start_function, function_env, managed_python, s3_server, bucket, tmp_path,
    report_credentials, monkeypatch,
):  # fmt: skip
    """Two functions built from one checkout's ``product/`` (copied into the task
    root, as ``cp -r product`` does), each with its own handler and name, through the
    layer; then the README's command from the checkout: ``--function a,b`` merges
    them, ``--task-root <task root>=.`` maps the recorded paths to the checkout,
    ``--source product`` lists the module no function imported at 0%."""
    checkout = tmp_path / "checkout"
    for name, text in CHECKOUT.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(text)
    runtime = managed_runtime(tmp_path, managed_python)
    shutil.copytree(checkout / "product", runtime.task_root / "product")
    served = {"create-product": 2, "get-product": 1}
    for function_name, count in served.items():
        handler = f"product.{function_name.split('-')[0]}.handler"
        function = start_with_layer(
            start_function, runtime, function_env, handler,
            AWS_LAMBDA_FUNCTION_NAME=function_name,
        )  # fmt: skip
        for _ in range(count):
            assert function.invoke({}).status == 200, function.logs()
        assert function.terminate() == 0
        assert uploads(function) == ["SIGTERM"], function.logs()

    monkeypatch.chdir(checkout)
    out, err = io.StringIO(), io.StringIO()
    code = report_main(
        ["report", "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
         "--function", ",".join(served), "--since", "7d",
         "--task-root", f"{runtime.task_root}=.", "--source", "product",
         "-o", str(tmp_path / "report"), "--cache-dir", str(tmp_path / "cache"),
         "--no-progress", "--format", "json"],
        out=out, err=err,
    )  # fmt: skip
    assert code == 0, err.getvalue()
    assert f"from 2 environment(s), {sum(served.values())} invocation(s)" in out.getvalue()
    report = json.loads((tmp_path / "report" / "coverage.json").read_text())
    files = {
        str(Path(name).resolve().relative_to(checkout.resolve())): entry
        for name, entry in report["files"].items()
    }
    assert set(files) == set(CHECKOUT), sorted(files)
    executed = {name: set(entry["executed_lines"]) for name, entry in files.items()}
    for name, markers in {
        "product/create.py": ("create",),
        "product/get.py": ("get",),
        "product/common.py": ("respond",),
    }.items():
        for marker in markers:
            assert line_of(checkout / name, f"marker: {marker}") in executed[name], name
    assert (
        line_of(checkout / "product/common.py", "never-called") not in executed["product/common.py"]
    )
    assert executed["product/stream.py"] == set()  # imported by neither: 0%, from --source


# -- an existing image or checkout: the package from a wheel -------------------


def shim_modules() -> set[str]:
    package = FUNCTIONS_DIR.parent.parent / "coverage_runtime"
    return {
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if "report" not in path.parts
    }


@pytest.mark.slow
def test_wheel_in_a_fresh_venv(start_function, function_env, s3, bucket, tmp_path):
    """``pip install`` of a wheel built from this checkout, into a venv that has
    never seen it; the function in a task root elsewhere; ``python -m
    coverage_runtime`` as the entry point, the checkout nowhere on the path."""
    repo = FUNCTIONS_DIR.parent.parent
    dist = tmp_path / "dist"
    wheel = build_wheel(dist)
    with zipfile.ZipFile(wheel) as zipped:
        names = set(zipped.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert (
            "lambda-coverage = coverage_runtime.report.cli:main"
            in zipped.read(entry_points).decode()
        )
    assert shim_modules() <= names, shim_modules() - names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True, timeout=600,
    )  # fmt: skip
    usage = subprocess.run(
        [python, "-m", "coverage_runtime"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert usage.returncode == 2 and "usage: python -m coverage_runtime" in usage.stderr
    cli = subprocess.run(
        [str(venv / "bin" / "lambda-coverage"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0 and "report" in cli.stdout, cli.stderr

    task = tmp_path / "task"
    task.mkdir()
    shutil.copy(SOURCE, task / SOURCE.name)
    env = {k: v for k, v in function_env.items() if k != "PYTHONPATH"}
    env["COVERAGE_FLUSH_INTERVAL_SECONDS"] = "1"
    function = start_function(
        HANDLER, task_root=task, env=env, command=[python, "-m", "coverage_runtime", HANDLER]
    )
    responses = exercise(function, {"import": ["boto3", "botocore", "coverage_runtime"]})
    extension_registered_before_first_next(function)
    started = next(r for r in function.json_logs() if r["message"] == "coverage runtime started")
    assert started["source"] == [str(task)]
    assert str(repo) not in responses[0]["sys_path"]
    for name in ("boto3", "botocore", "coverage_runtime"):
        assert responses[0]["modules"][name]["file"].startswith(str(venv)), responses[0]
    check_shipped(s3, bucket, tmp_path, task / SOURCE.name)
