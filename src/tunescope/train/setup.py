"""What the training loop starts from: the model wrapped for the supervised loss (gradient checkpointing,
`torch.compile`, DDP), AdamW and the learning-rate schedule over the planned steps, and the checkpoint a
resumed run continues from."""

from __future__ import annotations

import torch

from tunescope.config.run_config import TrainingConfig
from tunescope.train.checkpoint import Checkpointer
from tunescope.train.distributed import Distributed
from tunescope.train.loss import SupervisedCausalLM, loss_path


def prepare_training(model: torch.nn.Module, cfg: TrainingConfig, dist: Distributed,
                     total_steps: int) -> tuple[torch.nn.Module, dict[str, torch.nn.Parameter], object,
                                                object, tuple[str, str]]:
    """(the network the loop calls, the trainable parameters by name, the optimizer, the LR scheduler, the
    path every loss takes and why: `loss.loss_path`)."""
    from transformers import get_scheduler

    if cfg.gradient_checkpointing:
        # Non-reentrant checkpointing restores the RNG state, so recomputed dropout masks are identical.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    head_path = loss_path(model)  # checked once, before any step or wrapping
    net = SupervisedCausalLM(model)
    if cfg.compile:
        net = torch.compile(net, dynamic=True)
    net = dist.prepare_model(net)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer,
                              num_warmup_steps=round(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    return net, params, dist.prepare_optimizer(optimizer), scheduler, head_path


def restore_checkpoint(checkpointer: Checkpointer | None, resume: bool, optimizer, scheduler,
                       params: dict[str, torch.nn.Parameter]) -> dict | None:
    """With `resume`, load the latest checkpoint into the optimizer, scheduler and parameters; returns its
    `{"state", "best"}`, or None when there is nothing to resume."""
    if not resume or checkpointer is None or (latest := checkpointer.resume_point()) is None:
        return None
    return checkpointer.load(latest, optimizer, scheduler, params)
