"""What `dtype: auto` means on this machine: measured on CPU, known on CUDA.

A CPU's flags say which instructions it has, not which dtype runs faster: a 2-core Xeon with
AVX512-BF16 but no AMX multiplied 2048² matrices at 218 GFLOP/s in float32 and 117 in bfloat16, and
a CPU with neither emulates bfloat16 at under a GFLOP/s per core, dozens of times slower than float32. So on
CPU `auto` times one short matrix product of the model's own shape (rows × hidden @ hidden × intermediate) in
each dtype and takes bfloat16 only when it is clearly faster: it costs precision, so anything short of
`BF16_MIN_SPEEDUP` goes to float32.

The product runs on one thread. The choice is about the core's arithmetic, and on a shared machine a
second thread measures the scheduler instead: on 2 busy cores, 2-thread products ran float32 at about
0.6 GFLOP/s and bfloat16 at 0.5 (0.98×), while one thread gave 68 and 0.44 (0.0065×). Where
bfloat16's halved memory traffic helps more with more threads, one thread errs towards float32.
The figures are cached per machine (CPU model and flags, torch version, shape), so a machine measures
once per model shape.

On CUDA: bfloat16 where the GPU supports it, else float16 (half precision runs on the tensor cores).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from tunescope.core.modelinfo import text_config
from tunescope.store.fileio import now_iso

log = logging.getLogger(__name__)

# bfloat16 keeps 8 bits of mantissa against float32's 24: only a clear speed-up pays for that.
BF16_MIN_SPEEDUP = 1.2
CPU_CANDIDATES = (torch.float32, torch.bfloat16)
CPU_RULE = ("CPU: bfloat16 when a timed matrix product of the model's shape runs at least "
            f"{BF16_MIN_SPEEDUP}× faster in bfloat16 than in float32, else float32")
CUDA_RULE = "CUDA: bfloat16 where the GPU supports it, else float16"

# One timed product is about this many FLOPs: long enough to time, short enough for a few repeats.
PRODUCT_FLOPS = 2e8
ROWS = (64, 512)
# The model's projection width, clamped: a toy model's tiny products time only overheads, and a wide
# one's cost seconds in an emulated bfloat16; within these bounds the rate per FLOP is what counts.
HIDDEN = (256, 1024)
INTERMEDIATE = (1024, 2048)
PROBE_FRACTION = 8  # the probe product has 1/8 of the rows
TIME_BUDGET_S = 0.08  # per dtype, for the timed repeats
MAX_REPEATS = 10
MEASURE_THREADS = 1
CACHE_FILE = "dtype_choice.json"

Shape = tuple[int, int, int]  # (rows, hidden, intermediate): rows × hidden @ hidden × intermediate
Timer = Callable[[torch.dtype, Shape], float]  # GFLOP/s; raises RuntimeError where the dtype cannot run


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class DtypeChoice:
    dtype: torch.dtype
    requested: str  # "auto" or the dtype asked for
    reason: str
    rule: str | None = None
    gflops: dict[str, float] = field(default_factory=dict)  # measured, per dtype
    shape: Shape | None = None
    threads: int | None = None
    cached: bool = False
    measured_at: str | None = None

    @property
    def bf16_speedup(self) -> float | None:
        """bfloat16's GFLOP/s ÷ float32's (below 1: bfloat16 is slower)."""
        fp32, bf16 = self.gflops.get("float32"), self.gflops.get("bfloat16")
        return bf16 / fp32 if fp32 and bf16 is not None else None

    def record(self) -> dict:
        """The JSON form written into manifests and results."""
        speedup = self.bf16_speedup
        return {"requested": self.requested, "dtype": dtype_name(self.dtype), "reason": self.reason,
                "rule": self.rule, "gflops": {k: round(v, 2) for k, v in self.gflops.items()} or None,
                "bf16_speedup": None if speedup is None else round(speedup, 3),
                "min_bf16_speedup": BF16_MIN_SPEEDUP if self.gflops else None,
                "shape": list(self.shape) if self.shape else None, "threads": self.threads,
                "cached": self.cached, "measured_at": self.measured_at}


def requested(dtype: torch.dtype) -> DtypeChoice:
    return DtypeChoice(dtype=dtype, requested=dtype_name(dtype), reason="set explicitly")


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


def product_shape(hidden: int | None, intermediate: int | None) -> Shape:
    """The timed product for a model: its hidden × intermediate projection (clamped to `HIDDEN`,
    `INTERMEDIATE`), with enough rows that one product is about `PRODUCT_FLOPS`."""
    k = _clamp(hidden or HIDDEN[1], HIDDEN)
    n = _clamp(intermediate or 4 * k, INTERMEDIATE)
    return _clamp(round(PRODUCT_FLOPS / (2 * k * n)), ROWS), k, n


def shape_of_config(config) -> Shape:
    """`product_shape` from a transformers config (names differ between families)."""
    cfg = text_config(config)
    hidden = next((getattr(cfg, a) for a in ("hidden_size", "n_embd", "d_model") if getattr(cfg, a, None)),
                  None)
    inter = next((getattr(cfg, a) for a in ("intermediate_size", "n_inner", "ffn_dim")
                  if getattr(cfg, a, None)), None)
    return product_shape(hidden, inter)


def _seconds(a: torch.Tensor, b: torch.Tensor) -> float:
    start = time.perf_counter()
    a @ b
    return time.perf_counter() - start


def time_matmul(dtype: torch.dtype, shape: Shape) -> float:
    """GFLOP/s of a (rows × hidden) @ (hidden × intermediate) product in `dtype`, the best of a few.

    A probe with 1/8 of the rows comes first: where the whole product would overrun the time budget
    (an emulated bfloat16 runs at under a GFLOP/s), the probe's rate is the answer, so a slow dtype
    costs a fraction of a second rather than seconds. Each shape's first product only warms up (kernel
    creation).
    """
    rows, k, n = shape
    gen = torch.Generator().manual_seed(0)  # private: measuring must not move the global random state
    a = torch.randn(rows, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    probe = a[: max(1, rows // PROBE_FRACTION)]
    _seconds(probe, b)
    took = _seconds(probe, b)
    if took * rows / len(probe) > TIME_BUDGET_S:
        return 2 * len(probe) * k * n / took / 1e9
    _seconds(a, b)
    best, spent = math.inf, 0.0
    for _ in range(MAX_REPEATS):
        took = _seconds(a, b)
        best, spent = min(best, took), spent + took
        if spent > TIME_BUDGET_S:
            break
    return 2 * rows * k * n / best / 1e9


@lru_cache(maxsize=1)
def _cpu_identity() -> tuple[str, frozenset[str]]:
    """(CPU model name, CPU flags), from /proc/cpuinfo where there is one."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())  # the first processor speaks for all
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    return model, frozenset(fields.get("flags", "").split())


