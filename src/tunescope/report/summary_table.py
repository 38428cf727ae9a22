"""The short table printed at the end of a run (nanoGPT-style performance summary)."""

from __future__ import annotations

from typing import Any

from tunescope.report.formatting import flops, number, pct, pm, pval


def summary_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(measure, value) rows from a run's report data (report.json)."""
    rows: list[tuple[str, str]] = []
    ev = data.get("evaluation", {})
    for r in ev.get("rows", []):
        base = pm(r.get("base"), r.get("base_stderr")) if r.get("base") is not None else "—"
        tuned = pm(r.get("tuned"), r.get("tuned_stderr")) if r.get("tuned") is not None else "—"
        test = ""
        if r.get("p_holm") is not None:
            test = (f"  (Δ {r['delta_points']:+.1f} pts, Holm p={pval(r['p_holm'])}"
                    f"{', FORGETTING' if r.get('forgetting') else ''})")
        rows.append((f"{r['task']} {r['label']} (n={r.get('n')}) base → tuned", f"{base} → {tuned}{test}"))
    imp = data.get("training", {}).get("loss_improvement", {})
    for kind in ("train", "val"):
        i = imp.get(kind, {})
        if i.get("available"):
            rows.append((f"{kind} loss first → best (improvement)",
                         f"{i['first']['value']:.4f} → {i['best']['value']:.4f} "
                         f"({i['improvement_first_to_best_pct']:.1f}%)"))
    ta = (data.get("training", {}).get("token_accuracy") or {}).get("train")
    if ta:
        rows.append(("final train token accuracy (teacher-forced)", pct(ta["final"])))
    lc = data.get("learning_curve", {})
    ft, of = lc.get("further_training", {}), lc.get("overfitting", {})
    if ft.get("available"):
        rows.append(("further training would likely help", ft["short"]))
    if of.get("available"):
        rows.append(("overfitting", of["short"]))
    eff = data.get("efficiency") or {}
    if eff:
        rows.append(("tokens: supervised / non-padding / total",
                     f"{number(eff.get('tokens_supervised'))} / {number(eff.get('tokens_nonpad'))} / "
                     f"{number(eff.get('tokens_total'))}"))
        rows.append(("training steps (best step)", f"{eff.get('steps')} ({eff.get('best_step')})"))
        if eff.get("throughput_supervised_tps") is not None:
            rows.append(("throughput (supervised tokens/s)", f"{eff['throughput_supervised_tps']:.1f}"))
        best = (f" of the {eff['peak_flops_dtype']} peak, {flops(eff.get('peak_flops'))}"
                if eff.get("peak_flops_dtype") else "")
        rows.append(("MFU", pct(eff.get("mfu")) + best))
        if eff.get("peak_rss_mb") is not None:
            rows.append(("peak RSS", f"{eff['peak_rss_mb']:.0f} MB"))
        if eff.get("cost_usd") is not None:
            rows.append(("estimated training cost", f"${eff['cost_usd']:.4f}"))
    rows += contamination_rows(data.get("contamination") or {})
    wall = data.get("overview", {}).get("wall_s")
    if wall is not None:
        rows.append(("wall time", f"{wall:.1f} s"))
    return rows


def contamination_rows(c: dict[str, Any]) -> list[tuple[str, str]]:
    """A warning line for each task whose scored items overlap the training data, with its clean-subset
    score."""
    rows = []
    for t in c.get("tasks", []) if c.get("available") else []:
        if not t["n_flagged"]:
            continue
        value = (f"{t['n_flagged']} of {t['n']} items ({pct(t['share'], 1)}) share a {c['ngram']}-gram "
                 "with training")
        s = t.get("scores") or {}
        if s.get("available"):
            b = s["by_label"][s["label"]]
            value += (f"; {s['label']} clean subset {pm(b['clean']['value'], b['clean']['stderr'])} "
                      f"(n={b['clean']['n']}) vs full {pm(b['full']['value'], b['full']['stderr'])}")
        rows.append((f"WARNING: {t['task']} items overlap the training data", value))
    return rows
