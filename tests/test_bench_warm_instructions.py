"""`bench/warm_instructions.py`: one warm invocation's instructions, as the
difference of two counted environments, against coverage off's, per label mode."""

from __future__ import annotations

import base64
import json

import pytest

from bench.bench_image import LABEL_CONFIGS
from bench.warm_instructions import (
    WarmCount,
    baseline_of,
    label_headers,
    rows,
    target_of,
    variables_of,
)


def counts_of(config: str, event: str, short: int, long_: int, round_: int = 0) -> list[WarmCount]:
    return [
        WarmCount(config, event, round_, 5, 2 * short, short),
        WarmCount(config, event, round_, 25, 2 * long_, long_),
    ]


def test_a_warm_invocation_is_the_difference_over_the_counted_invocations() -> None:
    counts = [
        *counts_of("disabled, same label", "business.json", 1_000_000, 1_000_000 + 20 * 1_000),
        *counts_of("disabled, new label each", "business.json", 900_000, 900_000 + 20 * 1_000),
        *counts_of("full, same label", "business.json", 1_500_000, 1_500_000 + 20 * 1_040),
        *counts_of("full, new label each", "business.json", 1_500_000, 1_500_000 + 20 * 1_400),
    ]
    same, new = rows(counts, 5, 20)
    assert (same["config"], same["off"], same["value"]) == ("full, same label", 1_000, 1_040)
    assert same["ratio"] == pytest.approx(1.04)
    assert same["ratio_all"] == pytest.approx(1.04)  # every thread: here twice the main one
    assert (same["target"], same["pass"]) == ("<= 1.05x", True)
    assert (new["target"], new["pass"]) == ("<= 1.30x", False)  # 1.40x


def test_a_pair_with_a_missing_count_is_left_out_and_rounds_give_the_median() -> None:
    counts = [
        *counts_of("disabled", "health.json", 100, 100 + 20 * 1_000),
        *counts_of("disabled, same label", "health.json", 100, 100 + 20 * 1_000),
        *counts_of("full, no labels", "health.json", 500, 500 + 20 * 1_010, round_=0),
        *counts_of("full, no labels", "health.json", 500, 500 + 20 * 1_030, round_=1),
        *counts_of("full, no labels", "health.json", 500, 500 + 20 * 1_020, round_=2),
        WarmCount("full, same label", "health.json", 0, 5, 1_000, 500),
        WarmCount("full, same label", "health.json", 0, 25, None, None),  # failed: no row
    ]
    [row] = rows(counts, 5, 20)
    assert row["value"] == 1_020
    assert row["spread"] == pytest.approx(20 / 1_020)


def test_the_batch_events_targets_are_the_timed_rows_and_new_labels_keep_theirs() -> None:
    assert target_of("full, no labels", "admin-batch-process.json") == 1.10
    assert target_of("full+branch, same label", "admin-batch-process.json") == 1.20
    assert target_of("full+branch, new label each", "admin-batch-process.json") == 1.30
    assert target_of("full, same label", "health.json") == 1.05


def test_labels_are_sent_as_lambdas_client_context_and_labels_off_sets_none() -> None:
    def label(headers: dict[str, str] | None) -> str | None:
        if headers is None:
            return None
        custom = json.loads(base64.b64decode(headers["X-Amz-Client-Context"]))["custom"]
        return str(custom["coverage-label"])

    assert label(label_headers(None, 3)) is None
    assert label(label_headers("same", 1)) == label(label_headers("same", 2))
    assert label(label_headers("new", 1)) != label(label_headers("new", 2))
    assert variables_of("full, labels off")["COVERAGE_LABELS"] == "none"
    assert "COVERAGE_LABELS" not in variables_of("full, no labels")
    assert variables_of("disabled") == {"COVERAGE_ENABLED": "false"}
    assert set(LABEL_CONFIGS) >= {"disabled", "full, labels off", "full+branch, new label each"}


def test_a_labelled_rows_baseline_is_coverage_off_sent_the_same_labels() -> None:
    counts = [
        *counts_of("disabled", "business.json", 0, 20 * 1_000),
        *counts_of("disabled, same label", "business.json", 0, 20 * 1_020),
        *counts_of("full, same label", "business.json", 0, 20 * 1_050),
        *counts_of("full, no labels", "business.json", 0, 20 * 1_030),
    ]
    same, none = sorted(rows(counts, 5, 20), key=lambda r: r["config"], reverse=True)
    assert (same["config"], same["off"]) == ("full, same label", 1_020)
    assert (none["config"], none["off"]) == ("full, no labels", 1_000)
    assert baseline_of("full+branch, new label each") == "disabled, new label each"
    assert baseline_of("full, labels off") == "disabled"
