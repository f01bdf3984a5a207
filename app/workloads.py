"""Workloads for the admin requests: pure Python, deterministic, measurable.

``cpu`` is branchy integer arithmetic (Collatz sequences), the kind of code
where line tracing costs most; ``memory`` builds and drops many small objects.
Both return a checksum, so the measured and the unmeasured runs of
``performance_test`` provably did the same work.  Batch items are processed
by `process_item`, with a different path per item type.
"""

from __future__ import annotations

import math
from typing import Any


def collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def cpu(iterations: int) -> int:
    """Integer work: the Collatz length of 1..1000, cycled."""
    checksum = 0
    for i in range(iterations):
        checksum += collatz_steps(i % 1000 + 1)
    return checksum


def memory(iterations: int) -> int:
    """Allocation work: a list of 32 small dicts per iteration, then a summary."""
    checksum = 0
    kept: list[list[dict[str, Any]]] = []
    for i in range(iterations):
        rows: list[dict[str, Any]] = [{"id": i, "k": k, "label": f"row-{i}-{k}"} for k in range(32)]
        checksum += sum(len(row["label"]) for row in rows)
        kept.append(rows)
        if len(kept) > 64:  # bounded: churn, not growth
            kept.clear()
    return checksum


WORKLOADS = {"cpu": cpu, "memory": memory}


def process_item(item: Any) -> dict[str, Any]:  # noqa: PLR0911 - one return per type
    """One batch item: numbers are scored, strings normalised, objects summarised."""
    if isinstance(item, bool) or item is None:
        return {"kind": "flag", "value": bool(item)}
    if isinstance(item, int):
        return {"kind": "number", "value": item, "score": item * item % 97}
    if isinstance(item, float):
        score = round(item * item % 97, 3) if math.isfinite(item * item) else None
        return {"kind": "number", "value": item, "score": score}
    if isinstance(item, str):
        return {"kind": "text", "value": " ".join(item.split()).lower(), "length": len(item)}
    if isinstance(item, dict):
        return {"kind": "object", "keys": sorted(str(k) for k in item)[:20], "size": len(item)}
    if isinstance(item, list):
        return {"kind": "list", "size": len(item)}
    return {"kind": "other"}
