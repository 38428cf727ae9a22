"""The training stage of a run: build what trains, start or resume, train, save the adapter.

Files in the run folder: `metrics.jsonl` (records), `adapter/` (the shipped weights, PEFT format
or a full model), `checkpoints/step-*/` while training (see checkpoint.py) and
`checkpoints/final.safetensors` once training is done, so that a run killed later (during the tuned
evaluation) resumes without training again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tunescope.config.run_config import RunConfig
from tunescope.core.prompt_format import Encoded
from tunescope.store.layout import ADAPTER, CHECKPOINTS, FINAL_WEIGHTS, METRICS
from tunescope.store.run_folder import last_summary, rewind_metrics
from tunescope.store.schema import SummaryRecord
from tunescope.train.adapters import build_trainable, count_parameters
from tunescope.train.checkpoint import Checkpointer
from tunescope.train.distributed import current
from tunescope.train.loop import total_steps_for, train
from tunescope.train.selection import StepScorer
from tunescope.train.tracking import MetricsLog


def fit(cfg: RunConfig, loaded, train_set: list[Encoded], val_set: list[Encoded], run_path: Path, *,
        resume: bool = False, setup: dict | None = None, progress=None,
        scorer: StepScorer | None = None) -> tuple[torch.nn.Module, SummaryRecord]:
    """Train `loaded.model` as `cfg.training` says; returns (trained model, summary record).

    `setup` goes into the first metrics record, with the parameter counts added; `scorer` scores tasks
    during training (eval.during_training)."""
    dist = current()
    tc = cfg.training
    tok = loaded.tokenizer
    # Seeded before building: LoRA's A matrices are random, and every run with this seed starts alike.
    torch.manual_seed(cfg.seed)
    model = build_trainable(loaded.model, tc)
    metrics_path = run_path / METRICS
    ckpt_dir = run_path / CHECKPOINTS
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}

    if resume and (ckpt_dir / FINAL_WEIGHTS).is_file() and (summary := last_summary(run_path)) is not None:
        # Training had finished before the run was stopped: reuse its result.
        saved = load_file(str(ckpt_dir / FINAL_WEIGHTS))
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(saved[n].to(p.device))
        return model, summary

    total_steps, _ = total_steps_for(len(train_set), tc, dist.world_size)
    checkpointer = Checkpointer(ckpt_dir, keep=tc.keep_checkpoints, fingerprint={
        "method": tc.method, "seed": cfg.seed, "train_examples": len(train_set), "val_examples": len(val_set),
        "batch_size": tc.batch_size, "gradient_accumulation": tc.gradient_accumulation,
        "processes": dist.world_size, "total_steps": total_steps})
    has_setup = False
    if dist.is_main and resume:
        latest = checkpointer.resume_point()
        has_setup = rewind_metrics(run_path, checkpointer.load_state(latest)["step"] if latest else 0)
    log = MetricsLog(metrics_path, tc.report_to if dist.is_main else [], run_name=cfg.name,
                     params={"method": tc.method, "model": cfg.model.name, "lr": tc.learning_rate,
                             "batch_size": tc.batch_size, "seed": cfg.seed})
    n_trainable, n_total = count_parameters(model)
    if dist.is_main and not has_setup:
        log({"kind": "setup", "trainable_params": n_trainable, "total_params": n_total,
             "total_steps_planned": total_steps, **(setup or {})})

    def save_best(m) -> None:
        m.save_pretrained(run_path / ADAPTER)
        if tc.method == "full":
            tok.save_pretrained(run_path / ADAPTER)

    try:
        summary = train(model, train_set, val_set, tc, seed=cfg.seed, pad_id=tok.pad_token_id,
                        device=loaded.device, dtype=loaded.dtype, log=log, save_best=save_best,
                        checkpointer=checkpointer, resume=resume, scorer=scorer,
                        on_step=(lambda s, total: progress(s.step, total)) if progress else None)
    finally:
        log.close()
    if dist.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_file({n: p.detach().to("cpu").contiguous() for n, p in trainable.items()},
                  str(ckpt_dir / FINAL_WEIGHTS))
        # The step checkpoints were only for getting here.
        for old in checkpointer.all():
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return model, SummaryRecord.model_validate(summary)
