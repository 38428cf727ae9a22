"""Adapters folded into their layers' weights for the duration of an evaluation.

PEFT's forward of an unmerged adapter adds work to every adapted layer at every forward pass: LoRA two
thin products and an addition, DoRA also the norm of the whole adapted weight, recomputed each time.
On a 2-core CPU a SmolLM2-135M DoRA run's held-out evaluation took 2.9× as long as its LoRA twin's
(benchmarks/RESULTS.md). An evaluation does not train, so each adapted layer can use the merged
weight, computed once per evaluation by PEFT's own safe merge, which writes it into a new tensor.

The trained weights are never touched: on exit each layer gets its original tensor back (the same
object, so bit for bit) and its adapter is active again, so training after a scoring point goes on
from exactly where it was. The folded weight is what `tunescope export --merged` writes, so the
scores are those of the exported model.

Folded: PEFT LoRA and DoRA layers over a plain floating-point `nn.Linear`. Quantized bases (QLoRA),
adapters with a bias, other variants, and models whose copy would not fit in free memory keep PEFT's
forward; `results.json` records how many layers were folded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# The merged copies may take at most this share of the memory that is free now.
MEMORY_SHARE = 0.5


def _foldable(module: torch.nn.Module) -> bool:
    if not (hasattr(module, "lora_A") and hasattr(module, "merge") and hasattr(module, "get_base_layer")):
        return False
    base = module.get_base_layer()
    if type(base) is not torch.nn.Linear or not base.weight.is_floating_point():
        return False  # bitsandbytes' 4-bit layers subclass nn.Linear; their merge requantizes
    adapters = list(module.active_adapters)
    if module.merged or module.disable_adapters or not adapters:
        return False
    for name in adapters:
        if name not in module.lora_A or module.lora_bias.get(name):
            return False
        variant = module.lora_variant.get(name)
        if variant is not None and type(variant).__name__ != "DoraLinearVariant":
            return False
    return True


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


@contextmanager
def folded_adapters(model: torch.nn.Module) -> Iterator[int]:
    """Merge every foldable adapter into a new weight for the duration; yields how many layers were folded."""
    layers = [m for m in model.modules() if _foldable(m)]
    if not layers:
        yield 0
        return
    weights = [m.get_base_layer().weight for m in layers]
    needed = sum(w.numel() * w.element_size() for w in weights)
    if needed > MEMORY_SHARE * _free_bytes(weights[0].device):
        yield 0
        return
    folded: list[tuple[torch.nn.Module, torch.nn.Linear, torch.Tensor]] = []

    def unfold() -> None:
        with torch.no_grad():
            for module, base, original in reversed(folded):
                base.weight.data = original
                module.merged_adapters.clear()
        folded.clear()

    try:
        with torch.no_grad():
            for module in layers:
                base = module.get_base_layer()
                original = base.weight.data
                # safe_merge computes the merged weight in a copy and assigns it, leaving `original` as it was.
                module.merge(safe_merge=True, adapter_names=list(module.active_adapters))
                folded.append((module, base, original))
    except ValueError:  # PEFT found non-finite merged weights: evaluate with its own forward instead
        unfold()
    try:
        yield len(folded)
    finally:
        unfold()
