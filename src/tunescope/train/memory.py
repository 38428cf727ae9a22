"""Keep the process's resident memory close to what its tensors use (glibc malloc).

glibc serves allocations below its mmap threshold from heap arenas and raises that threshold (up to
32 MiB) each time a large block is freed. Training allocates and frees activations of a different
shape every step, so after a few steps most activations come from the heap, where freed blocks
fragment and are kept rather than returned. SmolLM2-135M with LoRA at 1024 tokens per forward pass
held 3.3 GB RSS between steps and peaked at 3.7 GB; with the threshold fixed at 256 KiB, so that
every large tensor gets its own mapping returned to the system when freed, it holds 1.1 GB between
steps and peaks at 2.7 GB. The price is page faults on fresh memory, which did not show next to a
step's compute in an A/B test.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache

M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 256 * 1024


@lru_cache(maxsize=1)
def return_freed_memory() -> bool:
    """Set glibc's mmap threshold once per process; False where that is not possible (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
