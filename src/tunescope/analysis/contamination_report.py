"""The report's "Contamination" section: a run's `contamination.json` beside its scores.

Per task: how many scored items share an n-gram with the training data, the top ones with their
training neighbour, and the score on the clean subset (the items with no overlap) beside the full
score, each with its standard error and n. Whether the two differ is tested on the flagged items
against the clean ones: where the base model scored the same items, on each item's change from base
to tuned (a permutation test: did the flagged items gain more than the clean ones?), otherwise on the
scores themselves (Fisher's exact test for 0/1 metrics, Welch's t-test for others). The p-values of
all tasks are Holm-adjusted together (`stats.holm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats as sps

from tunescope.store.scores import finite_float, headline_metric, metric_keys, sample_key

from . import stats as stats_mod
from ._util import unavailable


def _score(values: list[float]) -> dict[str, Any]:
    return {"value": finite_float(np.mean(values)) if values else None,
            "stderr": stats_mod.mean_stderr(values), "n": len(values)}


def _binary(values: list[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def _unpaired_test(dirty: list[float], clean: list[float]) -> dict[str, Any]:
    if not dirty or not clean:
        return unavailable("needs both flagged and clean items")
    if _binary(dirty + clean):
        table = [[sum(dirty), len(dirty) - sum(dirty)], [sum(clean), len(clean) - sum(clean)]]
        return {"available": True, "method": "Fisher's exact test, flagged vs clean items",
                "p_value": finite_float(sps.fisher_exact(table).pvalue)}
    if len(dirty) < 2 or len(clean) < 2:
        return unavailable("Welch's t-test needs two items on each side")
    p = sps.ttest_ind(dirty, clean, equal_var=False).pvalue
    return {"available": True, "method": "Welch's t-test, flagged vs clean items", "p_value": finite_float(p)}


def _paired_test(gain_dirty: list[float], gain_clean: list[float], n_resamples: int,
                 seed: int) -> dict[str, Any]:
    if not gain_dirty or not gain_clean:
        return unavailable("needs both flagged and clean items scored by base and tuned")
    out = {"available": True,
           "method": "permutation test on each item's base → tuned change, flagged vs clean",
           "gain_flagged_points": 100 * float(np.mean(gain_dirty)),
           "gain_clean_points": 100 * float(np.mean(gain_clean))}
    if len(set(gain_dirty + gain_clean)) == 1:
        return {**out, "p_value": 1.0}  # every item changed alike: no evidence of a difference
    # scipy < 1.15 names the generator argument random_state (as in stats.paired_bootstrap_ci).
    generator = {"rng" if _has_rng() else "random_state": np.random.default_rng(seed)}
    res = sps.permutation_test((np.asarray(gain_dirty), np.asarray(gain_clean)),
                               lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
                               permutation_type="independent", vectorized=True, n_resamples=n_resamples,
                               batch=200, **generator)  # batch bounds memory at 200 × items
    return {**out, "p_value": finite_float(res.pvalue)}


def _has_rng() -> bool:
    import inspect

    return "rng" in inspect.signature(sps.permutation_test).parameters


def _task_scores(task: str, flagged: set, run_eval: Mapping[str, Any], rs: Mapping[str, Any],
                 seed: int) -> dict:
    """Full and clean-subset scores of each evaluation of `task`, and the test of their difference."""
    values: dict[str, dict[Any, float]] = {}
    metric = None
    for label in ("base", "tuned"):
        ev = run_eval.get(label)
        entry = (ev or {}).get("results", {}).get("results", {}).get(task)
        records = (ev or {}).get("samples", {}).get(task)
        if not entry or not records:
            continue
        metric = metric or headline_metric(metric_keys(entry))
        if metric is None:
            continue
        values[label] = stats_mod.metric_values(records, sample_key(metric))
    if not values:
        return unavailable(f"no per-item scores of {task} in this run")
    by_label = {}
    for label, vals in values.items():
        full = list(vals.values())
        clean = [v for d, v in vals.items() if d not in flagged]
        dirty = [v for d, v in vals.items() if d in flagged]
        f, c = _score(full), _score(clean)
        by_label[label] = {"full": f, "clean": c, "flagged": _score(dirty),
                           "difference_points": (100 * (f["value"] - c["value"])
                                                 if f["value"] is not None and c["value"] is not None
                                                 else None),
                           "unpaired": _unpaired_test(dirty, clean)}
    label = "tuned" if "tuned" in by_label else next(iter(by_label))
    test = by_label[label]["unpaired"]
    if "base" in values and "tuned" in values:
        shared = values["base"].keys() & values["tuned"].keys()
        gain = {d: values["tuned"][d] - values["base"][d] for d in shared}
        test = _paired_test([g for d, g in gain.items() if d in flagged],
                            [g for d, g in gain.items() if d not in flagged], rs["bootstrap_resamples"], seed)
    return {"available": True, "metric": metric, "label": label, "by_label": by_label, "test": test}


def _top(flagged: list[dict], k: int) -> list[dict]:
    return sorted(flagged, key=lambda f: (-f["span_words"], str(f["doc_id"])))[:k]


def contamination_section(check: Mapping[str, Any] | None, run_eval: Mapping[str, Any], rs: Mapping[str, Any],
                          seed: int) -> dict[str, Any]:
    """The section's data (see the module docstring); `check` is the run's contamination.json."""
    if not check:
        return unavailable("this run has no contamination check (contamination.json); runs made before the "
                           "check was added do not have one")
    settings = rs["contamination"]
    top_k = settings["top_items"]
    tasks = []
    for name, t in check["tasks"].items():
        flagged = set(t["flagged_doc_ids"])
        tasks.append({"task": name, "n": t["n"], "n_flagged": t["n_flagged"], "share": t["share"],
                      "top": _top(t["flagged"], top_k), "duplicates": t["duplicates"],
                      "scores": _task_scores(name, flagged, run_eval, rs, seed) if flagged else
                      unavailable("no item overlaps the training data: the clean subset is the whole task")})
    tested = [t for t in tasks if t["scores"].get("available") and t["scores"]["test"].get("available")]
    for t, p in zip(tested, stats_mod.holm([t["scores"]["test"]["p_value"] for t in tested]), strict=True):
        t["scores"]["test"].update(p_holm=p, significant=p is not None and p < rs["alpha"])
    splits = [{"split": name, "n": s["n"], "n_flagged": s["n_flagged"], "share": s["share"],
               "top": _top(s["flagged"], top_k),
               "duplicates": s["duplicates"]} for name, s in check["splits"].items()]
    found = any(t["n_flagged"] for t in tasks) or any(s["n_flagged"] for s in splits)
    note = None
    if ((settings["ngram"], settings["near_duplicate_threshold"])
            != (check["ngram"], check["near_duplicate_threshold"])):
        note = (f"checked when the run prepared its data with n={check['ngram']} and near-duplicate "
                f"threshold {check['near_duplicate_threshold']:g}; report.contamination.ngram and "
                "near_duplicate_threshold apply to new runs and to `tunescope contamination`")
    return {"available": True, "ngram": check["ngram"], "normalisation": check["normalisation"],
            "near_duplicate_threshold": check["near_duplicate_threshold"],
            "shingle_words": check["shingle_words"], "train_examples": check["train_examples"],
            "seconds": check.get("seconds"), "found": found, "tasks": tasks, "splits": splits,
            "within_train": check["within_train"], "alpha": rs["alpha"], "settings_note": note}


def contamination_share(check: Mapping[str, Any] | None) -> float | None:
    """The share of all scored task items that overlap the training data, from a run's contamination.json
    (for compare and the grid); None for runs without a check or without tasks."""
    tasks = list((check or {}).get("tasks", {}).values())
    n = sum(t["n"] for t in tasks)
    return sum(t["n_flagged"] for t in tasks) / n if n else None


def _pc(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def contamination_conclusions(c: Mapping[str, Any] | None, say) -> None:
    """Sentences for the conclusions, only where overlap or duplicates were found."""
    if not c or not c.get("available"):
        return
    for i, t in enumerate(c["tasks"]):
        if not t["n_flagged"]:
            continue
        text = (f"Contamination: {t['n_flagged']} of {t['n']} {t['task']} items ({_pc(t['share'])}) share a "
                f"{c['ngram']}-gram with the training data")
        basis = [f"contamination.tasks[{i}].n_flagged", f"contamination.tasks[{i}].share"]
        s = t["scores"]
        if s.get("available"):
            b = s["by_label"][s["label"]]
            full, clean = b["full"], b["clean"]
            text += (f"; {s['label']} {s['metric']} is {_pc(full['value'])} ± {_pc(full['stderr'])} on all "
                     f"{full['n']} items and {_pc(clean['value'])} ± {_pc(clean['stderr'])} on the "
                     f"{clean['n']} clean ones")
            basis += [f"contamination.tasks[{i}].scores.by_label.{s['label']}.clean.value"]
            test = s["test"]
            if test.get("p_holm") is not None:
                verdict = "significant" if test["significant"] else "not significant"
                text += (f" ({verdict} at α={c['alpha']} after Holm correction: {test['method']}, "
                         f"p={test['p_value']:.3g}, Holm p={test['p_holm']:.3g})")
                basis += [f"contamination.tasks[{i}].scores.test.p_holm"]
        say("contamination", text + ".", *basis)
    for i, s in enumerate(c["splits"]):
        if s["n_flagged"]:
            say("contamination", f"{s['n_flagged']} of {s['n']} items of the {s['split']} "
                f"({_pc(s['share'])}) share a {c['ngram']}-gram with the training data.",
                f"contamination.splits[{i}].n_flagged")
    w = c["within_train"]
    if w["exact"] or w["near"]:
        say("contamination", f"The training data repeats itself: {w['exact']} exact and {w['near']} near "
            f"duplicates among its {w['n']} examples.", "contamination.within_train.exact",
            "contamination.within_train.near")
