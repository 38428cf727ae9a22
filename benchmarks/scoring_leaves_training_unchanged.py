"""Does scoring tasks during training change what is trained? The demo's config, trained twice.

    .venv/bin/python benchmarks/scoring_leaves_training_unchanged.py --steps 45 --every 15   # the demo's own

Trains SmolLM2-135M-Instruct with the demo's config (src/tunescope/configs/demo.yaml) once with
`eval.during_training` on (points at step 0, every `--every` steps and the last step) and once with it
off, through the real pipeline (no base or tuned evaluation), then compares the `train` and `val`
records of the two metrics.jsonl files field by field, timing fields aside. Prints the installed
torch / transformers / peft versions, how many records were compared and every difference; exits 1 if
there is one. Each scoring point folds the LoRA adapter into the weights for the evaluation
(evaluate/folding.py), so this is the end-to-end check that the fold leaves the trained weights as they
were, whatever the installed peft's merge() does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from tunescope.config.loading import load_config
from tunescope.recipes import run as pipeline
from tunescope.store.fileio import read_jsonl

TIMING = {"elapsed_s"}


def train(out: Path, name: str, steps: int, every: int, scoring: bool) -> tuple[list[dict], int]:
    """The run's train/val records, and how many scoring points it wrote."""
    overrides = [f"output_dir={out}", f"name={name}", "eval.tasks=[]", f"training.max_steps={steps}",
                 f"eval.during_training.enabled={'true' if scoring else 'false'}",
                 f"eval.during_training.every={every}", "report.embedding_backend=tfidf"]
    run_dir = pipeline.run(load_config(pipeline.DEMO_CONFIG, overrides))
    records = read_jsonl(run_dir / "metrics.jsonl")
    return ([r for r in records if r["kind"] in ("train", "val")],
            sum(r["kind"] == "task_eval" for r in records))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=45, help="optimizer steps (the demo: 45)")
    ap.add_argument("--every", type=int, default=15, help="steps between scoring points (the demo: 15)")
    args = ap.parse_args()
    print("versions:", {p: metadata.version(p) for p in ("torch", "transformers", "peft")})
    out = Path(tempfile.mkdtemp(prefix="scoring-identity-"))
    scored, points = train(out, "scored", args.steps, args.every, True)
    plain, no_points = train(out, "plain", args.steps, args.every, False)
    differences = [f"{a['kind']} step {a['step']} {key}: {a.get(key)!r} with scoring, {b.get(key)!r} without"
                   for a, b in zip(scored, plain, strict=False)
                   for key in sorted((set(a) | set(b)) - TIMING) if a.get(key) != b.get(key)]
    if not points or no_points:
        # Without scoring points in the first run (or with some in the second) the comparison proves nothing.
        differences.append(f"{points} scoring point(s) with scoring on, {no_points} with it off")
    if len(scored) != len(plain):
        differences.append(f"{len(scored)} train/val records with scoring, {len(plain)} without")
    print(f"compared {len(scored)} train/val records ({args.steps} steps, {points} task-score records "
          f"at points every {args.every}): "
          f"{len(differences)} difference(s)")
    for line in differences:
        print("  " + line)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
