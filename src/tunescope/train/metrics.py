"""Throughput, MFU, memory and cost.

MFU = achieved model FLOP/s ÷ the machine's peak. On CPU the peak is measured with a large matmul
at start-up in the training dtype (datasheets mean little for shared vCPUs); on CUDA it comes from
a small table of datasheet dense bf16/fp16 figures, else a measurement.
"""

from __future__ import annotations

import resource
import sys
import time

import torch

# Dense peak TFLOP/s (bf16/fp16 tensor cores, no sparsity), from vendor datasheets.
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A10G": 125.0, "L4": 121.0, "T4": 65.0, "V100": 125.0}

# USD per device-hour, typical on-demand cloud prices; override with training.price_per_hour.
PRICE_PER_HOUR = {"cpu": 0.10, "T4": 0.35, "A10G": 1.00, "L4": 0.80, "A100": 1.80, "H100": 3.00, "H200": 4.00}


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def price_key(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device)
    return next((k for k in PRICE_PER_HOUR if k != "cpu" and k in name), "A100")


def measure_peak_flops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
        size = 8192
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    a @ b  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def flops_per_token(n_params_nonembed: int, n_trainable: int, full: bool) -> float:
    """Training FLOPs per processed token: forward 2N, backward through activations 2N, and weight
    gradients 2N only for parameters that train (LoRA freezes the base, so they are skipped)."""
    weight_grads = n_params_nonembed if full else n_trainable
    return 4 * n_params_nonembed + 2 * weight_grads


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
