"""Page faults and system time of an evaluation under each glibc malloc setting (`tunescope/core/malloc.py`).

Each case runs in a fresh process (glibc's adaptive default cannot be restored once changed), one
after the other in turn, `--repeats` times, on SmolLM2-135M-Instruct (float32, CPU) and the first N
items of the local GSM8K and MMLU files in shared/data:

- `glibc-default`: the evaluation with no malloc setting of its own (glibc's adaptive thresholds);
- `keep-freed`: the evaluation as shipped (`KEEP_FREED` inside `evaluate`);
- `after-training-before`: the process state a training run used to leave (`RETURN_FREED` for good),
  then the evaluation with no setting of its own: what `tunescope run` / `demo` did for the tuned model;
- `after-training`: the same state, then the evaluation as shipped.

It prints wall time, host CPU steal, user and system CPU time and minor page faults per run, and a
hash of the per-sample outputs, which must be the same in every case.

    .venv/bin/python benchmarks/eval_memory.py --gsm8k-n 16 --mmlu-n 100 --repeats 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from eval_speed import SHARED, cpu_ticks, steal_percent  # noqa: E402 - the script's own folder is on sys.path

CASES = ("glibc-default", "keep-freed", "after-training-before", "after-training")
TASKS = {
    "gsm8k": ("gsm8k", SHARED / "gsm8k"),
    "mmlu": ("mmlu_high_school_computer_science", SHARED / "mmlu" / "high_school_computer_science_test.csv"),
}


def one_case(case: str, task_key: str, n: int) -> dict:
    """Runs in its own process: set the case's malloc state, evaluate, measure."""
    from contextlib import nullcontext

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunescope.core import malloc
    from tunescope.evaluate import evaluate, load_task, runner
    from tunescope.models.loading import materialize

    model_dir = materialize("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if case.startswith("after-training"):
        malloc.apply(malloc.RETURN_FREED)
    if case in ("glibc-default", "after-training-before"):
        runner.malloc_setting = lambda setting: nullcontext(False)
    task_name, data_path = TASKS[task_key]
    task = load_task(task_name, data_path=str(data_path))
    usage0, ticks0, t0 = resource.getrusage(resource.RUSAGE_SELF), cpu_ticks(), time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        evaluate(model, tokenizer, [task], limit=n, batch_size=8, out_dir=Path(out))
        records = [json.loads(line) for line in open(Path(out) / f"{task_name}.jsonl", encoding="utf-8")]
    wall = time.perf_counter() - t0
    usage1, ticks1 = resource.getrusage(resource.RUSAGE_SELF), cpu_ticks()
    return {
        "case": case, "task": task_key, "n": n, "wall_s": round(wall, 1),
        "steal_percent": steal_percent(ticks0, ticks1),
        "user_s": round(usage1.ru_utime - usage0.ru_utime, 1),
        "sys_s": round(usage1.ru_stime - usage0.ru_stime, 1),
        "minor_faults": usage1.ru_minflt - usage0.ru_minflt,
        "outputs_sha256": hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()[:12],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k-n", type=int, default=16)
    parser.add_argument("--mmlu-n", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--task", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        n = args.gsm8k_n if args.task == "gsm8k" else args.mmlu_n
        print(json.dumps(one_case(args.case, args.task, n)))
        return 0
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    rows = []
    for _ in range(args.repeats):
        for task in TASKS:
            for case in CASES:
                out = subprocess.run([sys.executable, __file__, "--case", case, "--task", task,
                                      "--gsm8k-n", str(args.gsm8k_n), "--mmlu-n", str(args.mmlu_n)],
                                     capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| task | case | wall (s) | steal | user (s) | sys (s) | minor faults | outputs |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in sorted(rows, key=lambda r: (r["task"], CASES.index(r["case"]))):
        print(f"| {r['task']} {r['n']} | {r['case']} | {r['wall_s']} | {r['steal_percent']}% | {r['user_s']} "
              f"| {r['sys_s']} | {r['minor_faults']:,} | {r['outputs_sha256']} |")
    hashes = {t: {r["outputs_sha256"] for r in rows if r["task"] == t} for t in TASKS}
    print("outputs identical across cases:", {t: len(h) == 1 for t, h in hashes.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
