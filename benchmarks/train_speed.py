"""Training speed: tunescope vs TRL's SFTTrainer (default, and with packing), same model, data and LoRA.

    .venv/bin/python benchmarks/train_speed.py                      # all three, ~10-15 min on 2 cores
    .venv/bin/python benchmarks/train_speed.py --steps 4 --methods tunescope

Each method trains SmolLM2-135M-Instruct (the offline weights tunescope materializes) on the first
256 GSM8K training rows with LoRA r=8, alpha=16, dropout=0.1 on all linear layers, the same batch
size, seed, optimizer settings and number of optimizer steps, in float32, loss on the response only
(template `Instruction: {question}\\nResponse: {answer}`). Each runs in its own subprocess so peak
RSS is per method. Reported per method:

- supervised tokens/s and non-padding tokens/s over the optimizer steps (each method's own batches),
- the final training loss (mean per-token loss of the last half of the steps: one step's batch is
  too noisy to compare, and each method sees its batches in its own order), and a held-out loss:
  32 further GSM8K rows scored with the same code for every method's trained adapter,
- peak RSS of the process at the end of training.

The machine is shared, so the methods run in lockstep rather than one after the other: all three
processes load, then take turns, one optimizer step each, while the other two wait. Each step is
timed on its own, so every method sees the same background load, spread over the same minutes.

TRL keeps its defaults except where the comparison needs the same setting: float32 instead of its
bf16 default (bf16 is emulated, several times slower, on CPUs without AMX), and the optimizer
settings above. Its other defaults stay, gradient checkpointing included. With packing, TRL's
default packing strategy ("bfd", padding-free) flattens each batch into one row; the benchmark uses
one packed row of 1600 tokens per step (`--packing-length`, `--packing-batch`), about 8 examples,
so that a packed step holds as many tokens as an unpacked batch of 8 (TRL's default, 8 rows × 1024
tokens, is five times more per step and does not fit the time budget on a 2-core CPU).

Threads: every method runs with the same `--threads` (default 1). On this shared 2-core machine a
second thread makes each elementwise op wait for a descheduled thread whenever another process holds
the other core (a 700k-element multiply: 0.26 ms on 1 thread, 3.9 ms on 2) while matmuls gain
nothing, so 2-thread timings measure the scheduler more than the trainers. `--threads 0` keeps
PyTorch's default.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TEMPLATE = "Instruction: {question}\nResponse: {answer}"
METHODS = ("trl", "trl-packing", "tunescope")
LABELS = {"trl": "TRL SFTTrainer (defaults)", "trl-packing": "TRL SFTTrainer, packing=True",
          "tunescope": "tunescope"}


def load_rows(n: int, offset: int = 0) -> list[dict]:
    path = SHARED / "data" / "gsm8k" / "train.jsonl"
    if not path.is_file():
        sys.exit(f"GSM8K training data not found at {path} (expected <project>/../shared)")
    with path.open() as f:
        rows = [json.loads(line) for _, line in zip(range(offset + n), f, strict=False)]
    return rows[offset:]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def heldout_loss(model, tokenizer, rows: list[dict]) -> float:
    """Per-token response loss on rows never trained on, with tunescope's scorer for every method."""
    import torch

    from tunescope.data.prompting import encode_dataset
    from tunescope.train.loop import evaluate_loss
    from tunescope.train.loss import SupervisedCausalLM

    examples, _ = encode_dataset(rows, tokenizer, template=TEMPLATE, use_chat_template=False,
                                 train_on_prompt=False, max_length=512, overflow="truncate")
    loss, _ = evaluate_loss(SupervisedCausalLM(model), examples, 8, tokenizer.pad_token_id,
                            torch.device("cpu"), max_tokens=1024)
    return loss


# --- worker side: stdout carries "@@ {json}" messages to the parent, logs go to stderr -------------


_CHANNEL = sys.stdout  # the worker points this at the real stdout and sends everything else to stderr


def tell(**message) -> None:
    _CHANNEL.write("@@ " + json.dumps(message) + "\n")
    _CHANNEL.flush()


def wait_turn() -> None:
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)


