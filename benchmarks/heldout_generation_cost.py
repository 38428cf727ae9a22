"""Where the time of a held-out scoring point goes, and what evaluating a PEFT model costs against a
stand-alone evaluation of the same weights merged.

    .venv/bin/python benchmarks/heldout_generation_cost.py --adapter runs/demo/adapter

Loads SmolLM2-135M-Instruct (float32) with a trained LoRA or DoRA adapter (default: none, the base
model), builds the demo's 32 held-out problems (src/tunescope/configs/demo.yaml, up to 128 new tokens)
and times the same evaluation, on the same items, in one process:

- `unmerged`: the PEFT model with PEFT's own forward (adapter folding switched off);
- `folded`: the PEFT model as tunescope evaluates it, during training and after: each adapter folded
  into a temporary copy of its layer's weight for the evaluation (evaluate/folding.py);
- `merged`: the same weights merged into plain linear layers (`merge_and_unload`), as a stand-alone
  evaluation of exported weights runs;

each at batch 16 (the demo's) and 32 (every item in one batch), `--repeats` times, in an interleaved
order so that a slow spell of the machine falls on both sides. It checks that every side writes the
same responses and prints the median seconds and the ratios. One more pass of the merged model at
batch 32 splits the time into prompt prefill and decoding steps (rows and drafted tokens per step),
and a profiled pass gives the share of time in matrix products (`aten::mm`).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from pathlib import Path

import torch

from tunescope.config.loading import load_config
from tunescope.evaluate import folding, generation
from tunescope.evaluate.runner import evaluate_native
from tunescope.models.loading import load_model
from tunescope.recipes.inputs import heldout_task, prepare_data
from tunescope.recipes.run import DEMO_CONFIG


def timed(model, tokenizer, task, batch_size: int, max_new_tokens: int,
          fold: bool = True) -> tuple[float, list[str]]:
    records: dict = {}
    share = folding.MEMORY_SHARE
    folding.MEMORY_SHARE = share if fold else 0.0  # no room for the copies: PEFT's own forward
    try:
        t0 = time.perf_counter()
        evaluate_native(model, tokenizer, [task], batch_size=batch_size, max_new_tokens=max_new_tokens,
                        records_out=records)
        return time.perf_counter() - t0, [r["response"] for r in records[task.name]]
    finally:
        folding.MEMORY_SHARE = share


def split_of_time(model, tokenizer, task, batch_size: int, max_new_tokens: int) -> dict:
    """Seconds in prefill and in decoding steps, counted by wrapping the generator's two forwards."""
    seconds, calls, rows = collections.Counter(), collections.Counter(), collections.Counter()
    originals = {name: getattr(generation.Generator, name) for name in ("_prefill", "_decode_step")}

    def wrap(name):
        def counted(self, *args):
            t0 = time.perf_counter()
            out = originals[name](self, *args)
            seconds[name] += time.perf_counter() - t0
            calls[name] += 1
            if name == "_prefill":
                rows["prompt_tokens"] += len(args[2])
            else:
                rows["decode_rows"] += len(args[1])
                rows["drafted_tokens"] += sum(len(d) for d in args[2])
            return out
        return counted

    for name in originals:
        setattr(generation.Generator, name, wrap(name))
    try:
        total, _ = timed(model, tokenizer, task, batch_size, max_new_tokens)
    finally:
        for name, fn in originals.items():
            setattr(generation.Generator, name, fn)
    steps = calls["_decode_step"]
    return {"total_s": round(total, 2), "prefill_s": round(seconds["_prefill"], 2),
            "prompt_tokens": rows["prompt_tokens"], "decode_s": round(seconds["_decode_step"], 2),
            "decode_steps": steps, "s_per_decode_step": round(seconds["_decode_step"] / max(steps, 1), 3),
            "rows_per_decode_step": round(rows["decode_rows"] / max(steps, 1), 1),
            "drafted_tokens_per_decode_step": round(rows["drafted_tokens"] / max(steps, 1), 1)}


def matmul_share(model, tokenizer, task, batch_size: int, max_new_tokens: int) -> float:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        timed(model, tokenizer, task, batch_size, max_new_tokens)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key == "aten::mm") / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", type=Path, help="A trained LoRA adapter folder (a run's adapter/).")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    args = ap.parse_args()

    cfg = load_config(DEMO_CONFIG, [])
    task = heldout_task(cfg, prepare_data(cfg).heldout_rows)
    max_new = cfg.eval.max_new_tokens
    loaded = load_model(cfg.model.name, dtype="float32")
    tok = loaded.tokenizer
    if args.adapter:
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(loaded.model, str(args.adapter))
        # A second copy to merge, so every side stays available for the interleaved timings.
        merged = PeftModel.from_pretrained(load_model(cfg.model.name, dtype="float32").model,
                                           str(args.adapter)).merge_and_unload()
    else:
        peft_model = merged = loaded.model
    sides = {"unmerged": (peft_model, False), "folded": (peft_model, True), "merged": (merged, True)}
    print(f"threads {torch.get_num_threads()}, dtype float32, items {len(task.docs)}, max_new_tokens "
          f"{max_new}, adapter {args.adapter or 'none'}", flush=True)
    timed(merged, tok, task, args.batch_sizes[0], max_new)  # warm-up: first-call allocations
    seconds: dict = collections.defaultdict(list)
    responses: dict = {}
    for _ in range(args.repeats):
        for bs in args.batch_sizes:
            for side, (model, fold) in sides.items():
                s, resp = timed(model, tok, task, bs, max_new, fold)
                seconds[(side, bs)].append(s)
                responses[(side, bs)] = resp
                print(f"  {side:8s} batch {bs:3d}: {s:6.2f} s", flush=True)
    first = next(iter(responses.values()))
    same = all(r == first for r in responses.values())
    median = {k: statistics.median(v) for k, v in seconds.items()}
    figures = {"median_s": {f"{side} @ {bs}": round(v, 2) for (side, bs), v in median.items()},
               "same_responses_everywhere": same,
               "unmerged_over_folded": {bs: round(median[("unmerged", bs)] / median[("folded", bs)], 3)
                                        for bs in args.batch_sizes},
               "folded_over_merged": {bs: round(median[("folded", bs)] / median[("merged", bs)], 3)
                                      for bs in args.batch_sizes},
               "batch_ratio": {
                   side: round(median[(side, args.batch_sizes[-1])] / median[(side, args.batch_sizes[0])], 3)
                               for side in sides},
               "split_merged_at_largest_batch": split_of_time(merged, tok, task, args.batch_sizes[-1],
                                                              max_new),
               "matmul_share": round(matmul_share(merged, tok, task, args.batch_sizes[-1], max_new), 3)}
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
