"""Learning-curve analysis over ``metrics.jsonl`` records (see ARCHITECTURE.md).

Three questions, each answered with the numbers behind the answer:

* how much did the loss improve (first logged value vs best and vs last)?
* would further training likely help (is the loss still falling at the end)?
* is there evidence of overfitting (did validation loss rise after its minimum)?
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunescope.report.formatting import formatted
from tunescope.store.scores import finite_float

from . import trend
from ._util import unavailable

# A least-squares slope needs n - 2 >= 1 residual degrees of freedom for a standard error.
MIN_FIT_POINTS = 3


def smooth(values: Sequence[float], alpha: float) -> list[float]:
    """TensorBoard-style exponential moving average with debiasing.

    ``alpha`` is TensorBoard's smoothing weight: 0 returns the input unchanged, values towards 1
    smooth more. The running average starts at 0 and is divided by ``1 - alpha**k`` (k = number of
    finite points seen), so the first points are not dragged towards zero. Non-finite values are
    passed through unchanged and do not update the average (as TensorBoard does).
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    out: list[float] = []
    last = 0.0
    k = 0
    for v in values:
        v = float(v)
        if not math.isfinite(v):
            out.append(v)
            continue
        k += 1
        last = last * alpha + (1.0 - alpha) * v
        debias = 1.0 - alpha**k if alpha > 0 else 1.0
        out.append(last / debias)
    return out