def run_tunescope(args) -> dict:
    import torch

    from tunescope.config.run_config import LoraConfig, TrainingConfig
    from tunescope.data.prompting import encode_dataset
    from tunescope.models import load_model
    from tunescope.train.adapters import build_trainable
    from tunescope.train.loop import train

    loaded = load_model(args.model, dtype="float32", device="cpu")
    tok = loaded.tokenizer
    train_set, _ = encode_dataset(load_rows(args.rows), tok, template=TEMPLATE, use_chat_template=False,
                                  train_on_prompt=False, max_length=512, overflow="truncate")
    cfg = TrainingConfig(method="lora", lora=LoraConfig(r=8, alpha=16, dropout=0.1,
                                                        target_modules="all-linear"),
                         max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                         warmup_ratio=0.0, lr_scheduler="linear", weight_decay=0.0, max_grad_norm=1.0,
                         early_stopping_patience=None)
    torch.manual_seed(args.seed)
    model = build_trainable(loaded.model, cfg)
    losses: list[float] = []
    clock = {"train_s": 0.0}

    def log(record: dict) -> None:
        if record["kind"] == "train":
            losses.append(record["loss"])

    def after_step(state, total) -> None:
        tell(step=state.step, seconds=state.train_s - clock["train_s"], loss=losses[-1])
        clock["train_s"] = state.train_s
        if state.step < total:
            wait_turn()

    tell(ready=True)
    wait_turn()
    s = train(model, train_set, [], cfg, seed=args.seed, pad_id=tok.pad_token_id, device=loaded.device,
              dtype=loaded.dtype, log=log, on_step=after_step)
    rss = peak_rss_mb()
    wait_turn()
    return {"train_s": s["train_s"], "tokens_supervised": s["tokens_supervised"],
            "tokens_nonpad": s["tokens_nonpad"], "tokens_total": s["tokens_total"], "losses": losses,
            "peak_rss_mb": rss,
            "heldout_loss": heldout_loss(model, tok, load_rows(args.heldout, offset=args.rows))}


def run_trl(args, packing: bool) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunescope.models import materialize
    from tunescope.models.loading import load_tokenizer

    source = str(materialize(args.model))
    tok = load_tokenizer(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    prefix = TEMPLATE.split("{answer}")[0].rstrip()
    # Prompt-completion rows: TRL computes the loss on the completion only (its default for this format).
    data = Dataset.from_list([{"prompt": prefix.format(question=r["question"]),
                               "completion": TEMPLATE[len(prefix):].format(question="", answer=r["answer"])}
                              for r in load_rows(args.rows)])
    extra = ({"packing": True, "max_length": args.packing_length,
              "per_device_train_batch_size": args.packing_batch}
             if packing else {"max_length": 512, "per_device_train_batch_size": args.batch_size})
    config = SFTConfig(output_dir=tempfile.mkdtemp(prefix="trl-bench-"), max_steps=args.steps,
                       learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                       max_grad_norm=1.0,
                       seed=args.seed, logging_steps=1, save_strategy="no", report_to=[], bf16=False,
                       fp16=False, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, **extra)
    peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tok,
                         peft_config=peft_config)

    # Count the tokens of the batches the model actually trains on (the data loader reads one ahead).
    counts = {"tokens_supervised": 0, "tokens_nonpad": 0, "tokens_total": 0}
    compute_loss = trainer.compute_loss

    def counting_compute_loss(model_, inputs, *a, **k):
        if model_.training:
            ids = inputs["input_ids"]
            counts["tokens_supervised"] += int((inputs["labels"][:, 1:] != -100).sum())
            counts["tokens_nonpad"] += (int(inputs["attention_mask"].sum()) if "attention_mask" in inputs
                                        else ids.numel())
            counts["tokens_total"] += ids.numel()
        return compute_loss(model_, inputs, *a, **k)

    trainer.compute_loss = counting_compute_loss
    clock = {"train_s": 0.0}

    class Lockstep(TrainerCallback):
        def on_step_begin(self, *a, **k):
            wait_turn()
            clock["t0"] = time.perf_counter()

        def on_step_end(self, args_, state, *a, **k):
            seconds = time.perf_counter() - clock["t0"]
            clock["train_s"] += seconds
            tell(step=state.global_step, seconds=seconds)

    trainer.add_callback(Lockstep())
    tell(ready=True)
    trainer.train()
    rss = peak_rss_mb()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    wait_turn()
    return {"train_s": clock["train_s"], **counts, "losses": losses, "peak_rss_mb": rss,
            "heldout_loss": heldout_loss(trainer.model, tok, load_rows(args.heldout, offset=args.rows)),
            "gradient_checkpointing": config.gradient_checkpointing}


