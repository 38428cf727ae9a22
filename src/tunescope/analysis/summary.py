"""Turn a loaded run (config, manifest, metrics, evaluations) into the report's data.

Every number here is read from what the run recorded or computed from it; nothing is estimated
without saying so. The result is a plain dict: `report` renders it, `report.json` stores it.
"""

from __future__ import annotations

METRIC_LABELS = {
    "exact_match,strict-match": "exact match (strict-match)",
    "exact_match,flexible-extract": "exact match (flexible-extract)",
    "acc,none": "accuracy",
    "acc_norm,none": "accuracy (length-normalised)",
}


def _records(metrics: list[dict], kind: str) -> list[dict]:
    return [m for m in metrics if m.get("kind") == kind]


def curves(metrics: list[dict]) -> dict:
    train = _records(metrics, "train")
    val = _records(metrics, "val")
    return {
        "train_steps": [r["step"] for r in train],
        "train_loss": [r["loss"] for r in train],
        "train_token_accuracy": [r["token_accuracy"] for r in train],
        "val_steps": [r["step"] for r in val],
        "val_loss": [r["val_loss"] for r in val],
        "val_token_accuracy": [r["val_token_accuracy"] for r in val],
    }


def _pct_drop(first: float, other: float) -> float | None:
    return None if not first else (first - other) / first * 100


def loss_improvement(metrics: list[dict]) -> dict:
    """Loss improvement in %: first logged value vs best, and vs last (positive = loss went down)."""
    out = {}
    for kind, key in (("train", "loss"), ("val", "val_loss")):
        recs = _records(metrics, kind)
        if len(recs) < 2:
            out[kind] = {"available": False, "reason": f"fewer than two {kind} loss values"}
            continue
        first, last = recs[0], recs[-1]
        best = min(recs, key=lambda r: r[key])
        out[kind] = {"available": True, "first": first[key], "first_step": first["step"], "best": best[key],
                     "best_step": best["step"], "last": last[key], "last_step": last["step"],
                     "improvement_first_to_best_pct": _pct_drop(first[key], best[key]),
                     "improvement_first_to_last_pct": _pct_drop(first[key], last[key])}
    return out


def evaluation_table(run_eval: dict) -> list[dict]:
    """One row per task × metric with base and tuned score ± stderr (fractions, not %)."""
    rows = []
    tasks = {}
    for label, ev in run_eval.items():
        for task, res in ev["results"].get("results", {}).items():
            tasks.setdefault(task, {})[label] = res
    for task, by_label in tasks.items():
        keys = sorted({k for res in by_label.values() for k in res if k in METRIC_LABELS})
        for key in keys:
            metric, filt = key.split(",")
            row = {"task": task, "metric": key, "label": METRIC_LABELS[key]}
            for label in ("base", "tuned"):
                res = by_label.get(label)
                if res is not None and key in res:
                    row[label] = res[key]
                    row[f"{label}_stderr"] = res.get(f"{metric}_stderr,{filt}")
            n = next((ev["results"].get("n-samples", {}).get(task, {}).get("effective")
                      for ev in run_eval.values() if task in ev["results"].get("n-samples", {})), None)
            row["n"] = n
            if "base" in row and "tuned" in row:
                row["delta_points"] = (row["tuned"] - row["base"]) * 100
            rows.append(row)
    return rows


def analyse_run(run: dict) -> dict:
    cfg, manifest, metrics = run["config"], run["manifest"], run["metrics"]
    summary = next(iter(_records(metrics, "summary")), None)
    setup = next(iter(_records(metrics, "setup")), None)
    train = _records(metrics, "train")
    val = _records(metrics, "val")
    t = cfg["training"]
    overview = {
        "run": cfg["name"], "model": cfg["model"]["name"], "model_source": manifest["model"]["source"],
        "dataset": cfg["data"]["source"], "method": t["method"],
        "hyperparameters": {"learning_rate": t["learning_rate"], "epochs": t["epochs"], "max_steps": t["max_steps"],
                            "batch_size": t["batch_size"], "gradient_accumulation": t["gradient_accumulation"],
                            "lr_scheduler": t["lr_scheduler"], "warmup_ratio": t["warmup_ratio"],
                            "early_stopping_patience": t["early_stopping_patience"],
                            **({f"lora_{k}": v for k, v in t["lora"].items()} if t["method"] != "full" else {})},
        "prompt_template": cfg["prompt"]["template"] if not cfg["prompt"]["use_chat_template"] else "(model chat template)",
        "split": manifest["data"], "versions": manifest["versions"], "device": manifest["device"],
        "dtype": manifest["dtype"], "seed": manifest["seed"], "git_sha": manifest.get("git_sha"),
        "started": manifest.get("started"), "wall_s": manifest.get("wall_s"), "timings": manifest.get("timings", {}),
    }
    training = {
        "available": bool(train),
        "loss_improvement": loss_improvement(metrics),
        "final_token_accuracy": train[-1]["token_accuracy"] if train else None,
        "final_val_token_accuracy": val[-1]["val_token_accuracy"] if val else None,
        "token_accuracy_note": "teacher-forced next-token accuracy on response tokens, weighted by tokens; "
                               "NOT task accuracy",
        "setup": setup,
    }
    return {
        "title": f"{cfg['model']['name']} fine-tuned ({t['method']}) on {cfg['data']['source']}",
        "overview": overview,
        "training": training,
        "curves": curves(metrics),
        "efficiency": summary,
        "evaluation": {"available": bool(run["eval"]), "rows": evaluation_table(run["eval"]),
                       "labels": sorted(run["eval"])},
    }
