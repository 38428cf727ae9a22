"""`tunescope runs list | show | leaderboard`: the local run registry as tables."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tunescope.cli.console import out

runs_app = typer.Typer(no_args_is_help=True, help="The local run registry ($TUNESCOPE_REGISTRY, default "
                                                   "~/.cache/tunescope/registry.sqlite).")


def _fmt_score(value, stderr) -> str:
    from tunescope.report.formatting import pm

    return pm(value, stderr)


@runs_app.command("list")
def runs_list(
    grid: Annotated[str | None, typer.Option("--grid", help="Only the runs of this grid (its name).")] = None,
) -> None:
    """Every registered run, newest first, with its headline scores."""
    from tunescope.store import registry as run_registry

    rows = run_registry.list_runs(grid=grid)
    table = Table(title=f"{len(rows)} registered run(s)")
    for col in ("run", "model", "method", "data", "finished", "scores (base → tuned)", "path"):
        table.add_column(col)
    for r in rows:
        by_task: dict[str, dict] = {}
        for s in r["headline"]:
            by_task.setdefault(s["task"], {})[s["label"]] = s
        scores = "; ".join(
            f"{task}: " + " → ".join(_fmt_score(v["value"], v["stderr"]) for v in labels.values())
            for task, labels in by_task.items())
        table.add_row(r["name"], r["model"] or "—", r["method"] or "—", r["dataset"] or "—",
                      r["finished"] or "—", scores or "—", r["path"] + ("" if r["exists"] else " (missing)"))
    out.print(table)


@runs_app.command("show")
def runs_show(ref: Annotated[str, typer.Argument(metavar="RUN", help="Run name or directory.")]) -> None:
    """One run: what it was, its training figures and every score."""
    from tunescope.report.formatting import number
    from tunescope.store import registry as run_registry

    r = run_registry.get_run(ref)
    info = Table(title=f"run {r['name']}", show_header=False)
    info.add_column("key")
    info.add_column("value")
    for key in ("path", "model", "dataset", "method", "device", "started", "finished", "wall_s", "train_s",
                "steps", "epochs", "tokens_supervised", "cost_usd", "train_loss_first", "train_loss_last",
                "val_loss_first", "val_loss_best", "further_training", "registered_at"):
        info.add_row(key, number(r.get(key)))
    info.add_row("overfitting",
                 "—" if r.get("overfitting") is None else ("yes" if r["overfitting"] else "no"))
    info.add_row("forgetting flagged on", ", ".join(r["forgetting_tasks"]) or "none")
    out.print(info)
    if r.get("best_by"):
        best = Table(title="best step under each criterion (adapter/ holds the one marked shipped)")
        for col in ("criterion", "step", "value", ""):
            best.add_column(col)
        for name, point in r["best_by"].items():
            best.add_row(name, str(point["step"]), number(point["value"]),
                         "shipped" if name == r.get("selected_by") else "")
        out.print(best)
    scores = Table(title="scores")
    for col in ("task", "metric", "label", "score ± stderr", "n"):
        scores.add_column(col)
    for s in r["scores"]:
        scores.add_row(s["task"], s["metric"], s["label"], _fmt_score(s["value"], s["stderr"]),
                       number(s["n"]))
    out.print(scores)


@runs_app.command("leaderboard")
def runs_leaderboard(
    task: Annotated[str, typer.Option("--task", "-t", help="Task name, e.g. gsm8k, heldout, hellaswag.")],
    metric: Annotated[str | None, typer.Option(help="e.g. exact_match,strict-match or acc_norm (default: the "
                                                    "task's primary metric).")] = None,
    label: Annotated[str | None, typer.Option(help="Only base or only tuned evaluations.")] = None,
) -> None:
    """Registered evaluations on one task, best first (with stderr and n: close scores are not a ranking)."""
    from tunescope.report.formatting import number
    from tunescope.store import registry as run_registry

    board = run_registry.leaderboard(task, metric=metric, label=label)
    table = Table(title=f"{board['task']} · {board['metric']}")
    for col in ("#", "run", "eval", "model", "score ± stderr", "n", "path"):
        table.add_column(col)
    for r in board["rows"]:
        table.add_row(str(r["rank"]), r["name"], r["label"], r["model"] or "—",
                      _fmt_score(r["value"], r["stderr"]), number(r["n"]), r["path"])
    out.print(table)
