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
        recs.append({"kind": "train", "step": s, "epoch": s / steps,
                     "loss": float(train_fn(s) + rng.normal(0, noise))})
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
    assert val["slope_per_step"] < 0 and val["p_value"] < 0.05 and val["decrease_large_enough"]
    assert val["window_start_step"] >= 300 - 0.15 * 299 - 1 and val["window_end_step"] == 300
    assert val["relative_change_pct"] < 0
    assert out["summary"].startswith("further training would likely help: yes")


def test_further_training_no_on_converged_and_overfitting_curves():
    conv = further_training_verdict(converged())
    assert conv["further_training_would_likely_help"] == "no"
    assert abs(conv["val"]["relative_change_pct"]) < 0.5
    # The noise-free val curve still creeps down "significantly"; the no rests on a test of the practical
    # threshold: a fall of 1% or more over the window is rejected.
    assert conv["val"]["decreasing_significantly"] and not conv["val"]["decrease_large_enough"]
    assert conv["val"]["p_not_falling_enough"] < 0.05
    assert conv["summary"].startswith(
        "further training would likely help: no — the loss is not falling by 1%")
    assert further_training_verdict(converged(), min_rel_decrease_pct=0.0)[
        "further_training_would_likely_help"] == "yes"
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
    assert out["overfitting"] is True and out["outcome"] == "overfitting"
    assert 80 <= out["best_step"] <= 130
    assert out["verdict"].startswith(
        f"overfitting: validation loss rose {out['val_increase_since_best_pct']:.1f}% "
        f"after step {out['best_step']} (validation loss slope ")
    assert out["fit"]["window_start_step"] == out["best_step"] and out["fit"]["p_value"] < 0.05
    assert out["val_increase_since_best"] == pytest.approx(out["last_val_loss"] - out["best_val_loss"])
    assert out["gap_at_last"]["val_step"] == 300 and out["gap_at_last"]["train_step"] == 300
    assert out["gap_at_last"]["gap"] > out["gap_at_best"]["gap"] > 0


def test_no_overfitting_only_where_a_rise_is_rejected_and_insufficient_points():
    for curve in (still_decreasing(), converged()):
        out = overfitting_verdict(curve)
        assert out["outcome"] == "no overfitting" and out["overfitting"] is False
        assert out["verdict"].startswith("no overfitting: a rise of 1% or more over the window is rejected")
        assert out["fit"]["p_rise_below_threshold"] < 0.05
    few = [{"kind": "val", "step": s, "val_loss": 1.0} for s in (10, 20)]
    out = overfitting_verdict(few)
    assert out["verdict"] == "insufficient validation points" and out["available"] is False


# The three validation points of a short run: slope -0.013 ± 0.0037 per step, t = -3.56, p = 0.175 (1 df).
THREE_POINTS = [{"kind": "train", "step": s, "loss": 1.2 - 0.01 * s} for s in range(1, 28)] + [
    {"kind": "val", "step": s, "val_loss": v} for s, v in ((9, 1.0), (18, 0.826), (27, 0.766))]


def test_three_validation_points_with_p_0175_are_inconclusive_not_yes():
    out = further_training_verdict(THREE_POINTS)
    val = out["val"]
    assert val["n_points"] == 3 and val["t_stat"] == pytest.approx(-3.56, abs=0.01)
    assert val["p_value"] == pytest.approx(0.175, abs=0.001)
    assert out["further_training_would_likely_help"] == "inconclusive"
    assert out["summary"] == ("further training would likely help: inconclusive — validation loss slope "
                              "-0.013 ± 0.0037 per step, p = 0.175, 3 validation points (steps 9–27), "
                              "-23.85% over the window")
    # The old rule (|slope| > 2·SE) would have said yes; a stricter alpha cannot make it one either.
    assert abs(val["slope_per_step"]) > 2 * val["slope_stderr"]
    assert further_training_verdict(THREE_POINTS, alpha=0.2)["further_training_would_likely_help"] == "yes"
    # Falling at the end: a rise is not rejected with 3 points either, so overfitting is inconclusive too.
    of = overfitting_verdict(THREE_POINTS)
    assert (of["outcome"] == "inconclusive" and of["overfitting"] is None
            and of["verdict"].startswith("inconclusive: "))


def test_noisy_flat_validation_loss_is_inconclusive_both_ways():
    rng = np.random.default_rng(3)
    noisy = [{"kind": "val", "step": s, "val_loss": 1.0 + float(rng.normal(0, 0.05))}
             for s in range(10, 60, 10)]
    ft = further_training_verdict(noisy, tail_fraction=1.0)
    assert ft["basis"] == "val" and ft["further_training_would_likely_help"] == "inconclusive"
    assert ft["val"]["p_value"] >= 0.05 and ft["val"]["p_not_falling_enough"] >= 0.05
    assert overfitting_verdict(noisy)["outcome"] == "inconclusive"
