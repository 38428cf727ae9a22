"""Builders that turn a loaded base model into the thing we train: LoRA, DoRA, QLoRA or full.

The adapters are PEFT's, so what we save is the PEFT format any PEFT user can load. For training
speed, plain-LoRA layers and SwiGLU MLPs get fused forwards (see fused.py) that compute the same
functions with fewer passes over the activations and less memory kept for backward.
"""

from __future__ import annotations

import torch

from tunescope.config.run_config import TrainingConfig
from tunescope.core.errors import UserError
from tunescope.train.fused import fuse_lora_forward, fuse_swiglu


def quantization_config_for(cfg: TrainingConfig, device: torch.device):
    """QLoRA loads the base in 4-bit NF4 through bitsandbytes, which needs CUDA."""
    if cfg.method != "qlora":
        return None
    if device.type != "cuda":
        raise UserError("QLoRA needs a CUDA GPU (4-bit NF4 weights through bitsandbytes); on this machine "
                        "use method: lora (same adapter, unquantized base) or method: dora",
                        where="training.method")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError("QLoRA needs bitsandbytes: pip install 'tunescope[cuda]'",
                        where="training.method") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def build_trainable(model: torch.nn.Module, cfg: TrainingConfig) -> torch.nn.Module:
    """Wrap `model` for training according to `cfg.method`; returns the model whose parameters train."""
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        fuse_swiglu(model)
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        if not (getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_quantized", False)):
            raise UserError("method: qlora needs the base loaded in 4-bit (load_model(..., "
                            "quantization_config=quantization_config_for(cfg, device)))",
                            where="training.method")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        bias=cfg.lora.bias,
        target_modules=cfg.lora.target_modules,
        use_dora=cfg.method == "dora",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    fuse_lora_forward(peft_model)
    fuse_swiglu(peft_model)
    return peft_model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total
