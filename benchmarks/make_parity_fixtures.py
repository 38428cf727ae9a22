"""Record lm-evaluation-harness's own outputs on a tiny model, for tests/test_lmeval_parity.py.

The test suite cannot install lm-eval, so lm-eval's answers are computed here once and committed:

1. the first rows of ../shared/data are copied into tests/fixtures/lmeval_parity/data/, in layouts
   both tools read (tunescope's `--data-path` folders; lm-eval's `json` dataset builder):
   - gsm8k/test.jsonl (the first 8 test problems) and gsm8k/train.jsonl (the first 20 training
     problems, which the 5-shot examples are drawn from), lines copied byte for byte;
   - hellaswag/validation.jsonl: the first 8 validation items in the hub's shape (`ctx_a`, `ctx_b`,
     `label` as a string), so lm-eval's own `hellaswag` preprocessing runs unchanged. The local copy
     keeps only `ctx` = ctx_a + " " + ctx_b; it is split again at its last ". " (ctx_b, the start of
     the last sentence, is never capitalized there; lm-eval capitalizes it);
   - mmlu/high_school_computer_science_{test,dev}.jsonl: the first 8 questions as the test split and
     the next 5 as the dev split (the local copy has no dev split), in the hub's shape
     (`question, subject, choices, answer` as an index), read with Python's csv module so every
     field stays a string;
2. the tiny Llama of the test (`build_parity_model`) is saved to a temporary directory;
3. lm-eval runs on it with its HF backend (`pretrained=<dir>`, float32, CPU, batch size 1), on its own
   built-in task definitions (`gsm8k`, `hellaswag`, `mmlu_high_school_computer_science`, included
   from the installed package) with only the data source replaced by the files above; generation
   is capped at 32 new tokens (`gen_kwargs`), and MMLU also runs 5-shot from the dev split;
4. its per-sample log (`log_samples=True`) is reduced to what the test compares and written to
   tests/fixtures/lmeval_parity/expected/: `<run>.jsonl` (one line per item, in document order) and
   `lm_eval.json` (the runs, their aggregate results, the model's fingerprint, the versions).

Nothing written holds an absolute path or a time, so rerunning with the same versions rewrites the
same bytes. Needs lm-eval (`pip install lm-eval==0.4.13 torch==2.13.0`) and ../shared/data:

    .venv/bin/python benchmarks/make_parity_fixtures.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "tests" / "fixtures" / "lmeval_parity"
DATA = FIXTURES / "data"
EXPECTED = FIXTURES / "expected"

sys.path.insert(0, str(ROOT / "tests"))
import test_lmeval_parity as parity  # noqa: E402 - the model recipe lives with the test that rebuilds it

GSM8K_TEST_ROWS = 8
GSM8K_TRAIN_ROWS = 20
HELLASWAG_ROWS = 8
MMLU_SUBJECT = "high_school_computer_science"
MMLU_TEST_ROWS = 8
MMLU_DEV_ROWS = 5
MAX_GEN_TOKS = 32
FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed, and tunescope's

# name: (tunescope task, lm-eval built-in task file under lm_eval/tasks, data folder, num_fewshot or None
# for the task's own default, {split: file under the data folder})
RUNS: dict[str, tuple[str, str, str, int | None, dict[str, str]]] = {
    "gsm8k": ("gsm8k", "gsm8k/gsm8k.yaml", "data/gsm8k", None,
              {"train": "train.jsonl", "test": "test.jsonl"}),
    "hellaswag": ("hellaswag", "hellaswag/hellaswag.yaml", "data/hellaswag", None,
                  {"validation": "validation.jsonl"}),
    f"mmlu_{MMLU_SUBJECT}": (f"mmlu_{MMLU_SUBJECT}", f"mmlu/default/mmlu_{MMLU_SUBJECT}.yaml", "data/mmlu",
                             None,
                             {"test": f"{MMLU_SUBJECT}_test.jsonl", "dev": f"{MMLU_SUBJECT}_dev.jsonl"}),
    f"mmlu_{MMLU_SUBJECT}_5shot": (f"mmlu_{MMLU_SUBJECT}", f"mmlu/default/mmlu_{MMLU_SUBJECT}.yaml",
                                   "data/mmlu", 5, {"test": f"{MMLU_SUBJECT}_test.jsonl",
                                    "dev": f"{MMLU_SUBJECT}_dev.jsonl"}),
}


# ------------------------------------------------------------------------------------------ the data


def _head_lines(path: Path, n: int) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        lines = [next(fh) for _ in range(n)]
    return [line if line.endswith("\n") else line + "\n" for line in lines]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def hellaswag_hub_shape(row: dict[str, Any]) -> dict[str, Any]:
    """A cleaned local row (`ctx` joined) back in the hub's shape (`ctx_a`, `ctx_b`, string label)."""
    head, sep, tail = row["ctx"].rpartition(". ")
    ctx_a, ctx_b = (head + ".", tail) if sep else (row["ctx"], "")
    return {"activity_label": row["activity_label"], "ctx_a": ctx_a, "ctx_b": ctx_b,
            "endings": row["endings"], "label": str(row["label"])}


