"""The run report as its templates show it: every figure written out, every row and section decided here.

`present(data)` turns the analysis dictionary (report.json) into one presentation dictionary that
report.md.j2 and report.html.j2 both render, so the two formats cannot disagree on a number, a label
or whether a section is shown. The templates only loop, read fields and escape text for their format;
model text stays raw here (Markdown escapes it with `mdcell` / `mdblock`, HTML autoescapes it).
"""

from __future__ import annotations

from typing import Any

from tunescope.report.contamination_view import present_contamination
from tunescope.report.formatting import dollars, flops, number, pct, peq, pm, pval, setting, signed
from tunescope.report.task_curves_view import present_task_curves, task_eval_time

WORD_LISTS = (("question_words", "wordcloud_questions", "Questions"),
              ("answer_words", "wordcloud_answers", "Model answers (tuned)"))


def present(d: dict[str, Any]) -> dict[str, Any]:
    o = d.get("overview") or {}
    return {
        "title": d.get("title"),
        "run": o.get("run"),
        "started": o.get("started") or "start unknown",
        "finished": o.get("finished"),
        "glance": _glance(d),
        "overview": _overview(o),
        "training": _training(d.get("training") or {}),
        "curves": _curves(d.get("learning_curve") or {}, d.get("smoothed") or {}),
        "task_curves": present_task_curves(d.get("task_curves")),
        "efficiency": _efficiency(d.get("efficiency")),
        "dataset": _dataset(d.get("dataset") or {}),
        "evaluation": _evaluation(d.get("evaluation") or {}),
        "errors": _errors(d.get("errors") or {}),
        "contamination": present_contamination(d.get("contamination")),
        "conclusions": [{"text": c["text"], "basis": ", ".join(c["basis"])}
                        for c in d.get("conclusions") or []],
        "settings": [f"report.{k} = {setting(v)}" for k, v in (d.get("settings") or {}).items()],
    }


def score(row: dict, label: str) -> str:
    return pm(row[label], row.get(f"{label}_stderr")) if row.get(label) is not None else "—"


def _glance(d: dict) -> dict:
    ev, lc = d.get("evaluation") or {}, d.get("learning_curve") or {}
    rows = []
    for i in ev.get("headline", []) if ev.get("available") else []:
        r = ev["rows"][i]
        tested = r.get("p_holm") is not None
        n = number(r.get("n_paired") if r.get("n_paired") is not None else r.get("n"))
        rows.append({"task": r["task"], "label": r["label"], "base": score(r, "base"),
                     "tuned": score(r, "tuned"),
                     "change": (f"{signed(r.get('delta_points'), 1)} points, Holm p{peq(r.get('p_holm'))}"
                                if tested else None),
                     "significance": ((f"significant at α = {ev.get('alpha')}, n = {n}"
                                       if r.get("significant")
                                       else f"not significant at n = {n}") if tested else None),
                     "is_target": r.get("is_target"), "forgetting": r.get("forgetting")})
    ft, of = lc.get("further_training") or {}, lc.get("overfitting") or {}
    further = ft.get("short") if ft.get("available") else None
    overfitting = of.get("short") if of.get("available") else None
    return {"evaluated": bool(ev.get("available")), "rows": rows, "further_training": further,
            "overfitting": overfitting}


