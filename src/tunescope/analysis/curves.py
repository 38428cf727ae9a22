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
from scipy import stats as sps

from tunescope.report.formatting import formatted
from tunescope.results_schema import finite_float

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


def _tail_fit(
    steps: np.ndarray,
    values: np.ndarray,
    start: float,
    name: str,
    min_rel_decrease_pct: float,
    extend_to: int = MIN_FIT_POINTS,
) -> dict[str, Any]:
    """Least-squares line through the points at ``step >= start``.

    If the window holds fewer than ``extend_to`` points (validation is logged sparsely), it is
    widened backwards to the last ``extend_to`` points and ``window_extended`` says so.
    """
    if values.size < MIN_FIT_POINTS:
        return unavailable(f"only {values.size} {name} point(s); need {MIN_FIT_POINTS} for a slope")
    mask = steps >= start
    extended = int(mask.sum()) < extend_to
    if extended:
        mask = np.zeros_like(mask)
        mask[-extend_to:] = True
    x, y = steps[mask], values[mask]
    fit = sps.linregress(x, y)
    slope, se = float(fit.slope), float(fit.stderr)
    start_fit = fit.intercept + slope * x[0]
    # Relative change over the tail, read off the fitted line so per-step noise does not dominate.
    rel = None if start_fit == 0 else finite_float(100.0 * slope * (x[-1] - x[0]) / start_fit)
    return {
        "available": True,
        "n_points": int(x.size),
        "window_start_step": int(x[0]),
        "window_end_step": int(x[-1]),
        "window_extended": bool(extended),
        "slope_per_step": finite_float(slope),
        "slope_stderr": finite_float(se),
        "t_stat": finite_float(slope / se) if se > 0 else None,
        "p_value": finite_float(fit.pvalue),
        "relative_change_pct": rel,
        # se == 0 means a perfect line: any negative slope is then unambiguous.
        "decreasing_significantly": bool(slope < 0 and abs(slope) > 2.0 * se),
        "decrease_large_enough": rel is not None and -rel >= min_rel_decrease_pct,
    }


def further_training_verdict(
    records: Sequence[Mapping[str, Any]],
    tail_fraction: float = 0.15,
    smoothing: float = 0.0,
    min_rel_decrease_pct: float = 1.0,
) -> dict[str, Any]:
    """Is the loss still falling at the end of training?

    Fits a least-squares line to train and validation loss over the last ``tail_fraction`` of the
    step range. The answer is "yes" when the decrease is statistically clear (``slope < 0`` and
    ``|slope| > 2·SE``) *and* practically relevant: the fitted line drops by at least
    ``min_rel_decrease_pct`` percent over the window. The second condition matters because validation
    loss is computed on a fixed set and is nearly noise-free, so a converged curve creeping down by
    0.001% would otherwise pass the significance test.

    The verdict rests on validation loss when there are at least three validation points (the
    validation window is widened to its last three points if the tail holds fewer), otherwise on
    train loss. Validation loss is what further training should improve; train loss keeps falling
    while a model overfits, so it is only the fallback.

    The fit uses raw values by default: EMA smoothing (``smoothing`` > 0) makes neighbouring points
    correlated, which shrinks the OLS standard error and overstates significance.

    Returns ``{"available", "further_training_would_likely_help": "yes"|"no", "basis": "val"|"train",
    "criterion", "tail_fraction", "smoothing", "min_rel_decrease_pct", "train": fit, "val": fit,
    "summary"}``; each fit has ``n_points, window_start_step, window_end_step, window_extended,
    slope_per_step, slope_stderr, t_stat, p_value, relative_change_pct, decreasing_significantly,
    decrease_large_enough``.
    """
    if not 0.0 < tail_fraction <= 1.0:
        raise ValueError(f"tail_fraction must be in (0, 1], got {tail_fraction}")
    ts, tv = _train(records)
    vs, vv = _val(records)
    if smoothing:
        tv, vv = np.array(smooth(tv, smoothing)), np.array(smooth(vv, smoothing))
    all_steps = np.concatenate([ts, vs])
    info = {"tail_fraction": tail_fraction, "smoothing": smoothing, "min_rel_decrease_pct": min_rel_decrease_pct,
            "criterion": f"slope < 0 and |slope| > 2·SE and decrease over the window >= {min_rel_decrease_pct}%"}
    if all_steps.size == 0:
        return unavailable("no loss records", **info)
    lo, hi = float(all_steps.min()), float(all_steps.max())
    start = hi - tail_fraction * (hi - lo)
    train = _tail_fit(ts, tv, start, "train loss", min_rel_decrease_pct)
    val = _tail_fit(vs, vv, start, "validation loss", min_rel_decrease_pct)
    basis = "val" if val["available"] else "train" if train["available"] else None
    if basis is None:
        return unavailable(f"too few points: train: {train['reason']}; val: {val['reason']}",
                           train=train, val=val, **info)
    fit = val if basis == "val" else train
    answer = "yes" if fit["decreasing_significantly"] and fit["decrease_large_enough"] else "no"
    name = "validation" if basis == "val" else "train"
    rel = fit["relative_change_pct"]
    summary = (
        f"further training would likely help: {answer} ({name} loss slope "
        f"{formatted(fit['slope_per_step'], '.3g')} ± {formatted(fit['slope_stderr'], '.2g')} per step over steps "
        f"{fit['window_start_step']}–{fit['window_end_step']}, "
        f"{formatted(rel, '+.2f')}% over the window)"
    )
    return {"available": True, "further_training_would_likely_help": answer, "basis": basis,
            "train": train, "val": val, "summary": summary, **info}


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


