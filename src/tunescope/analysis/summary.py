"""Turn a run record (config, manifest, metrics, evaluations; see ``store.run_folder``) into the report's
data.

Every number here is read from what the run recorded or computed from it by the analysis modules
(``curves``, ``stats``, ``errors``, ``text``, ``clusters``, ``outliers``); nothing is estimated without
saying so. The result is a plain dict: ``report`` renders it, ``report.json`` stores it. Keys starting
with ``_`` (PNG bytes) are rendered into the HTML but left out of ``report.json``.

Sections: ``overview``, ``training``, ``learning_curve``, ``task_curves`` (tasks scored during training),
``efficiency``, ``dataset``, ``evaluation``,
``errors``, ``contamination`` (training text against the scored items), ``conclusions``. A section that cannot
be computed is ``{"available": False, "reason": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunescope.config.run_config import RunConfig
from tunescope.store.run_folder import RunRecord
from tunescope.store.schema import Manifest, SetupRecord, SummaryRecord, TrainRecord, ValRecord
from tunescope.store.scores import (
    display_order,
    finite_float,
    metric_keys,
    metric_label,
    sample_key,
    stderr_key,
    task_n,
)

from . import curves as curves_mod
from . import error_taxonomy
from . import stats as stats_mod
from . import task_curves as task_curves_mod
from ._util import unavailable
from .conclusions import conclusions, primary_rows
from .contamination_report import contamination_section
from .dataset_insights import dataset_insights, generation_tasks
from .divergence import first_divergence

TOKEN_ACCURACY_NOTE = ("teacher-forced next-token accuracy on response tokens, weighted by tokens; "
                       "NOT task accuracy")


# ---------------------------------------------------------------- curves


def curves(train: list[TrainRecord], val: list[ValRecord]) -> dict:
    return {
        "train_steps": [r.step for r in train],
        "train_loss": [r.loss for r in train],
        "train_token_accuracy": [r.token_accuracy for r in train],
        "val_steps": [r.step for r in val],
        "val_loss": [r.val_loss for r in val],
        "val_token_accuracy": [r.val_token_accuracy for r in val],
    }


def _median_gap(steps: list) -> float:
    gaps = sorted(b - a for a, b in zip(steps, steps[1:], strict=False) if b > a)
    return float(gaps[len(gaps) // 2]) if gaps else 1.0


def _smoothed(c: dict, alpha: float) -> dict:
    """EMA-smoothed curves. Validation is logged less often than train loss, so its weight is
    ``alpha ** (val spacing / train spacing)``: the same smoothing per optimizer step, not per point
    (otherwise the sparse validation curve would lag far behind)."""
    ratio = _median_gap(c["val_steps"]) / _median_gap(c["train_steps"]) if c["val_steps"] else 1.0
    val_alpha = alpha ** max(ratio, 1.0)
    return {"alpha": alpha, "val_alpha": val_alpha,
            "train_loss": curves_mod.smooth(c["train_loss"], alpha) if c["train_loss"] else [],
            "val_loss": curves_mod.smooth(c["val_loss"], val_alpha) if c["val_loss"] else []}


def _token_accuracy(train: list[TrainRecord], val: list[ValRecord]) -> dict:
    out: dict[str, Any] = {"note": TOKEN_ACCURACY_NOTE}
    series = (("train", [(r.step, r.token_accuracy) for r in train]),
              ("val", [(r.step, r.val_token_accuracy) for r in val]))
    for name, points in series:
        vals = [(step, finite_float(v)) for step, v in points if finite_float(v) is not None]
        out[name] = ({"first": vals[0][1], "first_step": vals[0][0], "final": vals[-1][1],
                      "final_step": vals[-1][0]}
                     if vals else None)
    return out


# ---------------------------------------------------------------- overview


def _overview(cfg: RunConfig, manifest: Manifest, summary: SummaryRecord | None,
              setup: SetupRecord | None) -> dict:
    t = cfg.training
    hyper = {k: getattr(t, k)
             for k in ("learning_rate", "epochs", "max_steps", "batch_size", "gradient_accumulation",
                                        "lr_scheduler", "warmup_ratio", "weight_decay", "max_grad_norm",
                                        "early_stopping_patience", "eval_every")}
    if t.method != "full":
        hyper.update({f"lora_{k}": v for k, v in t.lora.model_dump(mode="json").items()})
    versions = manifest.versions
    framework = ", ".join(f"{name} {versions[key]}" for key, name in
                          (("torch", "PyTorch"), ("transformers", "Transformers"), ("peft", "PEFT"))
                          if versions.get(key))
    return {
        "run": cfg.name, "model": cfg.model.name, "model_source": manifest.model.source,
        "dataset": cfg.data.source, "method": t.method, "hyperparameters": hyper,
        "prompt_template": "(model chat template)" if cfg.prompt.use_chat_template else cfg.prompt.template,
        "train_on_prompt": cfg.prompt.train_on_prompt, "max_length": cfg.prompt.max_length,
        "split": dict(manifest.data),
        "epochs_planned": t.epochs, "max_steps": t.max_steps,
        "epochs_completed": summary.epochs if summary else None, "steps": summary.steps if summary else None,
        "stopped_early": summary.stopped_early if summary else None,
        "trainable_params": setup.trainable_params if setup else None,
        "total_params": setup.total_params if setup else None,
        "framework": framework or None, "versions": versions, "device": manifest.device,
        "dtype": manifest.dtype, "seed": manifest.seed, "git_sha": manifest.git_sha,
        "started": manifest.started, "finished": manifest.finished, "wall_s": manifest.wall_s,
        "timings": manifest.timings,
        "cost_usd": summary.cost_usd if summary else None,
        "price_per_hour": summary.price_per_hour if summary else None,
        "price_source": summary.price_source if summary else None,
        "eval_tasks": cfg.eval.tasks, "eval_limit": cfg.eval.limit,
    }


# ---------------------------------------------------------------- evaluation


def target_tasks(cfg: RunConfig, tasks: Sequence[str]) -> tuple[set[str], str]:
    """Tasks the run trained for: ``heldout``, plus ``gsm8k*`` when the training data was GSM8K-style."""
    source = cfg.data.source
    mathy = "gsm8k" in source.lower() or source == "synthetic-math"
    targets = {t for t in tasks if t == "heldout" or (mathy and t.startswith("gsm8k"))}
    rule = "heldout" + (f" and gsm8k* (the run trained on {source})" if mathy else "")
    return targets, rule


def _evaluation(run_eval: dict, cfg: RunConfig, rs: dict, seed: int) -> dict:
    if not run_eval:
        return unavailable("this run has no evaluation (no eval/base or eval/tuned results.json)",
                           rows=[], labels=[], headline=[])
    # A scored group (mmlu) is paired and counted over its subjects' records.
    run_eval = {label: {**ev, "samples": stats_mod.with_group_samples(ev["results"], ev.get("samples", {}))}
                for label, ev in run_eval.items()}
    by_task: dict[str, dict[str, Mapping]] = {}
    for label, ev in run_eval.items():
        for task, res in ev["results"].get("results", {}).items():
            by_task.setdefault(task, {})[label] = res
    targets, rule = target_tasks(cfg, sorted(by_task))
    rows = []
    for task in sorted(by_task, key=lambda t: (t not in targets, t)):
        by_label = by_task[task]
        keys = sorted({k for res in by_label.values() for k in metric_keys(res)}, key=display_order)
        for key in keys:
            row: dict[str, Any] = {"task": task, "metric": key, "sample_metric": sample_key(key),
                                   "label": metric_label(key), "is_target": task in targets}
            for label in ("base", "tuned"):
                res = by_label.get(label)
                if res is not None and key in res:
                    ev = run_eval[label]
                    row[label] = finite_float(res[key])
                    row[f"{label}_stderr"] = finite_float(res.get(stderr_key(key)))
                    row[f"{label}_n"] = task_n(ev["results"], task, ev["samples"].get(task))
            row["n"] = row.get("tuned_n", row.get("base_n"))
            if row.get("base") is not None and row.get("tuned") is not None:
                row["delta_points"] = (row["tuned"] - row["base"]) * 100
            rows.append(row)
    out: dict[str, Any] = {"available": True, "labels": sorted(run_eval), "rows": rows,
                           "headline": [rows.index(r) for r in primary_rows(rows)],
                           "target_tasks": sorted(targets), "target_rule": rule,
                           "forgetting_threshold_points": rs["forgetting_threshold_points"],
                           "alpha": rs["alpha"]}
    if "base" in run_eval and "tuned" in run_eval:
        paired_metrics: dict[str, list[str]] = {}
        for r in rows:
            if "delta_points" in r:
                paired_metrics.setdefault(r["task"], []).append(r["sample_metric"])
        paired = stats_mod.compare_tasks(run_eval["base"]["samples"], run_eval["tuned"]["samples"],
                                         paired_metrics, targets,
                                         forgetting_threshold_points=rs["forgetting_threshold_points"],
                                         alpha=rs["alpha"], n_boot=rs["bootstrap_resamples"], seed=seed)
        out["paired"] = paired
        comps = {(c["task"], c["metric"]): i for i, c in enumerate(paired.get("comparisons", []))}
        for r in rows:
            i = comps.get((r["task"], r["sample_metric"]))
            if i is None:
                continue
            c = paired["comparisons"][i]
            r.update(comparison_index=i, n_paired=c["n"], p_value=c["p_value"],
                     test=paired_test_name(c["test"]),
                     p_holm=c["p_holm"], significant=c["significant"], ci_low=c["ci_points"]["low"],
                     ci_high=c["ci_points"]["high"], forgetting=c["forgetting"],
                     discordant=(c["test"].get("b"), c["test"].get("c")) if "b" in c["test"] else None)
        out["forgetting_tasks"] = paired.get("forgetting_tasks", [])
    else:
        missing = "tuned" if "base" in run_eval else "base"
        out["paired"] = unavailable(f"no {missing} evaluation to compare with")
        out["forgetting_tasks"] = []
    return out


def paired_test_name(test: Mapping[str, Any]) -> str | None:
    """``McNemar exact`` / ``McNemar χ²`` / ``paired t-test``: the short name of a paired test's method."""
    method = test.get("method")
    if "b" not in test:
        return method
    return "McNemar exact" if method == "exact binomial" else "McNemar χ²"


