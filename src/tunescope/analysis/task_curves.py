"""Task accuracy during training (``task_eval`` records): curves and the verdicts they support.

Validation loss can keep falling while the task it stands for has peaked, and a target task can
improve while a general one quietly drops. Each verdict here is judged on a task's headline metric
(``store.scores.headline_metric``), states the numbers it rests on and its test, and every test is
paired: both steps scored the same fixed items (``eval/steps/<step>/<task>.jsonl``), so McNemar's test
on the items whose outcome changed is the right one.

Two steps of one task are compared in one of four words (`trend`): improving or falling when McNemar's
p < ``report.alpha``; flat when the (1 − 2·alpha) confidence interval of the change lies within
± ``report.flat_margin_points`` (two one-sided tests); inconclusive otherwise.

* at the end of training: the last point against the point where the tail window starts
  (``report.tail_fraction`` of the steps); "improving" means further training would likely help;
* since the best point: the last point against the task's best; "falling" is overfitting on the task;
* divergence: validation loss and task accuracy chose different steps and the accuracy differs
  significantly between them (Holm over the tasks): validation loss improved while accuracy fell, or
  accuracy improved while validation loss worsened;
* forgetting during training: a non-target task dropped more than
  ``report.forgetting_threshold_points`` below step 0 at some step, significant after Holm's
  correction over every (task, step) tested.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from scipy import stats as sps

from tunescope.report.formatting import peq
from tunescope.store.scores import finite_float, headline_rows, metric_label, sample_key

from . import stats as stats_mod
from ._util import unavailable

Items = Callable[[int, str], list[dict] | None]  # (step, task) -> per-item records of that point


def task_series(records: Sequence[Mapping[str, Any]], targets: set[str]) -> list[dict]:
    """One series per task × metric: steps, values, standard errors, n (a re-scored step: the last wins)."""
    points: dict[tuple[str, str], dict[int, Mapping]] = {}
    for r in records:
        if r.get("kind") == "task_eval" and finite_float(r.get("value")) is not None:
            points.setdefault((r["task"], r["metric"]), {})[int(r["step"])] = r
    out = []
    for (task, metric), by_step in sorted(points.items()):
        steps = sorted(by_step)
        out.append({"task": task, "metric": metric, "label": metric_label(metric),
                    "is_target": task in targets, "steps": steps,
                    "values": [float(by_step[s]["value"]) for s in steps],
                    "stderrs": [finite_float(by_step[s].get("stderr")) for s in steps],
                    "n": [by_step[s].get("n") for s in steps]})
    return out


def headline_series(series: list[dict]) -> list[dict]:
    """Each task's headline metric only, target tasks first."""
    out = headline_rows(series)
    return sorted(out, key=lambda s: (not s["is_target"], s["task"]))


def _at(s: dict, step: int) -> float:
    return s["values"][s["steps"].index(step)]


def paired_steps(s: dict, a: int, b: int, items: Items) -> dict:
    """McNemar between steps ``a`` and ``b`` of one series, on the items both scored."""
    recs_a, recs_b = items(a, s["task"]), items(b, s["task"])
    if not recs_a or not recs_b:
        return unavailable(f"no per-item records of {s['task']} at step {a if not recs_a else b}")
    key = sample_key(s["metric"])
    va, vb = stats_mod.metric_values(recs_a, key), stats_mod.metric_values(recs_b, key)
    docs = [d for d in va if d in vb]
    if not docs:
        return unavailable("no item scored at both steps")
    return stats_mod.mcnemar([va[d] for d in docs], [vb[d] for d in docs])


def _evidence(s: dict, a: int, b: int, test: dict) -> str:
    pa, pb = 100 * _at(s, a), 100 * _at(s, b)
    if not test.get("available"):
        return f"{pa:.1f}% at step {a} → {pb:.1f}% at step {b} (no paired test: {test.get('reason')})"
    method = "McNemar exact" if test["method"] == "exact binomial" else "McNemar χ²"
    return (f"{pa:.1f}% at step {a} → {pb:.1f}% at step {b} ({pb - pa:+.1f} points; {method} "
            f"p{peq(test['p_value'])}, {test['b']} items lost and {test['c']} gained of n={test['n']})")


def change_interval(test: dict, alpha: float) -> tuple[float, float] | None:
    """(1 − 2·alpha) confidence interval, in points, of the paired change in accuracy (gained − lost) / n.

    Wald's interval for a difference of paired proportions with 0.5 added to each cell of the 2×2 table
    (Agresti and Min), so an all-unchanged table still has a width. Two one-sided tests at ``alpha`` reject
    a change of ± the margin exactly when this interval lies inside ± the margin.
    """
    if not test.get("available"):
        return None
    n, lost, gained = test["n"] + 2.0, test["b"] + 0.5, test["c"] + 0.5
    diff = (gained - lost) / n
    se = math.sqrt(max(gained + lost - (gained - lost) ** 2 / n, 0.0)) / n
    z = float(sps.norm.ppf(1 - alpha))
    return 100 * (diff - z * se), 100 * (diff + z * se)


