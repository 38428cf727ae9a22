"""Statistics for base-vs-tuned comparisons on the *same* evaluation items.

Because both models answer the same documents, the comparisons are paired: McNemar's test on the
discordant items for 0/1 metrics, a paired t-test for continuous ones, and a paired bootstrap for the
confidence interval of the difference. Many task × metric comparisons are made at once, so p-values
are Holm-adjusted before anything is called significant or flagged as forgetting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from tunescope.store.scores import finite_float

from ._util import unavailable

# Below this many discordant pairs the chi-square approximation is poor, so the exact binomial test
# is used instead (the usual rule of thumb, also statsmodels' documented guidance).
EXACT_BELOW = 25


def mean_stderr(values: Iterable[float]) -> float | None:
    """Standard error of the mean: sample std (ddof=1) / sqrt(n), as lm-evaluation-harness reports it.

    Returns ``None`` when fewer than two values make the sample std undefined.
    """
    arr = np.asarray(list(values), dtype=float)
    if arr.size < 2:
        return None
    return finite_float(sps.sem(arr, ddof=1))


def _as_binary(values: Sequence[Any], name: str) -> np.ndarray:
    arr = np.asarray([float(v) for v in values])
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must contain only 0/1 (or booleans)")
    return arr.astype(int)


def mcnemar(base_correct: Sequence[Any], tuned_correct: Sequence[Any]) -> dict[str, Any]:
    """McNemar's test for paired 0/1 outcomes (same items, two models).

    ``b`` counts items the base model got right and the tuned model got wrong; ``c`` the reverse.
    Only discordant items carry information. With ``b + c < 25`` the exact two-sided binomial test
    (``b ~ Binomial(b + c, 1/2)``) is used and the statistic is ``min(b, c)``; otherwise the
    chi-square statistic with continuity correction, ``(|b - c| - 1)^2 / (b + c)`` on 1 df.

    Returns ``{"available", "method", "statistic", "p_value", "b", "c", "n", "n_discordant"}``.
    """
    if len(base_correct) != len(tuned_correct):
        raise ValueError(f"paired lists differ in length: {len(base_correct)} vs {len(tuned_correct)}")
    base = _as_binary(base_correct, "base_correct")
    tuned = _as_binary(tuned_correct, "tuned_correct")
    n = int(base.size)
    if n == 0:
        return unavailable("no paired items", n=0)
    b = int(np.sum((base == 1) & (tuned == 0)))
    c = int(np.sum((base == 0) & (tuned == 1)))
    nd = b + c
    out: dict[str, Any] = {"available": True, "b": b, "c": c, "n": n, "n_discordant": nd}
    if nd < EXACT_BELOW:
        # With no discordant pairs there is no evidence of a difference at all: p = 1.
        p = 1.0 if nd == 0 else sps.binomtest(b, nd, 0.5).pvalue
        out.update(method="exact binomial", statistic=float(min(b, c)), p_value=finite_float(min(1.0, p)))
    else:
        stat = (abs(b - c) - 1.0) ** 2 / nd
        out.update(
            method="chi-square with continuity correction",
            statistic=finite_float(stat),
            p_value=finite_float(sps.chi2.sf(stat, df=1)),
        )
    return out


def paired_bootstrap_ci(
    base: Sequence[float],
    tuned: Sequence[float],
    n_boot: int = 10000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap CI for ``mean(tuned - base)``, resampling *items* (pairs stay together).

    Computed with ``scipy.stats.bootstrap`` (percentile method) on the per-item differences;
    deterministic because resampling uses ``numpy.random.default_rng(seed)``. Returns ``{"available",
    "mean_diff", "ci_low", "ci_high", "level", "n", "n_boot", "seed", "method"}``.
    """
    if len(base) != len(tuned):
        raise ValueError(f"paired lists differ in length: {len(base)} vs {len(tuned)}")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    diff = np.asarray(tuned, dtype=float) - np.asarray(base, dtype=float)
    n = int(diff.size)
    info = {"level": level, "n": n, "n_boot": n_boot, "seed": seed, "method": "percentile"}
    if n < 2:
        return unavailable("need at least two paired items for a bootstrap", **info)
    mean_diff = float(diff.mean())
    if np.all(diff == diff[0]):
        # Every resample has the same mean; scipy would warn about degenerate data, and the honest
        # interval is the single point.
        lo = hi = mean_diff
    else:
        kwargs = dict(n_resamples=n_boot, batch=1000,  # batch bounds memory at 1000 × n indices
                      vectorized=True, confidence_level=level, method="percentile")
        try:
            res = sps.bootstrap((diff,), np.mean, rng=np.random.default_rng(seed), **kwargs)
        except TypeError:  # scipy < 1.15 names the generator argument random_state
            res = sps.bootstrap((diff,), np.mean, random_state=np.random.default_rng(seed), **kwargs)
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"available": True, "mean_diff": finite_float(mean_diff), "ci_low": finite_float(lo),
            "ci_high": finite_float(hi), **info}


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni step-down adjusted p-values, in the input order.

    The i-th smallest of m p-values is multiplied by ``m - i`` (0-based i), then a running maximum
    keeps the adjusted values monotone, and they are capped at 1. ``None``/NaN entries are passed
    through as ``None`` and do not count towards m.
    """
    vals = [finite_float(p) for p in pvalues]
    idx = [i for i, p in enumerate(vals) if p is not None]
    out: list[float | None] = [None] * len(vals)
    if not idx:
        return out
    p = np.array([vals[i] for i in idx], dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    for rank, pos in enumerate(order):
        out[idx[pos]] = float(adjusted[rank])
    return out


def metric_values(records: Sequence[Mapping[str, Any]], key: str) -> dict[Any, float]:
    """``doc_id -> metric value`` for records carrying that metric (the first record wins on dupes)."""
    out: dict[Any, float] = {}
    for rec in records:
        value = finite_float((rec.get("metrics") or {}).get(key))
        doc = rec.get("doc_id")
        if value is not None and doc is not None and doc not in out:
            out[doc] = value
    return out


def _paired_test(base: np.ndarray, tuned: np.ndarray) -> dict[str, Any]:
    """McNemar for 0/1 metrics, otherwise a paired t-test (for continuous per-item scores)."""
    binary = np.all(np.isin(base, (0.0, 1.0))) and np.all(np.isin(tuned, (0.0, 1.0)))
    if binary:
        return mcnemar(base.tolist(), tuned.tolist())
    diff = tuned - base
    if base.size < 2:
        return unavailable("need at least two paired items for a t-test", n=int(base.size))
    if np.all(diff == diff[0]):
        # Zero-variance differences: the t statistic is undefined. Identical scores mean no evidence
        # of a change (p = 1); a perfectly constant non-zero shift is left untested rather than
        # reported with a fake p-value.
        if diff[0] == 0:
            return {"available": True, "method": "paired t-test", "statistic": 0.0, "p_value": 1.0,
                    "n": int(base.size)}
        return unavailable("constant non-zero difference: t-test undefined", n=int(base.size))
    res = sps.ttest_rel(tuned, base)
    return {"available": True, "method": "paired t-test", "statistic": finite_float(res.statistic),
            "p_value": finite_float(res.pvalue), "n": int(base.size)}


def with_group_samples(results: Mapping[str, Any],
                       samples: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str,
                                                                                   list[Mapping[str, Any]]]:
    """``samples`` plus one entry per scored group (``results["groups"]``, e.g. ``mmlu``): the records
    of its leaf tasks, with doc ids made unique as ``<task>/<doc_id>``, so a group is paired and
    counted item by item like any task."""
    subtasks = results.get("group_subtasks") or {}

    def leaves(name: str) -> list[str]:
        children = subtasks.get(name) or []
        return [name] if not children else [leaf for child in children for leaf in leaves(child)]

    out: dict[str, list[Mapping[str, Any]]] = {task: list(recs) for task, recs in samples.items()}
    for group in results.get("groups") or {}:
        out[group] = [{**r, "doc_id": f"{leaf}/{r.get('doc_id')}"} for leaf in leaves(group)
                      for r in samples.get(leaf, [])]
    return out


def _paired_comparison(b_map: Mapping[Any, float], t_map: Mapping[Any, float], docs: list, n_boot: int,
                       seed: int) -> dict[str, Any]:
    """Base vs tuned on the items `docs` both have: means, standard errors, the paired test, the bootstrap
    interval of the difference in points."""
    b = np.array([b_map[d] for d in docs])
    t = np.array([t_map[d] for d in docs])
    test = _paired_test(b, t)
    ci = paired_bootstrap_ci(b, t, n_boot=n_boot, seed=seed)
    delta = float(t.mean() - b.mean())
    return {
        "n": len(docs),
        "n_base_only": len(b_map) - len(docs),
        "n_tuned_only": len(t_map) - len(docs),
        "base_mean": finite_float(b.mean()),
        "base_stderr": mean_stderr(b),
        "tuned_mean": finite_float(t.mean()),
        "tuned_stderr": mean_stderr(t),
        "delta": finite_float(delta),
        "delta_points": finite_float(100.0 * delta),
        "test": test,
        "p_value": test.get("p_value"),
        "ci_points": {
            "low": finite_float(100.0 * ci["ci_low"]) if ci["available"] else None,
            "high": finite_float(100.0 * ci["ci_high"]) if ci["available"] else None,
            "level": ci["level"],
            "n_boot": n_boot,
            "seed": seed,
        },
    }


def _holm_and_forgetting(comparisons: list[dict[str, Any]], adjusted: list[float | None], alpha: float,
                         forgetting_threshold_points: float) -> dict[str, dict[str, Any]]:
    """Each comparison's Holm-adjusted p-value, significance and forgetting flag; returns the per-task
    view."""
    tasks: dict[str, dict[str, Any]] = {}
    for comp, p_adj in zip(comparisons, adjusted, strict=True):
        comp["p_holm"] = p_adj
        comp["significant"] = p_adj is not None and p_adj < alpha
        dropped = comp["delta_points"] is not None and comp["delta_points"] < -forgetting_threshold_points
        comp["forgetting"] = None if comp["is_target"] else bool(comp["significant"] and dropped)
        entry = tasks.setdefault(comp["task"], {
            "is_target": comp["is_target"], "forgetting": None if comp["is_target"] else False,
            "forgetting_metrics": [], "metrics": [],
        })
        entry["metrics"].append(comp["metric"])
        if comp["forgetting"]:
            entry["forgetting"] = True
            entry["forgetting_metrics"].append(comp["metric"])
    return tasks


def compare_tasks(
    base_samples: Mapping[str, Sequence[Mapping[str, Any]]],
    tuned_samples: Mapping[str, Sequence[Mapping[str, Any]]],
    metric_keys: Mapping[str, Sequence[str]],
    target_tasks: set[str],
    forgetting_threshold_points: float = 2.0,
    alpha: float = 0.05,
    n_boot: int = 10000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare base and tuned per-sample records task by task, metric by metric.

    Records are aligned on ``doc_id`` (only items present in both runs are compared; the counts left
    out are reported). Means and standard errors are in the metric's own scale (0–1 for accuracy);
    ``delta_points`` and the bootstrap interval are ``100 × (tuned − base)``, i.e. percentage points.
    Holm's adjustment runs over every comparison that produced a p-value.

    A task outside ``target_tasks`` is flagged ``forgetting`` when any of its metrics dropped by
    more than ``forgetting_threshold_points`` *and* the drop is significant after Holm at ``alpha``.
    For target tasks ``forgetting`` is ``None`` (not applicable).

    Returns ``{"available", "alpha", "forgetting_threshold_points", "correction", "n_comparisons",
    "comparisons": [...], "tasks": {task: {...}}, "forgetting_tasks": [...], "skipped": [...]}``;
    each comparison has ``task, metric, is_target, n, n_base_only, n_tuned_only, base_mean,
    base_stderr, tuned_mean, tuned_stderr, delta, delta_points, test, p_value, p_holm, significant,
    ci_points, forgetting``.
    """
    comparisons: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for task in sorted(metric_keys):
        if task not in base_samples or task not in tuned_samples:
            missing = "base" if task not in base_samples else "tuned"
            skipped.append({"task": task, "reason": f"no {missing} records"})
            continue
        for metric in metric_keys[task]:
            b_map = metric_values(base_samples[task], metric)
            t_map = metric_values(tuned_samples[task], metric)
            docs = [d for d in b_map if d in t_map]
            if not docs:
                skipped.append({"task": task, "metric": metric, "reason": "no doc_id present in both runs"})
                continue
            comparisons.append({"task": task, "metric": metric, "is_target": task in target_tasks,
                                **_paired_comparison(b_map, t_map, docs, n_boot, seed)})

    adjusted = holm([c["p_value"] for c in comparisons])
    tasks = _holm_and_forgetting(comparisons, adjusted, alpha, forgetting_threshold_points)
    if not comparisons:
        return unavailable("no task had records from both runs", skipped=skipped)
    return {
        "available": True,
        "alpha": alpha,
        "forgetting_threshold_points": forgetting_threshold_points,
        "correction": "holm",
        "n_comparisons": sum(p is not None for p in adjusted),
        "comparisons": comparisons,
        "tasks": tasks,
        "forgetting_tasks": sorted(t for t, e in tasks.items() if e["forgetting"]),
        "skipped": skipped,
    }
