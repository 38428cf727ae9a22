"""Architecture conformance table: each model family through the engine and the training code, against
plain transformers.

    .venv/bin/python benchmarks/conformance.py                 # every family, ~1 min on 1 thread
    .venv/bin/python benchmarks/conformance.py --families llama gemma2

The checks are those of tests/test_conformance.py (the helpers live in tests/families.py), on the same
tiny random-weight models; the test asserts them, this prints what they measure:

- max log-likelihood difference: LoglikelihoodScorer.score_groups vs one plain forward per (context,
  continuation), over 52 pairs (packed documents, contexts longer than the sliding window, single-token
  continuations, a shared description line); "(n packed / m plain)" says which path scored them;
- greedy responses equal: Generator at batch 1 and 8 vs `model.generate` per prompt (16 responses,
  80-140-token prompts, two identical), with the drafted tokens prompt lookup got confirmed (batch 1 / 8);
- train-loss difference: |train/loss.py's per-token loss - transformers' loss| on a padded batch, with the
  model in float32 and in bfloat16;
- fused LoRA vs PEFT, bfloat16: |loss difference| (relative) and the largest adapter-gradient difference
  (relative to that tensor's largest gradient) of the fused training forward vs PEFT's own, bfloat16 base;
- training steps: one step each of lora / dora / full through the training loop, loss finite and the
  trainable tensors that must move moved;
- merge difference: max |logit| difference of the merged export vs PEFT base + adapter (LoRA / DoRA),
  with the largest |logit| beside it (float32 rounding grows with it);
- resume: |step-2 loss| and max |weight| difference of a run resumed from its step-1 checkpoint;
- path: `tunescope.evaluate.enginepath.engine_path`, the path an evaluation of this model takes.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

import families as fam  # noqa: E402


def engine_path(model) -> str:
    try:
        from tunescope.evaluate.enginepath import engine_path as decide
    except ImportError:  # a tree without the path decision: everything runs natively
        return "native"
    return decide(model)[0]


def run_family(family: fam.Family) -> dict:
    start = time.perf_counter()
    model = fam.build_model(family)
    ll = fam.check_loglikelihood(model)
    gen = fam.check_generation(model)
    loss = fam.check_train_loss(model)
    loss_bf16 = fam.check_train_loss(fam.build_model(family, dtype=torch.bfloat16))
    fused = fam.check_fused_lora(family, torch.bfloat16)
    steps = {}
    for method in ("lora", "dora", "full"):
        step = fam.train_one_step(family, method)
        missed = [n for n in step.unchanged if fam.expected_to_change(family, n, method)]
        steps[method] = math.isfinite(step.loss) and not missed
    merges = {}
    for method in ("lora", "dora"):
        with tempfile.TemporaryDirectory() as tmp:
            merges[method] = fam.check_merge(family, Path(tmp), method)
    with tempfile.TemporaryDirectory() as tmp:
        resume = fam.check_resume(family, Path(tmp))
    return {"family": family, "ll": ll, "gen": gen, "loss": loss, "loss_bf16": loss_bf16, "fused": fused,
            "steps": steps, "merges": merges,
            "resume": resume, "path": engine_path(model), "seconds": time.perf_counter() - start}


def table(rows: list[dict]) -> str:
    head = ["family", "max log-likelihood difference", "greedy responses equal (drafts kept, b1 / b8)",
            "train-loss difference (float32 / bfloat16)", "fused LoRA vs PEFT, bfloat16 (loss / gradients)",
            "training steps (lora / dora / full)", "merge difference (lora / dora)",
            "resume (loss / weights)", "path used"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ll, gen = r["ll"], r["gen"]
        greedy_ok = "" if not ll.greedy_mismatches else f", {len(ll.greedy_mismatches)} is_greedy differ"
        cells = [
            f"{r['family'].name}",
            f"{ll.max_abs_diff:.1e} ({ll.packed_documents} packed docs / {ll.plain_pairs} plain "
            f"pairs{greedy_ok})",
            f"{gen.equal}/{gen.total} ({gen.accepted_drafts.get(1, 0)} / {gen.accepted_drafts.get(8, 0)})",
            f"{r['loss']:.1e} / {r['loss_bf16']:.1e}",
            f"{r['fused'].loss_diff / r['fused'].loss:.1e} / {r['fused'].max_grad_diff:.1e}",
            " / ".join("ok" if r["steps"][m] else "FAIL" for m in ("lora", "dora", "full")),
            " / ".join(f"{r['merges'][m].max_abs_diff:.1e}" for m in ("lora", "dora"))
            + f" (logits up to {max(m.logit_scale for m in r['merges'].values()):.0f})",
            f"{r['resume'][0]:.1e} / {r['resume'][1]:.1e}",
            r["path"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=list(fam.FAMILIES), choices=list(fam.FAMILIES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    rows = []
    for name in args.families:
        rows.append(run_family(fam.FAMILIES[name]))
        print(f"{name}: {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    print(table(rows))
    print()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, float32 on CPU (bfloat16 "
          f"where the column says), {args.threads} thread(s); models: "
          + "; ".join(f"{r['family'].name} = {r['family'].real_models}"
                                                           for r in rows))
    for r in rows:
        for problem in r["ll"].details + r["ll"].greedy_mismatches + r["gen"].mismatches:
            print(f"- {r['family'].name}: {problem}")


if __name__ == "__main__":
    main()