def _series(records: Sequence[Mapping[str, Any]], kind: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric, sorted by step, skipping missing / non-finite values.

    If a step was logged twice (e.g. a resumed run) the later record wins.
    """
    by_step: dict[int, float] = {}
    for rec in records:
        if rec.get("kind") != kind:
            continue
        step, value = rec.get("step"), finite_float(rec.get(key))
        if step is None or value is None:
            continue
        by_step[int(step)] = value
    steps = np.array(sorted(by_step), dtype=float)
    return steps, np.array([by_step[int(s)] for s in steps], dtype=float)


def _train(records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    return _series(records, "train", "loss")


def _val(records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    return _series(records, "val", "val_loss")


def _pct_drop(first: float, value: float) -> float | None:
    """Improvement in percent of the first value (positive = the loss went down)."""
    return None if first == 0 else finite_float(100.0 * (first - value) / first)


def _improvement(steps: np.ndarray, values: np.ndarray, name: str) -> dict[str, Any]:
    if values.size == 0:
        return unavailable(f"no {name} records")
    best = int(np.argmin(values))  # argmin takes the earliest step on ties
    first, last = float(values[0]), float(values[-1])
    return {
        "available": True,
        "first": {"step": int(steps[0]), "value": first},
        "best": {"step": int(steps[best]), "value": float(values[best])},
        "last": {"step": int(steps[-1]), "value": last},
        "improvement_first_to_best_pct": _pct_drop(first, float(values[best])),
        "improvement_first_to_last_pct": _pct_drop(first, last),
        "n_points": int(values.size),
    }


def loss_improvement(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Train and validation loss improvement, first logged value vs best and vs last.

    Raw logged values are used. Note that the "best" train loss is the minimum of a noisy per-step
    series, so first-to-best overstates the train improvement; first-to-last is the fairer number.

    Returns ``{"available", "train": S, "val": S}`` with each ``S`` either unavailable or
    ``{"available", "first": {"step", "value"}, "best": {...}, "last": {...},
    "improvement_first_to_best_pct", "improvement_first_to_last_pct", "n_points"}``.
    """
    train = _improvement(*_train(records), "train loss")
    val = _improvement(*_val(records), "validation loss")
    out = {"available": train["available"] or val["available"], "train": train, "val": val}
    if not out["available"]:
        out["reason"] = "no train or validation loss records"
    return out


def _window(steps: np.ndarray, start: float, extend_to: int = MIN_FIT_POINTS) -> tuple[np.ndarray, bool]:
    """Mask of the points at ``step >= start``, widened backwards to the last ``extend_to`` points if
    fewer."""
    mask = steps >= start
    extended = int(mask.sum()) < extend_to
    if extended:
        mask = np.zeros_like(mask)
        mask[-extend_to:] = True
    return mask, bool(extended)


def _tail_fit(steps: np.ndarray, values: np.ndarray, start: float, name: str, min_rel_decrease_pct: float,
              alpha: float) -> dict[str, Any]:
    """Least-squares line through the points at ``step >= start`` and the two tests of the verdict.

    If the window holds fewer than three points (validation is logged sparsely), it is widened backwards
    to the last three points and ``window_extended`` says so. ``p_value`` tests slope ≠ 0 (two-sided);
    ``p_not_falling_enough`` tests "the line falls by less than ``min_rel_decrease_pct``% over the window"
    (one-sided, against the slope of exactly that fall).
    """
    if values.size < MIN_FIT_POINTS:
        return unavailable(f"only {values.size} {name} point(s); need {MIN_FIT_POINTS} for a slope")
    mask, extended = _window(steps, start)
    x, y = steps[mask], values[mask]
    fit = trend.line_fit(x, y)
    slope, se = fit["slope"], fit["se"]
    start_fit = fit["intercept"] + slope * x[0]
    span = float(x[-1] - x[0])
    # Relative change over the tail, read off the fitted line so per-step noise does not dominate.
    rel = None if start_fit == 0 else finite_float(100.0 * slope * span / start_fit)
    # The slope of a fall of exactly min_rel_decrease_pct percent over the window.
    margin = -abs(start_fit) * min_rel_decrease_pct / 100.0 / span if span > 0 else 0.0
    p_enough = trend.p_above(fit, margin)
    p = fit["p_value"]
    return {
        "available": True,
        "n_points": int(x.size),
        "window_start_step": int(x[0]),
        "window_end_step": int(x[-1]),
        "window_extended": extended,
        "slope_per_step": finite_float(slope),
        "slope_stderr": finite_float(se),
        "t_stat": finite_float(slope / se) if se > 0 else None,
        "p_value": p,
        "relative_change_pct": rel,
        "margin_slope_per_step": finite_float(margin),
        "p_not_falling_enough": finite_float(p_enough),
        "alpha": alpha,
        "decreasing_significantly": bool(slope < 0 and p is not None and p < alpha),
        "decrease_large_enough": rel is not None and -rel >= min_rel_decrease_pct,
        "not_falling_enough_significantly": bool(p_enough < alpha),
    }


def _figures(fit: dict, name: str) -> str:
    """The numbers a learning-curve verdict rests on, in one phrase."""
    return (f"{name} loss slope {formatted(fit['slope_per_step'], '.3g')} ± "
            f"{formatted(fit['slope_stderr'], '.2g')} per step, {trend.p_text(fit['p_value'])}, "
            f"{fit['n_points']} {name} points (steps {fit['window_start_step']}–{fit['window_end_step']}), "
            f"{formatted(fit['relative_change_pct'], '+.2f')}% over the window")


def further_training_verdict(
    records: Sequence[Mapping[str, Any]],
    tail_fraction: float = 0.15,
    smoothing: float = 0.0,
    min_rel_decrease_pct: float = 1.0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Is the loss still falling at the end of training? "yes", "no" or "inconclusive", each from a test.

    Fits a least-squares line to train and validation loss over the last ``tail_fraction`` of the step
    range. The answer is

    * "yes" when the slope is negative with two-sided p < ``alpha`` *and* the fitted line drops by at least
      ``min_rel_decrease_pct`` percent over the window (validation loss on a fixed set is nearly noise-free,
      so a converged curve creeping down by 0.001% would otherwise pass the test);
    * "no" when a one-sided t test rejects, at ``alpha``, a fall of ``min_rel_decrease_pct`` percent or more
      over the window (the loss is flat or rising, and shown to be);
    * "inconclusive" otherwise: neither test rejects, as with three noisy validation points.

    The verdict rests on validation loss when there are at least three validation points (the validation
    window is widened to its last three points if the tail holds fewer), otherwise on train loss. Train loss
    keeps falling while a model overfits, so it is only the fallback. The fit uses raw values by default:
    EMA smoothing (``smoothing`` > 0) correlates neighbouring points and overstates significance.

    Returns ``{"available", "further_training_would_likely_help": "yes"|"no"|"inconclusive", "basis":
    "val"|"train", "alpha", "criterion", "tail_fraction", "smoothing", "min_rel_decrease_pct", "train": fit,
    "val": fit, "summary", "short"}`` (``short``: the answer with the p-value it rests on); each fit is
    `_tail_fit`'s.
    """
    if not 0.0 < tail_fraction <= 1.0:
        raise ValueError(f"tail_fraction must be in (0, 1], got {tail_fraction}")
    ts, tv = _train(records)
    vs, vv = _val(records)
    if smoothing:
        tv, vv = np.array(smooth(tv, smoothing)), np.array(smooth(vv, smoothing))
    all_steps = np.concatenate([ts, vs])
    m = f"{min_rel_decrease_pct:g}%"
    info = {"tail_fraction": tail_fraction, "smoothing": smoothing,
            "min_rel_decrease_pct": min_rel_decrease_pct, "alpha": alpha,
            "criterion": (f"yes: slope < 0 with p < {alpha:g} (two-sided t test) and a fall of at least {m} "
                          f"over the window; no: a one-sided t test rejects a fall of {m} or more at "
                          f"{alpha:g}; otherwise inconclusive")}
    if all_steps.size == 0:
        return unavailable("no loss records", **info)
    lo, hi = float(all_steps.min()), float(all_steps.max())
    start = hi - tail_fraction * (hi - lo)
    train = _tail_fit(ts, tv, start, "train loss", min_rel_decrease_pct, alpha)
    val = _tail_fit(vs, vv, start, "validation loss", min_rel_decrease_pct, alpha)
    basis = "val" if val["available"] else "train" if train["available"] else None
    if basis is None:
        return unavailable(f"too few points: train: {train['reason']}; val: {val['reason']}",
                           train=train, val=val, **info)
    fit = val if basis == "val" else train
    if fit["decreasing_significantly"] and fit["decrease_large_enough"]:
        answer, why = "yes", ""
    elif fit["not_falling_enough_significantly"]:
        answer = "no"
        why = (f"the loss is not falling by {m} or more over the window (one-sided "
               f"{trend.p_text(fit['p_not_falling_enough'])}); ")
    else:
        answer, why = "inconclusive", ""
    name = "validation" if basis == "val" else "train"
    summary = f"further training would likely help: {answer} — {why}{_figures(fit, name)}"
    p = fit["p_not_falling_enough"] if answer == "no" else fit["p_value"]
    short = (f"{answer} ({'one-sided ' if answer == 'no' else ''}{trend.p_text(p)}, {fit['n_points']} {name} "
             "points)")
    return {"available": True, "further_training_would_likely_help": answer, "basis": basis,
            "train": train, "val": val, "summary": summary, "short": short, **info}


def _train_loss_at(ts: np.ndarray, tv: np.ndarray, step: float) -> tuple[int, float] | None:
    """Train loss logged at ``step``, or at the closest earlier step (validation runs after it)."""
    idx = np.searchsorted(ts, step, side="right") - 1
    return None if idx < 0 else (int(ts[idx]), float(tv[idx]))


def _gap(ts: np.ndarray, tv: np.ndarray, step: float, val_loss: float) -> dict[str, Any]:
    found = _train_loss_at(ts, tv, step)
    if found is None:
        return unavailable(f"no train loss logged at or before step {int(step)}")
    train_step, train_loss = found
    return {"available": True, "val_step": int(step), "train_step": train_step, "val_loss": val_loss,
            "train_loss": train_loss, "gap": finite_float(val_loss - train_loss)}


def _rise_fit(vs: np.ndarray, vv: np.ndarray, best: int, rise_threshold_pct: float) -> dict[str, Any]:
    """Line through the validation points from the minimum (index ``best``) to the end, widened back to three
    points, with the one-sided p of "it rises by less than ``rise_threshold_pct``% of the minimum"."""
    mask, extended = _window(vs, float(vs[best]))
    x, y = vs[mask], vv[mask]
    line = trend.line_fit(x, y)
    span, best_loss = float(x[-1] - x[0]), float(vv[best])
    margin = abs(best_loss) * rise_threshold_pct / 100.0 / span if span > 0 else 0.0
    return {"n_points": int(x.size), "window_start_step": int(x[0]), "window_end_step": int(x[-1]),
            "window_extended": extended, "slope_per_step": finite_float(line["slope"]),
            "slope_stderr": finite_float(line["se"]), "p_value": line["p_value"],
            "relative_change_pct": (finite_float(100.0 * line["slope"] * span / best_loss)
                                    if best_loss else None),
            "margin_slope_per_step": finite_float(margin),
            "p_rise_below_threshold": finite_float(trend.p_below(line, margin))}


def overfitting_verdict(
    records: Sequence[Mapping[str, Any]],
    min_val_points: int = 3,
    rise_threshold_pct: float = 1.0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Did validation loss rise after its minimum? "overfitting", "no overfitting" or "inconclusive".

    A least-squares line is fitted to the validation points from the minimum to the end (widened back to
    the last three points when fewer follow the minimum), and with ``threshold`` = ``rise_threshold_pct``
    percent of the minimum (small wiggles of a converged model are not overfitting):

    * "overfitting": the slope is positive with two-sided p < ``alpha`` and the last validation loss exceeds
      the minimum by more than ``threshold``;
    * "no overfitting": a one-sided t test rejects, at ``alpha``, a rise of ``threshold`` or more over the
      window;
    * "inconclusive" otherwise.

    The generalisation gap (val − train loss, train taken at the same step or the closest earlier logged
    step) is given at the last validation step and at the best one.

    Returns ``{"available", "outcome", "short", "verdict", "overfitting": True|False|None (inconclusive),
    "n_val_points", "best_step", "best_val_loss", "last_step", "last_val_loss", "val_increase_since_best",
    "val_increase_since_best_pct", "steps_after_best", "rise_threshold_pct", "alpha", "criterion", "fit",
    "gap_at_last", "gap_at_best"}``.
    """
    vs, vv = _val(records)
    ts, tv = _train(records)
    if vv.size < max(min_val_points, MIN_FIT_POINTS):
        return {**unavailable(f"{vv.size} validation point(s); need {max(min_val_points, MIN_FIT_POINTS)}"),
                "verdict": "insufficient validation points", "overfitting": None,
                "n_val_points": int(vv.size)}
    best = int(np.argmin(vv))
    best_loss, last_loss = float(vv[best]), float(vv[-1])
    rise = last_loss - best_loss
    rise_pct = None if best_loss == 0 else finite_float(100.0 * rise / best_loss)
    fit = _rise_fit(vs, vv, best, rise_threshold_pct)
    p_small = fit["p_rise_below_threshold"]
    rising = bool(fit["slope_per_step"] > 0 and fit["p_value"] is not None and fit["p_value"] < alpha
                  and rise_pct is not None and rise_pct > rise_threshold_pct)
    figures = _figures(fit, "validation")
    if rising:
        outcome, over = "overfitting", True
        verdict = f"overfitting: validation loss rose {rise_pct:.1f}% after step {int(vs[best])} ({figures})"
    elif p_small < alpha:
        outcome, over = "no overfitting", False
        verdict = (f"no overfitting: a rise of {rise_threshold_pct:g}% or more over the window is rejected "
                   f"(one-sided {trend.p_text(p_small)}; {figures})")
    else:
        outcome, over = "inconclusive", None
        verdict = f"inconclusive: {figures}"
    p = p_small if outcome == "no overfitting" else fit["p_value"]
    short = (f"{outcome} ({'one-sided ' if outcome == 'no overfitting' else ''}{trend.p_text(p)}, "
             f"{fit['n_points']} validation points)")
    return {
        "available": True,
        "outcome": outcome,
        "short": short,
        "verdict": verdict,
        "overfitting": over,
        "n_val_points": int(vv.size),
        "best_step": int(vs[best]),
        "best_val_loss": best_loss,
        "last_step": int(vs[-1]),
        "last_val_loss": last_loss,
        "val_increase_since_best": finite_float(rise),
        "val_increase_since_best_pct": rise_pct,
        "steps_after_best": int(vs[-1] - vs[best]),
        "rise_threshold_pct": rise_threshold_pct,
        "alpha": alpha,
        "criterion": (f"overfitting: validation loss rising from its minimum with p < {alpha:g} (two-sided t "
                      f"test on the slope) and ending more than {rise_threshold_pct:g}% above it; no "
                      f"overfitting: a one-sided t test rejects a rise of {rise_threshold_pct:g}% or more "
                      f"over the window at {alpha:g}; otherwise inconclusive"),
        "fit": fit,
        "gap_at_last": _gap(ts, tv, vs[-1], last_loss),
        "gap_at_best": _gap(ts, tv, vs[best], best_loss),
    }
