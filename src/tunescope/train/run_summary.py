"""The summary record of a training run (metrics.jsonl's `summary`): steps, tokens, time, throughput, MFU
against the device's peak, memory, cost, and how the shipped step was chosen."""

from __future__ import annotations

import math

import torch

from tunescope.train.throughput import cuda_max_allocated_mb, estimate_cost, peak_rss_mb


def training_summary(state, selection, *, scored: bool, total_steps: int, steps_per_epoch: int, counts: dict,
                     peak: dict, flops: tuple[float, float], max_tokens: int | None, device: torch.device,
                     dtype: torch.dtype, processes: int, price_per_hour: float | None,
                     head_path: tuple[str, str]) -> dict:
    """`state` is the loop's `TrainState` at the end; `scored`: tasks were scored during training;
    `head_path`: the path every loss took and why (`loss.loss_path`)."""
    flops_body, flops_head = flops
    # Round once, then derive cost from the rounded figure so the logged numbers agree with each other.
    wall_s, train_s = round(state.wall_s, 3), round(state.train_s, 3)
    useful_flops = flops_body * state.tokens_nonpad + flops_head * state.tokens_supervised
    achieved = useful_flops / max(state.train_s, 1e-9) / processes  # FLOP/s per process
    cost, price, price_source = estimate_cost(wall_s * processes, device, price_per_hour)
    return {
        "kind": "summary", "steps": state.step, "total_steps_planned": total_steps,
        "epochs": round(state.step / steps_per_epoch, 4), "best_step": state.best_step,
        "best_val_loss": state.best_val_loss if math.isfinite(state.best_val_loss) else None,
        # Only runs that score tasks while training say how the shipped step was chosen among criteria.
        **(selection.summary() | {"task_eval_s": round(state.task_eval_s, 3)} if scored else {}),
        "stopped_early": state.stopped_early, "resumed_from_step": state.resumed_from,
        "tokens_supervised": state.tokens_supervised, "tokens_nonpad": state.tokens_nonpad,
        "tokens_total": state.tokens_total,
        "padding_fraction": 1 - state.tokens_nonpad / max(state.tokens_total, 1), "wall_s": wall_s,
        "train_s": train_s,
        "throughput_supervised_tps": state.tokens_supervised / max(state.train_s, 1e-9),
        "throughput_nonpad_tps": state.tokens_nonpad / max(state.train_s, 1e-9),
        "flops_per_token": flops_body, "flops_per_supervised_token_head": flops_head,
        # MFU against the best peak of any dtype this device runs; the training dtype's own peak second.
        "mfu": achieved / peak["peak_flops"], **peak,
        "mfu_own_dtype": achieved / peak["peak_flops_own_dtype"], "peak_rss_mb": peak_rss_mb(),
        "cuda_max_allocated_mb": cuda_max_allocated_mb(device),
        "device": str(device), "dtype": str(dtype).replace("torch.", ""), "processes": processes,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "micro_batch_tokens": max_tokens, "loss_path": head_path[0], "loss_path_reason": head_path[1],
        "trainable_params": counts["trainable"],
        "cost_usd": cost, "price_per_hour": price, "price_source": price_source,
    }
