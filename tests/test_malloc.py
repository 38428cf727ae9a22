"""The process-wide malloc setting: training returns freed memory, evaluation keeps it, each restores what
was there."""

import json
import subprocess
import sys

import pytest

from tunescope.core import malloc
from tunescope.core.malloc import ADAPTIVE_CEILING, KEEP_FREED, RETURN_FREED, malloc_setting

pytestmark = pytest.mark.skipif(malloc._libc() is None, reason="glibc malloc only")


@pytest.fixture(autouse=True)
def restore_setting():
    before = malloc.current_setting()
    yield
    malloc.apply(before or ADAPTIVE_CEILING)


# Allocates one block of each size with libc's malloc under a setting, in a fresh process, and prints
# how many of them glibc served as mappings of their own (mallinfo2's hblks) rather than from the heap.
_MAPPED_BLOCKS = """
import ctypes, json, sys
from tunescope.core import malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t)
                for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                             "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
malloc.apply(getattr(malloc, sys.argv[1]))
mapped = {}
for kib in (64, 512, 8 << 10, 64 << 10):
    before = libc.mallinfo2().hblks
    block = libc.malloc(kib << 10)
    mapped[kib] = libc.mallinfo2().hblks - before
    libc.free(block)
print(json.dumps(mapped))
"""


def _mapped_blocks(setting: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", _MAPPED_BLOCKS, setting], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_thresholds_decide_which_blocks_get_their_own_mapping():
    # RETURN_FREED maps everything from 256 KiB up, so freeing it returns the memory at once;
    # KEEP_FREED serves up to 32 MiB from the heap, where freed memory stays for reuse.
    assert _mapped_blocks("RETURN_FREED") == {"64": 0, "512": 1, "8192": 1, "65536": 1}
    assert _mapped_blocks("KEEP_FREED") == {"64": 0, "512": 0, "8192": 0, "65536": 1}


class _RecordingLibc:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


def test_each_setting_sets_both_thresholds_and_the_default_is_restored(monkeypatch):
    libc = _RecordingLibc()
    monkeypatch.setattr(malloc, "_libc", lambda: libc)
    monkeypatch.setattr(malloc, "_current", None)
    with malloc_setting(KEEP_FREED) as applied:
        assert applied
    assert libc.calls == [
        ("mallopt", malloc.M_MMAP_THRESHOLD, 32 << 20), ("mallopt", malloc.M_TRIM_THRESHOLD, 1 << 30),
        # glibc's adaptive default cannot be restored: its ceilings are set, and free memory handed back once.
        ("mallopt", malloc.M_MMAP_THRESHOLD, 32 << 20), ("mallopt", malloc.M_TRIM_THRESHOLD, 64 << 20),
        ("malloc_trim", 0)]


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
