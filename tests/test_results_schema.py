"""Reading results.json scores: which keys are scores, their names, the headline metric, item counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunescope.store.scores import (
    display_order,
    finite_float,
    headline_metric,
    metric_keys,
    metric_label,
    sample_key,
    stderr_key,
    task_n,
)

GSM8K_ENTRY = {
    "alias": "gsm8k",
    "exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": 0.04,
    "exact_match,flexible-extract": 0.5, "exact_match_stderr,flexible-extract": 0.05,
    "exact_match,maj@3": 0.5, "exact_match_stderr,maj@3": "N/A",
    "sample_len": 100, "flagged,none": True,
}


@pytest.mark.parametrize(("value", "expected"), [
    (0.25, 0.25), (3, 3.0), ("0.5", 0.5), (np.float32(0.5), 0.5), (True, 1.0),
    (None, None), ("N/A", None), ([1], None), (math.nan, None), (math.inf, None), (-math.inf, None),
])
def test_finite_float(value, expected):
    result = finite_float(value)
    assert result == expected and (result is None or type(result) is float)


def test_metric_keys_are_the_scores_in_file_order():
    # Not the alias, the stderr entries, a key without a filter, or a boolean.
    assert metric_keys(GSM8K_ENTRY) == ["exact_match,strict-match", "exact_match,flexible-extract",
                                        "exact_match,maj@3"]
    assert (metric_keys({"acc,none": 1, "acc_norm,none": 0, "acc_stderr,none": 0.1})
            == ["acc,none", "acc_norm,none"])


def test_key_spellings():
    assert stderr_key("acc_norm,none") == "acc_norm_stderr,none"
    assert stderr_key("exact_match,strict-match") == "exact_match_stderr,strict-match"
    assert sample_key("acc,none") == "acc" and sample_key("acc") == "acc"
    assert sample_key("exact_match,flexible-extract") == "exact_match,flexible-extract"
    assert metric_label("acc_norm,none") == "accuracy (length-normalised)"
    assert metric_label("exact_match,maj@3") == "exact_match,maj@3"


def test_display_order_puts_labelled_metrics_first():
    keys = ["exact_match,maj@3", "acc,none", "bleu,none", "exact_match,strict-match", "acc_norm,none"]
    assert sorted(keys, key=display_order) == [
        "exact_match,strict-match", "acc,none", "acc_norm,none", "bleu,none", "exact_match,maj@3"]


@pytest.mark.parametrize(("keys", "expected"), [
    (["exact_match,flexible-extract", "exact_match,strict-match"], "exact_match,strict-match"),
    (["acc,none", "acc_norm,none"], "acc_norm,none"),
    (["acc,none"], "acc,none"),
    # Without a primary metric: the first in display order, whatever order the keys come in.
    (["exact_match,maj@3", "exact_match,flexible-extract"], "exact_match,flexible-extract"),
    (["exact_match,maj@5", "bleu,none"], "bleu,none"),
    ([], None),
])
def test_headline_metric(keys, expected):
    assert headline_metric(keys) == expected
    assert headline_metric(reversed(keys)) == expected


def test_task_n_prefers_the_recorded_count():
    results = {"n-samples": {"gsm8k": {"original": 1319, "effective": 50}, "hellaswag": {"original": 10}}}
    assert task_n(results, "gsm8k", [{}] * 3) == 50
    assert task_n(results, "hellaswag", [{}] * 3) == 3
    assert task_n(results, "hellaswag") is None and task_n({}, "mmlu") is None