# ---------------------------------------------------------------- error analysis


def _merge_groups(by_label: dict[str, dict], names: dict | None = None) -> list[dict]:
    keys: dict = {}
    for res in by_label.values():
        for g in res.get("groups", []) if res.get("available") else []:
            keys.setdefault(g["key"], None)
    rows = []
    for key in keys:
        row: dict[str, Any] = {"key": key}
        if names is not None:
            row["name"] = names.get(key)
        for label, res in by_label.items():
            g = next((g for g in res.get("groups", []) if g["key"] == key), None)
            row[label] = ({"n": g["n"], "n_correct": g["n_correct"], "accuracy": g["accuracy"],
                           "stderr": g["stderr"]}
                          if g else None)
        rows.append(row)
    return rows


def _errors(run_eval: dict, cluster_of_eval: dict, cluster_names: dict) -> dict:
    tasks = generation_tasks(run_eval)
    if not tasks:
        return unavailable("no GSM8K-style generation results (heldout or gsm8k*) in this run")
    out_tasks = []
    for task in tasks:
        by_label = {label: run_eval[label]["samples"].get(task, []) for label in ("base", "tuned")
                    if label in run_eval and run_eval[label]["samples"].get(task)}
        tax = {label: error_taxonomy.taxonomy(recs, examples_per_category=2)
               for label, recs in by_label.items()}
        categories = []
        for cat in error_taxonomy.CATEGORIES:
            entry: dict[str, Any] = {"category": cat, "description": error_taxonomy.DESCRIPTIONS[cat]}
            for label, t in tax.items():
                c = next(c for c in t["categories"] if c["category"] == cat)
                entry[label] = {"count": c["count"], "share_of_wrong": c["share_of_wrong"],
                                "examples": c["examples"]}
            categories.append(entry)
        steps = {label: error_taxonomy.accuracy_by(recs, error_taxonomy.gold_steps)
                 for label, recs in by_label.items()}
        clus = ({label: error_taxonomy.accuracy_by(
                    recs, lambda r, t=task: cluster_of_eval.get((t, r.get("doc_id"))))
                 for label, recs in by_label.items()} if cluster_of_eval else {})
        out_tasks.append({
            "task": task, "labels": list(by_label),
            "summary": {label: {k: t[k] for k in ("n", "n_correct", "n_wrong", "n_correct_flexible",
                                                  "accuracy_strict", "accuracy_flexible", "counts",
                                                  "format_failure_kinds")}
                        for label, t in tax.items()},
            "categories": categories,
            "by_steps": _merge_groups(steps),
            "by_cluster": _merge_groups(clus, cluster_names) if clus else [],
            "by_cluster_note": (None if clus else "no problem clusters to group by"),
        })
    return {"available": True, "definition": error_taxonomy.DEFINITION, "tasks": out_tasks}


