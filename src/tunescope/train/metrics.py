"""Throughput, MFU, memory and cost.

MFU = achieved model FLOP/s ÷ the machine's peak. On CPU the peak is measured with a large matmul
at start-up in the training dtype (datasheets mean little for shared vCPUs); on CUDA in bf16/fp16 it
comes from a small table of datasheet dense figures, else (other GPUs, float32) a measurement.
"""

from __future__ import annotations

import functools
import resource
import sys
import time

import torch

# Dense peak TFLOP/s (bf16/fp16 tensor cores, no sparsity), from vendor datasheets.
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A10G": 125.0, "L4": 121.0, "T4": 65.0, "V100": 125.0}

# USD per device-hour, typical on-demand cloud prices; override with training.price_per_hour.
PRICE_PER_HOUR = {"cpu": 0.10, "T4": 0.35, "A10G": 1.00, "L4": 0.80, "A100": 1.80, "H100": 3.00, "H200": 4.00}


def price_key(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device)
    return next((k for k in PRICE_PER_HOUR if k != "cpu" and k in name), "A100")


def measure_peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Peak FLOP/s for MFU; measured once per process, device and dtype (about a second on CPU)."""
    return _peak_flops(str(device), dtype)


@functools.lru_cache(maxsize=8)
def _peak_flops(device_name: str, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    device = torch.device(device_name)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name and dtype in (torch.bfloat16, torch.float16):
                return tflops * 1e12
        size = 8192
    # A private generator: measuring must not move the global random state training depends on.
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, dtype=dtype, device=device, generator=gen)
    b = torch.randn(size, size, dtype=dtype, device=device, generator=gen)
    a @ b  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters by role: the decoder body (what every token passes through), the output head (only
    supervised positions reach it, see loss.py), and which of them train. Tied weights count once."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    embeddings = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    skip = {id(p) for m in (head, embeddings) if m is not None for p in m.parameters()}
    counts = {"body": 0, "body_trainable": 0, "head": 0, "head_trainable": 0, "trainable": 0}
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        counts["trainable"] += p.numel() if p.requires_grad else 0
        if id(p) not in skip:
            counts["body"] += p.numel()
            counts["body_trainable"] += p.numel() if p.requires_grad else 0
    if head is not None:
        counts["head"] = sum(p.numel() for p in head.parameters())
        counts["head_trainable"] = sum(p.numel() for p in head.parameters() if p.requires_grad)
    return counts


def flops_per_token(counts: dict[str, int]) -> tuple[float, float]:
    """(body FLOPs per non-padding token, head FLOPs per supervised token) for one training step.

    Each weight costs 2 FLOPs per token forward and 2 backward for the activation gradient; weight
    gradients (2 more) only for weights that train, so LoRA skips them for the frozen base. The
    attention score products (about 5% more at 200 tokens for SmolLM2-135M) and gradient
    checkpointing's recomputation are not counted: MFU counts useful model FLOPs only.
    """
    body = 4 * counts["body"] + 2 * counts["body_trainable"]
    head = 4 * counts["head"] + 2 * counts["head_trainable"]
    return float(body), float(head)


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux, bytes on macOS.
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def cuda_max_allocated_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def estimate_cost(wall_s: float, device: torch.device, override: float | None) -> tuple[float, float, str]:
    key = price_key(device)
    price = override if override is not None else PRICE_PER_HOUR[key]
    return wall_s / 3600 * price, price, ("user override" if override is not None else f"table: {key}")
