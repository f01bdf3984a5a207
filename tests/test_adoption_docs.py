"""README's "Add it to your function" says what the tests run (#21 items 1 and 3).

The section is the README's first after the quick start; the versions it names
are the ones the adoption tests install (the oldest boto3/botocore, the older
awslambdaric, coverage.py's pin); the files, scripts and flags it names exist.
The tests that run each path end to end are tests/test_adoption_rie.py,
test_adoption_container.py and test_function_packages_rie.py: this keeps the
prose from drifting away from them.
"""

from __future__ import annotations

import re
import subprocess

from tests.harness import REPO_ROOT, pinned_version
from tests.test_adoption_rie import LAYER_ZIP, OLDER_AWSLAMBDARIC
from tests.test_function_packages_rie import OLDEST_BOTO3

README = REPO_ROOT / "README.md"


def section(title: str) -> str:
    """The text of the README's ``## title`` section, up to the next ``## ``."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_adoption_comes_right_after_the_quick_start():
    headings = re.findall(r"^## (.+)$", README.read_text(), flags=re.MULTILINE)
    assert headings[:2] == ["Quick start", "Add it to your function"], headings[:4]


def test_the_versions_named_are_the_ones_tested():
    adoption = section("Add it to your function")
    boto3, botocore = (pin.partition("==")[2] for pin in OLDEST_BOTO3)
    assert f"**boto3 {boto3} / botocore {botocore}**" in adoption
    assert f"tested with {OLDER_AWSLAMBDARIC}" in adoption
    assert f"`coverage=={pinned_version('coverage')}`" in adoption


def test_the_files_and_flags_named_exist():
    adoption = section("Add it to your function")
    named = set(
        re.findall(r"\b((?:scripts|tests|coverage_runtime|docs|layer)/[\w./-]*\w)", adoption)
    )
    assert {"scripts/build-layer.sh", "tests/managed_runtime.py"} <= named, named
    missing = sorted(path for path in named if not (REPO_ROOT / path).exists())
    assert missing == [], missing
    # The wrapper the variable names is the layer's top-level file.
    assert "AWS_LAMBDA_EXEC_WRAPPER=/opt/lambda-coverage" in adoption
    assert (REPO_ROOT / "layer" / "lambda-coverage").is_file()
    usage = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-layer.sh"), "--help"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    for flag in set(re.findall(r"build-layer\.sh((?: --[\w-]+(?: [\w.]+)?)+)", adoption)):
        for option in re.findall(r"--[\w-]+", flag):
            assert f"  {option} " in usage, (option, usage)
    # The zip and tree names the README copies are the ones the script prints.
    named_layers = set(re.findall(r"lambda-coverage-layer-python3\.\d+-\w+", adoption))
    assert "lambda-coverage-layer-python3.13-x86_64" in named_layers, named_layers
    for name in named_layers:
        version, arch = name.removeprefix("lambda-coverage-layer-python").split("-")
        assert name + ".zip" == LAYER_ZIP.format(version=version, arch=arch)
