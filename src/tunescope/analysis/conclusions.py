"""The report's conclusions: sentences generated only from computed figures.

Each conclusion lists, in ``basis``, the report.json paths of the figures it states.
"""

from __future__ import annotations

from tunescope.report.formatting import pct, peq
from tunescope.store.scores import headline_rows

from . import error_taxonomy
from .contamination_report import contamination_conclusions


def primary_rows(rows: list[dict]) -> list[dict]:
    """One row per task: its headline metric (``store.scores.headline_metric``)."""
    return headline_rows(rows)


def conclusions(d: dict) -> list[dict]:
    """Sentences generated only from computed figures; ``basis`` lists the report.json paths they rest on."""
    out: list[dict] = []

    def say(section: str, text: str, *basis: str) -> None:
        out.append({"section": section, "text": text, "basis": list(basis)})

    _evaluation_conclusions(d["evaluation"], say)
    _loss_conclusions(d["training"], say)
    _learning_curve_conclusions(d["learning_curve"], say)
    _task_curve_conclusions(d.get("task_curves") or {}, say)
    _error_conclusions(d["errors"], say)
    contamination_conclusions(d.get("contamination"), say)
    _efficiency_conclusions(d.get("efficiency") or {}, say)
    return out


def _evaluation_conclusions(ev: dict, say) -> None:
    """Base vs tuned on each primary row, with its paired test; forgetting on the other tasks."""
    if not ev.get("available"):
        return
    rows = ev["rows"]
    for r in primary_rows(rows):
        i = rows.index(r)
        base = f"{pct(r.get('base'), 1)} ± {pct(r.get('base_stderr'), 1)}"
        tuned = f"{pct(r.get('tuned'), 1)} ± {pct(r.get('tuned_stderr'), 1)}"
        name = f"{r['task']} {r['label']}"
        if r.get("p_holm") is None:
            continue
        ci = (f"; 95% CI of the difference {r['ci_low']:+.1f} to {r['ci_high']:+.1f} points"
              if r.get("ci_low") is not None else "")
        test = (f"{r['test']} p{peq(r['p_value'])}, Holm-adjusted p{peq(r['p_holm'])}, n={r['n_paired']} "
                f"paired items{ci}")
        paths = [f"evaluation.rows[{i}].base", f"evaluation.rows[{i}].tuned", f"evaluation.rows[{i}].p_holm"]
        if r["significant"]:
            verb = "rose" if r["delta_points"] > 0 else "fell"
            say("evaluation",
                f"{name} {verb} from {base} to {tuned} ({r['delta_points']:+.1f} points; {test}).", *paths)
        else:
            say("evaluation", f"{name}: {base} (base) vs {tuned} (tuned), {r['delta_points']:+.1f} points — "
                f"not significant at α={ev['alpha']} after Holm correction ({test}).", *paths)
    non_target = sorted({r["task"] for r in rows if not r["is_target"] and r.get("p_holm") is not None})
    for task in ev.get("forgetting_tasks", []):
        bad = [(i, r) for i, r in enumerate(rows) if r["task"] == task and r.get("forgetting")]
        i, r = bad[0]
        say("evaluation", f"Forgetting flagged on {task}: {r['label']} dropped {-r['delta_points']:.1f} "
            f"points ({pct(r['base'], 1)} → {pct(r['tuned'], 1)}), more than the "
            f"{ev['forgetting_threshold_points']:g}-point threshold and significant after Holm correction "
            f"(p{peq(r['p_holm'])}).",
            f"evaluation.rows[{i}].delta_points", f"evaluation.rows[{i}].p_holm")
    if non_target and not ev.get("forgetting_tasks"):
        say("evaluation", f"Forgetting on the non-target task(s) {', '.join(non_target)}: not flagged — "
            f"no metric dropped by more than {ev['forgetting_threshold_points']:g} points with a "
            f"Holm-significant paired test at α={ev['alpha']}.", "evaluation.forgetting_tasks",
            "evaluation.forgetting_threshold_points")


def _loss_conclusions(training: dict, say) -> None:
    """How far the train and validation losses fell."""
    imp = training.get("loss_improvement", {})
    for kind, name in (("val", "Validation"), ("train", "Train")):
        i = imp.get(kind, {})
        if i.get("available") and i["n_points"] >= 2 and i["improvement_first_to_best_pct"] is not None:
            say("training", f"{name} loss fell {i['improvement_first_to_best_pct']:.1f}% from its first "
                f"value ({i['first']['value']:.4f} at step {i['first']['step']}) to its best "
                f"({i['best']['value']:.4f} at step {i['best']['step']}); first to last: "
                f"{i['improvement_first_to_last_pct']:.1f}%.",
                f"training.loss_improvement.{kind}.improvement_first_to_best_pct",
                f"training.loss_improvement.{kind}.improvement_first_to_last_pct")


