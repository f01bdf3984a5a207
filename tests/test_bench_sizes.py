"""`bench/sizes.py`: how it reads a shutdown's end from the runtime's records.

A shutdown that runs out of time exits at its deadline (~350 ms of the 400 ms
budget) with a loss record: the exit row must not read that as a slow exit
that shipped, nor a checkpoint's upload before the signal as the shutdown's."""

from __future__ import annotations

import json

from bench.sizes import (
    COUNT_BEHIND,
    LOSS,
    PARTIAL,
    PARTIAL_UNSENT,
    Sample,
    rows,
    shutdown_outcome,
)

SIGNAL = "07 Dec 2026 07:48:51,089 [INFO] (rapid) Received signal signal=terminated"


def record(message: str, reason: str = "SIGTERM", at: str = "07:48:51.300") -> str:
    return json.dumps(
        {"timestamp": f"2026-12-07T{at}Z", "level": "INFO", "message": message, "reason": reason}
    )


def logs(*records: str) -> str:
    exiting = json.dumps(
        {"timestamp": "2026-12-07T07:48:51.440Z", "message": "coverage runtime exiting"}
    )
    return "\n".join((record("coverage uploaded", "checkpoint"), SIGNAL, *records, exiting))


def test_each_end_is_read_from_the_shutdowns_own_records() -> None:
    assert shutdown_outcome(logs(record("coverage uploaded"))) == "shipped"
    assert shutdown_outcome(logs(record(PARTIAL + ": ..."), record("coverage uploaded"))) == (
        "partial"
    )
    # Replayed partially, the replayed files holding nothing new: nothing sent, still partial.
    unsent = logs(record("coverage unchanged since last upload"), record(PARTIAL_UNSENT + ": ..."))
    assert shutdown_outcome(unsent) == "partial"
    assert shutdown_outcome(logs(record(LOSS + ": data ... is lost"))) == "said-lost"
    assert shutdown_outcome(logs(record(COUNT_BEHIND))) == "count-behind"
    assert shutdown_outcome(logs(record("coverage unchanged since last upload"))) == "unchanged"
    # The checkpoint's upload before the signal is not the shutdown's.
    assert shutdown_outcome(logs()) == "silent"


def test_an_exit_at_the_deadline_with_a_loss_record_fails_its_row() -> None:
    samples = [Sample(8000, "disabled", exit_ms=0.0)]
    samples += [
        Sample(8000, "branches", exit_ms=351.0, exit_outcome="said-lost"),
        Sample(8000, "branches", exit_ms=20.0, exit_outcome="unchanged"),
        Sample(8000, "branches", exit_ms=25.0, exit_outcome="count-behind"),
    ]
    table = {row["metric"]: row for row in rows(samples, [8000])}
    exit_row = table["N=8000 branches: SIGTERM to exit after growth, ms"]
    assert exit_row["value"] == 25.0 and not exit_row["pass"]
    [ended] = [row for metric, row in table.items() if metric.startswith("N=8000 branches: after")]
    assert ended["value"] == "0 / 1 / 0 / 1 / 1 / 0" and not ended["pass"]


def test_the_maintenance_row_takes_the_most_any_invocation_saw() -> None:
    def task(kind: str, most: float | None) -> dict[str, object]:
        return {"task": kind, "cpu_ms": 9.0, "wall_ms": 9.0, "most_in_an_invocation_ms": most}

    samples = [Sample(2000, "disabled")]
    samples.append(Sample(2000, "lines", tasks=[task("maintenance", 0.4), task("checkpoint", 5)]))
    samples.append(Sample(2000, "lines", tasks=[task("maintenance", 1.3), task("maintenance", 0)]))
    samples.append(Sample(2000, "branches", tasks=[task("maintenance", 0.9)]))
    table = {row["metric"]: row for row in rows(samples, [2000])}
    metric = "maintenance, the shipping thread's CPU in one invocation at most, ms"
    lines, branches = table[f"N=2000 lines: {metric}"], table[f"N=2000 branches: {metric}"]
    assert (lines["value"], lines["pass"]) == (1.3, False)
    assert (branches["value"], branches["pass"]) == (0.9, True)
    # Without --task-cpu there is no such row.
    plain = rows([Sample(2000, "disabled"), Sample(2000, "lines")], [2000])
    assert not [row for row in plain if "maintenance" in row["metric"]]
