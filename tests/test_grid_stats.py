"""The grid's stratified test (CMH over seeds on paired discordant counts) on simulated cells whose
truth is known.

The simulation has what real grids have: items of very different difficulty (a logit per item), a
seed effect shared by both cells of a seed (a lucky data order helps both), and, for the alternative,
a true gain of the second cell on every item. The detection rate must match the power computed from
the simulation's own parameters, and with no difference the false-positive rate must stay near alpha.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from tunescope.analysis.stratified import cmh_paired, discordant_counts, heterogeneity, paired_strata

ALPHA = 0.05


def _probabilities(rng, n_items, seeds, gain_logit):
    """(p_A, p_B) per seed and item."""
    difficulty = rng.normal(0.0, 1.5, n_items)
    out = []
    for _ in range(seeds):
        shared = rng.normal(0.0, 0.3)  # the seed moves both cells alike
        logit = difficulty + shared
        out.append((1 / (1 + np.exp(-logit)), 1 / (1 + np.exp(-(logit + gain_logit)))))
    return out


def _simulate(rng, n_items=200, seeds=3, gain_logit=0.0):
    probs = _probabilities(rng, n_items, seeds, gain_logit)
    strata = [discordant_counts(rng.random(n_items) < pa, rng.random(n_items) < pb) for pa, pb in probs]
    return strata, probs


def _expected_power(probs, alpha=ALPHA):
    """Normal approximation of the chi-square test's power from the true per-item probabilities."""
    pb = sum(float(np.sum(pa * (1 - pc))) for pa, pc in probs)   # A right, B wrong
    pc = sum(float(np.sum((1 - pa) * pc)) for pa, pc in probs)   # A wrong, B right
    mean = pc - pb
    var = sum(float(np.sum(pa * (1 - q) + (1 - pa) * q - ((1 - pa) * q - pa * (1 - q)) ** 2))
              for pa, q in probs)
    z = sps.norm.ppf(1 - alpha / 2)
    # The test's threshold on |c - b| is z * sqrt(b + c) + 1 (continuity), b + c ≈ its expectation.
    threshold = z * np.sqrt(pb + pc) + 1
    return float(sps.norm.sf((threshold - mean) / np.sqrt(var))
                 + sps.norm.cdf((-threshold - mean) / np.sqrt(var)))


def test_no_difference_gives_about_alpha_false_positives():
    rng = np.random.default_rng(7)
    reps = 1500
    hits = sum(cmh_paired(_simulate(rng)[0])["p_value"] < ALPHA for _ in range(reps))
    rate = hits / reps
    # The continuity correction makes the test slightly conservative; 3 binomial SEs above alpha is the bound.
    assert rate <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / reps), rate
    assert rate >= 0.01, rate


def test_a_real_difference_is_detected_at_the_expected_rate():
    rng = np.random.default_rng(11)
    reps = 600
    for gain in (0.25, 0.45):
        detected, expected = 0, []
        for _ in range(reps):
            strata, probs = _simulate(rng, gain_logit=gain)
            detected += cmh_paired(strata)["p_value"] < ALPHA
            expected.append(_expected_power(probs))
        rate, power = detected / reps, float(np.mean(expected))
        assert abs(rate - power) < 4 * np.sqrt(power * (1 - power) / reps) + 0.02, (gain, rate, power)
    assert power > 0.8  # the larger gain on 200 items × 3 seeds is found most of the time


def test_small_counts_use_the_exact_conditional_test():
    res = cmh_paired([(0, 5), (1, 4)])
    assert res["variant"].startswith("exact") and res["c"] == 9 and res["b"] == 1
    assert abs(res["p_value"] - sps.binomtest(9, 10, 0.5).pvalue) < 1e-12
    assert cmh_paired([(0, 0), (0, 0)])["p_value"] == 1.0
    assert cmh_paired([])["available"] is False


def test_heterogeneity_flags_seeds_that_disagree():
    assert heterogeneity([(2, 30), (30, 2)]) < 0.001
    assert heterogeneity([(10, 12), (11, 12)]) > 0.5
    assert heterogeneity([(3, 0)]) is None


def test_items_pair_within_their_seed_only():
    a = {1: {"x": 1, "y": 0, "z": 1}, 2: {"x": 0, "y": 0}}
    b = {1: {"x": 0, "y": 1, "q": 1}, 2: {"x": 1, "y": 0}, 3: {"x": 1}}
    strata, detail = paired_strata(a, b)
    assert strata == [(1, 1), (0, 1)]
    assert detail[1]["n"] == 2 and detail[2]["delta_points"] == 50.0 and 3 not in detail


def test_grid_verdicts_are_the_test_at_alpha_and_inconclusive_otherwise():
    from tunescope.grid.comparisons import holm_verdicts
    from tunescope.grid.summary import conclusions

    comps = [{"test": {"available": True, "p_value": 0.001, "heterogeneity_p": 0.5}},
             {"test": {"available": True, "p_value": 0.2, "heterogeneity_p": None}},
             {"test": {"available": False, "reason": "no seed with the same items in both"}}]
    holm_verdicts(comps, alpha=0.05)
    assert [c["test"]["verdict"] for c in comps] == ["exceeds seed noise", "inconclusive", "not tested"]
    assert (comps[0]["test"]["p_holm"] == pytest.approx(0.002)
            and comps[1]["test"]["p_holm"] == pytest.approx(0.2))

    none_significant = [{"test": {"available": True, "significant": False, "p_holm": p}} for p in (0.3, 0.12)]
    row = {"task": "heldout", "metric": "exact_match,strict-match",
           "cells": {"a": {"mean": 0.5, "se": 0.01, "k": 2, "uncertainty": "seeds", "sd": 0.01}},
           "bases": {}, "best": ["a"], "higher_is_better": True}
    data = {"failed": [], "runs": [], "rows": [row], "primary": {"task": "heldout", "metric": row["metric"]},
            "comparisons": none_significant, "alpha": 0.05, "costs": []}
    texts = [c["text"] for c in conclusions(data)]
    assert ("None of the 2 paired comparisons exceeds seed noise: each is inconclusive (stratified test, "
            "Holm-adjusted p ≥ 0.05; smallest 0.12).") in texts
