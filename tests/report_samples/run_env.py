"""Run sample code under coverage.py as one simulated execution environment.

usage: python -m tests.report_samples.run_env SPEC.json

SPEC: {"data_file": path, "branch": bool, "task_root": path or null,
       "selective": bool, "init_label": label or null,
       "calls": [[context or null, "module", "function", [args...]], ...]}

A call's context is switched to before the call (null: no switch; "" is
coverage.py's empty context, an invocation with no label).  ``init_label``
imports every module of the calls under that context first, as the shim
labels an environment's init.

``selective`` imports the modules unmeasured and measures only the calls, as
the runtime's ``COVERAGE_MODE=selective`` does (no import-time lines).

With ``task_root`` the modules are compiled with file names under it (e.g.
/var/task/sampleapp/shapes.py), exactly what coverage.py records in the
image, while their source is read from this checkout.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import types

import coverage

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "sampleapp"


def load(module: str, task_root: str | None) -> types.ModuleType:
    name = f"{PACKAGE}.{module}" if module else PACKAGE
    if task_root is None:
        return importlib.import_module(name)
    if name in sys.modules:
        return sys.modules[name]
    if module:
        load("", task_root)
    relative = os.path.join(PACKAGE, f"{module}.py" if module else "__init__.py")
    with open(os.path.join(HERE, relative), encoding="utf-8") as handle:
        source = handle.read()
    recorded = os.path.join(task_root, relative)
    loaded = types.ModuleType(name)
    loaded.__file__ = recorded
    sys.modules[name] = loaded
    exec(compile(source, recorded, "exec"), loaded.__dict__)
    return loaded


def main(spec_path: str) -> None:
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    task_root = spec.get("task_root")
    measured = os.path.join(task_root or HERE, PACKAGE)
    cov = coverage.Coverage(
        data_file=spec["data_file"],
        branch=spec.get("branch", False),
        include=[os.path.join(measured, "*")],
        config_file=False,
    )
    if spec.get("selective"):
        targets = [getattr(load(module, task_root), name) for _, module, name, _ in spec["calls"]]
        for (context, _, _, args), target in zip(spec["calls"], targets, strict=True):
            cov.start()
            if context is not None:
                cov.switch_context(context)
            target(*args)
            cov.stop()
    else:
        cov.start()
        if spec.get("init_label") is not None:
            cov.switch_context(spec["init_label"])
            for _, module, _, _ in spec["calls"]:
                load(module, task_root)
        for context, module, function, args in spec["calls"]:
            if context is not None:
                cov.switch_context(context)
            getattr(load(module, task_root), function)(*args)
        cov.stop()
    cov.save()


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main(sys.argv[1])
