"""The grid report's data from a grid folder: scores across seeds, seed noise, tests, plots' data, cost.

Every figure comes from the runs' own files (results.json, per-item JSONL, metrics summary, manifest)
read through `store.run_folder`. Across seeds a cell's score is the mean of its seeds, its uncertainty the
standard error over seeds (SD / √k); with a single seed it is the run's own item standard error. A
base evaluation has no seeds and shows its item standard error.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from tunescope.analysis.contamination_report import contamination_share
from tunescope.grid.comparisons import compare_pair, holm_verdicts, item_outcomes, pairs_to_compare
from tunescope.store.grid_folder import read_grid_file, read_status, run_name
from tunescope.store.run_folder import MANIFEST, open_run
from tunescope.store.scores import display_order, finite_float, headline_metric, metric_keys, stderr_key


def _spread(values: list[float]) -> dict:
    k = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if k > 1 else None
    return {"k": k, "mean": mean, "sd": sd, "se": sd / k ** 0.5 if sd is not None else None,
            "min": min(values), "max": max(values), "values": values}


def _higher_is_better(results: dict, task: str, metric: str) -> bool:
    return (results.get("higher_is_better") or {}).get(task, {}).get(metric.split(",")[0]) is not False


def analyse_grid(folder: Path) -> dict:
    spec = read_grid_file(folder)
    alpha = float((spec.get("file") or {}).get("alpha", 0.05))
    cells: dict[str, dict] = spec["cells"]
    axes = list((spec.get("file") or {}).get("axes", {}))
    model_key = "model.name" if "model.name" in axes else None
    runs, records = _read_runs(folder, cells, spec["seeds"])
    bases, base_cols = _base_evaluations(runs, records, cells, model_key)
    keys = _metric_keys(records)
    tasks_in_order = list(dict.fromkeys(t for t, _ in keys))
    rows = [_score_row(task, key, keys[(task, key)], cells, spec["seeds"], records, bases)
            for task, key in sorted(keys,
                                    key=lambda tk: (tasks_in_order.index(tk[0]), *display_order(tk[1])))]

    headline = {t: headline_metric(k for tt, k in keys if tt == t) for t in tasks_in_order}
    comparisons = _comparisons(cells, spec["seeds"], records, bases, headline, model_key)
    labels = {b["id"]: b["label"] for b in base_cols}
    for c in comparisons:  # what the tables and sentences name: a base column by its model
        c["a_label"], c["b_label"] = labels.get(c["a"], c["a"]), labels.get(c["b"], c["b"])
    holm_verdicts(comparisons, alpha)
    primary = tasks_in_order[0] if tasks_in_order else None
    data = {
        "title": f"Grid {spec['name']}", "name": spec["name"], "folder": str(folder), "axes": axes,
        "axis_values": (spec.get("file") or {}).get("axes", {}), "seeds": spec["seeds"], "alpha": alpha,
        "cells": cells, "runs": runs, "base_columns": base_cols, "rows": rows, "headline": headline,
        "primary": {"task": primary, "metric": headline.get(primary)} if primary else None,
        "comparisons": comparisons,
        "n_comparisons": sum(c["test"].get("p_holm") is not None for c in comparisons),
        "failed": [r for r in runs if r["status"] != "complete"],
    }
    from tunescope.grid.summary import axis_series, cell_costs, conclusions

    data["axis_plots"] = axis_series(data)
    data["costs"] = cell_costs(data)
    data["conclusions"] = conclusions(data)
    return data


def _read_runs(folder: Path, cells: dict, seeds: list[int]) -> tuple[list[dict], dict]:
    """(one entry per cell and seed: status, cost, base-evaluation reuse; the readable runs by name)."""
    runs, records = [], {}
    for cell in cells:
        for seed in seeds:
            name = run_name(cell, seed)
            status = read_status(folder, name) or {}
            entry = {"run": name, "cell": cell, "seed": seed, "status": status.get("status", "not run"),
                     "error": status.get("error"), "attempts": status.get("attempt"),
                     "host": status.get("host"), "base_eval_reused": None, "base_eval_key": None,
                     "wall_s": None, "cost_usd": None, "train_s": None, "contamination_share": None}
            if (folder / name / MANIFEST).is_file():
                try:
                    rec = open_run(folder / name)
                except Exception as e:  # a damaged run is reported, the others still are
                    entry.update(status="failed", error=f"unreadable run folder: {e}")
                else:
                    records[name] = rec
                    base_eval = rec.manifest.base_eval
                    summary = rec.summary
                    entry.update(status="complete", base_eval_reused=base_eval.reused if base_eval else None,
                                 base_eval_key=base_eval.key if base_eval else None,
                                 wall_s=finite_float(rec.manifest.wall_s),
                                 cost_usd=finite_float(summary.cost_usd) if summary else None,
                                 train_s=finite_float(summary.train_s) if summary else None,
                                 contamination_share=contamination_share(rec.contamination))
            runs.append(entry)
    return runs, records


def _base_evaluations(runs: list[dict], records: dict, cells: dict,
                      model_key: str | None) -> tuple[dict, list[dict]]:
    """One base evaluation per model (the one its cells computed or copied), and its report column."""
    bases: dict[str, object] = {}
    base_names: dict[str, str] = {}
    for entry in runs:
        rec = records.get(entry["run"])
        if rec is not None and "base" in rec.evaluations:
            model = cells[entry["cell"]].get(model_key, "") if model_key else ""
            if model not in bases or not entry.get("base_eval_reused"):
                bases.setdefault(model, rec.evaluations["base"])
                base_names.setdefault(model, model or rec.model)  # no model axis: the base config's model
    return bases, [{"id": f"base:{m}", "label": f"base {base_names[m]}", "model": m} for m in bases]


def _metric_keys(records: dict) -> dict[tuple[str, str], bool]:
    """(task, metric) in any tuned evaluation, with whether higher is better."""
    keys: dict[tuple[str, str], bool] = {}
    for rec in records.values():
        ev = rec.evaluations.get("tuned")
        for task, res in ((ev.results.get("results") or {}) if ev else {}).items():
            for k in metric_keys(res):
                keys.setdefault((task, k), _higher_is_better(ev.results, task, k))
    return keys


def _score_row(task: str, key: str, higher_is_better: bool, cells: dict, seeds: list[int], records: dict,
               bases: dict) -> dict:
    """One (task, metric) row: each cell's score across its seeds, each base model's, the best cells."""
    row = {"task": task, "metric": key, "higher_is_better": higher_is_better, "cells": {}, "bases": {}}
    for cell in cells:
        values = []
        stderr = None
        for seed in seeds:
            rec = records.get(run_name(cell, seed))
            ev = rec.evaluations.get("tuned") if rec else None
            res = ((ev.results.get("results") or {}).get(task) or {}) if ev else {}
            if finite_float(res.get(key)) is not None:
                values.append(finite_float(res[key]))
                stderr = finite_float(res.get(stderr_key(key)))
        if values:
            s = _spread(values)
            s["uncertainty"] = "seeds" if s["se"] is not None else "items"
            if s["se"] is None:
                s["se"] = stderr
            row["cells"][cell] = s
    for model, ev in bases.items():
        res = (ev.results.get("results") or {}).get(task) or {}
        if finite_float(res.get(key)) is not None:
            row["bases"][f"base:{model}"] = {"mean": finite_float(res[key]),
                                             "se": finite_float(res.get(stderr_key(key)))}
    means = {c: v["mean"] for c, v in row["cells"].items()}
    if means:
        best = (max if row["higher_is_better"] else min)(means.values())
        row["best"] = [c for c, m in means.items() if abs(m - best) < 1e-12]
    return row


def _comparisons(cells, seeds, records, bases, headline, model_key) -> list[dict]:
    out = []
    for task, metric in headline.items():
        if metric is None:
            continue
        outcomes: dict[str, dict[int, dict]] = {}
        for cell in cells:
            by_seed = {}
            for seed in seeds:
                rec = records.get(run_name(cell, seed))
                if rec is not None and "tuned" in rec.evaluations:
                    by_seed[seed] = item_outcomes(rec.evaluations["tuned"], task, metric)
            outcomes[cell] = by_seed
        for model, ev in bases.items():
            items = item_outcomes(ev, task, metric)
            outcomes[f"base:{model}"] = {seed: items for seed in seeds}
        for a, b, why in pairs_to_compare(cells, model_key):
            if not outcomes.get(a) or not outcomes.get(b):
                continue
            out.append({"task": task, "metric": metric, "a": a, "b": b, "why": why,
                        "test": compare_pair(outcomes[a], outcomes[b])})
    return out
