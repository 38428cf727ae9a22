"""The report's "task accuracy during training" section as its templates show it.

Part of the presentation dictionary (`presentation.present`): every figure and verdict written out
here, so report.md and report.html show the same sentences and the templates only loop and read fields.
"""

from __future__ import annotations

from typing import Any

from tunescope.report.formatting import number, peq


def present_task_curves(tc: dict[str, Any] | None) -> dict[str, Any] | None:
    """None when the run scored no task during training (the section is left out)."""
    if not tc or not tc.get("available"):
        return None
    series = tc.get("series") or []
    sel = tc.get("selection") or {}
    selection = None
    if sel.get("available"):
        value = sel.get("shipped_value")
        selection = {
            "step": sel.get("shipped_step"), "selected_by": sel.get("selected_by"),
            "value": f" ({number(value)})" if value is not None else "",
            "others": [{"criterion": o.get("criterion"), "step": o.get("step"),
                        "value": number(o.get("value"))}
                       for o in sel.get("others") or []],
            "early_stopping_on": sel.get("early_stopping_on"),
        }
    div = tc.get("divergence") or {}
    fg = tc.get("forgetting") or {}
    forgetting = None
    if fg.get("available"):
        forgetting = {
            "threshold": fg.get("threshold_points"), "tests": len(fg.get("tests") or []),
            "flagged": ", ".join(fg.get("forgetting_tasks") or []),
            "worst": [{"task": task, "evidence": t.get("evidence"), "p_holm": peq(t.get("p_holm"))}
                      for task, t in (fg.get("worst") or {}).items()],
        }
    return {
        # Not "items": a template reading tc.items would find the dict method of that name.
        "items_per_point": (number(series[0]["n"][0])
                            if series and series[0].get("n") and series[0]["n"][0] else None),
        "selection": selection,
        "further_training": [{"summary": v.get("summary"), "outcome": v.get("outcome")}
                             for v in tc.get("further_training") or [] if v.get("available")],
        "overfitting": [{"summary": v.get("summary"), "outcome": v.get("outcome")}
                        for v in tc.get("overfitting") or [] if v.get("available")],
        "criterion": next((v["criterion"] for kind in ("further_training", "overfitting")
                           for v in tc.get(kind) or [] if v.get("criterion")), None),
        "divergence": [{"task": c.get("task"), "flagged": bool(c.get("diverged")),
                        "direction": c.get("direction"), "evidence": c.get("evidence"),
                        "p_holm": peq(c.get("p_holm"))}
                       for c in div.get("checks") or [] if c.get("direction")],
        "alpha": div.get("alpha"),
        "forgetting": forgetting,
    }


def task_eval_time(e: dict[str, Any]) -> str | None:
    """Time spent scoring tasks during training, beside (not inside) training time; None when none was."""
    spent = e.get("task_eval_s")
    if spent is None:
        return None
    share = f"{100 * spent / e['train_s']:.1f}%" if e.get("train_s") else "—"
    return f"{number(spent)} s ({share} of training time; not part of it)"
