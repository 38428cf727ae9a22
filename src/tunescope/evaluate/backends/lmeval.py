"""`backend="lm-eval"`: run lm-evaluation-harness itself on our model and documents.

For users who want the reference run. Each tunescope Task becomes an lm-eval `ConfigurableTask`
from the same YAML keys, fed the documents tunescope already loaded and processed (so local files and
both HellaSwag shapes work), and the model is wrapped in lm-eval's `HFLM`. Results come back in
lm-eval's own layout; per-sample records are converted to tunescope's JSONL format.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from tunescope.core.errors import UserError
from tunescope.evaluate import prompts
from tunescope.evaluate.batchsize import resolve_batch_size
from tunescope.evaluate.results import prompt_hash
from tunescope.evaluate.runner import write_outputs
from tunescope.evaluate.spec import GENERATE
from tunescope.evaluate.task import Task

# tunescope-only keys that lm-eval's TaskConfig does not know.
_OURS = {"required_fields", "process_docs", "samples", "apply_chat_template", "fewshot_seed",
         "fewshot_config"}


def _lm_eval_config(task: Task, max_new_tokens: int | None) -> dict[str, Any]:
    import datasets

    spec = task.spec
    cfg = {k: copy.deepcopy(v) for k, v in spec.raw.items() if k not in _OURS}
    cfg["task"] = spec.name
    cfg["num_fewshot"] = spec.num_fewshot
    cfg["doc_to_text"] = _text_template(spec)
    cfg["fewshot_config"] = {"sampler": spec.fewshot_sampler}
    if spec.output_type == GENERATE:
        gen = copy.deepcopy(spec.generation_kwargs)
        if max_new_tokens:
            gen["max_gen_toks"] = int(max_new_tokens)
        cfg["generation_kwargs"] = gen
        cfg["repeats"] = spec.samples
        cfg["filter_list"] = copy.deepcopy(spec.filter_list)
    splits = {s for s in (spec.training_split, spec.validation_split, spec.test_split, spec.fewshot_split)
              if s}
    pool = task.fewshot_pool or task.docs
    data = {s: datasets.Dataset.from_list(task.docs if s == spec.eval_split else pool) for s in splits}
    cfg["custom_dataset"] = lambda **_: datasets.DatasetDict(data)
    cfg.pop("dataset_path", None)
    cfg.pop("dataset_name", None)
    return cfg


def _text_template(spec) -> Any:
    tpl = spec.doc_to_text
    return (lambda doc: tpl(doc)) if callable(tpl) else tpl


def _records(task: Task, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = task.spec
    by_doc: dict[int, dict[str, Any]] = {}
    for s in samples:
        rec = by_doc.setdefault(s["doc_id"], {"doc_id": s["doc_id"], "filtered": {}, "metrics": {}})
        prompt = s["arguments"][0][0]
        rec["prompt_hash"], rec["prompt"] = prompt_hash(prompt), prompt
        if spec.output_type == GENERATE:
            rec["question"] = s["doc"].get("question", "")
            rec["target"] = str(s["target"])
            rec["response"] = s["resps"][0][0]
            rec["filtered"][s["filter"]] = s["filtered_resps"][0]
            for m in s["metrics"]:
                rec["metrics"][f"{m},{s['filter']}"] = int(s[m])
        else:
            rec.pop("filtered")
            rec["target"] = s["target"]
            lls = [float(r[0]) for r in s["filtered_resps"]]
            choices = prompts.doc_to_choice(spec, s["doc"])
            rec["loglikelihoods"], rec["char_lengths"] = lls, [len(c) for c in choices]
            for m in s["metrics"]:
                rec["metrics"][m] = int(s[m])
    return [by_doc[k] for k in sorted(by_doc)]


def evaluate_with_lm_eval(model, tokenizer, tasks: list[Task], *, limit=None, batch_size=16,
                          max_new_tokens=None, out_dir: Path | None = None, progress=None) -> dict[str, Any]:
    try:
        import lm_eval
        from lm_eval.api.task import ConfigurableTask
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        raise UserError("backend 'lm-eval' needs lm-evaluation-harness: pip install 'tunescope[bench]'",
                        where="backend") from None
    bs = resolve_batch_size(batch_size, lambda: 16) if batch_size != "auto" else "auto"
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=bs)
    merged: dict[str, Any] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    t_start = time.perf_counter()
    for task in tasks:
        lm_task = ConfigurableTask(config=_lm_eval_config(task, max_new_tokens))
        out = lm_eval.simple_evaluate(model=lm, tasks=[lm_task], limit=limit, log_samples=True,
                                      apply_chat_template=task.spec.apply_chat_template,
                                      fewshot_random_seed=task.spec.fewshot_seed)
        samples = out.pop("samples", {}).get(task.name, [])
        records[task.name] = _records(task, samples)
        for key, value in out.items():
            if isinstance(value, dict) and key != "config":
                merged.setdefault(key, {}).update(value)
            else:
                merged[key] = value
        if progress:
            progress(task.name, len(records[task.name]), len(records[task.name]))
    merged["tunescope"] = {"engine": "lm-eval", "lm_eval_version": lm_eval.__version__,
                           "wall_s": round(time.perf_counter() - t_start, 3)}
    if out_dir is not None:
        write_outputs(Path(out_dir), merged, records)
    return merged
