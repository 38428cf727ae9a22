"""Adapters folded into their layers' weights for the duration of an evaluation.

PEFT's forward of an unmerged adapter adds work to every adapted layer at every forward pass: LoRA two
thin products and an addition, DoRA also the norm of the whole adapted weight, recomputed each time.
On a 2-core CPU a SmolLM2-135M DoRA run's held-out evaluation took 2.9× as long as its LoRA twin's
(benchmarks/RESULTS.md). An evaluation does not train, so each adapted layer can use the merged
weight, computed once per evaluation by PEFT's own safe merge.

The trained weights are never touched. PEFT's merge writes wherever its version chooses: 0.21 assigned a
new tensor, 0.22 copies the merged weight into the layer's tensor in place. So merge() is handed a copy
of each weight to work on, whatever it does with it. On exit each layer gets its original tensor back
(the same object) and its adapter is active again, and a fingerprint of every parameter of the adapted
layers, taken before the fold, is checked: a difference raises `FoldingError` rather than let training or
a report go on with weights that are not the trained ones. So training after a scoring point goes on
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


class FoldingError(RuntimeError):
    """The trained weights were not intact after an evaluation with folded adapters."""


def fingerprint(tensor: torch.Tensor) -> torch.Tensor:
    """A per-row hash of a tensor's bits (xor of each row's elements as 64-bit patterns).

    Any change to the values changes it, unlike the object's identity, which an in-place write keeps."""
    flat = (tensor.detach().reshape(tensor.shape[0], -1) if tensor.dim() > 1
            else tensor.detach().reshape(1, -1))
    return torch.hash_tensor(flat, dim=-1)


def _fingerprints(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: fingerprint(p) for name, p in module.named_parameters()}


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
    folded: list[tuple[torch.nn.Module, torch.nn.Linear, torch.Tensor, dict]] = []

    def unfold() -> None:
        with torch.no_grad():
            for module, base, original, _ in reversed(folded):
                base.weight.data = original
                module.merged_adapters.clear()
        # Every parameter of the layer (base weight, adapter matrices, DoRA magnitudes) must hold the same
        # bits as before the fold; the base weight is its original tensor again by the assignment above.
        damaged = [name for module, _, _, before in folded for name, p in module.named_parameters()
                   if name not in before or not torch.equal(fingerprint(p), before[name])]
        if damaged:
            raise FoldingError(
                f"folding adapters for evaluation changed {len(damaged)} trained tensor(s) "
                f"(first: {damaged[0]}); the installed peft's merge() does not leave its input as it was")

    try:
        with torch.no_grad():
            for module in layers:
                base = module.get_base_layer()
                before = _fingerprints(module)
                original = base.weight.data
                # merge() gets a copy to write into: whether it assigns a new tensor or copies into this one
                # in place (both seen across PEFT releases), `original` is never written.
                base.weight.data = original.clone()
                folded.append((module, base, original, before))
                module.merge(safe_merge=True, adapter_names=list(module.active_adapters))
    except ValueError:  # PEFT found non-finite merged weights: evaluate with its own forward instead
        unfold()
    try:
        yield len(folded)
    finally:
        unfold()
