"""glibc malloc settings for the two kinds of work the tool does on the CPU.

glibc gives each allocation above its mmap threshold a mapping of its own, unmapped when freed, and
returns free memory at the top of the heap to the system once it exceeds the trim threshold. Memory
taken back from the system arrives as zeroed pages, one page fault per 4 KiB, so whichever of the
two kinds of work runs decides which setting pays:

- **Training** (`RETURN_FREED`) allocates activations of a different shape every step. Served from
  the heap they fragment and are kept: SmolLM2-135M with LoRA at 1024 tokens per forward pass held
  3.3 GB RSS between steps and peaked at 3.7 GB; with every large tensor in its own mapping it holds
  1.1 GB between steps and peaks at 2.7 GB. Its page faults did not show next to a step's compute.
- **Evaluation** (`KEEP_FREED`) runs forward passes of similar shapes over and over, without the
  backward pass that hides the faults. 16 GSM8K items on SmolLM2-135M after training's setting: 9.3
  million page faults and 25-40 s of system time; keeping freed memory in the heap: 0.4 million and
  2-11 s (glibc's own adaptive default: 2.8-3.0 million and 12-28 s). benchmarks/RESULTS.md has the table.

glibc has no call that reads these settings back, so the module remembers what it last set:
`malloc_setting` restores that on exit, or, when nothing had been set, leaves glibc at the ceilings
its adaptive default grows towards (mmap 32 MiB, trim 64 MiB) and hands free memory back once.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


@dataclass(frozen=True)
class MallocSetting:
    name: str
    mmap_threshold: int
    trim_threshold: int


RETURN_FREED = MallocSetting("return-freed", mmap_threshold=256 << 10, trim_threshold=128 << 10)
KEEP_FREED = MallocSetting("keep-freed", mmap_threshold=32 << 20, trim_threshold=1 << 30)
# Where glibc's adaptive thresholds end up after large blocks have been freed.
ADAPTIVE_CEILING = MallocSetting("adaptive-ceiling", mmap_threshold=32 << 20, trim_threshold=64 << 20)

_current: MallocSetting | None = None  # None: glibc's own adaptive default, untouched


@lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both must exist (glibc, not musl)
    except (OSError, AttributeError):
        return None
    return libc


def current_setting() -> MallocSetting | None:
    """What this module last set, or None while glibc runs its adaptive default."""
    return _current


def apply(setting: MallocSetting) -> bool:
    """Set both thresholds; False where that is not possible (not glibc), and nothing changes."""
    global _current
    libc = _libc()
    if libc is None:
        return False
    if not (libc.mallopt(M_MMAP_THRESHOLD, setting.mmap_threshold)
            and libc.mallopt(M_TRIM_THRESHOLD, setting.trim_threshold)):
        return False
    _current = setting
    return True


@contextmanager
def malloc_setting(setting: MallocSetting) -> Iterator[bool]:
    """`setting` inside the block (yields whether it could be applied); the previous one after it."""
    previous = _current
    applied = apply(setting)
    try:
        yield applied
    finally:
        if applied and previous != setting:
            apply(previous or ADAPTIVE_CEILING)
            if previous is None:
                _libc().malloc_trim(0)
