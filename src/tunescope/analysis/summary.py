"""Turn a run record (config, manifest, metrics, evaluations; see ``run_record``) into the report's data.

Every number here is read from what the run recorded or computed from it by the analysis modules
(``curves``, ``stats``, ``errors``, ``text``, ``clusters``, ``outliers``); nothing is estimated without
saying so. The result is a plain dict: ``report`` renders it, ``report.json`` stores it. Keys starting
with ``_`` (PNG bytes) are rendered into the HTML but left out of ``report.json``.

Sections: ``overview``, ``training``, ``learning_curve``, ``efficiency``, ``dataset``, ``evaluation``,
``errors``, ``conclusions``. A section that cannot be computed is ``{"available": False, "reason": ...}``.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping, Sequence
from typing import Any

from tunescope.config import RunConfig
from tunescope.results_schema import (
    display_order,
    finite_float,
    headline_metric,
    metric_keys,
    metric_label,
    sample_key,
    stderr_key,
    task_n,
)
from tunescope.run_record import Manifest, RunRecord, SetupRecord, SummaryRecord, TrainRecord, ValRecord

from . import curves as curves_mod
from . import errors as errors_mod
from . import stats as stats_mod
from ._util import unavailable

TOKEN_ACCURACY_NOTE = ("teacher-forced next-token accuracy on response tokens, weighted by tokens; "
                       "NOT task accuracy")
TOP_WORDS = 20
N_OUTLIERS = 8
N_HIGHEST_LOSS = 8
_EXAMPLE_CHARS = 400
_CLOUD = {"width": 640, "height": 320, "max_words": 150}


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
        out[name] = ({"first": vals[0][1], "first_step": vals[0][0], "final": vals[-1][1], "final_step": vals[-1][0]}
                     if vals else None)
    return out


# ---------------------------------------------------------------- overview


def _overview(cfg: RunConfig, manifest: Manifest, summary: SummaryRecord | None, setup: SetupRecord | None) -> dict:
    t = cfg.training
    hyper = {k: getattr(t, k) for k in ("learning_rate", "epochs", "max_steps", "batch_size", "gradient_accumulation",
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
                           "forgetting_threshold_points": rs["forgetting_threshold_points"], "alpha": rs["alpha"]}
    if "base" in run_eval and "tuned" in run_eval:
        paired_metrics: dict[str, list[str]] = {}
        for r in rows:
            if "delta_points" in r:
                paired_metrics.setdefault(r["task"], []).append(r["sample_metric"])
        paired = stats_mod.compare_tasks(run_eval["base"]["samples"], run_eval["tuned"]["samples"], paired_metrics,
                                         targets, forgetting_threshold_points=rs["forgetting_threshold_points"],
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


def primary_rows(rows: list[dict]) -> list[dict]:
    """One row per task: its headline metric (``results_schema.headline_metric``)."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        pick = headline_metric(r["metric"] for r in task_rows)
        out.append(next(r for r in task_rows if r["metric"] == pick))
    return out


# ---------------------------------------------------------------- dataset insights


def _is_gsm_task(task: str) -> bool:
    return task == "heldout" or task.startswith("gsm8k")


def _generation_tasks(run_eval: dict) -> list[str]:
    tasks = set()
    for ev in run_eval.values():
        for task, recs in ev.get("samples", {}).items():
            if _is_gsm_task(task) and recs and "response" in recs[0]:
                tasks.add(task)
    return sorted(tasks)


def _cap(n: int, cap: int, seed: int) -> list[int]:
    """Indices of at most ``cap`` of ``n`` items: all of them, or a seeded random sample in order."""
    if n <= cap:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), cap))


