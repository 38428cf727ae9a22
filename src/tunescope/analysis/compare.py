"""Compare evaluations across runs and models: one table of models × tasks, with paired tests.

Each run contributes its base and its tuned evaluation as separate columns ("name (base)", "name
(tuned)"); an evaluation-only output folder (``tunescope eval --output DIR``) contributes one column.
Every cell is the score ± standard error and n, as lm-evaluation-harness reports it; the best score in
each row is marked. Every column is compared with the baseline column on the *same items*: records
are paired on ``doc_id``, and a pair counts only if both records describe the same item (same question
and gold answer for generation tasks; same gold index and choices (or their lengths) for multiple choice), so
two runs whose held-out problems differ are never paired by accident. The tests are McNemar (exact when
fewer than 25 discordant pairs) and a paired bootstrap 95% CI, with Holm's correction over all
comparisons in the report.

This module sits beside ``analysis`` in the import order (pipeline → compare → analysis); it receives
typed run records (``store.run_folder``) and returns a plain dict for ``report.render_compare``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunescope.analysis import stats
from tunescope.analysis.contamination_report import contamination_share
from tunescope.analysis.summary import paired_test_name, target_tasks
from tunescope.analysis.task_curves import headline_series, task_series
from tunescope.core.errors import UserError
from tunescope.store.run_folder import EvaluationRecord, RunRecord
from tunescope.store.scores import (
    display_order,
    finite_float,
    metric_keys,
    metric_label,
    sample_key,
    stderr_key,
    task_n,
)


def item_fingerprint(rec: Mapping[str, Any]) -> str:
    """What makes two records with the same ``doc_id`` the same item, independent of the model."""
    if isinstance(rec.get("target"), str) or "question" in rec:
        key = ["gen", rec.get("question"), rec.get("target")]
    else:
        key = ["mc", rec.get("target"), rec.get("choices", rec.get("char_lengths"))]
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


Compared = RunRecord | EvaluationRecord


def columns_of(runs: Sequence[Compared]) -> list[dict]:
    """One column per evaluation: each run's base and tuned, or an eval-only folder's single one."""
    names = [r.name for r in runs]
    cols = []
    for run in runs:
        name = run.name
        if names.count(name) > 1:  # two runs with one name (different output folders): add the parent
            name = f"{run.path.parent.name}/{name}"
        for label, ev in run.evaluations.items():
            cid = f"{name} ({label})" if label in ("base", "tuned") else name
            cols.append({"id": cid, "run": name, "label": label, "model": run.model, "path": str(run.path),
                         "method": run.method, "dataset": run.dataset,
                         # Only the tuned model trained on the run's data.
                         "contamination_share": (contamination_share(getattr(run, "contamination", None))
                                                 if label == "tuned" else None),
                         # A scored group (mmlu) is paired over its subjects' records.
                         "_eval": {"results": ev.results,
                                   "samples": stats.with_group_samples(ev.results, ev.samples)}})
    return cols


def _pick_baseline(cols: list[dict], baseline: str | None) -> dict:
    if baseline is None:
        return cols[0]
    exact = [c for c in cols if c["id"] == baseline]
    if exact:
        return exact[0]
    ref, _, label = baseline.rpartition(":")
    if ref and label in ("base", "tuned"):
        hits = [c for c in cols if (c["run"] == ref or _same_path(c["path"], ref)) and c["label"] == label]
        if hits:
            return hits[0]
    hits = [c for c in cols if c["run"] == baseline or _same_path(c["path"], baseline)]
    if hits:
        return next((c for c in hits if c["label"] == "base"), hits[0])
    raise UserError(f"'{baseline}' is none of the compared runs or columns "
                    f"({', '.join(c['id'] for c in cols)})",
                    where="--baseline")


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _paired_records(base: list[dict], other: list[dict]) -> tuple[list[dict], list[dict], dict]:
    """Records of both columns restricted to doc_ids that are the same item in both."""
    b_by = {r.get("doc_id"): r for r in base if r.get("doc_id") is not None}
    o_by = {r.get("doc_id"): r for r in other if r.get("doc_id") is not None}
    shared = [d for d in b_by if d in o_by]
    same = [d for d in shared if item_fingerprint(b_by[d]) == item_fingerprint(o_by[d])]
    prompts_differ = sum(1 for d in same if b_by[d].get("prompt_hash") != o_by[d].get("prompt_hash"))
    info = {"n_shared_doc_ids": len(shared), "n_same_item": len(same),
            "n_different_item": len(shared) - len(same), "n_prompt_differs": prompts_differ}
    return [b_by[d] for d in same], [o_by[d] for d in same], info


def task_curves(runs: Sequence[Compared]) -> list[dict]:
    """Per task scored during training: each run's headline-metric curve (runs that scored it only)."""
    by_task: dict[str, dict] = {}
    for run in runs:
        if not isinstance(run, RunRecord):
            continue
        records = [m.as_dict() for m in run.metrics if m.kind == "task_eval"]
        targets, _ = target_tasks(run.config, sorted({r["task"] for r in records}))
        for s in headline_series(task_series(records, targets)):
            entry = by_task.setdefault(s["task"], {"task": s["task"], "runs": []})
            best = max(range(len(s["values"])), key=lambda i: s["values"][i])  # the earliest on ties
            entry["runs"].append({"run": run.name, **s, "first": s["values"][0], "last": s["values"][-1],
                                  "best": s["values"][best], "best_step": s["steps"][best]})
    return [by_task[t] for t in sorted(by_task)]


