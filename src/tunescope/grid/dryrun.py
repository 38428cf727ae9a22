"""`tunescope grid --dry-run`: the runs a grid would make, with the estimate of `grid.cost` and how it was
made."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_dry_run(g, out: Console) -> None:
    from tunescope.grid.cost import estimate
    from tunescope.report.formatting import number as num

    check_local_data(g)
    est = estimate(g)
    table = Table(title=f"grid {g.name}: {len(g.cells)} cells × {len(g.seeds)} seeds → {g.folder}")
    for col in ("run", *g.axes, "seed", "steps", "train tokens", "eval items", "est. time", "est. cost"):
        table.add_column(col, justify="right" if col not in ("run", *g.axes) else "left")
    for run, e in zip(g.runs, est["runs"], strict=True):
        items = (f"{e['eval_items']}" + (f" + {e['base_eval_items']} base" if e["base_eval_items"] else "")
                 + (f" + {e['during_training_items']} during training" if e["during_training_items"] else ""))
        table.add_row(run.name, *(str(run.axes[a]) for a in g.axes), str(run.seed), num(e["steps"]),
                      num(round(e["train_tokens"])) if e["train_tokens"] else "—", items,
                      _duration(e["total_s"]), f"${e['cost_usd']:.3f}" if e["cost_usd"] is not None else "—")
    out.print(table)
    total = _duration(est["total_s"])
    cost = f"${est['total_cost_usd']:.2f}" if est["total_cost_usd"] is not None else "unknown"
    out.print(f"estimated total: {total} run one after another, {cost}")
    out.print("how: training time = steps × examples per step × tokens per example ÷ throughput, plus "
              "validation passes at a third of that rate; evaluation time = items ÷ items per second (base "
              "model once per model, items scored during training included); upper bound (early stopping "
              "shortens runs)")
    for line in est["how"]:
        out.print(f"  {line}")
    tpe = sorted({e["tokens_per_example_from"] for e in est["runs"]})
    out.print(f"  tokens per example: {', '.join(tpe)}")
    if est["total_s"] is None:
        out.print("  no throughput known for some runs: set estimate.train_tokens_per_s and "
                  "estimate.eval_items_per_s in the grid file, or finish one run of the model first")


def check_local_data(g) -> None:
    """Every local data file of the grid's runs exists and reads, each checked once (a bad row is named
    by file:line), so a dry run finds what the runs would fail on. Hub datasets are left to the runs."""
    from pathlib import Path

    from tunescope.core.data_files import SUFFIXES
    from tunescope.data.sources import load_rows

    seen = set()
    for run in g.runs:
        d = run.config.data
        key = (d.source, d.split, d.question_field, d.answer_field)
        path = Path(d.source).expanduser()
        if key in seen or d.source == "synthetic-math" or not (path.suffix.lower() in SUFFIXES
                                                               or path.exists()):
            continue
        seen.add(key)
        load_rows(d.source, split=d.split, question_field=d.question_field, answer_field=d.answer_field)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
