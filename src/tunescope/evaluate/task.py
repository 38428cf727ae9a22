"""A task = its spec + its documents, loaded eagerly so data errors surface before a model loads."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunescope.config.run_config import SAMPLING_TEMPERATURE
from tunescope.core.data_files import SUFFIXES
from tunescope.core.errors import UserError
from tunescope.core.prompt_format import prompt_prefix
from tunescope.evaluate import data, groups, processors
from tunescope.evaluate.spec import GENERATE, TaskSpec, builtin_spec, spec_from_dict

log = logging.getLogger(__name__)

Doc = dict[str, Any]


@dataclass
class Task:
    spec: TaskSpec
    docs: list[Doc]
    fewshot_pool: list[Doc] = field(default_factory=list)
    source: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return (f"Task({self.name!r}, docs={len(self.docs)}, num_fewshot={self.spec.num_fewshot}, "
                f"source={self.source!r})")


_OVERRIDABLE = {
    "num_fewshot", "fewshot_seed", "samples", "temperature", "max_gen_toks", "until", "apply_chat_template",
    "description", "doc_to_text", "doc_to_target", "target_delimiter", "fewshot_delimiter", "do_sample",
    "top_p", "top_k",
}


def override_spec(spec: TaskSpec, overrides: dict[str, Any]) -> TaskSpec:
    """Per-run changes to a spec (few-shot count, sampling, ...); unknown keys are a UserError."""
    unknown = sorted(set(overrides) - _OVERRIDABLE)
    if unknown:
        raise UserError(f"unknown task override(s) {unknown} (allowed: {sorted(_OVERRIDABLE)})",
                        where=spec.name)
    spec = copy.deepcopy(spec)
    gen = spec.generation_kwargs
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("temperature", "max_gen_toks", "until", "do_sample", "top_p", "top_k"):
            gen[key] = value
        elif key == "samples":
            spec.samples = int(value)
        elif key == "num_fewshot":
            spec.num_fewshot = int(value)
        else:
            setattr(spec, key, value)
    if spec.samples > 1:
        _enable_self_consistency(spec)
    return spec


def _enable_self_consistency(spec: TaskSpec) -> None:
    """k sampled answers per question; `maj@k` = majority vote over their flexible-extracted answers."""
    if spec.output_type != GENERATE:
        raise UserError("samples > 1 applies to generation tasks only", where=spec.name)
    gen = spec.generation_kwargs
    if not gen.get("temperature"):
        gen["temperature"] = SAMPLING_TEMPERATURE
    gen["do_sample"] = True
    name = f"maj@{spec.samples}"
    if any(f["name"] == name for f in spec.filter_list):
        return
    extract = next((f for f in spec.filter_list if f["name"] == "flexible-extract"), None)
    regex = extract["filter"][0] if extract else {"function": "regex", "group_select": -1,
                                                   "regex_pattern": r"(-?[$0-9.,]{2,})|(-?[0-9]+)"}
    spec.filter_list.append(
        {"name": name, "filter": [dict(regex), {"function": "majority_vote"}, {"function": "take_first"}]}
    )


def _load_split(spec: TaskSpec, split: str | None, data_path: str | None) -> list[Doc] | None:
    if split is None:
        return None
    if data_path is not None:
        rows = data.load_local_split(
            Path(data_path).expanduser(), split, eval_split=spec.eval_split, dataset_name=spec.dataset_name
        )
        if rows is None:
            return None
    else:
        if not spec.dataset_path:
            raise UserError(f"task '{spec.name}' has no dataset_path; pass a local copy with --data-path",
                            where=spec.name)
        rows = data.load_hub_split(spec.dataset_path, spec.dataset_name, split, spec.name)
    return processors.process(spec.process_docs, rows, spec.required_fields)


def with_documents(spec: TaskSpec, data_path: str | None) -> Task:
    """Load the documents a spec needs: the evaluated split, and the
    few-shot pool if any shots are asked for."""
    split = spec.eval_split
    docs = _load_split(spec, split, data_path)
    where = data_path or f"{spec.dataset_path}[{split}]"
    if docs is None:
        looked = ", ".join(f"{stem}.*" for stem in data.split_file_stems(split, spec.dataset_name))
        raise UserError(f"no '{split}' split found for task '{spec.name}' (looked for {looked}; "
                        f"* = {'/'.join(s.lstrip('.') for s in SUFFIXES)})", where=where)
    if not docs:
        raise UserError(f"the '{split}' split of task '{spec.name}' is empty", where=where)
    pool: list[Doc] = []
    if spec.num_fewshot > 0:
        source = spec.fewshot_source_split
        pool = (docs if source == split else _load_split(spec, source, data_path)) or []
        if not pool:
            raise UserError(
                f"task '{spec.name}' asks for {spec.num_fewshot}-shot prompts but there is no '{source}' "
                f"split to draw them from (pass a folder containing {source}.jsonl, or num_fewshot=0)",
                where=where,
            )
    return Task(spec=spec, docs=docs, fewshot_pool=pool, source=where)


def load_task(name: str, data_path: str | None = None, num_fewshot: int | None = None, *, samples: int = 1,
              temperature: float | None = None, **overrides: Any) -> Task:
    """A built-in task by name, optionally reading its data from a local file or folder.

    `samples` > 1 turns a generation task into self-consistency (k sampled answers, `maj@k`) at
    `temperature`; a multiple-choice task is scored, not sampled, so both leave it unchanged."""
    if name == "heldout":
        raise UserError("the 'heldout' task is built from a run's held-out problems (task_from_docs), not "
                        "loaded by name", where="task")
    spec = builtin_spec(name)
    if spec.output_type == GENERATE:
        overrides = {**sampling_overrides(samples, temperature), **overrides}
    spec = override_spec(spec, {"num_fewshot": num_fewshot, **overrides})
    return with_documents(spec, data_path)


def load_tasks(names: list[str], *, data_paths: dict[str, str] | None = None, num_fewshot: int | None = None,
               samples: int = 1, temperature: float | None = None) -> tuple[list[Task], list[str]]:
    """Built-in tasks and groups by name: (the tasks to run, the groups to score over them).

    A group (`mmlu`, `mmlu_stem`, ...) stands for its subjects; `data_paths` may name a group
    (`mmlu=DIR`) to serve all of them."""
    task_names, group_names = groups.expand(names)
    paths = data_paths or {}
    tasks = [load_task(name, data_path=groups.data_path_for(name, paths), num_fewshot=num_fewshot,
                       samples=samples, temperature=temperature) for name in task_names]
    return tasks, group_names


def sampling_overrides(samples: int, temperature: float | None) -> dict[str, Any]:
    """The overrides of a generation task for `samples` answers per question at `temperature`."""
    if samples < 1:
        raise UserError("must be at least 1", where="samples")
    if temperature is not None and (samples == 1 or temperature <= 0):
        raise UserError("a temperature applies to self-consistency sampling: give samples > 1 and a "
                        "temperature > 0 (one answer per question is always greedy, as lm-eval's tasks "
                        "define it)", where="temperature")
    return {"samples": samples if samples > 1 else None, "temperature": temperature}


def task_from_docs(name: str, docs: list[Doc], prompt_template: str, **overrides: Any) -> Task:
    """A zero-shot generation task over in-memory `{"question", "answer"}` docs (the run's held-out set).

    The prompt is the training template up to the answer; the target is the gold solution, scored by
    GSM8K's two filters. Generation stops at EOS or when the model starts a new `<FirstWord>:` turn.
    """
    if not docs:
        raise UserError(f"task '{name}' has no documents", where=name)
    for i, doc in enumerate(docs):
        for key in ("question", "answer"):
            if key not in doc:
                raise UserError(f"missing field '{key}'", where=f"{name}:doc {i}")
    prefix = prompt_prefix(prompt_template)
    if "{question}" not in prefix:
        raise UserError("prompt template must contain {question} before {answer}", where="template")
    first_word = prefix.split("{question}")[0].strip().split(":")[0].split()
    until = [f"{first_word[-1]}:"] if first_word else []
    chat = bool(overrides.get("apply_chat_template"))
    base = builtin_spec("gsm8k")
    raw = {
        "task": name,
        "output_type": GENERATE,
        # Shown in results.json; the prompt itself is rendered with str.format, as in training.
        "doc_to_text": "{question}" if chat else prefix,
        "doc_to_target": "{{answer}}",
        "test_split": "test",  # the in-memory documents play the test split
        "num_fewshot": 0,
        "required_fields": ["question", "answer"],
        "generation_kwargs": {"until": until, "do_sample": False, "temperature": 0.0,
                              "max_gen_toks": base.generation_kwargs["max_gen_toks"]},
        "filter_list": base.filter_list,
        "metric_list": base.metric_list,
        "metadata": {"version": 1.0, "prompt_template": prompt_template},
    }
    spec = override_spec(spec_from_dict(raw, where=name), overrides)
    spec.doc_to_text = _QuestionFormatter("{question}" if chat else prefix)
    docs = [dict(d) for d in docs]
    return Task(spec=spec, docs=docs, source="in-memory")


@dataclass(frozen=True)
class _QuestionFormatter:
    """doc_to_text for in-memory tasks: the training template's prefix filled with str.format."""

    template: str

    def __call__(self, doc: Doc) -> str:
        return self.template.format(question=doc["question"])
