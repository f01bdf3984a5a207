"""Business requests: ``process_data`` with transform, validate and aggregate.

``{"operation": "process_data", "data": {"transform": {...}, "validate":
{"record": {...}, "rules": {...}}, "aggregate": [numbers]}}``: any of the three
sections, at least one.  Everything wrong with the request is collected
first and reported together as field errors (``data.aggregate[3]: expected a
number, got string``); a record that breaks its validation rules is a result
(``valid: false`` with violations), not a request error.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import uuid
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from app import config as names
from app.config import AppConfig
from app.errors import FieldError, RequestError, bad_request, limit_exceeded, shown, type_name

OPERATIONS = ("process_data",)
SECTIONS = ("transform", "validate", "aggregate")
MAX_DEPTH = 10
MAX_FIELD_ERRORS = 20

# -- transform ---------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")


def snake_case(key: str) -> str:
    """``"First Name"``, ``"firstName"``, ``"first-name"`` -> ``"first_name"``."""
    return _NON_WORD.sub("_", _CAMEL.sub(r"_\1", key)).strip("_").lower() or "_"


class _Errors(list[FieldError]):
    """Field errors of one request, capped so a huge bad input gives a short answer."""

    def add(self, field: str, message: str) -> None:
        if len(self) < MAX_FIELD_ERRORS:
            self.append(FieldError(field, message))


def _transform(value: Any, path: str, depth: int, config: AppConfig, errors: _Errors) -> Any:
    """Normalise one value: text trimmed and single-spaced, keys snake_case,
    lists without duplicates (first occurrence kept), other values as they are."""
    if depth > MAX_DEPTH:
        errors.add(path, f"nested deeper than {MAX_DEPTH} levels")
        return None
    if isinstance(value, str):
        if len(value) > config.max_string_length:
            errors.add(
                path,
                f"text of {len(value)} characters; at most {config.max_string_length} "
                f"({names.MAX_STRING_LENGTH})",
            )
            return None
        return " ".join(value.split())
    if isinstance(value, list):
        seen: set[str] = set()
        result = []
        for index, item in enumerate(value):
            normalised = _transform(item, f"{path}[{index}]", depth + 1, config, errors)
            key = json.dumps(normalised, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                result.append(normalised)
        return result
    if isinstance(value, dict):
        result_dict: dict[str, Any] = {}
        for key, item in value.items():
            new_key = snake_case(str(key))
            where = f"{path}.{str(key)[:40]}"
            if new_key in result_dict:
                errors.add(where, f"becomes {shown(new_key)}, like another key")
                continue
            result_dict[new_key] = _transform(item, where, depth + 1, config, errors)
        return result_dict
    return value


def transform(section: Any, config: AppConfig, errors: _Errors) -> dict[str, Any] | None:
    if not isinstance(section, dict):
        errors.add("data.transform", f"expected an object, got {type_name(section)}")
        return None
    result = _transform(section, "data.transform", 1, config, errors)
    return {"result": result, "fields": len(section)}


# -- validate ------------------------------------------------------------------------

TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


FORMATS: dict[str, Callable[[str], bool]] = {
    "email": lambda v: len(v) <= 254 and _EMAIL.match(v) is not None,
    "date": _is_date,
    "uuid": _is_uuid,
}
RULE_KEYS = ("type", "required", "min", "max", "min_length", "max_length", "format", "one_of")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_rule(name: str, rule: Any, errors: _Errors) -> bool:
    """Is this rule well formed?  Problems are request errors (the caller's bug)."""
    path = f"data.validate.rules.{name[:40]}"
    if not isinstance(rule, dict):
        errors.add(path, f"expected an object, got {type_name(rule)}")
        return False
    ok = True
    for key, value in rule.items():
        problem = None
        if key not in RULE_KEYS:
            problem = "unknown rule; known rules: " + ", ".join(RULE_KEYS)
        elif key == "type" and (not isinstance(value, str) or value not in TYPES):
            problem = "one of " + ", ".join(TYPES)
        elif key == "format" and (not isinstance(value, str) or value not in FORMATS):
            problem = "one of " + ", ".join(FORMATS)
        elif key == "required" and not isinstance(value, bool):
            problem = f"expected a boolean, got {type_name(value)}"
        elif key in ("min", "max") and not _is_number(value):
            problem = f"expected a number, got {type_name(value)}"
        elif key in ("min_length", "max_length") and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            problem = "expected a non-negative integer"
        elif key == "one_of" and not isinstance(value, list):
            problem = f"expected an array, got {type_name(value)}"
        if problem:
            errors.add(f"{path}.{key}", problem)
            ok = False
    return ok


def _violations(name: str, rule: Mapping[str, Any], record: Mapping[str, Any]) -> list[dict]:
    """How ``record[name]`` breaks ``rule`` (empty when it does not)."""
    found: list[dict[str, str]] = []

    def violation(rule_name: str, message: str) -> None:
        found.append({"field": name, "rule": rule_name, "message": message})

    if name not in record or record[name] is None:
        if rule.get("required", False):
            violation("required", "is required")
        return found
    value = record[name]
    expected = rule.get("type")
    if expected and not TYPES[expected](value):
        violation("type", f"expected {expected}, got {type_name(value)}")
        return found
    if _is_number(value):
        if "min" in rule and value < rule["min"]:
            violation("min", f"must be >= {rule['min']}")
        if "max" in rule and value > rule["max"]:
            violation("max", f"must be <= {rule['max']}")
    if isinstance(value, str | list | dict):
        if "min_length" in rule and len(value) < rule["min_length"]:
            violation("min_length", f"needs at least {rule['min_length']} characters/items")
        if "max_length" in rule and len(value) > rule["max_length"]:
            violation("max_length", f"allows at most {rule['max_length']} characters/items")
    if "format" in rule and not (isinstance(value, str) and FORMATS[rule["format"]](value)):
        violation("format", f"is not a valid {rule['format']}")
    if "one_of" in rule and value not in rule["one_of"]:
        violation("one_of", "must be one of " + ", ".join(shown(v, 30) for v in rule["one_of"]))
    return found


def validate(section: Any, config: AppConfig, errors: _Errors) -> dict[str, Any] | None:
    if not isinstance(section, dict):
        errors.add("data.validate", f"expected an object, got {type_name(section)}")
        return None
    record, rules = section.get("record"), section.get("rules")
    if not isinstance(record, dict):
        errors.add("data.validate.record", f"expected an object, got {type_name(record)}")
    if not isinstance(rules, dict) or not rules:
        errors.add("data.validate.rules", "expected a non-empty object of field -> rule")
    if not isinstance(record, dict) or not isinstance(rules, dict) or not rules:
        return None
    if not all([_check_rule(str(name), rule, errors) for name, rule in rules.items()]):
        return None
    violations = []
    for name, rule in rules.items():
        violations.extend(_violations(str(name), rule, record))
    return {"valid": not violations, "violations": violations, "fields_checked": len(rules)}


# -- aggregate --------------------------------------------------------------------------


def aggregate(section: Any, config: AppConfig, errors: _Errors) -> dict[str, Any] | None:
    """count, sum, mean, min, max and median of a list of numbers."""
    if not isinstance(section, list):
        errors.add("data.aggregate", f"expected an array of numbers, got {type_name(section)}")
        return None
    if len(section) > config.max_aggregate_values:
        raise limit_exceeded(
            "data.aggregate",
            f"has {len(section)} values",
            config.max_aggregate_values,
            " values",
            names.MAX_AGGREGATE_VALUES,
        )
    floats: list[float] = []
    for index, value in enumerate(section):
        if not _is_number(value):
            errors.add(f"data.aggregate[{index}]", f"expected a number, got {type_name(value)}")
            continue
        try:
            as_float = float(value)
        except OverflowError:
            as_float = math.inf
        if not math.isfinite(as_float):
            errors.add(f"data.aggregate[{index}]", "must be a finite number within float range")
            continue
        floats.append(as_float)
    if len(floats) != len(section):
        return None
    if not floats:
        return {"count": 0, "sum": 0, "mean": None, "min": None, "max": None, "median": None}
    try:
        total = math.fsum(floats)
    except OverflowError:  # fsum raises where the running sum leaves float range
        total = math.inf
    if not math.isfinite(total):
        errors.add("data.aggregate", "the sum is outside float range")
        return None
    all_ints = all(isinstance(v, int) for v in section)
    return {
        "count": len(floats),
        "sum": sum(section) if all_ints else total,
        "mean": total / len(floats),
        "min": min(section),
        "max": max(section),
        "median": statistics.median(floats),
    }


SECTION_HANDLERS = {"transform": transform, "validate": validate, "aggregate": aggregate}


# -- entry ---------------------------------------------------------------------------------


def process_data(payload: Mapping[str, Any], config: AppConfig) -> dict[str, Any]:
    data = payload.get("data")
    if data is None:
        raise bad_request(
            "process_data needs data",
            FieldError("data", "missing; an object with any of " + ", ".join(SECTIONS)),
            code="missing_field",
        )
    if not isinstance(data, dict):
        raise bad_request(
            "data must be an object",
            FieldError("data", f"expected an object, got {type_name(data)}"),
            code="invalid_type",
        )
    unknown = [str(key) for key in data if key not in SECTIONS]
    if unknown:
        raise bad_request(
            "unknown data sections: " + ", ".join(shown(k, 30) for k in unknown[:5]),
            *[FieldError(f"data.{k}", "unknown section") for k in unknown[:MAX_FIELD_ERRORS]],
            code="unknown_section",
        )
    if not data:
        raise bad_request(
            "data needs at least one section",
            FieldError("data", "add any of " + ", ".join(SECTIONS)),
            code="missing_field",
        )
    errors = _Errors()
    results = {name: SECTION_HANDLERS[name](data[name], config, errors) for name in data}
    if errors:
        raise bad_request(f"{len(errors)} field error(s) in data", *errors, code="invalid_data")
    return {"operation": "process_data", "sections": list(data), "results": results}


def handle(payload: Mapping[str, Any], config: AppConfig) -> dict[str, Any]:
    """Run the named operation, or say which operations exist."""
    operation = payload.get("operation")
    if not isinstance(operation, str):
        raise bad_request(
            "operation must be a string",
            FieldError("operation", f"expected a string, got {type_name(operation)}"),
            code="invalid_type",
        )
    if operation not in OPERATIONS:
        raise RequestError(
            400,
            "unknown_operation",
            f"unknown operation {shown(operation)}",
            [FieldError("operation", "one of " + ", ".join(OPERATIONS))],
            {"allowed": list(OPERATIONS)},
        )
    return process_data(payload, config)
