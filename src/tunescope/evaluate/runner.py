"""`evaluate()`: tasks in, lm-eval-shaped results (and per-sample records) out, native engine.

Per task: pick the documents (`limit`), build each prompt (few-shot examples drawn in document
order, as lm-eval), run the requests (generation or log-likelihood), then filter, score and
aggregate. Requests are independent of each other, so completion order does not matter; records
are written in document order.

Models the native engine is not verified on run through plain transformers instead (`enginepath.py`
decides, `plain.py` generates, `LoglikelihoodScorer(packing=False)` scores); results.json records
per task which path ran and why.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from tunescope.core.errors import UserError
from tunescope.core.malloc import KEEP_FREED, malloc_setting
from tunescope.evaluate import batchsize, prompts
from tunescope.evaluate.enginepath import NATIVE, TRANSFORMERS, resolve_engine
from tunescope.evaluate.fewshot import FewshotSampler
from tunescope.evaluate.filters import build_pipelines
from tunescope.evaluate.folding import folded_adapters
from tunescope.evaluate.generation import Generator, GenRequest, GenResult
from tunescope.evaluate.layout import column_major_linears
from tunescope.evaluate.loglikelihood import ChoiceGroup, LoglikelihoodScorer
from tunescope.evaluate.metrics import choice_metrics, exact_match
from tunescope.evaluate.results import prompt_hash, task_entry
from tunescope.evaluate.spec import GENERATE
from tunescope.evaluate.task import Task
from tunescope.evaluate.tokenization import Encoder, max_length
from tunescope.store.fileio import write_json, write_jsonl
from tunescope.store.layout import RESULTS

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass
class Instance:
    doc_id: int
    doc: dict[str, Any]
    prompt: str


@dataclass
class TaskOutcome:
    entry: dict[str, Any]
    records: list[dict[str, Any]]
    effective: int
    truncated: int
    wall_s: float
    batch_size: int


def select_docs(task: Task, limit: int | float | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The first `limit` documents (a fraction if < 1, as lm-eval); a limit past the end uses them all."""
    total = len(task.docs)
    info: dict[str, Any] = {"limit": limit}
    if limit is None:
        return task.docs, info
    n = int(-(-total * limit // 1)) if limit < 1 else int(limit)
    if n > total:
        log.warning("%s: --limit %s is larger than the split (%d items); using all %d", task.name, limit,
                    total, total)
        info["limit_exceeds_split"] = True
        n = total
    if n <= 0:
        raise UserError(f"limit must be positive, got {limit}", where="limit")
    return task.docs[:n], info


def build_instances(task: Task, docs: list[dict[str, Any]], tokenizer) -> list[Instance]:
    spec = task.spec
    sampler = None
    if spec.num_fewshot > 0:
        sampler = FewshotSampler(
            task.fewshot_pool, seed=spec.fewshot_seed, kind=spec.fewshot_sampler,
            exclude_eval_doc=spec.excludes_eval_doc
        )
    out = []
    for doc_id, doc in enumerate(docs):
        examples = sampler.sample(spec.num_fewshot, eval_doc=doc) if sampler else []
        out.append(Instance(doc_id, doc, prompts.build_context(spec, doc, examples, tokenizer)))
    return out


def _stop_strings(spec_until: list[str], tokenizer) -> list[str]:
    """The task's stop strings plus the tokenizer's EOS text (lm-eval appends it too)."""
    until = list(spec_until)
    if tokenizer.eos_token_id is not None:
        eos = tokenizer.decode([tokenizer.eos_token_id], skip_special_tokens=False)
        if eos and eos not in until:
            until.append(eos)
    return until


GenerateFn = Callable[[list[GenRequest], Callable[[int, GenResult], None]], list[GenResult]]


def run_generation_task(
    task: Task, instances: list[Instance], model, tokenizer, *, batch_size: int | str,
    max_new_tokens: int | None, progress: Progress | None, engine: GenerateFn | None = None,
) -> TaskOutcome:
    """Generate for every instance (`engine` defaults to the native
    continuous-batching Generator), then score."""
    spec = task.spec
    gen = spec.generation_kwargs
    encoder = Encoder(tokenizer)
    window = max_length(model, tokenizer)
    max_gen = int(max_new_tokens or gen.get("max_gen_toks") or 256)
    max_ctx = window - max_gen
    if max_ctx <= 0:
        raise UserError(f"max_new_tokens ({max_gen}) must be smaller than the model's context window "
                        f"({window})", where="max_new_tokens")
    k = spec.samples
    requests, owners, truncated = _generation_requests(spec, instances, encoder, tokenizer, max_ctx, max_gen)
    if truncated:
        log.warning("%s: %d prompt(s) longer than %d tokens were truncated from the left", spec.name,
                    truncated, max_ctx)
    longest = max(len(r.prompt_ids) for r in requests) + max_gen
    bs = batchsize.resolve_batch_size(batch_size,
                                      lambda: batchsize.generation_batch_size(model, longest, len(requests)))
    remaining = defaultdict(lambda: k)
    done = [0]

    def on_done(index: int, _result) -> None:
        doc_id = owners[index]
        remaining[doc_id] -= 1
        if remaining[doc_id] == 0:
            done[0] += 1
            if progress:
                progress(spec.name, done[0], len(instances))

    t0 = time.perf_counter()
    if engine is None:
        results = Generator(model, tokenizer, batch_size=bs, encoder=encoder).run(requests, on_done=on_done)
    else:
        results = engine(requests, on_done)
    wall = time.perf_counter() - t0
    responses: dict[int, list[str]] = defaultdict(list)
    finish: dict[int, list[str]] = defaultdict(list)
    for doc_id, res in zip(owners, results, strict=True):
        responses[doc_id].append(res.text)
        finish[doc_id].append(res.finish_reason)

    per_sample, records = _score_generations(spec, instances, responses, finish)
    return TaskOutcome(task_entry(spec.display_name, per_sample), records, len(instances),
                       truncated, wall, bs)


def _generation_requests(spec, instances: list[Instance], encoder: Encoder, tokenizer, max_ctx: int,
                         max_gen: int) -> tuple[list[GenRequest], list[int], int]:
    """(`spec.samples` requests per instance, the doc_id of each, how many prompts were cut from the left)."""
    gen = spec.generation_kwargs
    until = _stop_strings(gen.get("until") or [], tokenizer)
    do_sample = bool(gen.get("do_sample", False))
    temperature = float(gen.get("temperature") or 0.0)
    if temperature == 0.0:
        do_sample = False
    requests, owners, truncated = [], [], 0
    for inst in instances:
        ids = encoder.encode_prompt(inst.prompt)
        if len(ids) > max_ctx:
            truncated += 1
            ids = ids[-max_ctx:]
        for j in range(spec.samples):
            requests.append(GenRequest(
                prompt_ids=ids, until=until, max_new_tokens=max_gen, do_sample=do_sample,
                temperature=temperature, top_p=float(gen.get("top_p", 1.0)),
                top_k=int(gen.get("top_k", 0) or 0),
                seed=spec.fewshot_seed * 1_000_003 + inst.doc_id * 1_009 + j,
            ))
            owners.append(inst.doc_id)
    return requests, owners, truncated


def _score_generations(spec, instances: list[Instance], responses: dict[int, list[str]],
                       finish: dict[int, list[str]]) -> tuple[dict[tuple[str, str], list[float]], list[dict]]:
    """Filters and metrics on each instance's responses: (the per-sample values by metric, the records)."""
    pipelines = build_pipelines(spec.filter_list)
    per_sample: dict[tuple[str, str], list[float]] = defaultdict(list)
    records = []
    for inst in instances:
        target = prompts.target_text(spec, inst.doc)
        resps = responses[inst.doc_id]
        filtered = {p.name: p(resps) for p in pipelines}
        metrics: dict[str, int] = {}
        for p in pipelines:
            for m in spec.metric_list:
                name = m["metric"]
                if name != "exact_match":
                    raise UserError(f"metric '{name}' is not supported for generation tasks (supported: "
                                    "exact_match)", where=spec.name)
                kwargs = {k: v for k, v in m.items()
                          if k not in ("metric", "aggregation", "higher_is_better")}
                value = exact_match(filtered[p.name], target, **kwargs)
                metrics[f"{name},{p.name}"] = value
                per_sample[(name, p.name)].append(value)
        record = {
            "doc_id": inst.doc_id,
            "prompt_hash": prompt_hash(inst.prompt),
            "prompt": inst.prompt,
            "question": inst.doc.get("question", prompts.doc_to_text(spec, inst.doc)),
            "target": target,
            "response": resps[0],
            "filtered": filtered,
            "metrics": metrics,
            "finish_reason": finish[inst.doc_id][0],
        }
        if spec.samples > 1:
            record["responses"] = resps
        records.append(record)
    return per_sample, records


def run_choice_task(
    task: Task, instances: list[Instance], model, tokenizer, *, batch_size: int | str,
    progress: Progress | None, packing: bool = True,
) -> TaskOutcome:
    """Score every choice of every instance (`packing=False`: each pair on
    its own plain forward), then score."""
    spec = task.spec
    encoder = Encoder(tokenizer)
    window = max_length(model, tokenizer)
    delimiter = prompts.continuation_delimiter(spec)
    groups, choices_per_doc = [], []
    for inst in instances:
        choices = prompts.doc_to_choice(spec, inst.doc)
        choices_per_doc.append(choices)
        pairs = [encoder.encode_pair(inst.prompt, f"{delimiter}{c}") for c in choices]
        # encode_pair moves trailing context whitespace into the continuation; the context part is
        # the same for every choice of a document.
        groups.append(ChoiceGroup(context=pairs[0][0], continuations=[cont for _, cont in pairs]))
    longest = max(len(g.context) + sum(len(c) for c in g.continuations) for g in groups)
    bs = batchsize.resolve_batch_size(batch_size,
                                      lambda: batchsize.scoring_batch_size(model, longest, len(groups)))
    done = [0]

    def on_done(_i: int, _scores) -> None:
        done[0] += 1
        if progress:
            progress(spec.name, done[0], len(instances))

    t0 = time.perf_counter()
    scorer = LoglikelihoodScorer(model, batch_size=bs, max_length=window, packing=packing)
    scores, truncated = scorer.score_groups(groups, on_done=on_done)
    wall = time.perf_counter() - t0
    if truncated:
        log.warning("%s: %d document(s) longer than the context window were truncated from the left",
                    spec.name, truncated)

    listed = [m["metric"] for m in spec.metric_list]
    unsupported = sorted(set(listed) - {"acc", "acc_norm"})
    if unsupported:
        raise UserError(f"metric(s) {unsupported} not supported for multiple-choice tasks (supported: acc, "
                        "acc_norm)", where=spec.name)
    per_sample: dict[tuple[str, str], list[float]] = defaultdict(list)
    records = []
    for inst, choices, doc_scores in zip(instances, choices_per_doc, scores, strict=True):
        gold = prompts.doc_to_target(spec, inst.doc)
        if isinstance(gold, str):
            gold = choices.index(gold) if gold in choices else -100
        elif not isinstance(gold, int) or gold >= len(choices):
            gold = -100
        lls = [s.loglikelihood for s in doc_scores]
        metrics = choice_metrics(lls, choices, gold)
        for name in listed:
            per_sample[(name, "none")].append(metrics[name])
        records.append({
            "doc_id": inst.doc_id,
            "prompt_hash": prompt_hash(inst.prompt),
            "prompt": inst.prompt,
            "target": gold,
            "choices": choices,
            "loglikelihoods": lls,
            "char_lengths": [len(c) for c in choices],
            "is_greedy": [s.is_greedy for s in doc_scores],
            "metrics": metrics,
        })
    return TaskOutcome(task_entry(spec.display_name, per_sample), records, len(instances),
                       truncated, wall, bs)


def _add_task_results(results: dict[str, Any], extras: dict[str, Any], task: Task, outcome: TaskOutcome,
                      facts: dict[str, Any]) -> None:
    """One task's entries in results.json, in lm-evaluation-harness's
    layout, and tunescope's facts about it."""
    spec = task.spec
    name = spec.name
    results["results"][name] = outcome.entry
    results["group_subtasks"][name] = []
    results["configs"][name] = spec.to_config()
    results["versions"][name] = spec.version
    results["n-shot"][name] = spec.num_fewshot
    results["higher_is_better"][name] = {
        m: True for m in {k.split(",")[0] for k in outcome.entry if "," in k and "_stderr" not in k}
    }
    results["n-samples"][name] = {"original": len(task.docs), "effective": outcome.effective}
    extras["tasks"][name] = facts


def write_outputs(out_dir: Path, results: dict[str, Any], records: dict[str, list[dict[str, Any]]]) -> None:
    for name, recs in records.items():
        write_jsonl(out_dir / f"{name}.jsonl", recs)
    write_json(out_dir / RESULTS, results)


def _model_name(model) -> str:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "name_or_path", None) or type(model).__name__


def evaluate_native(
    model, tokenizer, tasks: list[Task], *, limit: int | float | None = None, batch_size: int | str = 16,
    max_new_tokens: int | None = None, out_dir: Path | None = None, progress: Progress | None = None,
    generate: GenerateFn | None = None, engine: str = "auto", records_out: dict | None = None,
) -> dict[str, Any]:
    """The native engine; `generate` swaps in another generation engine (vLLM) for generation tasks.

    `engine` ("auto", "native", "transformers"): "auto" runs the native engine only on model families
    it is verified on and plain transformers otherwise (`enginepath.engine_path`). `records_out`, when
    given, receives each task's per-sample records (task name -> list).
    """
    if not tasks:
        raise UserError("no tasks to evaluate", where="tasks")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise UserError(f"task names must be unique, got {names}", where="tasks")
    path, reason = resolve_engine(model, engine)
    custom_generation = generate is not None
    if generate is None and path == TRANSFORMERS:
        from tunescope.evaluate.plain import generate_with_transformers

        generate = partial(generate_with_transformers, model, tokenizer)
    model.eval()
    results: dict[str, Any] = {"results": {}, "group_subtasks": {}, "configs": {}, "versions": {},
                               "n-shot": {}, "higher_is_better": {}, "n-samples": {}}
    extras: dict[str, Any] = {"engine": f"{path}+custom-generation" if custom_generation else path,
                              "tasks": {}}
    all_records: dict[str, list[dict[str, Any]]] = {}
    t_start = time.perf_counter()
    # Forward passes of similar shapes over and over: keep freed memory for reuse (see malloc.py).
    # Adapters are folded first, so that the column-major copies are made of the weights that run.
    with (folded_adapters(model) as n_folded, column_major_linears(model), malloc_setting(KEEP_FREED),
          torch.inference_mode()):
        for task in tasks:
            spec = task.spec
            docs, limit_info = select_docs(task, limit)
            t0 = time.perf_counter()
            instances = build_instances(task, docs, tokenizer)
            if spec.output_type == GENERATE:
                outcome = run_generation_task(task, instances, model, tokenizer, batch_size=batch_size,
                                              max_new_tokens=max_new_tokens, progress=progress,
                                              engine=generate)
            else:
                outcome = run_choice_task(task, instances, model, tokenizer, batch_size=batch_size,
                                          progress=progress, packing=path == NATIVE)
            if custom_generation and spec.output_type == GENERATE:
                task_path, task_reason = "custom-generation", "generated by the evaluation backend"
            else:
                task_path, task_reason = path, reason
                if path == TRANSFORMERS and spec.output_type == GENERATE:
                    outcome.batch_size = 1  # plain generation runs one request at a time
            _add_task_results(results, extras, task, outcome, {
                **limit_info,
                "truncated": outcome.truncated,
                "batch_size": outcome.batch_size,
                "model_wall_s": round(outcome.wall_s, 3),
                "wall_s": round(time.perf_counter() - t0, 3),
                "source": task.source,
                "engine_path": task_path,
                "engine_reason": task_reason,
            })
            all_records[spec.name] = outcome.records
    param = next(model.parameters())
    results["config"] = {
        "model": _model_name(model), "batch_size": batch_size, "limit": limit, "device": str(param.device),
        "dtype": str(param.dtype).replace("torch.", ""), "max_new_tokens": max_new_tokens,
        "fewshot_seed": {t.name: t.spec.fewshot_seed for t in tasks},
        "torch_threads": torch.get_num_threads(),
    }
    extras["adapter_layers_folded"] = n_folded
    extras["wall_s"] = round(time.perf_counter() - t_start, 3)
    results["tunescope"] = extras
    if records_out is not None:
        records_out.update(all_records)
    if out_dir is not None:
        write_outputs(Path(out_dir), results, all_records)
    return results