def trend(s: dict, a: int, b: int, items: Items, alpha: float, margin_points: float) -> dict:
    """Accuracy from step ``a`` to step ``b``: "improving", "falling", "flat" or "inconclusive".

    improving / falling: McNemar p < ``alpha`` on the items whose outcome changed; flat: the
    (1 − 2·alpha) interval of the change lies within ± ``margin_points``; inconclusive otherwise.
    """
    test = paired_steps(s, a, b, items)
    interval = change_interval(test, alpha)
    if (test.get("available") and test["p_value"] is not None and test["p_value"] < alpha
            and test["b"] != test["c"]):
        outcome = "improving" if test["c"] > test["b"] else "falling"
    elif interval is not None and -margin_points < interval[0] and interval[1] < margin_points:
        outcome = "flat"
    else:
        outcome = "inconclusive"
    ci = ("" if interval is None else
          f"; {100 * (1 - 2 * alpha):g}% CI of the change {interval[0]:+.1f} to {interval[1]:+.1f} points")
    return {"outcome": outcome, "test": test, "interval_points": list(interval) if interval else None,
            "evidence": _evidence(s, a, b, test) + ci}


def trend_criterion(alpha: float, margin_points: float) -> str:
    return (f"improving or falling: McNemar p < {alpha:g} between the two steps; flat: the "
            f"{100 * (1 - 2 * alpha):g}% CI of the change lies within ±{margin_points:g} points "
            "(report.flat_margin_points); otherwise inconclusive")


def further_training(s: dict, items: Items, tail_fraction: float, alpha: float, margin_points: float) -> dict:
    """Is the task still improving at the end? Last point vs the point where the tail window starts."""
    steps = s["steps"]
    if len(steps) < 2:
        return unavailable(f"{len(steps)} scored step(s) of {s['task']}; need 2")
    start = steps[-1] - tail_fraction * (steps[-1] - steps[0])
    ref = max((x for x in steps[:-1] if x <= start), default=steps[-2])
    t = trend(s, ref, steps[-1], items, alpha, margin_points)
    help_ = {"improving": "yes", "flat": "no", "falling": "no", "inconclusive": "inconclusive"}[t["outcome"]]
    return {"available": True, "task": s["task"], "metric": s["metric"], "from_step": ref,
            "to_step": steps[-1], "test": t["test"], "outcome": t["outcome"],
            "interval_points": t["interval_points"], "further_training_would_likely_help": help_,
            "criterion": trend_criterion(alpha, margin_points),
            "summary": f"{s['task']} {s['label']} at the end of training: {t['outcome']} — {t['evidence']}"}


def overfitting(s: dict, items: Items, alpha: float, margin_points: float) -> dict:
    """Did the task fall after its best point? Best (earliest on ties) vs last."""
    steps, values = s["steps"], s["values"]
    if len(steps) < 2:
        return unavailable(f"{len(steps)} scored step(s) of {s['task']}; need 2")
    best = steps[values.index(max(values))]
    name = f"{s['task']} {s['label']}"
    if best == steps[-1]:
        return {"available": True, "task": s["task"], "metric": s["metric"], "best_step": best,
                "overfitting": False, "outcome": None,
                "summary": f"{name} since its best point: the last point is the best "
                           f"({100 * values[-1]:.1f}% at step {best}), so there is no fall to test"}
    t = trend(s, best, steps[-1], items, alpha, margin_points)
    over = {"falling": True, "flat": False}.get(t["outcome"])
    return {"available": True, "task": s["task"], "metric": s["metric"], "best_step": best,
            "last_step": steps[-1], "test": t["test"], "outcome": t["outcome"],
            "interval_points": t["interval_points"], "overfitting": over,
            "criterion": trend_criterion(alpha, margin_points),
            "summary": f"{name} since its best point: {t['outcome']} — {t['evidence']}"}


