"""The training loop, top to bottom: batches → loss on supervised tokens → step → log → validate → checkpoint.

One optimizer step consumes `gradient_accumulation × processes` micro-batches. The loss is averaged
per supervised token over the whole step (not per micro-batch, not per process), so batch size,
gradient accumulation and the number of processes trade off without changing what is optimised.
Everything written to `metrics.jsonl` is measured here; the report only reads it.

Reproducibility: the data order is a function of (seed, epoch), and the dropout masks of each
micro-batch a function of (seed, step, micro-batch index). A resumed run therefore replays exactly
what the killed one would have done, and a run on two processes draws the same masks as one process
accumulating twice as many micro-batches.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from tunescope.config.run_config import VAL_LOSS, TrainingConfig
from tunescope.core.errors import UserError
from tunescope.core.malloc import RETURN_FREED, malloc_setting
from tunescope.core.prompt_format import Encoded
from tunescope.train.batching import collate, epoch_batches, split_by_tokens, supervised_count
from tunescope.train.checkpoint import Checkpointer
from tunescope.train.distributed import Distributed, current
from tunescope.train.run_summary import training_summary
from tunescope.train.selection import Selection, StepScorer
from tunescope.train.setup import prepare_training, restore_checkpoint
from tunescope.train.throughput import (
    flops_per_token,
    machine_peak,
    parameter_counts,
)


class TrainingDiverged(UserError):
    """Loss or gradient became NaN/inf: stop instead of training on garbage."""


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0  # epoch of the next micro-batch
    batch_in_epoch: int = 0  # index of the next micro-batch within its epoch
    tokens_supervised: int = 0
    tokens_nonpad: int = 0
    tokens_total: int = 0
    best_val_loss: float = math.inf
    best_step: int | None = None  # the step whose weights ship (training.select_best_by)
    best_by: dict = field(default_factory=dict)  # criterion -> {"step", "value"}: the best under each
    evals_without_improvement: int = 0
    stopped_early: bool = False
    train_s: float = 0.0  # time inside optimizer steps, summed over resumed segments
    wall_s: float = 0.0  # time inside train(), summed over resumed segments
    task_eval_s: float = 0.0  # time scoring tasks during training (inside wall_s, outside train_s)
    resumed_from: int | None = None


def total_steps_for(n_examples: int, cfg: TrainingConfig, world_size: int = 1) -> tuple[int, int]:
    batches_per_epoch = math.ceil(n_examples / cfg.batch_size)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / (cfg.gradient_accumulation * world_size)))
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    return total, steps_per_epoch


def micro_batch_tokens(cfg: TrainingConfig, device: torch.device) -> int | None:
    """The padded-token cap per forward pass. "auto": 1024 on CPU, where activation memory is what
    limits the batch (about 1.5 MB per token for SmolLM2-135M), and no cap on GPUs."""
    if cfg.micro_batch_tokens == "auto":
        return 1024 if device.type == "cpu" else None
    return cfg.micro_batch_tokens


def _micro_batches(lengths: list[int], batch_size: int, seed: int, state: TrainState) -> Iterator[list[int]]:
    """Endless stream of micro-batches, epoch after epoch, resuming at `state`'s position."""
    while True:
        batches = epoch_batches(lengths, batch_size, seed, state.epoch)
        while state.batch_in_epoch < len(batches):
            idx = batches[state.batch_in_epoch]
            state.batch_in_epoch += 1
            yield idx
        state.epoch += 1
        state.batch_in_epoch = 0


def _discard(record: dict) -> None:
    pass


