"""`batch_size="auto"`: the largest batch whose memory fits, estimated rather than probed.

lm-eval probes by running ever smaller batches until one does not run out of memory; on a CPU that
never fails, it only swaps. So the size is computed from the bytes a sequence needs (its KV cache for
generation, its activations and attention mask for scoring) and the memory that is free: CUDA's
`mem_get_info`, or `MemAvailable` from /proc/meminfo on a CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from tunescope.core.errors import UserError
from tunescope.core.modelinfo import text_config

MAX_AUTO_BATCH = 64
_CPU_SHARE = 0.5  # leave room for the rest of the process and the machine
_GPU_SHARE = 0.8


def free_memory_bytes(device) -> int:
    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * _GPU_SHARE)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * _CPU_SHARE)
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages * os.sysconf("SC_PAGE_SIZE") * _CPU_SHARE) if pages else 4 << 30


def _dims(model) -> tuple[int, int, int, int, int]:
    cfg = text_config(model)
    heads = int(getattr(cfg, "num_attention_heads", 8))
    hidden = int(getattr(cfg, "hidden_size", 1024))
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    layers = int(getattr(cfg, "num_hidden_layers", 12))
    return layers, heads, kv_heads, head_dim, hidden


def _dtype_bytes(model) -> int:
    return next(model.parameters()).element_size()


def generation_batch_size(model, max_sequence_tokens: int, n_requests: int) -> int:
    """Slots whose KV caches (prompt + new tokens each) fit in free memory."""
    layers, _, kv_heads, head_dim, hidden = _dims(model)
    per_token = 2 * layers * kv_heads * head_dim * _dtype_bytes(model)
    per_slot = per_token * max_sequence_tokens + hidden * 64 * 4
    fit = free_memory_bytes(next(model.parameters()).device) // max(per_slot, 1)
    return int(max(1, min(MAX_AUTO_BATCH, fit, n_requests)))


def scoring_batch_size(model, max_row_tokens: int, n_rows: int) -> int:
    """Rows of `max_row_tokens` whose forward activations and attention fit in free memory."""
    layers, heads, _, _, hidden = _dims(model)
    cfg = text_config(model)
    inter = int(getattr(cfg, "intermediate_size", 4 * hidden))
    t = max_row_tokens
    per_row = 4 * (t * (6 * hidden + 3 * inter) + (heads + 2) * t * t)
    fit = free_memory_bytes(next(model.parameters()).device) // max(per_row, 1)
    return int(max(1, min(MAX_AUTO_BATCH, fit, n_rows)))


def resolve_batch_size(batch_size: int | str, fallback: Callable[[], int]) -> int:
    """`batch_size` as a positive int; "auto" asks `fallback` (what fits in free memory)."""
    if batch_size == "auto":
        return fallback()
    if isinstance(batch_size, str) and batch_size.startswith("auto"):
        return fallback()
    try:
        value = int(batch_size)
    except (TypeError, ValueError):
        raise UserError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}",
                        where="batch_size") from None
    if value < 1:
        raise UserError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}",
                        where="batch_size")
    return value