def _overview(o: dict) -> dict:
    split = o.get("split") or {}
    timings = ", ".join(f"{k} {number(v)} s" for k, v in (o.get("timings") or {}).items())
    return {
        "model": o.get("model"), "model_source": o.get("model_source"),
        "params": (f"{number(o['trainable_params'])} trainable of {number(o.get('total_params'))} parameters"
                   if o.get("trainable_params") else None),
        "dataset": o.get("dataset"), "data_hash": split.get("data_hash"), "method": o.get("method"),
        "hyperparameters": [f"{k} = {setting(v)}" for k, v in (o.get("hyperparameters") or {}).items()],
        "prompt_template": o.get("prompt_template"),
        "prompt_note": (f"loss on prompt tokens: {'yes' if o['train_on_prompt'] else 'no'}; max length "
                        f"{o.get('max_length')} tokens" if o.get("train_on_prompt") is not None else None),
        "train": number(split.get("train")), "val": number(split.get("val")),
        "val_split": (f"{round(split['val_fraction'] * 100, 1)}% validation, split seed "
                      f"{split.get('split_seed')}"
                      if split.get("val_fraction") else None),
        "heldout": number(split["heldout"]) if split.get("heldout") else None,
        "heldout_from": split.get("heldout_from"),
        "epochs_completed": number(o.get("epochs_completed")),
        "steps": number(o["steps"]) if o.get("steps") is not None else None,
        "epochs_planned": number(o.get("epochs_planned")),
        "max_steps": number(o["max_steps"]) if o.get("max_steps") is not None else None,
        "stopped_early": o.get("stopped_early"),
        "eval_tasks": ", ".join(o.get("eval_tasks") or []) or "none", "eval_limit": o.get("eval_limit"),
        "framework": o.get("framework") or "—",
        "versions": ", ".join(f"{k} {v}" for k, v in (o.get("versions") or {}).items()),
        "device": o.get("device"), "dtype": o.get("dtype"), "seed": o.get("seed"),
        "git_sha": o.get("git_sha") or "—", "wall_s": number(o.get("wall_s")),
        "timings": f" ({timings})" if timings else "",
        "cost": (f"{dollars(o['cost_usd'])} of training at ${o.get('price_per_hour')}/h "
                 f"({o.get('price_source')})"
                 if o.get("cost_usd") is not None else "—"),
    }


def _training(t: dict) -> dict:
    loss_rows = []
    for kind, name in (("train", "Train loss"), ("val", "Validation loss")):
        i = (t.get("loss_improvement") or {}).get(kind) or {}
        row = {"name": name, "available": i.get("available"), "reason": i.get("reason")}
        if i.get("available"):
            def point(key: str, i=i) -> str:
                return f"{number(i[key]['value'])} (step {i[key]['step']})"

            row.update(to_best=f"{signed(i['improvement_first_to_best_pct'], 2)}%",
                       to_last=f"{signed(i['improvement_first_to_last_pct'], 2)}%",
                       first=point("first"), best=point("best"), last=point("last"))
        loss_rows.append(row)
    ta = t.get("token_accuracy") or {}

    def accuracy(a: dict | None) -> dict | None:
        if not a:
            return None
        return {"final": pct(a["final"]), "first": f"{pct(a['first'])} (step {a['first_step']})",
                "last": f"{pct(a['final'])} (step {a['final_step']})"}

    return {"available": t.get("available"), "reason": t.get("reason"), "loss_rows": loss_rows,
            "train_accuracy": accuracy(ta.get("train")), "val_accuracy": accuracy(ta.get("val")),
            "token_accuracy_note": t.get("token_accuracy_note")}