def _learning_curve_conclusions(lc: dict, say) -> None:
    """Whether more training would help, and whether the run overfitted."""
    ft = lc.get("further_training", {})
    if ft.get("available"):
        say("learning_curve", ft["summary"][0].upper() + ft["summary"][1:] + ".",
            "learning_curve.further_training.further_training_would_likely_help",
            f"learning_curve.further_training.{ft['basis']}.slope_per_step")
    of = lc.get("overfitting", {})
    if of.get("available"):
        text = (f"{_sentence(of['verdict'])} Validation loss: minimum {of['best_val_loss']:.4f} at step "
                f"{of['best_step']}, last {of['last_val_loss']:.4f} at step {of['last_step']} (threshold "
                f"{of['rise_threshold_pct']:g}%).")
        gap = of.get("gap_at_last", {})
        if gap.get("available") and gap.get("gap") is not None:
            text += (f" Generalization gap (validation − train loss) at step {gap['val_step']}: "
                     f"{gap['gap']:+.4f}.")
        say("learning_curve", text, "learning_curve.overfitting.val_increase_since_best_pct",
            "learning_curve.overfitting.best_step")


def _error_conclusions(er: dict, say) -> None:
    """Wrong answers and format failures, base vs tuned; the most common error category."""
    if not er.get("available"):
        return
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
            tops = [c for c in error_taxonomy.CATEGORIES if s["counts"][c] == most]
            names = " and ".join(c.replace("_", " ") for c in tops)
            say("errors", f"The most common {label} error{' categories' if len(tops) > 1 else ''} on "
                f"{t['task']} {'are' if len(tops) > 1 else 'is'} {names} ({most} of {s['n_wrong']} wrong "
                f"answers{' each' if len(tops) > 1 else ''}).",
                *(f"errors.tasks[{ti}].summary.{label}.counts.{c}" for c in tops))


def _efficiency_conclusions(eff: dict, say) -> None:
    """Training time, tokens and cost."""
    if eff.get("cost_usd") is not None and eff.get("tokens_supervised") is not None:
        scoring = (f" Scoring tasks during training took {eff['task_eval_s']:.0f} s more "
                   f"({100 * eff['task_eval_s'] / eff['train_s']:.0f}% of training time), not counted in it."
                   if eff.get("task_eval_s") is not None and eff.get("train_s") else "")
        say("efficiency", f"Training took {eff['train_s']:.0f} s for {eff['steps']} steps and "
            f"{eff['tokens_supervised']:,} supervised tokens; estimated cost ${eff['cost_usd']:.4f} "
            f"({eff.get('price_source')}).{scoring}", "efficiency.cost_usd", "efficiency.tokens_supervised",
            *(["efficiency.task_eval_s"] if scoring else []))


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def _task_curve_conclusions(tc: dict, say) -> None:
    """Verdicts on task accuracy during training, each with its evidence and test."""
    if not tc.get("available"):
        return
    for kind in ("further_training", "overfitting"):
        for i, v in enumerate(tc[kind]):
            if v.get("available"):
                say("task_curves", _sentence(v["summary"]), f"task_curves.{kind}[{i}].summary")
    div = tc["divergence"]
    for i, c in enumerate(div.get("checks", [])):
        if c.get("direction") is None:
            continue
        path = f"task_curves.divergence.checks[{i}]"
        if c["diverged"]:
            say("task_curves", f"Divergence on {c['task']}: {c['direction']} ({c['evidence']}; Holm-adjusted "
                f"p{peq(c.get('p_holm'))}).", f"{path}.evidence", f"{path}.p_holm")
        else:
            say("task_curves", f"Divergence on {c['task']}: inconclusive — {c['evidence']}; not significant "
                f"at α={div['alpha']} after Holm correction (p{peq(c.get('p_holm'))}).", f"{path}.p_holm")
    fg = tc["forgetting"]
    for task, t in (fg.get("worst") or {}).items():
        say("task_curves", f"Forgetting during training flagged on {task}: {t['evidence']}, more than the "
            f"{fg['threshold_points']:g}-point threshold below step 0 and significant after Holm correction "
            f"(p{peq(t['p_holm'])}).", "task_curves.forgetting.forgetting_tasks")
    if fg.get("available") and not fg["forgetting_tasks"]:
        say("task_curves", f"Forgetting during training: not flagged — no non-target task fell more "
            f"than {fg['threshold_points']:g} points below step 0 with a Holm-significant paired test at α="
            f"{fg['alpha']} ({len(fg['tests'])} tests).", "task_curves.forgetting.forgetting_tasks")
    sel = tc["selection"]
    if sel.get("available"):
        others = "; ".join(f"{o['criterion']} would have shipped step {o['step']} ({o['value']:.4g})"
                           for o in sel["others"])
        value = f" ({sel['shipped_value']:.4g})" if sel.get("shipped_value") is not None else ""
        say("task_curves", f"The shipped weights are step {sel['shipped_step']}'s, chosen by "
            f"{sel['selected_by']}{value}" + (f"; {others}." if others else "."),
            "task_curves.selection.shipped_step", "task_curves.selection.others")
