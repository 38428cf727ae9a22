"""The process-wide malloc setting: training returns freed memory, evaluation keeps it, each restores what was there."""

import json
import resource
import subprocess
import sys

import pytest

from tunescope import malloc
from tunescope.malloc import ADAPTIVE_CEILING, KEEP_FREED, RETURN_FREED, malloc_setting

pytestmark = pytest.mark.skipif(malloc._libc() is None, reason="glibc malloc only")


@pytest.fixture(autouse=True)
def restore_setting():
    before = malloc.current_setting()
    yield
    malloc.apply(before or ADAPTIVE_CEILING)


# Each round allocates, fills and frees tensors of 8, 3, 5 and 8 MiB (24 MiB: 6,144 pages of 4 KiB),
# as a forward pass does with its activations; run in a fresh process so that no earlier test has
# left free memory in the heap. Prints the minor page faults of each round.
_ROUNDS = """
import json, resource, sys, torch
from tunescope import malloc
malloc.apply(getattr(malloc, sys.argv[1]))
faults = []
for _ in range(8):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffers = [torch.ones(mib << 18) for mib in (8, 3, 5, 8)]
    del buffers
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
print(json.dumps(faults))
"""


def _page_faults_per_round(setting: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", _ROUNDS, setting], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_keep_freed_reuses_memory_that_return_freed_gives_back():
    pages = (24 << 20) // resource.getpagesize()
    returned = _page_faults_per_round("RETURN_FREED")
    kept = _page_faults_per_round("KEEP_FREED")
    assert all(f >= 0.9 * pages for f in returned[-3:])  # every round's tensors arrive as fresh pages
    assert sum(kept[-3:]) < pages  # once the heap has grown, rounds reuse it


def test_setting_is_restored_after_the_block_and_nested_blocks():
    malloc.apply(RETURN_FREED)
    with malloc_setting(KEEP_FREED) as applied:
        assert applied
        assert malloc.current_setting() == KEEP_FREED
        with malloc_setting(RETURN_FREED):
            assert malloc.current_setting() == RETURN_FREED
        assert malloc.current_setting() == KEEP_FREED
    assert malloc.current_setting() == RETURN_FREED


def test_from_glibc_default_the_block_leaves_the_adaptive_ceiling(monkeypatch):
    monkeypatch.setattr(malloc, "_current", None)
    with malloc_setting(KEEP_FREED):
        pass
    assert malloc.current_setting() == ADAPTIVE_CEILING


def test_restored_after_an_error():
    malloc.apply(RETURN_FREED)
    with pytest.raises(RuntimeError), malloc_setting(KEEP_FREED):
        raise RuntimeError("boom")
    assert malloc.current_setting() == RETURN_FREED