def _dropout_seed(seed: int, step: int, micro: int, piece: int) -> int:
    return ((seed * 1_000_003 + step) * 10_007 + micro) * 101 + piece


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def accumulate_gradients(net, batches: list[dict[str, torch.Tensor]], normaliser: float, *,
                         device: torch.device, dist: Distributed | None = None,
                         seeds: list[int] | None = None) -> dict[str, float]:
    """Forward and backward this process's micro-batches of one optimizer step; gradients accumulate.

    Each micro-batch's summed loss is divided by `normaliser`, the supervised-token count of the
    whole step on all processes, so the accumulated gradient is the per-token mean over the step. DDP
    averages gradients over processes, hence the world-size factor. Returns this process's sums.
    """
    dist = dist or Distributed()
    sums = {"loss_sum": 0.0, "correct": 0, "tokens": 0, "nonpad": 0, "total": 0}
    for k, batch in enumerate(batches):
        if seeds is not None:
            torch.manual_seed(seeds[k])
        # Gradients are all-reduced once per step, on the last micro-batch.
        sync = contextlib.nullcontext() if k == len(batches) - 1 else dist.no_sync(net)
        with sync:
            out = net(**_to(batch, device))
            (out.loss_sum * (dist.world_size / max(normaliser, 1))).backward()
        sums["loss_sum"] += float(out.loss_sum.detach())
        sums["correct"] += out.correct
        sums["tokens"] += out.tokens
        sums["nonpad"] += int(batch["attention_mask"].sum())
        sums["total"] += batch["input_ids"].numel()
    return sums


@torch.no_grad()
def evaluate_loss(net, examples: list[Encoded], batch_size: int, pad_id: int, device: torch.device,
                  dist: Distributed | None = None, max_tokens: int | None = None) -> tuple[float, float]:
    """Per-token validation loss and teacher-forced token accuracy; `net(**batch)` returns a StepLoss.

    Each process scores a disjoint share and the sums are added up.
    """
    dist = dist or Distributed()
    was_training = net.training
    net.eval()
    mine = examples[dist.rank :: dist.world_size]
    lengths = [len(e.input_ids) for e in mine]
    order = sorted(range(len(mine)), key=lambda i: lengths[i])
    loss_sum, correct, tokens = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        for piece in split_by_tokens(order[start : start + batch_size], lengths, max_tokens):
            out = net(**_to(collate([mine[i] for i in piece], pad_id), device))
            loss_sum += float(out.loss_sum)
            correct += out.correct
            tokens += out.tokens
    net.train(was_training)
    loss_sum, correct, tokens = dist.sum([loss_sum, correct, tokens])
    return loss_sum / max(tokens, 1), correct / max(tokens, 1)


def _accumulate(net, pieces: list[dict], step_tokens: int, *, device, dist: Distributed, seeds: list[int],
                cfg: TrainingConfig) -> dict:
    """`accumulate_gradients`, an out-of-memory error turned into advice on the batch settings."""
    try:
        return accumulate_gradients(net, pieces, step_tokens, device=device, dist=dist, seeds=seeds)
    except torch.cuda.OutOfMemoryError as e:
        raise _out_of_memory(e, cfg, [tuple(b["input_ids"].shape) for b in pieces]) from None
    except RuntimeError as e:
        if "can't allocate memory" not in str(e):
            raise
        raise _out_of_memory(e, cfg, [tuple(b["input_ids"].shape) for b in pieces]) from None


def _check_finite(loss: float, grad_norm: float, step: int, checkpointer: Checkpointer | None) -> None:
    """Stop before applying a step whose loss or gradient norm is NaN/inf, naming the last good checkpoint."""
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    what = "training loss" if not math.isfinite(loss) else "gradient norm"
    value = loss if not math.isfinite(loss) else grad_norm
    ckpt = checkpointer.latest() if checkpointer is not None else None
    raise TrainingDiverged(
        f"{what} became {value} at step {step}; stopped before applying it. Lower "
        f"training.learning_rate or check the data. "
        + (f"The last good checkpoint is {ckpt} (step {int(ckpt.name.split('-')[-1])})." if ckpt else
           "No checkpoint was written yet (training.checkpoint_every)."), where="training")