def _efficiency(summary, manifest) -> dict | None:
    """The training summary record, with how the run's dtype was chosen (the manifest's figures)."""
    if summary is None:
        return None
    return {**summary.as_dict(), "dtype_choice": getattr(manifest, "dtype_choice", None)}


# ---------------------------------------------------------------- entry point


def _say_divergence(data: dict, diverged: dict | None) -> None:
    """A diverged run says so, with its step, first among the conclusions and in every curve verdict that
    its missing (non-finite) points left without figures."""
    data["training"]["diverged"] = diverged
    if diverged is None:
        return
    lc = data["learning_curve"]
    for section in (data["training"]["loss_improvement"], lc["further_training"], lc["overfitting"]):
        if isinstance(section, dict) and section.get("available") is False:
            section["reason"] = f"{diverged['text']}; {section.get('reason') or 'no figures'}"
    data["conclusions"].insert(0, {"section": "training", "text": f"{diverged['text'][0].upper()}"
                                   f"{diverged['text'][1:]}; later points of that curve are not shown.",
                                   "basis": ["training.diverged"]})


def analyse_run(record: RunRecord) -> dict:
    cfg, manifest = record.config, record.manifest
    rs = cfg.report.model_dump()
    seed = cfg.seed
    summary, setup = record.summary, record.setup
    train, val = record.records(TrainRecord), record.records(ValRecord)
    # The curve analysis works on metrics.jsonl-shaped dicts.
    metrics = [m.as_dict() for m in record.metrics]
    c = curves(train, val)
    # Per-sample records stay the plain dicts of their JSONL files (layout in ARCHITECTURE.md).
    run_eval = {label: {"results": ev.results, "samples": ev.samples}
                for label, ev in record.evaluations.items()}

    training = {
        "available": bool(train),
        "loss_improvement": curves_mod.loss_improvement(metrics),
        "token_accuracy": _token_accuracy(train, val),
        "final_token_accuracy": finite_float(train[-1].token_accuracy) if train else None,
        "final_val_token_accuracy": finite_float(val[-1].val_token_accuracy) if val else None,
        "token_accuracy_note": TOKEN_ACCURACY_NOTE,
        "setup": setup.as_dict() if setup else None,
    }
    if not train:
        training["reason"] = "no training steps were recorded in metrics.jsonl"
    learning_curve = {
        "available": bool(train),
        "smoothing": rs["smoothing"],
        "further_training": curves_mod.further_training_verdict(metrics, tail_fraction=rs["tail_fraction"],
                                                             alpha=rs["alpha"]),
        "overfitting": curves_mod.overfitting_verdict(metrics, alpha=rs["alpha"]),
    }
    evaluation = _evaluation(run_eval, cfg, rs, seed)
    scored_tasks = sorted({m.get("task") for m in metrics if m.get("kind") == "task_eval"})
    task_curves = task_curves_mod.analyse(metrics, record.task_item_records,
                                          target_tasks(cfg, scored_tasks)[0],
                                          summary.as_dict() if summary else None, c["val_steps"],
                                          c["val_loss"], rs)
    dataset, images, cluster_of_eval = dataset_insights(record.train_examples, run_eval, rs, seed)
    cl = dataset.get("clusters", {})
    names = {c_["id"]: c_["name"] for c_ in cl.get("clusters", [])} if cl.get("available") else {}
    title = (f"{cfg.model.name} fine-tuned ({cfg.training.method}) on {cfg.data.source}" if train
             else f"{cfg.model.name}: run {cfg.name} (no training recorded)")
    data = {
        "schema_version": 2,
        "title": title,
        "settings": rs,
        "overview": _overview(cfg, manifest, summary, setup),
        "training": training,
        "curves": c,
        "smoothed": _smoothed(c, rs["smoothing"]),
        "learning_curve": learning_curve,
        "task_curves": task_curves,
        "efficiency": _efficiency(summary, manifest),
        "dataset": dataset,
        "evaluation": evaluation,
        "errors": _errors(run_eval, cluster_of_eval, names),
        "contamination": contamination_section(record.contamination, run_eval, rs, seed),
    }
    data["conclusions"] = conclusions(data)
    _say_divergence(data, first_divergence(metrics))
    data["_images"] = images
    return data
