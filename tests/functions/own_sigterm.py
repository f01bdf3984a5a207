"""A function with its own SIGTERM handler, as graceful-shutdown samples have."""

import os
import signal
import time


def _on_sigterm(signum, frame):
    with open(os.environ["SIGTERM_MARKER_FILE"], "w") as marker:
        marker.write("handled")
    raise SystemExit(0)


signal.signal(signal.SIGTERM, _on_sigterm)


def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])  # marker: sleeping
    return {"ok": True}  # marker: returned