def write_data() -> None:
    """The committed data files, from the first rows of ../shared/data."""
    gsm = DATA / "gsm8k"
    gsm.mkdir(parents=True, exist_ok=True)
    for split, n in (("test", GSM8K_TEST_ROWS), ("train", GSM8K_TRAIN_ROWS)):
        with open(gsm / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as out:
            out.writelines(_head_lines(SHARED / "gsm8k" / f"{split}.jsonl", n))
    hs = [json.loads(line) for line in _head_lines(SHARED / "hellaswag" / "validation.jsonl", HELLASWAG_ROWS)]
    _write_jsonl(DATA / "hellaswag" / "validation.jsonl", [hellaswag_hub_shape(row) for row in hs])
    with open(SHARED / "mmlu" / f"{MMLU_SUBJECT}_test.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))[: MMLU_TEST_ROWS + MMLU_DEV_ROWS]
    docs = [{"question": q, "subject": MMLU_SUBJECT, "choices": [a, b, c, d],
             "answer": "ABCD".index(letter.strip())}
            for q, a, b, c, d, letter in rows]
    _write_jsonl(DATA / "mmlu" / f"{MMLU_SUBJECT}_test.jsonl", docs[:MMLU_TEST_ROWS])
    _write_jsonl(DATA / "mmlu" / f"{MMLU_SUBJECT}_dev.jsonl", docs[MMLU_TEST_ROWS:])


# ------------------------------------------------------------------------------------------- lm-eval


def lm_eval_task_files(folder: Path) -> None:
    """One YAML per run: lm-eval's built-in task file, included whole, with the data source replaced.

    The run name is the lm-eval task name, so each result is filed under it."""
    import lm_eval
    import yaml

    tasks_dir = Path(lm_eval.__file__).resolve().parent / "tasks"
    for name, (_, builtin, data_dir, num_fewshot, files) in RUNS.items():
        cfg: dict[str, Any] = {
            "include": str(tasks_dir / builtin),
            "task": name,
            "tag": [],  # not a member of the built-in tags (the index is only this folder anyway)
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: str(FIXTURES / data_dir / f)
                                              for split, f in files.items()}},
        }
        if name == "hellaswag":
            # lm-eval reads the training split to build its few-shot sampler even for a 0-shot run, and
            # only the validation split is committed.
            cfg["training_split"] = None
        if num_fewshot is not None:
            cfg["num_fewshot"] = num_fewshot
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True), encoding="utf-8")


def run_lm_eval(model_dir: Path, task_dir: Path) -> dict[str, Any]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(model_dir), device="cpu", dtype="float32", batch_size=1)
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    return lm_eval.simple_evaluate(model=lm, tasks=list(RUNS), task_manager=manager, log_samples=True,
                                   gen_kwargs={"max_gen_toks": MAX_GEN_TOKS},
                                   fewshot_random_seed=FEWSHOT_SEED)