def worker(args) -> None:
    import warnings

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    warnings.filterwarnings("ignore")
    # Library chatter on stdout would break the protocol: send it to stderr.
    global _CHANNEL
    _CHANNEL, sys.stdout = sys.stdout, sys.stderr
    result = (run_tunescope(args) if args.worker == "tunescope"
              else run_trl(args, packing=args.worker == "trl-packing"))
    tell(result=result)


def summarise(name: str, r: dict) -> dict:
    tail = r["losses"][-max(1, len(r["losses"]) // 2):]
    return {"method": LABELS[name], "sup_tps": r["tokens_supervised"] / r["train_s"],
            "nonpad_tps": r["tokens_nonpad"] / r["train_s"], "final_loss": sum(tail) / len(tail),
            "last_loss": r["losses"][-1], "heldout_loss": r["heldout_loss"], "peak_rss_mb": r["peak_rss_mb"],
            "train_s": r["train_s"], "tokens_supervised": r["tokens_supervised"],
            "tokens_nonpad": r["tokens_nonpad"], "tokens_total": r["tokens_total"], "losses": r["losses"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--heldout", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--packing-length", type=int, default=1600,
                    help="tokens per packed row (about 8 examples)")
    ap.add_argument("--packing-batch", type=int, default=1, help="packed rows per step")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for every method (0 = PyTorch's default); see the docstring")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "train_speed.json"))
    ap.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    passthrough = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k in {"model", "rows", "heldout", "steps", "batch_size", "lr", "seed", "packing_length",
                            "packing_batch", "threads"}]
    names = args.methods.split(",")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    workers = {n: subprocess.Popen([sys.executable, __file__, "--worker", n, *passthrough],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                   env=env) for n in names}

    def hear(name: str) -> dict:
        for line in workers[name].stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        sys.exit(f"{name} worker ended early (exit {workers[name].wait()})")

    def turn(name: str) -> dict:
        workers[name].stdin.write("go\n")
        workers[name].stdin.flush()
        return hear(name)

    try:
        results = lockstep(names, hear, turn, args.steps)
    finally:
        for w in workers.values():
            if w.poll() is None:
                w.kill()
    report(results, args)


def lockstep(names, hear, turn, steps: int) -> dict:
    t0 = time.perf_counter()
    for name in names:
        hear(name)  # loaded and ready
    print(f"loaded in {time.perf_counter() - t0:.0f}s; {steps} steps each, in turns", flush=True)
    for step in range(1, steps + 1):
        line = []
        for name in names:
            msg = turn(name)
            line.append(f"{name} {msg['seconds']:.1f}s")
        print(f"step {step}: " + ", ".join(line), flush=True)
    results = {name: summarise(name, turn(name)["result"]) for name in names}  # held-out loss, in turn too
    print(f"total {time.perf_counter() - t0:.0f}s")
    return results


def report(results: dict, args) -> None:
    print(f"\n{args.steps} optimizer steps, batch {args.batch_size}, {args.rows} GSM8K rows, LoRA "
          "r8/a16/d0.1 all-linear")
    print(f"{'method':32} {'sup tok/s':>10} {'nonpad tok/s':>13} {'final loss':>11} {'held-out':>9} "
          f"{'peak RSS':>10}")
    for r in results.values():
        print(f"{r['method']:32} {r['sup_tps']:10.1f} {r['nonpad_tps']:13.1f} {r['final_loss']:11.4f} "
              f"{r['heldout_loss']:9.4f} {r['peak_rss_mb'] / 1024:8.2f}GB")
    if "tunescope" in results:
        ts = results["tunescope"]
        for name in ("trl", "trl-packing"):
            if name in results:
                o = results[name]
                print(f"tunescope vs {LABELS[name]}: {ts['sup_tps'] / o['sup_tps']:.2f}x supervised tok/s, "
                      f"{ts['nonpad_tps'] / o['nonpad_tps']:.2f}x non-padding tok/s, final loss "
                      f"{100 * (ts['final_loss'] / o['final_loss'] - 1):+.1f}%, held-out loss "
                      f"{100 * (ts['heldout_loss'] / o['heldout_loss'] - 1):+.1f}%")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