def _curves(lc: dict, smoothed: dict) -> dict:
    ft, of = lc.get("further_training") or {}, lc.get("overfitting") or {}
    out: dict[str, Any] = {"available": lc.get("available"), "smoothing": lc.get("smoothing"),
                           "val_alpha": number(smoothed["val_alpha"], 3) if "val_alpha" in smoothed else None}
    further = {"available": ft.get("available"), "reason": ft.get("reason")}
    if ft.get("available"):
        fit, verdict = ft[ft["basis"]], ft["further_training_would_likely_help"]
        further.update(
            verdict=verdict, verdict_upper=str(verdict).upper(),
            badge="good" if verdict == "yes" else "neutral",
            p_not_enough=pval(fit.get("p_not_falling_enough")),
            min_fall_pct=number(ft.get("min_rel_decrease_pct")),
            basis="validation" if ft["basis"] == "val" else "train", criterion=ft.get("criterion"),
            tail_percent=int(round(ft["tail_fraction"] * 100, 0)), start=fit["window_start_step"],
            end=fit["window_end_step"], n_points=fit["n_points"], widened=fit.get("window_extended"),
            slope=number(fit["slope_per_step"], 3), slope_stderr=number(fit["slope_stderr"], 2),
            t=number(fit["t_stat"], 3), p=pval(fit["p_value"]), p_eq=peq(fit["p_value"]),
            change=f"{signed(fit['relative_change_pct'], 2)}%")
    overfit = {"available": of.get("available"), "reason": of.get("reason")}
    if of.get("available"):
        gaps = []
        for key, name in (("gap_at_last", "last"), ("gap_at_best", "best")):
            g = of.get(key) or {}
            gaps.append({"name": name, "available": g.get("available"), "reason": g.get("reason"),
                         "val_step": g.get("val_step"), "gap": signed(g.get("gap"), 4),
                         "detail": (f"val {number(g['val_loss'])} − train {number(g['train_loss'])} at step "
                                    f"{g['train_step']}" if g.get("available") else None)})
        overfit.update(
            verdict=of["outcome"][0].upper() + of["outcome"][1:], summary=of["verdict"],
            criterion=of.get("criterion"), overfitting=of.get("overfitting"),
            badge={True: "bad", False: "good", None: "neutral"}[of.get("overfitting")],
            badge_text={True: "overfitting", False: "ok", None: "inconclusive"}[of.get("overfitting")],
            window=f"steps {of['fit']['window_start_step']}–{of['fit']['window_end_step']} "
                   f"({of['fit']['n_points']} points)",
            slope=f"{number(of['fit']['slope_per_step'], 3)} ± {number(of['fit']['slope_stderr'], 2)}",
            p=pval(of["fit"]["p_value"]), p_small=pval(of["fit"]["p_rise_below_threshold"]),
            best=f"{number(of['best_val_loss'])} at step {of['best_step']}",
            last=f"{number(of['last_val_loss'])} at step {of['last_step']}",
            steps_after_best=of["steps_after_best"], rise=signed(of.get("val_increase_since_best"), 4),
            rise_pct=f"{signed(of['val_increase_since_best_pct'], 2)}%",
            threshold_pct=of.get("rise_threshold_pct"), gap_at_last=gaps[0], gap_at_best=gaps[1], gaps=gaps)
    out.update(further_training=further, overfitting=overfit)
    return out


def _efficiency(e: dict | None) -> dict | None:
    if not e:
        return None
    own = None
    if e.get("mfu_own_dtype") and e.get("peak_flops_dtype") != e.get("dtype"):
        own = {"mfu": pct(e["mfu_own_dtype"]), "dtype": e.get("dtype"),
               "peak": flops(e.get("peak_flops_own_dtype"))}
    dc = e.get("dtype_choice")
    dtype_choice = None
    if dc:
        dtype_choice = {"dtype": dc.get("dtype"), "auto": dc.get("requested") == "auto",
                        "reason": dc.get("reason"), "rule": dc.get("rule"),
                        "threads": ((f"{dc['threads']} thread" + ("s" if dc["threads"] != 1 else ""))
                                    if dc.get("threads") else None),
                        "shape": "×".join(str(s) for s in dc["shape"]) if dc.get("shape") else None}
    cuda = e.get("cuda_max_allocated_mb")
    return {
        "steps": number(e.get("steps")),
        "planned": number(e["total_steps_planned"]) if e.get("total_steps_planned") else None,
        "best_step": e["best_step"] if e.get("best_step") is not None else "—",
        "stopped_early": e.get("stopped_early"), "epochs": number(e.get("epochs")),
        "tokens_supervised": number(e.get("tokens_supervised")),
        "tokens_nonpad": number(e.get("tokens_nonpad")), "tokens_total": number(e.get("tokens_total")),
        "throughput_supervised": number(e.get("throughput_supervised_tps")),
        "throughput_nonpad": number(e.get("throughput_nonpad_tps")), "mfu": pct(e.get("mfu")),
        "peak_dtype": e.get("peak_flops_dtype"), "peak": flops(e.get("peak_flops")),
        "peak_source": e.get("peak_flops_source"), "measured_peak": bool(e.get("peak_flops")),
        "mfu_own_dtype": own, "dtype_choice": dtype_choice, "peak_rss": number(e.get("peak_rss_mb"), 5),
        "cuda_allocated": number(cuda, 5) if cuda is not None else None, "train_s": number(e.get("train_s")),
        "task_eval": task_eval_time(e),
        "loss_path": ({"path": e["loss_path"], "reason": e.get("loss_path_reason")}
                      if e.get("loss_path") else None),
        "cost": (f"{dollars(e['cost_usd'])} at ${e.get('price_per_hour')}/h ({e.get('price_source')})"
                 if e.get("cost_usd") is not None else "—"),
    }


