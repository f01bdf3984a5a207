"""A handler that keeps the CPU (and the GIL) busy, as one that runs into its timeout."""

import time


def handler(event, context):
    deadline = time.monotonic() + event.get("seconds", 5)
    spins = 0
    while time.monotonic() < deadline:
        spins += 1  # marker: spinning
    return {"spins": spins}