def _generation_records(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per document: lm-eval logs one sample per (document, filter)."""
    by_doc: dict[int, dict[str, Any]] = {}
    for s in samples:
        context, _gen_kwargs = s["arguments"][0]
        rec = by_doc.setdefault(s["doc_id"], {"doc_id": s["doc_id"], "prompt": context,
                                              "target": str(s["target"]), "response": s["resps"][0][0],
                                              "filtered": {}, "metrics": {}})
        assert rec["prompt"] == context and rec["response"] == s["resps"][0][0]
        rec["filtered"][s["filter"]] = s["filtered_resps"][0]
        for metric in s["metrics"]:
            rec["metrics"][f"{metric},{s['filter']}"] = int(s[metric])
    return [by_doc[k] for k in sorted(by_doc)]


def _choice_records(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in sorted(samples, key=lambda x: x["doc_id"]):
        contexts = {context for context, _ in s["arguments"]}
        assert len(contexts) == 1 and s["filter"] == "none"
        out.append({
            "doc_id": s["doc_id"],
            "prompt": s["arguments"][0][0],
            "target": s["target"],
            # What lm-eval scored after the prompt: the target delimiter (" " in these tasks) + the choice.
            "continuations": [continuation for _, continuation in s["arguments"]],
            "loglikelihoods": [float(ll) for ll, _ in s["filtered_resps"]],
            "is_greedy": [bool(greedy) for _, greedy in s["filtered_resps"]],
            "metrics": {metric: int(s[metric]) for metric in s["metrics"]},
        })
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    import datasets
    import lm_eval
    import tokenizers
    import torch
    import transformers

    torch.set_num_threads(1)  # one thread: the reduction order of the float sums is the plainest one
    write_data()
    EXPECTED.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = parity.save_parity_model(Path(tmp) / "model")
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        fingerprint = parity.fingerprint(model, tokenizer)
        # The tokenizer is trained in-process each time: it must come out the same every time.
        assert parity.build_tokenizer().get_vocab() == tokenizer.get_vocab()
        task_dir = Path(tmp) / "tasks"
        task_dir.mkdir()
        lm_eval_task_files(task_dir)
        out = run_lm_eval(model_dir, task_dir)

    runs = []
    for name, (task, _, data_dir, _, _) in RUNS.items():
        samples = out["samples"][name]
        output_type = out["configs"][name]["output_type"]
        records = (_generation_records(samples) if output_type == "generate_until"
                   else _choice_records(samples))
        _write_jsonl(EXPECTED / f"{name}.jsonl", records)
        result = dict(out["results"][name])
        runs.append({
            "name": name,
            "task": task,
            "output_type": output_type,
            "data_path": data_dir,
            "limit": len(records),
            "num_fewshot": out["n-shot"][name],
            "max_gen_toks": MAX_GEN_TOKS if output_type == "generate_until" else None,
            "results": result,
            "n-shot": out["n-shot"][name],
            "n-samples": out["n-samples"][name],
            "version": out["versions"][name],
            "higher_is_better": out["higher_is_better"][name],
        })
    meta = {
        "generated_by": "benchmarks/make_parity_fixtures.py",
        "lm_eval_settings": {"model": "hf", "dtype": "float32", "device": "cpu", "batch_size": 1,
                             "gen_kwargs": {"max_gen_toks": MAX_GEN_TOKS},
                             "fewshot_random_seed": FEWSHOT_SEED, "torch_threads": 1},
        "model": {"recipe": "tests/test_lmeval_parity.py:build_parity_model", "weight_std": parity.WEIGHT_STD,
                  "weight_seed": parity.WEIGHT_SEED, "context_window": parity.CONTEXT_WINDOW, **fingerprint},
        "versions": {"lm_eval": lm_eval.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__, "tokenizers": tokenizers.__version__,
                     "datasets": datasets.__version__, "python": platform.python_version()},
        "runs": runs,
    }
    (EXPECTED / "lm_eval.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    for run in runs:
        print(run["name"], {k: v for k, v in run["results"].items() if "stderr" not in k})
    return 0


if __name__ == "__main__":
    sys.exit(main())
