"""Plots as PNG bytes (matplotlib, Agg backend), embedded inline so the HTML needs no other file.

Every function takes the plain report dictionary (or a part of it) and returns PNG bytes, or ``None``
when there is nothing to draw.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BASE_COLOR = "#8c96a3"
TUNED_COLOR = "#1f5fa8"


def figure_png(fig, tight: bool = True) -> bytes:
    """A matplotlib figure (pyplot's or a standalone `Figure`) as PNG bytes, the figure closed.

    `tight` crops the blank margin around the axes (the report's plots); the word cloud and the cluster
    map keep their full canvas. The ``Software`` metadata entry is dropped so that the bytes depend only
    on the picture: plots are byte-for-byte reproducible with the same matplotlib version.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight" if tight else None,
                metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def loss_curves_png(curves: dict, smoothed: dict | None = None,
                    learning_curve: dict | None = None) -> bytes | None:
    """Raw and smoothed train loss, validation loss (raw points, smoothed line), the window whose slope
    decides "further training would likely help", and the step of minimum validation loss."""
    if not curves.get("train_steps"):
        return None
    smoothed = smoothed or {}
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.plot(curves["train_steps"], curves["train_loss"], color="#b7c6d6", lw=1, label="train loss (per step)")
    if smoothed.get("train_loss"):
        ax.plot(curves["train_steps"], smoothed["train_loss"], color=TUNED_COLOR, lw=2,
                label=f"train loss (EMA {smoothed.get('alpha', 0):g})")
    if curves.get("val_steps"):
        ax.plot(curves["val_steps"], curves["val_loss"], "o", color="#d2691e", ms=4, label="validation loss")
        if smoothed.get("val_loss"):
            ax.plot(curves["val_steps"], smoothed["val_loss"], "-", color="#d2691e", lw=2,
                    label="validation loss (smoothed)")
    lc = learning_curve or {}
    ft = lc.get("further_training") or {}
    if ft.get("available"):
        fit = ft[ft["basis"]]
        ax.axvspan(fit["window_start_step"], fit["window_end_step"], color="#f2e394", alpha=0.35,
                   label="slope window (further-training verdict)")
    of = lc.get("overfitting") or {}
    if of.get("available"):
        ax.axvline(of["best_step"], color="#176b2c", ls="--", lw=1,
                   label=f"min validation loss (step {of['best_step']})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per supervised token")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def task_curves_png(task_curves: dict) -> bytes | None:
    """Each scored task's headline metric against step with a ±1 standard-error band; target tasks solid,
    the others dashed (forgetting curves); the shipped step marked."""
    if not task_curves.get("available"):
        return None
    heads = {(h["task"], h["metric"]) for h in task_curves.get("headline", [])}
    series = [s for s in task_curves["series"] if (s["task"], s["metric"]) in heads]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for i, s in enumerate(series):
        color = plt.cm.tab10(i % 10)
        values = [100 * v for v in s["values"]]
        se = [100 * (e or 0.0) for e in s["stderrs"]]
        kind = "target" if s["is_target"] else "forgetting probe"
        ax.plot(s["steps"], values, "o-" if s["is_target"] else "s--", color=color, ms=4,
                lw=2 if s["is_target"] else 1.5, label=f"{s['task']} {s['label']} ({kind})")
        ax.fill_between(s["steps"], [v - e for v, e in zip(values, se, strict=True)],
                        [v + e for v, e in zip(values, se, strict=True)], color=color, alpha=0.15)
    sel = task_curves.get("selection") or {}
    if sel.get("available") and sel.get("shipped_step") is not None:
        ax.axvline(sel["shipped_step"], color="#176b2c", ls=":", lw=1.5,
                   label=f"shipped step {sel['shipped_step']} ({sel['selected_by']})")
    return _task_score_axes_png(fig, ax)


def _task_score_axes_png(fig, ax) -> bytes:
    """The axes every task-score-against-step plot shares (a run's curves, compare's overlay)."""
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("task score (%) ± 1 SE")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def compare_task_curves_png(entry: dict) -> bytes | None:
    """One task scored during training, one line (±1 SE band) per run: `tunescope compare`'s overlay."""
    if not entry.get("runs"):
        return None
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for i, s in enumerate(entry["runs"]):
        color = plt.cm.tab10(i % 10)
        values = [100 * v for v in s["values"]]
        se = [100 * (e or 0.0) for e in s["stderrs"]]
        ax.plot(s["steps"], values, "o-", color=color, ms=4, lw=1.5, label=f"{s['run']}: {s['label']}")
        ax.fill_between(s["steps"], [v - e for v, e in zip(values, se, strict=True)],
                        [v + e for v, e in zip(values, se, strict=True)], color=color, alpha=0.15)
    ax.set_title(f"{entry['task']} during training", fontsize=10)
    return _task_score_axes_png(fig, ax)


def token_accuracy_png(curves: dict) -> bytes | None:
    steps = curves.get("train_steps") or []
    acc = curves.get("train_token_accuracy") or []
    if not steps or all(a is None for a in acc):
        return None
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.plot(steps, [a if a is not None else float("nan") for a in acc], color=TUNED_COLOR, lw=1,
            label="train")
    if curves.get("val_steps"):
        ax.plot(curves["val_steps"],
                [a if a is not None else float("nan") for a in curves["val_token_accuracy"]], "o-",
                color="#d2691e", ms=4, label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("token accuracy\n(teacher-forced)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def scores_png(rows: list[dict]) -> bytes | None:
    """Base vs tuned headline score per task, with ±1 standard-error bars."""
    rows = [r for r in rows if r.get("base") is not None or r.get("tuned") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.55 * len(rows)))
    ys = list(range(len(rows)))
    h = 0.38
    for off, label, color in ((-h / 2, "base", BASE_COLOR), (h / 2, "tuned", TUNED_COLOR)):
        vals = [100 * (r.get(label) or 0) for r in rows]
        errs = [100 * (r.get(f"{label}_stderr") or 0) for r in rows]
        ax.barh([y + off for y in ys], vals, height=h, xerr=errs, color=color, label=label, capsize=3)
    ax.set_yticks(ys, labels=[f"{r['task']}\n{r['label']}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("score (%) ± 1 standard error")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return figure_png(fig)


def accuracy_by_png(rows: list[dict], title: str, key_label: str) -> bytes | None:
    """Grouped bars of base/tuned accuracy per group (e.g. number of gold steps)."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 2.8))
    xs = list(range(len(rows)))
    w = 0.38
    for off, label, color in ((-w / 2, "base", BASE_COLOR), (w / 2, "tuned", TUNED_COLOR)):
        if not any(r.get(label) for r in rows):
            continue
        vals = [100 * r[label]["accuracy"] if r.get(label) else 0 for r in rows]
        errs = [100 * (r[label]["stderr"] or 0) if r.get(label) else 0 for r in rows]
        ax.bar([x + off for x in xs], vals, width=w, yerr=errs, color=color, label=label, capsize=3)
    ax.set_xticks(xs, labels=[str(r["key"]) for r in rows])
    ax.set_xlabel(key_label)
    ax.set_ylabel("strict-match accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)
