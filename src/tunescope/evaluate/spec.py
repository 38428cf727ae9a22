"""Task specifications: the YAML files in `tasks/` turned into typed objects.

The YAML keys follow lm-evaluation-harness's task schema (a subset), so a task file reads the same
in both tools; a few tunescope keys are added (`required_fields`, `apply_chat_template`,
`samples`). One engine interprets every spec: nothing here is task-specific code.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from tunescope.core.errors import UserError

GENERATE = "generate_until"
MULTIPLE_CHOICE = "multiple_choice"
OUTPUT_TYPES = (GENERATE, MULTIPLE_CHOICE)

DEFAULT_FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's HFLM.max_gen_toks


@dataclass
class TaskSpec:
    """Everything that defines a benchmark, independent of the model that runs it."""

    name: str
    output_type: str
    doc_to_text: Any
    doc_to_target: Any
    alias: str | None = None
    dataset_path: str | None = None
    dataset_name: str | None = None
    process_docs: str | None = None
    required_fields: list[str] = field(default_factory=list)
    training_split: str | None = None
    validation_split: str | None = None
    test_split: str | None = None
    fewshot_split: str | None = None
    fewshot_sampler: str = "default"
    doc_to_choice: Any = None
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    fewshot_seed: int = DEFAULT_FEWSHOT_SEED
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    filter_list: list[dict[str, Any]] = field(default_factory=list)
    metric_list: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 1
    apply_chat_template: bool = False
    version: Any = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def eval_split(self) -> str | None:
        """The split that is scored: test if the task has one, else validation (as lm-eval)."""
        return self.test_split or self.validation_split

    @property
    def fewshot_source_split(self) -> str | None:
        """Where few-shot examples come from: fewshot_split, else train, else validation, else test."""
        return self.fewshot_split or self.training_split or self.validation_split or self.test_split

    @property
    def excludes_eval_doc(self) -> bool:
        # lm-eval drops the evaluated doc from its own few-shot draw only when the few-shot split is
        # the test split (None == None counts, as it does there: hellaswag has neither set).
        return self.fewshot_split == self.test_split

    @property
    def display_name(self) -> str:
        return self.alias or self.name

    def to_config(self) -> dict[str, Any]:
        """The resolved configuration, for results.json `configs`."""
        cfg = {k: v for k, v in self.raw.items() if k not in ("samples",)}
        cfg.update(
            task=self.name,
            num_fewshot=self.num_fewshot,
            fewshot_seed=self.fewshot_seed,
            target_delimiter=self.target_delimiter,
            fewshot_delimiter=self.fewshot_delimiter,
        )
        if self.output_type == GENERATE:
            cfg["generation_kwargs"] = copy.deepcopy(self.generation_kwargs)
            cfg["repeats"] = self.samples
        if self.apply_chat_template:
            cfg["apply_chat_template"] = True
        return cfg


_SPEC_KEYS = {
    "task", "task_alias", "tag", "dataset_path", "dataset_name", "process_docs", "required_fields",
    "output_type", "training_split", "validation_split", "test_split", "fewshot_split",
    "fewshot_config", "doc_to_text", "doc_to_target", "doc_to_choice", "description",
    "target_delimiter", "fewshot_delimiter", "num_fewshot", "generation_kwargs", "filter_list",
    "metric_list", "repeats", "samples", "apply_chat_template", "metadata", "fewshot_seed",
}


def spec_from_dict(raw: dict[str, Any], where: str = "task") -> TaskSpec:
    """Build a TaskSpec from a parsed YAML mapping; unknown keys are a
    UserError (typos are silent otherwise)."""
    unknown = sorted(set(raw) - _SPEC_KEYS)
    if unknown:
        raise UserError(f"unknown task key(s) {unknown} (allowed: {sorted(_SPEC_KEYS)})", where=where)
    for key in ("task", "output_type", "doc_to_text", "doc_to_target"):
        if key not in raw:
            raise UserError(f"task definition is missing '{key}'", where=where)
    if raw["output_type"] not in OUTPUT_TYPES:
        raise UserError(f"output_type must be one of {OUTPUT_TYPES}, got {raw['output_type']!r}", where=where)
    gen = dict(raw.get("generation_kwargs") or {})
    if raw["output_type"] == GENERATE:
        gen.setdefault("until", [raw.get("fewshot_delimiter", "\n\n")])
        gen.setdefault("max_gen_toks", DEFAULT_MAX_GEN_TOKS)
        gen.setdefault("do_sample", False)
    fewshot_cfg = raw.get("fewshot_config") or {}
    return TaskSpec(
        name=raw["task"],
        alias=raw.get("task_alias"),
        output_type=raw["output_type"],
        dataset_path=raw.get("dataset_path"),
        dataset_name=raw.get("dataset_name"),
        process_docs=raw.get("process_docs"),
        required_fields=list(raw.get("required_fields") or []),
        training_split=raw.get("training_split"),
        validation_split=raw.get("validation_split"),
        test_split=raw.get("test_split"),
        fewshot_split=raw.get("fewshot_split", fewshot_cfg.get("split")),
        fewshot_sampler=fewshot_cfg.get("sampler", "default"),
        doc_to_text=raw["doc_to_text"],
        doc_to_target=raw["doc_to_target"],
        doc_to_choice=raw.get("doc_to_choice"),
        description=raw.get("description") or "",
        target_delimiter=raw.get("target_delimiter", " "),
        fewshot_delimiter=raw.get("fewshot_delimiter", "\n\n"),
        num_fewshot=int(raw.get("num_fewshot") or 0),
        fewshot_seed=int(raw.get("fewshot_seed", DEFAULT_FEWSHOT_SEED)),
        generation_kwargs=gen,
        filter_list=list(raw.get("filter_list") or []),
        metric_list=list(raw.get("metric_list") or []),
        samples=int(raw.get("samples") or raw.get("repeats") or 1),
        apply_chat_template=bool(raw.get("apply_chat_template", False)),
        version=(raw.get("metadata") or {}).get("version"),
        raw=copy.deepcopy(raw),
    )


@lru_cache(maxsize=1)
def _task_files() -> tuple[dict[str, Any], ...]:
    """The parsed YAML files in `tasks/`, by file name (read once; callers copy before changing)."""
    folder = resources.files("tunescope.evaluate").joinpath("tasks")
    return tuple(yaml.safe_load(entry.read_text(encoding="utf-8"))
                 for entry in sorted(folder.iterdir(), key=lambda p: p.name) if entry.name.endswith(".yaml"))


@lru_cache(maxsize=1)
def builtin_definitions() -> dict[str, dict[str, Any]]:
    """Every built-in task name mapped to its raw definition (MMLU expanded per subject)."""
    defs: dict[str, dict[str, Any]] = {}
    for raw in _task_files():
        if "template" in raw:  # a family of tasks (MMLU): one per key of `subjects`
            for subject in raw["subjects"]:
                defs_raw = _fill(raw["template"],
                                 {"subject": subject, "subject_words": subject.replace("_", " ")})
                defs[defs_raw["task"]] = defs_raw
        else:
            defs[raw["task"]] = raw
    return defs


def _fill(template: Any, values: dict[str, str]) -> Any:
    """Substitute `{{key}}` for the family keys only; every other `{{...}}` is a per-doc template."""
    if isinstance(template, str):
        for key, value in values.items():
            template = template.replace("{{" + key + "}}", value)
        return template
    if isinstance(template, list):
        return [_fill(x, values) for x in template]
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    return template


@dataclass(frozen=True)
class GroupSpec:
    """A task group (lm-eval's `group`): a score aggregated over its member tasks' questions."""

    name: str
    alias: str
    members: tuple[str, ...]  # tasks or groups, in lm-eval's order
    version: Any


@lru_cache(maxsize=1)
def builtin_groups() -> dict[str, GroupSpec]:
    """Every built-in group by name (MMLU: `mmlu` and its four categories)."""
    groups: dict[str, GroupSpec] = {}
    for raw in _task_files():
        if "groups" not in raw:
            continue
        family = raw["template"]["task"].split("{{")[0]  # "mmlu_"
        for name, members in raw["groups"]["members"].items():
            if isinstance(members, str):  # a category: every subject of it, alphabetically
                members = sorted(family + subject for subject, category in raw["subjects"].items()
                                 if category == members)
                alias = name[len(family):].replace("_", " ")
            else:
                alias = name
            groups[name] = GroupSpec(name, alias, tuple(members), raw["groups"]["version"])
    return groups


def known_tasks() -> list[str]:
    return sorted([*builtin_definitions(), *builtin_groups()]) + ["heldout"]


def builtin_spec(name: str) -> TaskSpec:
    defs = builtin_definitions()
    if name not in defs:
        close = difflib.get_close_matches(name, list(defs), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        shown = [t for t in sorted(defs) if not t.startswith("mmlu_")] + ["heldout", "mmlu_<subject>"]
        shown += [f"{g} (group)" for g in builtin_groups()]
        subjects = sorted(t[len("mmlu_"):] for t in defs if t.startswith("mmlu_"))
        raise UserError(
            f"unknown task '{name}'{hint} (known: {', '.join(shown)}; MMLU subjects: {', '.join(subjects)})",
            where="task",
        )
    return spec_from_dict(copy.deepcopy(defs[name]), where=f"tasks/{name}")
