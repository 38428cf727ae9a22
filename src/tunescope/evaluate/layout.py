"""Weight layout for inference on the CPU.

A linear layer stores its weight as [out, in] and computes `x @ W.T`. When `x` has few rows, as in a
decoding step (1-32 rows), the CPU BLAS kernels compute that product several times slower than the
same product with the weight stored column-major: on SmolLM2-135M's shapes the attention projections
ran 4-9x faster at 4-32 rows (benchmarks/RESULTS.md). Products with many rows (prefill, training)
run at the same speed either way. Only the order of the values in memory changes, never the values,
and the original order is restored on exit, so training after an evaluation sees the model unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def column_major_linears(model: torch.nn.Module) -> Iterator[int]:
    """Store every floating-point CPU linear weight column-major for the duration; yields how many."""
    changed: list[torch.nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (not isinstance(module, torch.nn.Linear) or not isinstance(weight, torch.Tensor)
                or id(weight) in seen
                or weight.device.type != "cpu" or not weight.is_floating_point() or weight.dim() != 2
                or not weight.is_contiguous()):
            continue
        seen.add(id(weight))  # tied weights (embedding = output layer) are converted once
        with torch.no_grad():
            weight.data = weight.data.t().contiguous().t()
        changed.append(weight)
    try:
        yield len(changed)
    finally:
        with torch.no_grad():
            for weight in changed:
                weight.data = weight.data.contiguous()
