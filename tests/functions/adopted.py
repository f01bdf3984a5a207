"""An existing function adopting lambda-coverage: it knows nothing of the shim.

It reports what it imported and from where, so a test can compare a start with
the shim against a start without it.  Markers name lines for asserts."""

import importlib
import os
import sys

STARTED_WITH = list(sys.path)  # marker: module-level
PRELOADED = sorted(n for n in ("coverage", "boto3", "botocore") if n in sys.modules)


def handler(event, context):
    found = {}
    for name in event.get("import", ()):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            found[name] = {"error": str(exc)}  # marker: import-error
            continue
        found[name] = {
            "file": os.path.realpath(module.__file__),
            "version": getattr(module, "__version__", None),
        }
    if event.get("path") == "a":
        taken = "a"  # marker: path-a
    else:
        taken = "b"  # marker: path-b
    return {
        "taken": taken,
        "modules": found,
        "sys_path": STARTED_WITH,
        "preloaded": PRELOADED,
        "handler_env": os.environ.get("_HANDLER"),
    }
