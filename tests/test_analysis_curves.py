"""Learning-curve verdicts on synthetic decreasing, converged and overfitting curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tunescope.analysis.curves import further_training_verdict, loss_improvement, overfitting_verdict, smooth


def make_records(train_fn, val_fn, steps: int = 300, val_every: int = 10, noise: float = 0.02, seed: int = 0):
    """metrics.jsonl-shaped records: a train record per step, a val record every ``val_every``."""
    rng = np.random.default_rng(seed)
    recs = []
    for s in range(1, steps + 1):
        recs.append({"kind": "train", "step": s, "epoch": s / steps, "loss": float(train_fn(s) + rng.normal(0, noise))})
        if s % val_every == 0:
            recs.append({"kind": "val", "step": s, "val_loss": float(val_fn(s)), "val_token_accuracy": 0.5})
    recs.append({"kind": "summary", "steps": steps})
    return recs


def still_decreasing():
    return make_records(lambda s: 0.5 + 2 * math.exp(-s / 400), lambda s: 0.6 + 2 * math.exp(-s / 400))


def converged():
    return make_records(lambda s: 0.5 + 2 * math.exp(-s / 20), lambda s: 0.6 + 2 * math.exp(-s / 20))


def overfitting():
    # Val loss bottoms out around step 100 and then climbs while train loss keeps falling.
    return make_records(lambda s: 0.3 + 2 * math.exp(-s / 40) - 0.0005 * s,
                        lambda s: 0.6 + 2 * math.exp(-s / 40) + 0.002 * s)


def test_smooth_matches_tensorboard_debiased_ema():
    values = [1.0, 2.0, 3.0, 4.0]
    w = 0.6
    expected, last = [], 0.0
    for k, v in enumerate(values, start=1):
        last = last * w + (1 - w) * v
        expected.append(last / (1 - w**k))
    assert smooth(values, w) == pytest.approx(expected)
    assert smooth(values, 0.0) == values
    assert smooth([5.0, 5.0, 5.0], 0.9) == pytest.approx([5.0, 5.0, 5.0])  # debiasing: no pull to 0
    nan_out = smooth([1.0, float("nan"), 3.0], 0.5)
    assert math.isnan(nan_out[1]) and nan_out[2] == pytest.approx(smooth([1.0, 3.0], 0.5)[1])
    with pytest.raises(ValueError):
        smooth(values, 1.0)


def test_loss_improvement_reports_steps_and_percentages():
    recs = [{"kind": "train", "step": s, "loss": v} for s, v in [(1, 2.0), (2, 1.0), (3, 1.5)]]
    recs += [{"kind": "val", "step": 2, "val_loss": 2.5}, {"kind": "val", "step": 3, "val_loss": 2.0}]
    out = loss_improvement(recs)
    json.dumps(out)
    t = out["train"]
    assert (t["first"], t["best"], t["last"]) == ({"step": 1, "value": 2.0}, {"step": 2, "value": 1.0},
                                                  {"step": 3, "value": 1.5})
    assert t["improvement_first_to_best_pct"] == pytest.approx(50.0)
    assert t["improvement_first_to_last_pct"] == pytest.approx(25.0)
    assert out["val"]["improvement_first_to_last_pct"] == pytest.approx(20.0)
    assert loss_improvement([])["available"] is False


def test_further_training_yes_on_a_still_decreasing_curve():
    out = further_training_verdict(still_decreasing())
    json.dumps(out)
    assert out["further_training_would_likely_help"] == "yes"
    assert out["basis"] == "val"
    val = out["val"]
    assert val["slope_per_step"] < 0 and abs(val["slope_per_step"]) > 2 * val["slope_stderr"]
    assert val["window_start_step"] >= 300 - 0.15 * 299 - 1 and val["window_end_step"] == 300
    assert val["relative_change_pct"] < 0
    assert out["summary"].startswith("further training would likely help: yes")


def test_further_training_no_on_converged_and_overfitting_curves():
    conv = further_training_verdict(converged())
    assert conv["further_training_would_likely_help"] == "no"
    assert abs(conv["val"]["relative_change_pct"]) < 0.5
    # The noise-free val curve still creeps down "significantly"; only the practical threshold says no.
    assert conv["val"]["decreasing_significantly"] and not conv["val"]["decrease_large_enough"]
    assert further_training_verdict(converged(), min_rel_decrease_pct=0.0)["further_training_would_likely_help"] == "yes"
    over = further_training_verdict(overfitting())
    assert over["further_training_would_likely_help"] == "no"
    assert over["val"]["slope_per_step"] > 0
    # Train loss still falls in the overfitting run: the verdict must not rest on it.
    assert over["train"]["decreasing_significantly"]


def test_further_training_falls_back_to_train_loss_without_validation():
    recs = [r for r in still_decreasing() if r["kind"] != "val"]
    out = further_training_verdict(recs)
    assert out["basis"] == "train" and out["further_training_would_likely_help"] == "yes"
    assert out["val"]["available"] is False
    assert further_training_verdict([])["available"] is False


def test_sparse_validation_widens_window_and_says_so():
    recs = make_records(lambda s: 1 / s, lambda s: 1 + 10 / s, steps=100, val_every=25)
    out = further_training_verdict(recs)
    assert out["val"]["window_extended"] is True and out["val"]["n_points"] == 3
    assert out["val"]["window_start_step"] == 50


def test_overfitting_verdict_detects_rise_after_minimum():
    out = overfitting_verdict(overfitting())
    json.dumps(out)
    assert out["overfitting"] is True
    assert 80 <= out["best_step"] <= 130
    assert out["verdict"] == (f"overfitting: validation loss rose {out['val_increase_since_best_pct']:.1f}% "
                              f"after step {out['best_step']}")
    assert out["val_increase_since_best"] == pytest.approx(out["last_val_loss"] - out["best_val_loss"])
    assert out["gap_at_last"]["val_step"] == 300 and out["gap_at_last"]["train_step"] == 300
    assert out["gap_at_last"]["gap"] > out["gap_at_best"]["gap"] > 0


def test_overfitting_verdict_no_evidence_and_insufficient_points():
    assert overfitting_verdict(still_decreasing())["verdict"] == "no evidence of overfitting"
    # A flat end with a tiny wiggle stays under the 1% threshold.
    conv = overfitting_verdict(converged())
    assert conv["verdict"] == "no evidence of overfitting" and conv["overfitting"] is False
    few = [{"kind": "val", "step": s, "val_loss": 1.0} for s in (10, 20)]
    out = overfitting_verdict(few)
    assert out["verdict"] == "insufficient validation points" and out["available"] is False