def _out_of_memory(err: BaseException, cfg: TrainingConfig, shapes: list[tuple[int, int]]) -> UserError:
    rows, width = max(shapes, key=lambda s: s[0] * s[1]) if shapes else (cfg.batch_size, 0)
    smaller = max(1, cfg.batch_size // 2)
    return UserError(
        f"out of memory on a micro-batch of {rows}×{width} tokens ({type(err).__name__}). Try "
        f"training.batch_size={smaller} with training.gradient_accumulation={cfg.gradient_accumulation * 2} "
        f"(same effective batch), or training.micro_batch_tokens={max(64, rows * width // 2)}, or "
        "training.gradient_checkpointing=true", where="training.batch_size")


@contextlib.contextmanager
def _cpu_threads(threads: int | None):
    """torch.set_num_threads for the duration of training, then back to what it was."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
    dist: Distributed | None = None,
    scorer: StepScorer | None = None,
) -> dict:
    """Train `model` in place, leave it holding the best weights, and return the run summary (also
    logged as the last metrics record). With `resume`, continue from `checkpointer`'s latest.

    `scorer` scores tasks on the current weights at the steps it says are due (step 0 included); its
    scores can choose the shipped step and stop training (training.select_best_by / early_stopping_on)."""
    # Results depend (in the last bits) on the thread count: resume with the same value to be bit-exact.
    # Activations change shape every step: large tensors get mappings of their own (see malloc.py).
    with _cpu_threads(cfg.threads), malloc_setting(RETURN_FREED):
        return _train(model, train_set, val_set, cfg, seed=seed, pad_id=pad_id, device=device, dtype=dtype,
                      log=log, save_best=save_best, on_step=on_step, checkpointer=checkpointer, resume=resume,
                      dist=dist, scorer=scorer)


def score_tasks(scorer: StepScorer, model: torch.nn.Module, step: int, dist: Distributed,
                log: Callable[[dict], None]) -> dict[str, float]:
    """Task scores of the current weights at `step`, on every process.

    The main process scores (the trained tensors untouched; see evaluate/folding.py) and logs one `task_eval`
    record per task × metric; the others wait in the sum that hands them its scores, so that all
    processes take the same shipping and early-stopping decisions."""
    records = scorer(model, step) if dist.is_main else []
    for record in records:
        log(record)
    measured = {f"{r['task']}:{r['metric']}": float(r["value"]) for r in records}
    shared = dist.sum([measured.get(name, 0.0) for name in scorer.criteria])
    dist.barrier()
    return dict(zip(scorer.criteria, shared, strict=True))


def _train(model, train_set, val_set, cfg, *, seed, pad_id, device, dtype, log, save_best, on_step,
           checkpointer, resume, dist, scorer) -> dict:
    segment_start = time.perf_counter()
    dist = dist or current()
    device = dist.device or device
    if not dist.is_main:
        log = _discard  # only the main process writes
    torch.manual_seed(seed)

    # --- model, optimizer, schedule (train/setup.py) ---------------------------------------------
    total_steps, steps_per_epoch = total_steps_for(len(train_set), cfg, dist.world_size)
    net, params, optimizer, scheduler, head_path = prepare_training(model, cfg, dist, total_steps)
    state, best = TrainState(), None
    if (restored := restore_checkpoint(checkpointer, resume, optimizer, scheduler, params)) is not None:
        state, best = TrainState(**restored["state"]), restored["best"]
        state.resumed_from = state.step

    selection = Selection(cfg, state, params, best)

    def score_now() -> None:
        started = time.perf_counter()
        selection.observe(state.step, score_tasks(scorer, model, state.step, dist, log))
        state.task_eval_s += time.perf_counter() - started

    counts = parameter_counts(model)
    peak = machine_peak(device, dtype)
    max_tokens = micro_batch_tokens(cfg, device)

    # --- the loop -------------------------------------------------------------------------------
    lengths = [len(e.input_ids) for e in train_set]
    supervised = [supervised_count(e) for e in train_set]
    stream = _micro_batches(lengths, cfg.batch_size, seed, state)
    per_step = cfg.gradient_accumulation * dist.world_size
    if scorer is not None and state.step == 0:
        score_now()  # the weights before training: the reference of every task curve
    net.train()
    while state.step < total_steps and not state.stopped_early:
        started = time.perf_counter()
        step_batches = [next(stream) for _ in range(per_step)]
        # Every process computes the same order, so each knows the whole step's token count; the
        # all-reduce of the per-process sums below checks that they really agree.
        step_tokens = sum(supervised[i] for b in step_batches for i in b)
        pieces, seeds = [], []
        for micro in range(dist.rank, per_step, dist.world_size):
            for j, piece in enumerate(split_by_tokens(step_batches[micro], lengths, max_tokens)):
                pieces.append(collate([train_set[i] for i in piece], pad_id))
                seeds.append(_dropout_seed(seed, state.step, micro, j))
        sums = _accumulate(net, pieces, step_tokens, device=device, dist=dist, seeds=seeds, cfg=cfg)
        loss_sum, correct, n_supervised, nonpad, total = dist.sum(
            [sums["loss_sum"], sums["correct"], sums["tokens"], sums["nonpad"], sums["total"]])
        if int(n_supervised) != step_tokens:
            raise RuntimeError(f"processes disagree on step {state.step + 1}'s data ({n_supervised} vs "
                               f"{step_tokens} supervised tokens); were they given the same dataset and "
                               "seed?")
        loss = loss_sum / max(step_tokens, 1)
        grad_norm = float(dist.clip_grad_norm_(list(params.values()), cfg.max_grad_norm))
        _check_finite(loss, grad_norm, state.step + 1, checkpointer)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens_supervised += step_tokens
        state.tokens_nonpad += int(nonpad)
        state.tokens_total += int(total)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        state.train_s += time.perf_counter() - started

        if state.step % cfg.log_every == 0 or state.step == total_steps:
            log({"kind": "train", "step": state.step, "epoch": round(state.step / steps_per_epoch, 4),
                 "loss": loss, "token_accuracy": correct / max(step_tokens, 1),
                 "lr": scheduler.get_last_lr()[0],
                 "grad_norm": grad_norm, "tokens_supervised": state.tokens_supervised,
                 "tokens_nonpad": state.tokens_nonpad, "tokens_total": state.tokens_total,
                 "elapsed_s": round(state.train_s, 3)})

        if val_set and (state.step % cfg.eval_every == 0 or state.step == total_steps):
            # The unwrapped module: each process scores its own share, with no collective per forward.
            val_loss, val_acc = evaluate_loss(dist.unwrap(net), val_set, cfg.batch_size * 2, pad_id, device,
                                              dist, max_tokens)
            log({"kind": "val", "step": state.step, "val_loss": val_loss, "val_token_accuracy": val_acc})
            selection.observe(state.step, {VAL_LOSS: val_loss})
        # The last step is always scored, also when validation has just stopped training early.
        if scorer is not None and (scorer.due(state.step, total_steps) or state.stopped_early):
            score_now()

        if (checkpointer is not None and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0
                and state.step < total_steps and not state.stopped_early):
            state.wall_s += time.perf_counter() - segment_start
            segment_start = time.perf_counter()
            if dist.is_main:
                checkpointer.save(state, params, selection.best, optimizer, scheduler)
            dist.barrier()
        if on_step is not None:
            on_step(state, total_steps)

    # --- finish: ship the best weights, summarise (train/run_summary.py) -------------------------
    best = selection.best
    if best is not None and state.best_step != state.step:
        with torch.no_grad():
            for n, v in best.items():
                params[n].copy_(v.to(params[n].device))
    if save_best is not None and dist.is_main:
        save_best(model)
    dist.barrier()
    state.wall_s += time.perf_counter() - segment_start
    summary = training_summary(state, selection, scored=scorer is not None, total_steps=total_steps,
                               steps_per_epoch=steps_per_epoch, counts=counts, peak=peak,
                               flops=flops_per_token(counts), max_tokens=max_tokens, device=device,
                               dtype=dtype, processes=dist.world_size, price_per_hour=cfg.price_per_hour,
                               head_path=head_path)
    log(summary)
    return summary