def _dataset(record: RunRecord, run_eval: dict, rs: dict, seed: int) -> tuple[dict, dict[str, bytes], dict]:
    """Word frequencies, clusters, outliers and highest-loss examples; also the cluster of each eval item."""
    from . import text as text_mod

    images: dict[str, bytes] = {}
    train_examples = record.train_examples
    gen_tasks = _generation_tasks(run_eval)
    # Evaluation questions, one per (task, doc_id): the fallback corpus and what gets a cluster for accuracy.
    eval_items: list[tuple[str, Any, str]] = []
    seen = set()
    for label in ("tuned", "base"):
        for task in gen_tasks:
            for rec in run_eval.get(label, {}).get("samples", {}).get(task, []):
                key = (task, rec.get("doc_id"))
                if key not in seen and rec.get("question"):
                    seen.add(key)
                    eval_items.append((task, rec.get("doc_id"), rec["question"]))

    out: dict[str, Any] = {"available": True}
    if train_examples:
        questions = [str(r.question or "") for r in train_examples]
        q_source = f"training questions (train_examples.jsonl, {len(questions)} examples)"
        out["train_examples"] = {"available": True, "n": len(questions)}
    else:
        questions = [q for _, _, q in eval_items]
        why = ("train_examples.jsonl is not in the run directory (runs made before it was written)"
               if train_examples is None else "train_examples.jsonl is empty")
        out["train_examples"] = unavailable(why)
        q_source = (f"evaluation questions ({', '.join(gen_tasks)}; training questions unavailable: {why})"
                    if questions else None)

    # Frequent words of the questions and of the tuned model's answers.
    if questions:
        tw = text_mod.top_words(questions, k=TOP_WORDS)
        out["question_words"] = {"source": q_source, **tw}
        if tw["available"]:
            images["wordcloud_questions"] = text_mod.wordcloud_png(
                {w["word"]: w["count"] for w in text_mod.top_words(questions, k=150)["top"]}, **_CLOUD, seed=seed)
    else:
        out["question_words"] = unavailable("no training or evaluation questions recorded")
    answers = [rec.get("response") or "" for task in gen_tasks
               for rec in run_eval.get("tuned", {}).get("samples", {}).get(task, [])]
    if answers:
        tw = text_mod.top_words(answers, k=TOP_WORDS)
        out["answer_words"] = {"source": f"tuned model responses ({', '.join(gen_tasks)}; {len(answers)} responses)",
                               **tw}
        if tw["available"]:
            images["wordcloud_answers"] = text_mod.wordcloud_png(
                {w["word"]: w["count"] for w in text_mod.top_words(answers, k=150)["top"]}, **_CLOUD, seed=seed)
    else:
        out["answer_words"] = unavailable("no tuned model responses on a generation task (heldout / gsm8k)")
    out["wordcloud_backend"] = text_mod.wordcloud_backend()

    # Clusters + outliers on embeddings of (a capped sample of) the questions.
    cluster_of_eval: dict = {}
    cap = rs["max_texts"]
    if len(questions) >= 3:
        from . import clusters as clusters_mod
        from . import outliers as outliers_mod
        from .embeddings import Embedding, embed

        idx = _cap(len(questions), cap, seed)
        texts = [questions[i] for i in idx]
        extra: list[tuple[str, Any, str]] = []
        if train_examples:  # evaluation questions are embedded with them and assigned to the nearest cluster
            extra = [eval_items[i] for i in _cap(len(eval_items), cap, seed)]
        emb = embed(texts + [q for _, _, q in extra], backend=rs["embedding_backend"], seed=seed)
        vecs = emb.vectors
        main = Embedding(vecs[: len(texts)], emb.backend)
        cl = clusters_mod.cluster(texts, seed=seed, projection=rs["projection"], embedding=main)
        cap_note = (f"{len(texts)} of {len(questions)} questions embedded (a seeded random sample; "
                    f"report.max_texts={cap})" if len(texts) < len(questions)
                    else f"all {len(texts)} questions embedded (report.max_texts={cap})")
        meta = {"source": q_source, "n_total": len(questions), "n_embedded": len(texts), "cap": cap,
                "sampled": len(texts) < len(questions), "cap_note": cap_note}
        if cl.get("available"):
            png = cl.pop("map_png", None)
            if png:
                images["cluster_map"] = base64.b64decode(png)
            labels = cl["labels"]  # kept in report.json with the 2-D coordinates: the map's numbers
            import numpy as np

            centres = np.stack([vecs[: len(texts)][np.asarray(labels) == c["id"]].mean(axis=0)
                                for c in cl["clusters"]])
            centres = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
            if train_examples:
                ev = vecs[len(texts):]
                assigned = np.argmax(ev @ centres.T, axis=1) if len(ev) else []
                for (task, doc, _), c in zip(extra, assigned, strict=True):
                    cluster_of_eval[(task, doc)] = int(c)
                meta["eval_assignment"] = (f"{len(extra)} evaluation questions assigned to the nearest cluster "
                                           "centre (cosine)" if extra else None)
            else:
                pos = {i: n for n, i in enumerate(idx)}
                for i, (task, doc, _) in enumerate(eval_items):
                    if i in pos:
                        cluster_of_eval[(task, doc)] = int(labels[pos[i]])
                meta["eval_assignment"] = "the clustered questions are the evaluation questions"
        out["clusters"] = {**meta, **cl}
        ol = outliers_mod.outliers(texts, k=N_OUTLIERS, seed=seed, embedding=main)
        if ol.get("available"):
            for o in ol["outliers"]:
                o["index"] = (_example_index(train_examples[idx[o["index"]]], idx[o["index"]]) if train_examples
                              else idx[o["index"]])
        out["outliers"] = {**meta, **ol}
    else:
        reason = f"{len(questions)} question(s); need at least 3"
        out["clusters"] = unavailable(reason)
        out["outliers"] = unavailable(reason)

    if train_examples:
        from . import outliers as outliers_mod

        losses = [r.loss for r in train_examples]
        hl = outliers_mod.highest_loss_examples(losses, questions, k=N_HIGHEST_LOSS)
        if hl.get("available"):
            for ex in hl["examples"]:
                rec = train_examples[ex["index"]]
                ex["index"] = _example_index(rec, ex["index"])
                ex["answer"] = str(rec.answer or "")[:_EXAMPLE_CHARS]
            hl["loss_meaning"] = "the tuned model's mean per-token loss on the example's answer tokens"
        out["highest_loss"] = hl
    else:
        out["highest_loss"] = unavailable(out["train_examples"]["reason"])
    return out, images, cluster_of_eval


