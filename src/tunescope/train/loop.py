"""The training loop, top to bottom: batches → loss on supervised tokens → step → log → validate.

One optimizer step consumes `gradient_accumulation` micro-batches. The loss is averaged per
supervised token over the whole step (not per micro-batch), so gradient accumulation and batch
size trade off without changing what is optimised. Everything written to `metrics.jsonl` is
measured here; the report only reads it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from tunescope.config import TrainingConfig
from tunescope.data.prompting import IGNORE_INDEX, Encoded
from tunescope.errors import UserError
from tunescope.train.batching import collate, epoch_batches
from tunescope.train.loss import supervised_loss
from tunescope.train.metrics import (
    cuda_max_allocated_mb,
    estimate_cost,
    flops_per_token,
    measure_peak_flops,
    peak_rss_mb,
)


class TrainingDiverged(UserError):
    """Loss became NaN/inf: stop instead of training on garbage."""


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0  # epoch of the next micro-batch
    batch_in_epoch: int = 0  # index of the next micro-batch within its epoch
    tokens_supervised: int = 0
    tokens_nonpad: int = 0
    tokens_total: int = 0
    best_val_loss: float = math.inf
    best_step: int | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    train_s: float = 0.0
    history: list[dict] = field(default_factory=list)


def _micro_batches(lengths: list[int], cfg: TrainingConfig, seed: int, state: TrainState) -> Iterator[list[int]]:
    """Endless stream of micro-batches, epoch after epoch, resuming at `state`'s position."""
    while True:
        batches = epoch_batches(lengths, cfg.batch_size, seed, state.epoch)
        while state.batch_in_epoch < len(batches):
            idx = batches[state.batch_in_epoch]
            state.batch_in_epoch += 1
            yield idx
        state.epoch += 1
        state.batch_in_epoch = 0


