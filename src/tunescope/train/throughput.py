"""Throughput, MFU, memory and cost.

MFU = achieved model FLOP/s ÷ the machine's peak, and the peak is the best the machine offers in any
dtype it runs: training in a dtype that is slow on this hardware shows as a low MFU rather than hiding
behind its own low peak. That dtype's own peak gives a second figure, `mfu_own_dtype`. On CPU the peaks
are measured with a matrix product at start-up (datasheets mean little for shared vCPUs); on CUDA in
bf16/fp16 they come from a small table of datasheet dense figures, else (other GPUs, float32) a
measurement.
"""

from __future__ import annotations

import functools
import resource
import sys
import time

import torch

# Dense peak TFLOP/s (bf16/fp16 tensor cores, no sparsity), from vendor datasheets.
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A10G": 125.0, "L4": 121.0, "T4": 65.0,
                   "V100": 125.0}

# USD per device-hour, typical on-demand cloud prices; override with training.price_per_hour.
PRICE_PER_HOUR = {"cpu": 0.10, "T4": 0.35, "A10G": 1.00, "L4": 0.80, "A100": 1.80, "H100": 3.00, "H200": 4.00}


def price_key(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device)
    return next((k for k in PRICE_PER_HOUR if k != "cpu" and k in name), "A100")


def peak_dtypes(device: torch.device, own: torch.dtype) -> list[torch.dtype]:
    """The dtypes whose peaks compete for "the machine's peak": what the device multiplies, and `own`."""
    if device.type == "cuda":
        offered = (([torch.bfloat16] if torch.cuda.is_bf16_supported() else [])
                   + [torch.float16, torch.float32])
    else:
        offered = [torch.float32, torch.bfloat16]
    return offered + ([own] if own not in offered else [])


def machine_peak(device: torch.device, own: torch.dtype) -> dict:
    """The best peak over `peak_dtypes` (what MFU divides by), which dtype gives it and where the figure
    comes from, plus `own`'s peak and every dtype's. Measured once per process, device and dtype
    (about a second per dtype on CPU)."""
    peaks = {d: _peak_flops(str(device), d) for d in peak_dtypes(device, own)}
    best = max(peaks, key=lambda d: peaks[d][0])
    return {"peak_flops": peaks[best][0], "peak_flops_dtype": _name(best),
            "peak_flops_source": peaks[best][1], "peak_flops_own_dtype": peaks[own][0],
            "peak_flops_by_dtype": {_name(d): flops for d, (flops, _) in peaks.items()}}


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# CPU peak: the product grows from 512² while one takes under SLOW_PRODUCT_S, up to 2048²; then
# repeats fill PEAK_BUDGET_S. A dtype this CPU emulates (bfloat16 without AVX512-BF16 or AMX, under a
# GFLOP/s per core) stops at the first size, so measuring it costs about a second rather than minutes.
CPU_PEAK_SIZES = (512, 1024, 2048)
SLOW_PRODUCT_S = 0.05
PEAK_BUDGET_S = 0.5
PEAK_REPEATS = 5


@functools.lru_cache(maxsize=8)
def _peak_flops(device_name: str, dtype: torch.dtype) -> tuple[float, str]:
    """(peak FLOP/s, "datasheet" or "measured")."""
    device = torch.device(device_name)
    # A private generator: measuring must not move the global random state training depends on.
    gen = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name and dtype in (torch.bfloat16, torch.float16):
                return tflops * 1e12, "datasheet"
        size = 8192
        a = torch.randn(size, size, dtype=dtype, device=device, generator=gen)
        b = torch.randn(size, size, dtype=dtype, device=device, generator=gen)
        a @ b  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(PEAK_REPEATS):
            a @ b
        torch.cuda.synchronize()
        return 2 * size**3 * PEAK_REPEATS / (time.perf_counter() - start), "measured"
    for size in CPU_PEAK_SIZES:
        a = torch.randn(size, size, generator=gen).to(dtype)
        b = torch.randn(size, size, generator=gen).to(dtype)
        start = time.perf_counter()
        a @ b  # warm-up, and how long one product takes at this size
        first = time.perf_counter() - start
        if first >= SLOW_PRODUCT_S:
            break
    if first >= PEAK_BUDGET_S:  # too slow to repeat within the budget: the warm-up is the measurement
        return 2 * size**3 / first, "measured"
    repeats, start = 0, time.perf_counter()
    while repeats < PEAK_REPEATS and (repeats == 0 or time.perf_counter() - start < PEAK_BUDGET_S):
        a @ b
        repeats += 1
    return 2 * size**3 * repeats / (time.perf_counter() - start), "measured"


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
