"""Cost of scoring tasks during training, on the demo's settings.

    .venv/bin/python benchmarks/train_eval_overhead.py             # the demo's 27 steps, ~10 min on 2 cores
    .venv/bin/python benchmarks/train_eval_overhead.py --steps 10  # reduced: points at steps 0 and 10

Trains SmolLM2-135M-Instruct with the demo's config (src/tunescope/configs/demo.yaml: LoRA on
synthetic-math, batch 8, max_length 384) with `eval.during_training` scoring `--items` held-out
problems (greedy, up to the demo's 128 new tokens) at step 0, every `--every` steps and the last
step, through the real pipeline (no base or tuned evaluation). Reads the run's summary and
task_eval records and prints:

- training time (`train_s`: time inside optimizer steps) and per optimizer step,
- time scoring tasks (`task_eval_s`), per point and per item,
- the overhead: `task_eval_s / train_s` for this run's schedule (step 0 included), and the steady
  state at `--target-every` (default 10): one point per that many steps, `seconds of the last point /
  (target_every × seconds per step)`. The last point is the one to extrapolate from: step 0 scores
  the base model, whose answers run to the token cap, and answers shorten as training teaches the
  format, so earlier points cost more.

A reduced run (`--steps 6 --every 3`) measures the same quantities in a third of the time.

Threads: `--threads` (default 0 = PyTorch's default) applies to training; evaluation runs with the
same thread count.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tunescope.config.loading import load_config
from tunescope.recipes import run as pipeline
from tunescope.store.fileio import read_jsonl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=None,
                    help="Optimizer steps (default: the demo's one epoch).")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--target-every", type=int, default=10, help="Schedule to extrapolate the overhead to.")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", type=Path, help="Also write the figures here.")
    args = ap.parse_args()

    out = Path(tempfile.mkdtemp(prefix="train-eval-overhead-"))
    overrides = [f"output_dir={out}", "name=overhead", "eval.tasks=[]", "eval.during_training.enabled=true",
                 f"eval.during_training.limit={args.items}", f"eval.during_training.every={args.every}",
                 "report.embedding_backend=tfidf"]
    if args.steps:
        overrides.append(f"training.max_steps={args.steps}")
    if args.threads:
        overrides.append(f"training.threads={args.threads}")
    cfg = load_config(pipeline.DEMO_CONFIG, overrides)
    started = time.perf_counter()
    run_dir = pipeline.run(cfg)
    wall = time.perf_counter() - started

    metrics = read_jsonl(run_dir / "metrics.jsonl")
    summary = metrics[-1]
    points = sorted({r["step"] for r in metrics if r["kind"] == "task_eval"})
    accuracy = {r["step"]: r["value"] for r in metrics if r["kind"] == "task_eval"
                and r["metric"] == "exact_match,strict-match"}
    per_step = summary["train_s"] / summary["steps"]
    per_point = summary["task_eval_s"] / len(points)
    seconds = {r["step"]: r["seconds"] for r in metrics if r["kind"] == "task_eval"}
    figures = {
        "steps": summary["steps"], "points": points, "items": args.items, "every": args.every,
        "train_s": summary["train_s"], "s_per_step": round(per_step, 2),
        "task_eval_s": summary["task_eval_s"], "s_per_point": round(per_point, 2),
        "s_per_item": round(per_point / args.items, 3),
        "overhead_this_run_pct": round(100 * summary["task_eval_s"] / summary["train_s"], 1),
        "s_per_point_by_step": seconds,
        "overhead_steady_pct": round(100 * per_point / (args.every * per_step), 1),
        f"overhead_every_{args.target_every}_from_last_point_pct": round(
            100 * seconds[points[-1]] / (args.target_every * per_step), 1),
        f"overhead_every_{args.target_every}_from_step_0_pct": round(
            100 * seconds[0] / (args.target_every * per_step), 1),
        "heldout_strict_match_by_step": accuracy, "pipeline_wall_s": round(wall, 1),
        "threads": summary.get("threads"), "run_dir": str(run_dir),
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