def divergence(series: list[dict], val_steps: Sequence[int], val_losses: Sequence[float], items: Items,
               alpha: float) -> dict:
    """Did validation loss and task accuracy pick different steps, with a significant accuracy difference?"""
    if not val_steps:
        return unavailable("no validation loss recorded")
    val_best = int(val_steps[min(range(len(val_losses)), key=lambda i: val_losses[i])])
    checks = []
    for s in series:
        task_best = s["steps"][s["values"].index(max(s["values"]))]
        # The scored step nearest to (at or before) the validation minimum.
        at_val = max((x for x in s["steps"] if x <= val_best), default=s["steps"][0])
        check = {"task": s["task"], "metric": s["metric"], "label": s["label"], "task_best_step": task_best,
                 "val_best_step": val_best, "compared_step": at_val, "diverged": False, "direction": None}
        if at_val != task_best:
            check["test"] = paired_steps(s, task_best, at_val, items)
            check["direction"] = ("validation loss improved while task accuracy fell" if at_val > task_best
                                  else "task accuracy improved while validation loss worsened")
            check["evidence"] = (f"lowest validation loss at step {val_best}, best {s['task']} {s['label']} "
                                 f"at step {task_best}; {_evidence(s, task_best, at_val, check['test'])}")
        checks.append(check)
    tested = [c for c in checks if (c.get("test") or {}).get("available")]
    for c, p in zip(tested, stats_mod.holm([c["test"]["p_value"] for c in tested]), strict=True):
        c["p_holm"] = p
        c["diverged"] = p is not None and p < alpha
    return {"available": True, "alpha": alpha, "correction": "holm", "val_best_step": val_best,
            "checks": checks, "diverged_tasks": [c["task"] for c in checks if c["diverged"]]}


def forgetting_during_training(series: list[dict], items: Items, threshold_points: float,
                               alpha: float) -> dict:
    """Non-target tasks against step 0 at every scored step; Holm over all (task, step) tests."""
    tests = []
    for s in series:
        if s["is_target"] or not s["steps"] or s["steps"][0] != 0:
            continue
        for step in s["steps"][1:]:
            drop = 100 * (_at(s, step) - _at(s, 0))
            test = paired_steps(s, 0, step, items)
            tests.append({"task": s["task"], "metric": s["metric"], "label": s["label"], "step": step,
                          "delta_points": drop, "test": test, "p_value": test.get("p_value"),
                          "evidence": _evidence(s, 0, step, test)})
    for t, p in zip(tests, stats_mod.holm([t["p_value"] for t in tests]), strict=True):
        t["p_holm"] = p
        t["forgetting"] = bool(p is not None and p < alpha and t["delta_points"] < -threshold_points)
    flagged = sorted({t["task"] for t in tests if t["forgetting"]})
    worst = {task: min((t for t in tests if t["task"] == task and t["forgetting"]),
                       key=lambda t: t["delta_points"])
             for task in flagged}
    return {"available": bool(tests), "threshold_points": threshold_points, "alpha": alpha,
            "correction": "holm", "tests": tests, "forgetting_tasks": flagged, "worst": worst,
            **({} if tests else {"reason": "no non-target task scored at step 0 and later"})}


def selection(summary: Mapping[str, Any] | None) -> dict:
    """Which criterion chose the shipped step, and what each other criterion would have chosen."""
    if not summary or not summary.get("selected_by"):
        return unavailable("the run did not score tasks during training")
    chosen = summary["selected_by"]
    best_by = summary.get("best_by") or {}
    others = [{"criterion": name, **v} for name, v in best_by.items() if name != chosen]
    return {"available": True, "selected_by": chosen, "shipped_step": summary.get("best_step"),
            "shipped_value": (best_by.get(chosen) or {}).get("value"),
            "early_stopping_on": summary.get("early_stopping_on"), "others": others}


def analyse(records: Sequence[Mapping[str, Any]], items: Items, targets: set[str], summary: Mapping | None,
            val_steps: Sequence[int], val_losses: Sequence[float], rs: Mapping[str, Any]) -> dict:
    """The report's ``task_curves`` section."""
    series = task_series(records, targets)
    if not series:
        return unavailable("no task was scored during training (eval.during_training)")
    heads = headline_series(series)
    alpha, margin = rs["alpha"], rs.get("flat_margin_points", 2.0)
    return {
        "available": True, "series": series,
        "headline": [{"task": s["task"], "metric": s["metric"]} for s in heads], "flat_margin_points": margin,
        "further_training": [further_training(s, items, rs["tail_fraction"], alpha, margin)
                             for s in heads if s["is_target"]],
        "overfitting": [overfitting(s, items, alpha, margin) for s in heads if s["is_target"]],
        "divergence": divergence(heads, val_steps, val_losses, items, alpha),
        "forgetting": forgetting_during_training(heads, items, rs["forgetting_threshold_points"], alpha),
        "selection": selection(summary),
        "task_eval_s": (summary or {}).get("task_eval_s"), "train_s": (summary or {}).get("train_s"),
    }
