"""Tests on the slope of a least-squares line through a loss curve.

A learning-curve verdict is a claim about the slope at the end of training. Each claim here is a t test
on the OLS slope (n − 2 degrees of freedom), so a verdict is only as strong as its p-value:

* ``p_value``: two-sided, slope ≠ 0 (scipy's ``linregress``);
* ``p_above(fit, bound)``: one-sided, the slope is greater than ``bound``;
* ``p_below(fit, bound)``: one-sided, the slope is less than ``bound``.

The one-sided tests against a bound that is not zero are how "the loss is not falling by a relevant
amount" is shown rather than assumed: they reject a slope at least as steep as the bound.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from tunescope.store.scores import finite_float


def line_fit(x: np.ndarray, y: np.ndarray) -> dict:
    """Slope, its standard error, residual degrees of freedom and the two-sided p-value (needs ≥ 3 points)."""
    fit = sps.linregress(x, y)
    return {"slope": float(fit.slope), "se": float(fit.stderr), "df": int(x.size - 2),
            "intercept": float(fit.intercept), "p_value": finite_float(fit.pvalue)}


def _t(fit: dict, bound: float) -> float | None:
    return None if fit["se"] <= 0 else (fit["slope"] - bound) / fit["se"]


def p_above(fit: dict, bound: float) -> float:
    """One-sided p of "the slope is greater than ``bound``" (a perfect line: 0 or 1)."""
    t = _t(fit, bound)
    if t is None:
        return 0.0 if fit["slope"] > bound else 1.0
    return float(sps.t.sf(t, fit["df"]))


def p_below(fit: dict, bound: float) -> float:
    """One-sided p of "the slope is less than ``bound``" (a perfect line: 0 or 1)."""
    t = _t(fit, bound)
    if t is None:
        return 0.0 if fit["slope"] < bound else 1.0
    return float(sps.t.cdf(t, fit["df"]))


def p_text(p: float | None) -> str:
    """``p = 0.175`` or ``p < 0.001``, as the verdict sentences write it."""
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
