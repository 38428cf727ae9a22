"""Evaluation engine: lm-evaluation-harness's answers and scores, computed faster.

Tasks are YAML data in `tasks/` (lm-eval's schema); one engine runs them all. Public API:

- `load_task(name, data_path=None, num_fewshot=None, samples=1, temperature=None, **overrides)` -> Task
- `load_tasks(names, data_paths=..., ...)` -> (tasks, groups): names may be groups (`mmlu`, `mmlu_stem`)
- `task_from_docs(name, docs, prompt_template, **overrides)` -> Task (the held-out set)
- `evaluate(model, tokenizer, tasks, ..., groups=(), engine="auto")` -> lm-eval-shaped results dict (with
  group scores)
- `format_results_table(results)` -> lm-eval's markdown table
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any

from tunescope.core.errors import UserError
from tunescope.evaluate.enginepath import ENGINE_CHOICES, check_engine
from tunescope.evaluate.groups import add_group_results
from tunescope.evaluate.results import format_results_table
from tunescope.evaluate.task import Task, load_task, load_tasks, sampling_overrides, task_from_docs
from tunescope.store.fileio import write_json
from tunescope.store.layout import RESULTS

BACKENDS = ("native", "lm-eval", "vllm")


def evaluate(
    model,
    tokenizer,
    tasks: list[Task],
    *,
    limit: int | None = None,
    batch_size: int | str = 16,
    max_new_tokens: int | None = None,
    out_dir: pathlib.Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    backend: str = "native",
    groups: Sequence[str] = (),
    engine: str = "auto",
) -> dict[str, Any]:
    """Evaluate `model` on `tasks`; write `<task>.jsonl` and `results.json` to `out_dir` when given.

    `backend="native"` is tunescope's engine; `"lm-eval"` runs lm-evaluation-harness itself on the
    same model and documents (the reference run); `"vllm"` generates with vLLM on CUDA. `groups`
    (from `load_tasks`) are scored over their tasks' results, as lm-eval scores `mmlu`.

    `engine` (native backend): "auto" runs the native engine on the model families it is verified on and
    plain transformers (`model.generate`, unbatched forwards) on any other model; "native" or
    "transformers" forces one. results.json records per task which path ran and why.
    """
    check_engine(engine)
    if engine != "auto" and backend != "native":
        raise UserError(f"applies only to backend 'native' (backend '{backend}' runs its own engine)",
                        where="engine")
    kwargs = {"limit": limit, "batch_size": batch_size, "max_new_tokens": max_new_tokens, "out_dir": out_dir,
              "progress": progress}
    if backend == "native":
        from tunescope.evaluate.runner import evaluate_native as run

        kwargs["engine"] = engine
    elif backend == "lm-eval":
        from tunescope.evaluate.backends.lmeval import evaluate_with_lm_eval as run
    elif backend == "vllm":
        from tunescope.evaluate.backends.vllm import evaluate_with_vllm as run
    else:
        raise UserError(f"unknown evaluation backend '{backend}' (known: {', '.join(BACKENDS)})",
                        where="backend")
    results = run(model, tokenizer, tasks, **kwargs)
    if groups:
        add_group_results(results, groups)
        if out_dir is not None:
            write_json(pathlib.Path(out_dir) / RESULTS, results)
    return results


__all__ = ["ENGINE_CHOICES", "Task", "evaluate", "format_results_table", "load_task", "load_tasks",
           "sampling_overrides", "task_from_docs"]
