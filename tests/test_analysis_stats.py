"""Paired statistics checked against scipy / statsmodels on known tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from tunescope.analysis.stats import compare_tasks, holm, mcnemar, mean_stderr, paired_bootstrap_ci


def _paired_lists(n11: int, b: int, c: int, n00: int) -> tuple[list[int], list[int]]:
    """0/1 lists realising the 2×2 table [[n11, b], [c, n00]] (rows: base right/wrong)."""
    base = [1] * n11 + [1] * b + [0] * c + [0] * n00
    tuned = [1] * n11 + [0] * b + [1] * c + [0] * n00
    return base, tuned


def test_mean_stderr_is_sample_std_over_sqrt_n():
    values = [1, 0, 1, 1, 0, 1, 1, 1]
    assert mean_stderr(values) == pytest.approx(np.std(values, ddof=1) / math.sqrt(len(values)))
    assert mean_stderr([0.5]) is None


@pytest.mark.parametrize(
    ("n11", "b", "c", "n00"),
    [(50, 3, 9, 20), (10, 0, 0, 5), (10, 5, 5, 5), (100, 30, 12, 40), (10, 12, 13, 4), (3, 1, 0, 2),
     (200, 40, 61, 80), (7, 0, 24, 1)],
)
def test_mcnemar_matches_statsmodels(n11, b, c, n00):
    base, tuned = _paired_lists(n11, b, c, n00)
    ours = mcnemar(base, tuned)
    exact = b + c < 25
    ref = sm_mcnemar(np.array([[n11, b], [c, n00]]), exact=exact, correction=True)
    assert (ours["b"], ours["c"], ours["n"]) == (b, c, n11 + b + c + n00)
    assert ours["method"] == ("exact binomial" if exact else "chi-square with continuity correction")
    assert ours["statistic"] == pytest.approx(ref.statistic)
    assert ours["p_value"] == pytest.approx(ref.pvalue)


def test_mcnemar_known_value_and_edge_cases():
    # 30 vs 12 discordant pairs: chi2 = (|30-12|-1)^2 / 42 = 289/42.
    r = mcnemar(*_paired_lists(5, 30, 12, 5))
    assert r["statistic"] == pytest.approx(289 / 42)
    assert r["p_value"] == pytest.approx(sps.chi2.sf(289 / 42, 1))
    assert mcnemar([], [])["available"] is False
    with pytest.raises(ValueError):
        mcnemar([1, 0], [1])


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(3)
    for _ in range(5):
        p = rng.uniform(0, 0.2, size=9)
        assert holm(p.tolist()) == pytest.approx(multipletests(p, method="holm")[1].tolist())
    fixed = [0.01, 0.04, 0.03, 0.005, 0.5, 0.02]
    assert holm(fixed) == pytest.approx(multipletests(fixed, method="holm")[1].tolist())


def test_holm_passes_missing_values_through():
    assert holm([0.01, None, 0.04, float("nan")]) == pytest.approx([0.02, None, 0.04, None])
    assert holm([]) == []


def test_paired_bootstrap_is_deterministic_and_brackets_the_mean():
    rng = np.random.default_rng(7)
    base = rng.integers(0, 2, 300)
    tuned = np.where(rng.random(300) < 0.2, 1, base)  # tuned fixes ~20% of items
    a = paired_bootstrap_ci(base, tuned, n_boot=2000, seed=1)
    b = paired_bootstrap_ci(base, tuned, n_boot=2000, seed=1)
    assert a == b
    assert a["ci_low"] < a["mean_diff"] < a["ci_high"]
    assert a["mean_diff"] == pytest.approx(float(np.mean(tuned - base)))
    # Roughly mean ± 1.96 SE of the differences for a large sample.
    se = np.std(tuned - base, ddof=1) / math.sqrt(300)
    assert a["ci_high"] - a["ci_low"] == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert paired_bootstrap_ci(base, tuned, n_boot=2000, seed=2) != a
    assert paired_bootstrap_ci([1, 1, 1], [1, 1, 1])["ci_low"] == 0.0
    assert paired_bootstrap_ci([1], [0])["available"] is False


def _records(values: list[int], key: str, offset: int = 0) -> list[dict]:
    return [{"doc_id": i + offset, "metrics": {key: v}} for i, v in enumerate(values)]


def test_compare_tasks_flags_forgetting_only_on_non_target_tasks():
    key, acc = "exact_match,strict-match", "acc"
    rng = np.random.default_rng(0)
    n = 400
    gsm_base = rng.integers(0, 2, n).tolist()
    gsm_tuned = [1 if rng.random() < 0.3 else v for v in gsm_base]  # big gain on the target task
    arc_base = [1] * 300 + [0] * 100
    arc_tuned = [0] * 60 + [1] * 240 + [0] * 100  # 15-point drop on a non-target task
    hella = rng.integers(0, 2, n).tolist()  # unchanged
    out = compare_tasks(
        base_samples={"gsm8k": _records(gsm_base, key), "arc": _records(arc_base, acc),
                      "hella": _records(hella, acc)},
        tuned_samples={"gsm8k": _records(gsm_tuned, key), "arc": _records(arc_tuned, acc),
                       "hella": _records(hella, acc)},
        metric_keys={"gsm8k": [key], "arc": [acc], "hella": [acc], "missing": [acc]},
        target_tasks={"gsm8k"},
        n_boot=1000,
    )
    json.dumps(out)  # plain JSON all the way down
    assert out["forgetting_tasks"] == ["arc"]
    assert out["tasks"]["gsm8k"]["forgetting"] is None
    assert out["tasks"]["hella"]["forgetting"] is False
    assert out["skipped"] == [{"task": "missing", "reason": "no base records"}]
    arc = next(c for c in out["comparisons"] if c["task"] == "arc")
    assert arc["delta_points"] == pytest.approx(-15.0)
    assert (arc["test"]["b"], arc["test"]["c"]) == (60, 0)
    assert arc["base_stderr"] == pytest.approx(mean_stderr(arc_base))
    assert arc["ci_points"]["low"] < -15 < arc["ci_points"]["high"] < 0
    # Holm over the three comparisons that produced a p-value.
    ps = [c["p_value"] for c in out["comparisons"]]
    assert [c["p_holm"] for c in out["comparisons"]] == pytest.approx(
        multipletests(ps, method="holm")[1].tolist())
    gsm = next(c for c in out["comparisons"] if c["task"] == "gsm8k")
    assert gsm["significant"] and gsm["delta_points"] > 0


def test_compare_tasks_aligns_on_doc_id_and_respects_threshold():
    acc = "acc"
    base = _records([1] * 100, acc)
    tuned = list(reversed(_records([1] * 99 + [0], acc)))  # same docs, other order, one drop
    tuned += _records([1, 1], acc, offset=1000)  # docs the base run never saw
    out = compare_tasks({"arc": base}, {"arc": tuned}, {"arc": [acc]}, target_tasks=set(), n_boot=500)
    comp = out["comparisons"][0]
    assert (comp["n"], comp["n_base_only"], comp["n_tuned_only"]) == (100, 0, 2)
    assert comp["delta_points"] == pytest.approx(-1.0)
    assert out["tasks"]["arc"]["forgetting"] is False  # 1 point < 2-point threshold, and not significant


def test_compare_tasks_continuous_metric_uses_paired_t_test():
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.1, 50)
    tuned = base + rng.normal(0.02, 0.05, 50)
    recs = lambda v: [{"doc_id": i, "metrics": {"f1": float(x)}} for i, x in enumerate(v)]  # noqa: E731
    out = compare_tasks({"t": recs(base)}, {"t": recs(tuned)}, {"t": ["f1"]}, {"t"}, n_boot=500)
    test = out["comparisons"][0]["test"]
    assert test["method"] == "paired t-test"
    assert test["p_value"] == pytest.approx(sps.ttest_rel(tuned, base).pvalue)


def test_compare_tasks_without_overlap_is_unavailable():
    out = compare_tasks({"a": []}, {"a": []}, {"a": ["acc"]}, set())
    assert out["available"] is False and out["skipped"]