def _dataset(ds: dict) -> dict:
    words = []
    for key, image, title in WORD_LISTS:
        w = ds.get(key) or {}
        words.append({"title": title, "image": image, "available": w.get("available"),
                      "reason": w.get("reason"), "source": w.get("source"),
                      "n_content_words": number(w.get("n_content_words")),
                      "n_distinct": number(w.get("n_distinct")),
                      "top": [{"word": t["word"], "count": number(t["count"]), "share": pct(t["share"], 1),
                               "texts": number(t["doc_count"])} for t in (w.get("top") or [])[:15]]})
    cl, ol, hl = ds.get("clusters") or {}, ds.get("outliers") or {}, ds.get("highest_loss") or {}
    clusters = dict(cl, silhouette=number(cl.get("silhouette"), 3),
                    projection=str(cl.get("projection") or "").upper(),
                    k_chosen=("chosen by silhouette"
                              if (cl.get("k_selection") or {}).get("method") == "silhouette" else "given"),
                    clusters=[{"id": c["id"], "name": c["name"],
                               "size": f"{c['size']} ({pct(c['share'], 0)})",
                               "terms": [t["term"] for t in c["top_terms"]],
                               "example": c["examples"][0] if c.get("examples") else ""}
                              for c in cl.get("clusters", [])])
    outliers = dict(ol, method=str(ol.get("method") or "").replace("_", " "),
                    outliers=[{"index": x["index"], "score": number(x["score"], 3), "text": x["text"]}
                              for x in ol.get("outliers", [])])
    highest = dict(hl, mean=number(hl.get("mean_loss")), median=number(hl.get("median_loss")),
                   p90=number(hl.get("p90_loss")), n=number(hl.get("n")),
                   examples=[{"index": x["index"], "loss": f"{number(x['loss'])} ({signed(x['z'], 1)})",
                              "text": x["text"], "answer": x["answer"]} for x in hl.get("examples", [])])
    return {"wordcloud_backend": ds.get("wordcloud_backend"), "words": words, "clusters": clusters,
            "outliers": outliers, "highest_loss": highest}


def _flag(r: dict) -> tuple[str, str]:
    """(word, badge class) of a row's verdict: forgetting, a significant gain or drop, or not significant."""
    if r.get("forgetting"):
        return "forgetting", "bad"
    if r.get("significant"):
        return ("gain", "good") if r["delta_points"] > 0 else ("drop", "bad")
    if r.get("p_holm") is not None:
        return "n.s.", "neutral"
    return "", ""