def _score_rows(cols: list[dict]) -> list[dict]:
    """One row per (task, metric) any column reports: each column's score ± stderr and n, the best."""
    keys: dict[tuple[str, str], None] = {}
    for c in cols:
        for task, res in (c["_eval"]["results"].get("results") or {}).items():
            for k in metric_keys(res):
                keys[(task, k)] = None
    order = sorted(keys, key=lambda tk: (tk[0], *display_order(tk[1])))

    rows = []
    for task, key in order:
        metric = key.split(",", 1)[0]
        cells: dict[str, dict | None] = {}
        higher = True
        for c in cols:
            results = c["_eval"]["results"]
            res = (results.get("results") or {}).get(task) or {}
            hib = (results.get("higher_is_better") or {}).get(task, {}).get(metric)
            if hib is False:
                higher = False
            if key in res and finite_float(res[key]) is not None:
                n = task_n(results, task, c["_eval"]["samples"].get(task))
                cells[c["id"]] = {"value": finite_float(res[key]),
                                  "stderr": finite_float(res.get(stderr_key(key))), "n": n}
            else:
                cells[c["id"]] = None
        values = [v["value"] for v in cells.values() if v is not None]
        best_value = (max(values) if higher else min(values)) if values else None
        best = [cid for cid, v in cells.items() if v is not None and abs(v["value"] - best_value) < 1e-12]
        ns = sorted({v["n"] for v in cells.values() if v is not None and v["n"] is not None})
        rows.append({"task": task, "metric": key, "sample_metric": sample_key(key),
                     "label": metric_label(key), "cells": cells, "best": best,
                     "higher_is_better": higher, "n_values": ns, "tests": {}})
    return rows


def _paired_tests(cols: list[dict], base_col: dict, rows: list[dict], *, alpha: float, n_boot: int,
                  seed: int) -> tuple[list[tuple[dict, str, dict]], list[dict]]:
    """Paired tests of every other column against the baseline, on the items both have; fills each
    row's `tests` and returns (the tests that have a p-value, the pairs that could not be tested)."""
    comparisons: list[tuple[dict, str, dict]] = []
    base_samples = base_col["_eval"].get("samples", {})
    skipped = []
    for c in cols:
        if c is base_col:
            continue
        samples = c["_eval"].get("samples", {})
        for row in rows:
            task = row["task"]
            if row["cells"].get(c["id"]) is None or row["cells"].get(base_col["id"]) is None:
                continue
            if not base_samples.get(task) or not samples.get(task):
                row["tests"][c["id"]] = {"available": False, "reason": "no per-sample records"}
                continue
            b, o, info = _paired_records(base_samples[task], samples[task])
            if not b:
                reason = ("the same doc_ids are different items (e.g. held-out problems from different data)"
                          if info["n_shared_doc_ids"] else "no shared doc_ids")
                row["tests"][c["id"]] = {"available": False, "reason": reason, **info}
                skipped.append({"task": task, "metric": row["metric"], "column": c["id"], "reason": reason})
                continue
            res = stats.compare_tasks({task: b}, {task: o}, {task: [row["sample_metric"]]},
                                      target_tasks={task}, alpha=alpha, n_boot=n_boot, seed=seed)
            if not res.get("available"):
                row["tests"][c["id"]] = {"available": False, "reason": res.get("reason")}
                continue
            comp = res["comparisons"][0]
            test = {"available": True, "n": comp["n"], **info, "baseline_mean": comp["base_mean"],
                    "mean": comp["tuned_mean"], "delta_points": comp["delta_points"],
                    "ci_low": comp["ci_points"]["low"], "ci_high": comp["ci_points"]["high"],
                    "method": paired_test_name(comp["test"]),
                    "b": comp["test"].get("b"), "c": comp["test"].get("c"), "p_value": comp["p_value"]}
            row["tests"][c["id"]] = test
            comparisons.append((row, c["id"], test))
    return comparisons, skipped


def compare_runs(runs: Sequence[Compared], baseline: str | None = None, *, alpha: float,
                 n_boot: int, seed: int = 0) -> dict:
    """The comparison report's data, from run directories and evaluation-only folders
    (``store.run_folder.open_run_or_evaluation``)."""
    cols = columns_of(runs)
    if not cols:
        raise UserError("none of the given runs has an evaluation (eval/<label>/results.json)")
    base_col = _pick_baseline(cols, baseline)

    rows = _score_rows(cols)
    comparisons, skipped = _paired_tests(cols, base_col, rows, alpha=alpha, n_boot=n_boot, seed=seed)
    adjusted = stats.holm([t["p_value"] for _, _, t in comparisons])
    for (_, _, test), p in zip(comparisons, adjusted, strict=True):
        test["p_holm"] = p
        test["significant"] = p is not None and p < alpha

    public_cols = [{k: v for k, v in c.items() if not k.startswith("_")} for c in cols]
    return {
        "title": "Comparison: " + ", ".join(c["id"] for c in cols),
        "columns": public_cols,
        "baseline": base_col["id"],
        "rows": rows,
        "alpha": alpha,
        "n_comparisons": sum(p is not None for p in adjusted),
        "correction": "holm",
        "n_boot": n_boot,
        "seed": seed,
        "skipped": skipped,
        "task_curves": task_curves(runs),
        "runs": [{"name": r.name, "path": str(r.path), "model": r.model, "method": r.method,
                  "dataset": r.dataset, "kind": r.kind} for r in runs],
    }
