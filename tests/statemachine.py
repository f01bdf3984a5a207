"""The merge state machine as deployed: template.yaml through SAM's own transform.

`transformed` runs samtranslator on template.yaml with the merge turned on,
the way ``sam deploy`` does after ``sam package``: the definition file becomes
the state machine's ``DefinitionString`` (which ``sam package`` would upload
and reference) and the image function gets an image URI. `definition` then
resolves that string with the ``DefinitionSubstitutions`` CloudFormation
would apply, the values given by the caller (every one must be given).
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

from tests.harness import REPO_ROOT

TEMPLATE = REPO_ROOT / "template.yaml"
ACCOUNT = "123456789012"
REGION = "us-east-1"
IMAGE_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/lambda-coverage:latest"
STATE_MACHINE = "MergeStateMachine"


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def sam_template() -> dict[str, Any]:
    """template.yaml as SAM reads it, with what ``sam build``/``sam package`` fill in."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse(TEMPLATE.read_text())
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in properties:
            uri = properties.pop("DefinitionUri")
            properties["Definition"] = json.loads((REPO_ROOT / uri).read_text())
        if (
            resource["Type"] == "AWS::Serverless::Function"
            and properties.get("PackageType") == "Image"
        ):
            properties["ImageUri"] = IMAGE_URI
    return template


def transformed(parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation template SAM's transform makes of template.yaml."""
    from samtranslator.translator.transform import transform

    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    values = {"EnableMergeStateMachine": "true", **(parameters or {})}
    return transform(sam_template(), values, _NoManagedPolicies())


def _join(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(_join(part) for part in parts)
    raise AssertionError(f"cannot resolve {value!r} without CloudFormation")


def definition(template: dict[str, Any], substitutions: dict[str, str]) -> str:
    """The state machine's definition with ``substitutions`` for its
    ``DefinitionSubstitutions`` (the names must be exactly the template's)."""
    properties = template["Resources"][STATE_MACHINE]["Properties"]
    expected = set(properties.get("DefinitionSubstitutions", {}))
    assert set(substitutions) == expected, f"substitutions: {sorted(expected)}"
    text = _join(properties["DefinitionString"])
    used = set(re.findall(r"\$\{(\w+)\}", text))
    assert used == expected, f"definition uses {sorted(used)}, template gives {sorted(expected)}"
    return re.sub(r"\$\{(\w+)\}", lambda m: substitutions[m.group(1)], text)


def with_definition_object(
    template: dict[str, Any], substitutions: dict[str, str]
) -> dict[str, Any]:
    """The template with the definition as an object (``Definition``), which is
    what cfn-lint's ASL rule (E3601) validates; it does not read DefinitionString."""
    copied = copy.deepcopy(template)
    properties = copied["Resources"][STATE_MACHINE]["Properties"]
    properties["Definition"] = json.loads(definition(template, substitutions))
    del properties["DefinitionString"]
    properties.pop("DefinitionSubstitutions", None)
    return copied