def _evaluation(ev: dict) -> dict:
    if not ev.get("available"):
        return {"available": False, "reason": ev.get("reason")}
    paired = ev.get("paired") or {}
    rows = []
    for r in ev["rows"]:
        test = "—"
        if r.get("test"):
            test = r["test"] + (f" ({r['discordant'][0]} / {r['discordant'][1]})"
                                if r.get("discordant") else "")
            test += f"; {r.get('n_paired')} paired" if r.get("n_paired") != r.get("n") else ""
        word, badge = _flag(r)
        rows.append({"task": r["task"], "is_target": r.get("is_target"), "label": r["label"],
                     "n": number(r.get("n")), "base": score(r, "base"), "tuned": score(r, "tuned"),
                     "delta": signed(r.get("delta_points"), 2),
                     "ci": (f"[{signed(r['ci_low'], 1)}, {signed(r['ci_high'], 1)}]"
                            if r.get("ci_low") is not None else "—"),
                     "test": test, "p": pval(r.get("p_value")), "p_holm": pval(r.get("p_holm")),
                     "forgetting": r.get("forgetting"),
                     "significant": not r.get("forgetting") and r.get("significant"), "flag": word,
                     "badge": badge})
    skipped = "; ".join(f"{s['task']}{' ' + s['metric'] if s.get('metric') else ''} ({s['reason']})"
                        for s in paired.get("skipped") or [])
    return {"available": True, "n_comparisons": paired.get("n_comparisons") if paired.get("available") else 0,
            "paired_available": paired.get("available"), "paired_reason": paired.get("reason"),
            "target_rule": ev.get("target_rule"), "threshold": ev.get("forgetting_threshold_points"),
            "alpha": ev.get("alpha"), "rows": rows,
            "forgetting_tasks": ", ".join(ev.get("forgetting_tasks") or []), "skipped": skipped}


def _accuracy_cells(g: dict, labels: list[str]) -> list[str]:
    return [f"{pm(g[label]['accuracy'], g[label]['stderr'], 1)} ({g[label]['n_correct']}/{g[label]['n']})"
            if g.get(label) else "—" for label in labels]


def _errors(er: dict) -> dict:
    if not er.get("available"):
        return {"available": False, "reason": er.get("reason")}
    tasks = []
    for t in er["tasks"]:
        labels, summary = t["labels"], t["summary"]
        categories = []
        for c in t["categories"]:
            name = c["category"].replace("_", " ")
            examples = [{"label": label, "doc_id": x["doc_id"], "gold": x["gold"], "question": x["question"],
                         "response": x["response"],
                         "final_answer": x["final_answer"] if x.get("final_answer") is not None else "none",
                         "evidence": [(k, "none" if v is None else setting(v))
                                      for k, v in (x.get("evidence") or {}).items()]}
                        for label in labels for x in c[label]["examples"]]
            kinds = None
            if c["category"] == "format_failure":
                kinds = "; ".join(f"{label}: {summary[label]['format_failure_kinds']['no_answer']} without "
                                  "any number, "
                                  f"{summary[label]['format_failure_kinds']['misformatted_correct']} right "
                                  "but misformatted" for label in labels)
            categories.append({"name": name, "description": c.get("description"), "format_kinds": kinds,
                               "cells": [f"{c[label]['count']} ({pct(c[label]['share_of_wrong'], 0)})"
                                         for label in labels],
                               "examples": examples})
        tasks.append({
            "task": t["task"], "labels": labels, "steps_image": f"steps_{t['task']}",
            "item_counts": [summary[label]["n"] for label in labels],
            "correct": [f"{summary[label]['n_correct']} of {summary[label]['n']}" for label in labels],
            "correct_share": [f"{summary[label]['n_correct']} ({pct(summary[label]['accuracy_strict'], 1)})"
                              for label in labels],
            "flexible": [f"{summary[label]['n_correct_flexible']} "
                         f"({pct(summary[label]['accuracy_flexible'], 1)})"
                         for label in labels],
            "wrong": [summary[label]["n_wrong"] for label in labels],
            "categories": categories,
            "by_steps": [{"key": g["key"], "cells": _accuracy_cells(g, labels)}
                         for g in t.get("by_steps") or []],
            "by_cluster": [{"key": g["key"], "name": g["name"], "cells": _accuracy_cells(g, labels)}
                           for g in t.get("by_cluster") or []],
            "by_cluster_note": t.get("by_cluster_note") or "Not available",
        })
    return {"available": True, "definition": er.get("definition"), "tasks": tasks}