def machine_key(shape: Shape, threads: int = MEASURE_THREADS) -> str:
    """What the measurement depends on: another CPU, torch build, thread count or shape measures anew."""
    model, flags = _cpu_identity()
    flags_id = hashlib.sha1(" ".join(sorted(flags)).encode()).hexdigest()[:12]
    return (f"{model} | flags {flags_id} | torch {torch.__version__} | threads {threads} | "
            f"{'x'.join(map(str, shape))}")


@contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on `path` (POSIX): processes starting together measure once, not all at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: measuring twice is harmless
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def measure_cpu(shape: Shape, *, timer: Timer | None = None,
                cache_path: Path | None = None) -> tuple[dict[str, float], bool, str | None]:
    """(GFLOP/s per dtype that runs, whether they came from the cache, when they were measured).

    `timer` defaults to `time_matmul`; tests pass a fake one."""
    timer = timer or time_matmul
    key = machine_key(shape)

    def measure() -> tuple[dict, str]:
        gflops = {}
        with _torch_threads(MEASURE_THREADS):
            for dtype in CPU_CANDIDATES:
                try:
                    gflops[dtype_name(dtype)] = float(timer(dtype, shape))
                except RuntimeError as e:  # a dtype this CPU (or torch build) cannot multiply
                    log.info("%s matmul unavailable: %s", dtype_name(dtype), e)
        return gflops, now_iso()

    if cache_path is None:
        gflops, when = measure()
        return gflops, False, when
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(cache_path.with_suffix(".lock")):
            entry = _read_cache(cache_path).get(key)
            if isinstance(entry, dict) and entry.get("gflops"):
                return entry["gflops"], True, entry.get("measured_at")
            gflops, when = measure()
            data = _read_cache(cache_path)
            data[key] = {"gflops": gflops, "measured_at": when}
            _write_cache(cache_path, data)
            return gflops, False, when
    except OSError as e:  # a read-only or full cache directory: measure, just do not keep it
        log.warning("dtype measurement not cached (%s): %s", cache_path, e)
        gflops, when = measure()
        return gflops, False, when


def decide_cpu(gflops: dict[str, float]) -> tuple[torch.dtype, str]:
    """The rule, on measured figures: (dtype, the reason in words)."""
    fp32, bf16 = gflops.get("float32"), gflops.get("bfloat16")
    if bf16 is None:
        return torch.float32, "bfloat16 matrix products do not run here"
    if not fp32:
        return torch.bfloat16, "float32 matrix products do not run here"
    speedup = bf16 / fp32
    figures = f"bfloat16 {bf16:.3g} vs float32 {fp32:.3g} GFLOP/s, {speedup:.2g}×"
    if speedup >= BF16_MIN_SPEEDUP:
        return torch.bfloat16, (f"measured {figures} (at least {BF16_MIN_SPEEDUP}× pays for the lost "
                                "precision)")
    return torch.float32, f"measured {figures} (bfloat16 needs at least {BF16_MIN_SPEEDUP}×)"


def choose_dtype(device: torch.device, shape: Shape | None = None, *, timer: Timer | None = None,
                 cache_path: Path | None = None) -> DtypeChoice:
    """`auto`'s dtype for `device`, with the figures and the reason."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return DtypeChoice(torch.bfloat16, "auto", "CUDA device with bfloat16 support", CUDA_RULE)
        return DtypeChoice(torch.float16, "auto", "CUDA device without bfloat16 support", CUDA_RULE)
    if device.type != "cpu":
        return DtypeChoice(torch.float32, "auto", f"{device.type} device: float32", None)
    shape = shape or product_shape(None, None)
    gflops, cached, when = measure_cpu(shape, timer=timer, cache_path=cache_path)
    dtype, reason = decide_cpu(gflops)
    return DtypeChoice(dtype, "auto", reason + (" (cached measurement)" if cached else ""), CPU_RULE,
                       dict(gflops), shape, MEASURE_THREADS, cached, when)