def _example_index(example, position: int) -> int:
    """The example's index in the training set as recorded, else its position in train_examples.jsonl."""
    return example.index if "index" in example.model_fields_set else position


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
            row[label] = ({"n": g["n"], "n_correct": g["n_correct"], "accuracy": g["accuracy"], "stderr": g["stderr"]}
                          if g else None)
        rows.append(row)
    return rows


def _errors(run_eval: dict, cluster_of_eval: dict, cluster_names: dict) -> dict:
    tasks = _generation_tasks(run_eval)
    if not tasks:
        return unavailable("no GSM8K-style generation results (heldout or gsm8k*) in this run")
    out_tasks = []
    for task in tasks:
        by_label = {label: run_eval[label]["samples"].get(task, []) for label in ("base", "tuned")
                    if label in run_eval and run_eval[label]["samples"].get(task)}
        tax = {label: errors_mod.taxonomy(recs, examples_per_category=2) for label, recs in by_label.items()}
        categories = []
        for cat in errors_mod.CATEGORIES:
            entry: dict[str, Any] = {"category": cat, "description": errors_mod.DESCRIPTIONS[cat]}
            for label, t in tax.items():
                c = next(c for c in t["categories"] if c["category"] == cat)
                entry[label] = {"count": c["count"], "share_of_wrong": c["share_of_wrong"], "examples": c["examples"]}
            categories.append(entry)
        steps = {label: errors_mod.accuracy_by(recs, errors_mod.gold_steps) for label, recs in by_label.items()}
        clus = ({label: errors_mod.accuracy_by(recs, lambda r, t=task: cluster_of_eval.get((t, r.get("doc_id"))))
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
    return {"available": True, "definition": errors_mod.DEFINITION, "tasks": out_tasks}


# ---------------------------------------------------------------- conclusions


def _p(p: float | None) -> str:
    """``=0.012`` or ``<0.001``, to follow a ``p``."""
    if p is None:
        return " n/a"
    return "<0.001" if p < 0.001 else f"={p:.3f}"


def _pc(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _conclusions(d: dict) -> list[dict]:
    """Sentences generated only from computed figures; ``basis`` lists the report.json paths they rest on."""
    out: list[dict] = []

    def say(section: str, text: str, *basis: str) -> None:
        out.append({"section": section, "text": text, "basis": list(basis)})

    ev = d["evaluation"]
    if ev.get("available"):
        rows = ev["rows"]
        for r in primary_rows(rows):
            i = rows.index(r)
            base = f"{_pc(r.get('base'))} ± {_pc(r.get('base_stderr'))}"
            tuned = f"{_pc(r.get('tuned'))} ± {_pc(r.get('tuned_stderr'))}"
            name = f"{r['task']} {r['label']}"
            if r.get("p_holm") is None:
                continue
            ci = (f"; 95% CI of the difference {r['ci_low']:+.1f} to {r['ci_high']:+.1f} points"
                  if r.get("ci_low") is not None else "")
            test = (f"{r['test']} p{_p(r['p_value'])}, Holm-adjusted p{_p(r['p_holm'])}, n={r['n_paired']} paired "
                    f"items{ci}")
            paths = [f"evaluation.rows[{i}].base", f"evaluation.rows[{i}].tuned", f"evaluation.rows[{i}].p_holm"]
            if r["significant"]:
                verb = "rose" if r["delta_points"] > 0 else "fell"
                say("evaluation", f"{name} {verb} from {base} to {tuned} ({r['delta_points']:+.1f} points; {test}).",
                    *paths)
            else:
                say("evaluation", f"{name}: {base} (base) vs {tuned} (tuned), {r['delta_points']:+.1f} points — "
                    f"not significant at α={ev['alpha']} after Holm correction ({test}).", *paths)
        non_target = sorted({r["task"] for r in rows if not r["is_target"] and r.get("p_holm") is not None})
        for task in ev.get("forgetting_tasks", []):
            bad = [(i, r) for i, r in enumerate(rows) if r["task"] == task and r.get("forgetting")]
            i, r = bad[0]
            say("evaluation", f"Forgetting flagged on {task}: {r['label']} dropped {-r['delta_points']:.1f} points "
                f"({_pc(r['base'])} → {_pc(r['tuned'])}), more than the {ev['forgetting_threshold_points']:g}-point "
                f"threshold and significant after Holm correction (p{_p(r['p_holm'])}).",
                f"evaluation.rows[{i}].delta_points", f"evaluation.rows[{i}].p_holm")
        if non_target and not ev.get("forgetting_tasks"):
            say("evaluation", f"No forgetting flagged on the non-target task(s) {', '.join(non_target)}: no metric "
                f"dropped by more than {ev['forgetting_threshold_points']:g} points with a Holm-significant "
                "paired test.", "evaluation.forgetting_tasks", "evaluation.forgetting_threshold_points")

    imp = d["training"].get("loss_improvement", {})
    for kind, name in (("val", "Validation"), ("train", "Train")):
        i = imp.get(kind, {})
        if i.get("available") and i["n_points"] >= 2 and i["improvement_first_to_best_pct"] is not None:
            say("training", f"{name} loss fell {i['improvement_first_to_best_pct']:.1f}% from its first value "
                f"({i['first']['value']:.4f} at step {i['first']['step']}) to its best ({i['best']['value']:.4f} at "
                f"step {i['best']['step']}); first to last: {i['improvement_first_to_last_pct']:.1f}%.",
                f"training.loss_improvement.{kind}.improvement_first_to_best_pct",
                f"training.loss_improvement.{kind}.improvement_first_to_last_pct")
    lc = d["learning_curve"]
    ft = lc.get("further_training", {})
    if ft.get("available"):
        say("learning_curve", ft["summary"][0].upper() + ft["summary"][1:] + ".",
            "learning_curve.further_training.further_training_would_likely_help",
            f"learning_curve.further_training.{ft['basis']}.slope_per_step")
    of = lc.get("overfitting", {})
    if of.get("available"):
        if of["overfitting"]:
            text = (f"Overfitting: validation loss rose {of['val_increase_since_best_pct']:.1f}% from its minimum "
                    f"{of['best_val_loss']:.4f} at step {of['best_step']} to {of['last_val_loss']:.4f} at step "
                    f"{of['last_step']} (threshold {of['rise_threshold_pct']:g}%).")
        else:
            rise = of["val_increase_since_best_pct"]
            text = (f"No evidence of overfitting: validation loss at the last step ({of['last_val_loss']:.4f}, step "
                    f"{of['last_step']}) is within {of['rise_threshold_pct']:g}% of its minimum "
                    f"({of['best_val_loss']:.4f} at step {of['best_step']}"
                    + (f"; +{rise:.2f}%)." if rise is not None else ")."))
        gap = of.get("gap_at_last", {})
        if gap.get("available") and gap.get("gap") is not None:
            text += f" Generalization gap (validation − train loss) at step {gap['val_step']}: {gap['gap']:+.4f}."
        say("learning_curve", text, "learning_curve.overfitting.val_increase_since_best_pct",
            "learning_curve.overfitting.best_step")

    er = d["errors"]
    if er.get("available"):
        for ti, t in enumerate(er["tasks"]):
            if "base" in t["summary"] and "tuned" in t["summary"]:
                b, tu = t["summary"]["base"], t["summary"]["tuned"]
                fb, ftu = b["counts"]["format_failure"], tu["counts"]["format_failure"]
                say("errors", f"On {t['task']}, wrong answers went from {b['n_wrong']} of {b['n']} (base) to "
                    f"{tu['n_wrong']} of {tu['n']} (tuned); format failures from {fb} to {ftu}.",
                    f"errors.tasks[{ti}].summary.base.n_wrong", f"errors.tasks[{ti}].summary.tuned.n_wrong",
                    f"errors.tasks[{ti}].summary.tuned.counts.format_failure")
            label = "tuned" if "tuned" in t["summary"] else "base"
            s = t["summary"][label]
            if s["n_wrong"]:
                most = max(s["counts"].values())
                tops = [c for c in errors_mod.CATEGORIES if s["counts"][c] == most]
                names = " and ".join(c.replace("_", " ") for c in tops)
                say("errors", f"The most common {label} error{' categories' if len(tops) > 1 else ''} on {t['task']} "
                    f"{'are' if len(tops) > 1 else 'is'} {names} ({most} of {s['n_wrong']} wrong answers"
                    f"{' each' if len(tops) > 1 else ''}).",
                    *(f"errors.tasks[{ti}].summary.{label}.counts.{c}" for c in tops))
    eff = d.get("efficiency") or {}
    if eff.get("cost_usd") is not None and eff.get("tokens_supervised") is not None:
        say("efficiency", f"Training took {eff['train_s']:.0f} s for {eff['steps']} steps and "
            f"{eff['tokens_supervised']:,} supervised tokens; estimated cost ${eff['cost_usd']:.4f} "
            f"({eff.get('price_source')}).", "efficiency.cost_usd", "efficiency.tokens_supervised")
    return out


# ---------------------------------------------------------------- entry point


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
    run_eval = {label: {"results": ev.results, "samples": ev.samples} for label, ev in record.evaluations.items()}

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
        "further_training": curves_mod.further_training_verdict(metrics, tail_fraction=rs["tail_fraction"]),
        "overfitting": curves_mod.overfitting_verdict(metrics),
    }
    evaluation = _evaluation(run_eval, cfg, rs, seed)
    dataset, images, cluster_of_eval = _dataset(record, run_eval, rs, seed)
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
        "efficiency": summary.as_dict() if summary else None,
        "dataset": dataset,
        "evaluation": evaluation,
        "errors": _errors(run_eval, cluster_of_eval, names),
    }
    data["conclusions"] = _conclusions(data)
    data["_images"] = images
    return data
