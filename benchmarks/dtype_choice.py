"""What `dtype: auto` picks on this CPU, and the figures behind it, measured in one run.

    .venv/bin/python benchmarks/dtype_choice.py                       # SmolLM2-135M's shape, 576 × 1536
    .venv/bin/python benchmarks/dtype_choice.py --hidden 896 --intermediate 4864 --threads 1 --rounds 5

Prints the CPU (model name and the flags that matter for bfloat16: avx512_bf16, amx_bf16), torch and
the thread count (by default one, as `auto` measures), then for each round:

- the GFLOP/s of the product `auto` times (`tunescope.models.dtype_choice.time_matmul`, no cache) in
  float32 and bfloat16, bfloat16's speed-up over float32, and the dtype the rule picks;
- the host's CPU steal while the round ran (a shared virtual machine's CPUs come and go, see
  eval_speed.py), since a rate means little without it.

Then the peaks that MFU divides by (`tunescope.train.throughput.machine_peak`: square products of up to
2048², per dtype) and which dtype gives the machine's best.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from eval_speed import cpu_ticks, steal_percent

from tunescope.models import dtype_choice
from tunescope.train import throughput

BF16_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--intermediate", type=int, default=1536)
    parser.add_argument("--threads", type=int, default=dtype_choice.MEASURE_THREADS,
                        help="torch threads (auto measures on 1; 0: PyTorch's default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, flags = dtype_choice._cpu_identity()
    shape = dtype_choice.product_shape(args.hidden, args.intermediate)
    print(f"CPU: {model}; flags: " + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in BF16_FLAGS))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; product "
          f"{'×'.join(map(str, shape))} (rows × hidden @ hidden × intermediate, for hidden {args.hidden}, "
          f"intermediate {args.intermediate})")

    rounds = []
    for i in range(1, args.rounds + 1):
        ticks, start = cpu_ticks(), time.perf_counter()
        gflops = {}
        for dtype in dtype_choice.CPU_CANDIDATES:
            try:
                gflops[dtype_choice.dtype_name(dtype)] = dtype_choice.time_matmul(dtype, shape)
            except RuntimeError as e:
                print(f"  {dtype_choice.dtype_name(dtype)} does not run: {e}")
        chosen, reason = dtype_choice.decide_cpu(gflops)
        took, steal = time.perf_counter() - start, steal_percent(ticks, cpu_ticks())
        rounds.append({"gflops": gflops, "dtype": dtype_choice.dtype_name(chosen), "reason": reason,
                       "seconds": round(took, 3), "steal_percent": steal})
        rates = ", ".join(f"{k} {v:.3g} GFLOP/s" for k, v in gflops.items())
        print(f"round {i}: {rates} → {dtype_choice.dtype_name(chosen)} ({reason}); {took:.2f} s, "
              f"host CPU steal {steal if steal is not None else '?'}%")

    ticks = cpu_ticks()
    peak = throughput.machine_peak(torch.device("cpu"), torch.float32)
    steal = steal_percent(ticks, cpu_ticks())
    peaks = ", ".join(f"{k} {v / 1e9:.3g} GFLOP/s" for k, v in peak["peak_flops_by_dtype"].items())
    print(f"MFU peaks: {peaks}; best {peak['peak_flops_dtype']} (host CPU steal {steal}%)")
    if args.json:
        print(json.dumps({"cpu": model, "flags": sorted(f for f in BF16_FLAGS if f in flags),
                          "torch": torch.__version__, "threads": torch.get_num_threads(), "shape": shape,
                          "rounds": rounds, "peaks": peak}))


if __name__ == "__main__":
    main()