def overfitting_verdict(
    records: Sequence[Mapping[str, Any]],
    min_val_points: int = 3,
    rise_threshold_pct: float = 1.0,
) -> dict[str, Any]:
    """Did validation loss rise after its minimum?

    Overfitting is reported when the last validation loss exceeds the minimum by more than
    ``rise_threshold_pct`` percent of the minimum (small wiggles of a converged model are not
    overfitting). The generalisation gap (val − train loss, train taken at the same step or the
    closest earlier logged step) is given at the last validation step and at the best one.

    Returns ``{"available", "verdict", "overfitting", "n_val_points", "best_step", "best_val_loss",
    "last_step", "last_val_loss", "val_increase_since_best", "val_increase_since_best_pct",
    "steps_after_best", "rise_threshold_pct", "gap_at_last", "gap_at_best"}``.
    """
    vs, vv = _val(records)
    ts, tv = _train(records)
    if vv.size < min_val_points:
        return {**unavailable(f"{vv.size} validation point(s); need {min_val_points}"),
                "verdict": "insufficient validation points", "overfitting": None,
                "n_val_points": int(vv.size)}
    best = int(np.argmin(vv))
    best_loss, last_loss = float(vv[best]), float(vv[-1])
    rise = last_loss - best_loss
    rise_pct = None if best_loss == 0 else finite_float(100.0 * rise / best_loss)
    over = best < vv.size - 1 and rise_pct is not None and rise_pct > rise_threshold_pct
    verdict = (f"overfitting: validation loss rose {rise_pct:.1f}% after step {int(vs[best])}"
               if over else "no evidence of overfitting")
    return {
        "available": True,
        "verdict": verdict,
        "overfitting": bool(over),
        "n_val_points": int(vv.size),
        "best_step": int(vs[best]),
        "best_val_loss": best_loss,
        "last_step": int(vs[-1]),
        "last_val_loss": last_loss,
        "val_increase_since_best": finite_float(rise),
        "val_increase_since_best_pct": rise_pct,
        "steps_after_best": int(vs[-1] - vs[best]),
        "rise_threshold_pct": rise_threshold_pct,
        "gap_at_last": _gap(ts, tv, vs[-1], last_loss),
        "gap_at_best": _gap(ts, tv, vs[best], best_loss),
    }