@torch.no_grad()
def evaluate_loss(model, examples: list[Encoded], batch_size: int, pad_id: int, device) -> tuple[float, float]:
    """Per-token validation loss and teacher-forced token accuracy."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    loss_sum, correct, tokens = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        batch = collate([examples[i] for i in order[start : start + batch_size]], pad_id)
        out = supervised_loss(model, {k: v.to(device) for k, v in batch.items()})
        loss_sum += float(out.loss_sum)
        correct += out.correct
        tokens += out.tokens
    model.train(was_training)
    return loss_sum / max(tokens, 1), correct / max(tokens, 1)


def total_steps_for(n_examples: int, cfg: TrainingConfig) -> tuple[int, int]:
    batches_per_epoch = math.ceil(n_examples / cfg.batch_size)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / cfg.gradient_accumulation))
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    return total, steps_per_epoch


def train(
    model: torch.nn.Module,
    train_set: list[Encoded],
    val_set: list[Encoded],
    cfg: TrainingConfig,
    *,
    seed: int,
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype,
    log: Callable[[dict], None],
    save_best: Callable[[torch.nn.Module], None] | None = None,
    on_step: Callable[[TrainState, int], None] | None = None,
    checkpoint: Callable[[TrainState, torch.optim.Optimizer, object], None] | None = None,
    state: TrainState | None = None,
    restore: Callable[[torch.optim.Optimizer, object], None] | None = None,
) -> dict:
    """Train `model` in place and return the run summary (also logged as the last metrics record)."""
    from transformers import get_scheduler

    torch.manual_seed(seed)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    step_model = torch.compile(model) if cfg.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    total_steps, steps_per_epoch = total_steps_for(len(train_set), cfg)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=round(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    state = state or TrainState()
    if restore is not None:
        restore(optimizer, scheduler)

    n_trainable = sum(p.numel() for p in params)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n_nonembed = sum(p.numel() for n, p in base.named_parameters() if "embed" not in n and "lora_" not in n)
    flops_tok = flops_per_token(n_nonembed, n_trainable, full=cfg.method == "full")
    peak_flops = measure_peak_flops(device, dtype)

    lengths = [len(e.input_ids) for e in train_set]
    stream = _micro_batches(lengths, cfg, seed, state)
    best_state: dict[str, torch.Tensor] | None = None
    model.train()
    while state.step < total_steps and not state.stopped_early:
        started = time.perf_counter()
        micro = [collate([train_set[i] for i in next(stream)], pad_id) for _ in range(cfg.gradient_accumulation)]
        step_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro)
        loss_sum, correct = 0.0, 0
        for batch in micro:
            out = supervised_loss(step_model, {k: v.to(device) for k, v in batch.items()})
            # Dividing by the step's token count makes the summed gradient a per-token mean over the step.
            (out.loss_sum / max(step_tokens, 1)).backward()
            loss_sum += float(out.loss_sum.detach())
            correct += out.correct
            state.tokens_nonpad += int(batch["attention_mask"].sum())
            state.tokens_total += batch["input_ids"].numel()
        state.tokens_supervised += step_tokens
        loss = loss_sum / max(step_tokens, 1)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training loss became {loss} at step {state.step + 1}; lower training.learning_rate "
                                   "or check the data (the last good checkpoint is kept)", where="training")
        grad_norm = (torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm
                     else torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        state.train_s += time.perf_counter() - started

        if state.step % cfg.log_every == 0 or state.step == total_steps:
            log({"kind": "train", "step": state.step, "epoch": round(state.step / steps_per_epoch, 4), "loss": loss,
                 "token_accuracy": correct / max(step_tokens, 1), "lr": scheduler.get_last_lr()[0],
                 "grad_norm": float(grad_norm), "tokens_supervised": state.tokens_supervised,
                 "tokens_nonpad": state.tokens_nonpad, "tokens_total": state.tokens_total,
                 "elapsed_s": round(state.train_s, 3)})

        if val_set and (state.step % cfg.eval_every == 0 or state.step == total_steps):
            val_loss, val_acc = evaluate_loss(model, val_set, cfg.batch_size * 2, pad_id, device)
            log({"kind": "val", "step": state.step, "val_loss": val_loss, "val_token_accuracy": val_acc})
            if val_loss < state.best_val_loss:
                state.best_val_loss, state.best_step, state.evals_without_improvement = val_loss, state.step, 0
                best_state = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
                if save_best is not None:
                    save_best(model)
            else:
                state.evals_without_improvement += 1
                if cfg.early_stopping_patience and state.evals_without_improvement >= cfg.early_stopping_patience:
                    state.stopped_early = True
        if checkpoint is not None and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            checkpoint(state, optimizer, scheduler)
        if on_step is not None:
            on_step(state, total_steps)

    if best_state is not None and state.best_step != state.step:
        # Evaluate and ship the best model, not the last one.
        with torch.no_grad():
            named = dict(model.named_parameters())
            for n, v in best_state.items():
                named[n].copy_(v.to(named[n].device))
    elif not val_set and save_best is not None:
        save_best(model)

    cost, price, price_source = estimate_cost(state.train_s, device, cfg.price_per_hour)
    achieved = flops_tok * state.tokens_nonpad / max(state.train_s, 1e-9)
    summary = {
        "kind": "summary", "steps": state.step, "total_steps_planned": total_steps,
        "epochs": round(state.step / steps_per_epoch, 4), "best_step": state.best_step,
        "best_val_loss": None if state.best_step is None else state.best_val_loss,
        "stopped_early": state.stopped_early, "tokens_supervised": state.tokens_supervised,
        "tokens_nonpad": state.tokens_nonpad, "tokens_total": state.tokens_total, "train_s": round(state.train_s, 3),
        "throughput_supervised_tps": state.tokens_supervised / max(state.train_s, 1e-9),
        "throughput_nonpad_tps": state.tokens_nonpad / max(state.train_s, 1e-9),
        "flops_per_token": flops_tok, "peak_flops": peak_flops, "mfu": achieved / peak_flops,
        "peak_rss_mb": peak_rss_mb(), "cuda_max_allocated_mb": cuda_max_allocated_mb(device),
        "device": str(device), "dtype": str(dtype).replace("torch.", ""), "trainable_params": n_trainable,
        "cost_usd": cost, "price_per_hour": price, "price_source": price_source,
    }
    log(summary)
    return summary
