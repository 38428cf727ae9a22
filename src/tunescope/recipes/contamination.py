"""The contamination check of a run and of `tunescope contamination`: training text against what is scored.

`check_run` compares a run's training examples (question and answer, as trained) with the items each
evaluation task scores (the first `eval.limit` of them, as the evaluation picks them), the validation
split and the held-out problems; it runs before the model loads and its result is the run's
`contamination.json`. `check_file` does the same for a data file nobody has trained on yet.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunescope.config.run_config import ContaminationConfig, EvalConfig, RunConfig
from tunescope.core.errors import UserError

# The other splits a run compares with its training examples; their names cannot be task names.
VALIDATION_SPLIT = "validation split"
HELDOUT_SPLIT = "held-out problems"


def _settings(c: ContaminationConfig):
    from tunescope.analysis.contamination import OverlapSettings

    return OverlapSettings(ngram=c.ngram, near_duplicate_threshold=c.near_duplicate_threshold)


def task_items(tasks: list, limit: int | float | None) -> dict[str, list[list[str]]]:
    """The text parts of the items each task scores (doc_id = position), as the evaluation selects them."""
    from tunescope.analysis.contamination import item_parts
    from tunescope.evaluate.runner import select_docs

    return {task.name: [item_parts(doc) for doc in select_docs(task, limit)[0]] for task in tasks}


def check_texts(train_docs: list[list[str]], items: dict[str, list[list[str]]], settings: ContaminationConfig,
                splits: dict[str, list[list[str]]] | None = None) -> dict[str, Any]:
    """Training documents against tasks' items and other splits, each a list of text parts:
    `{"tasks", "splits", "within_train", "ngram", ..., "seconds"}` (the layout of contamination.json)."""
    from tunescope.analysis import contamination

    t0 = time.perf_counter()
    result = contamination.check(train_docs, {**items, **(splits or {})}, _settings(settings))
    sets = result.pop("sets")
    result["tasks"] = {name: sets[name] for name in items}
    result["splits"] = {name: sets[name] for name in splits or {}}
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def check(train_rows: list[dict], tasks: list, limit: int | float | None, settings: ContaminationConfig,
          splits: dict[str, list[list[str]]] | None = None) -> dict[str, Any]:
    """Training rows (question and answer, as trained) against the items the tasks score (and other
    splits)."""
    t0 = time.perf_counter()
    items = task_items(tasks, limit)
    train_docs = [[str(r["question"]), str(r["answer"])] for r in train_rows]
    result = check_texts(train_docs, items, settings, splits)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def check_run(cfg: RunConfig, prep, tasks: list) -> dict[str, Any]:
    """A run's check (see the module docstring); `prep` is `recipes.inputs.Prepared`."""
    splits = {VALIDATION_SPLIT: [[str(r["question"]), str(r["answer"])] for r in prep.val_rows],
              HELDOUT_SPLIT: [[str(r["question"])] for r in prep.heldout_rows]}
    return check(prep.train_rows, tasks, cfg.eval.limit, cfg.report.contamination, splits)


def results_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What results.json records: per task the items checked, the flagged ones and their share."""
    return {"ngram": result["ngram"], "normalisation": result["normalisation"],
            "tasks": {name: {"n": t["n"], "n_flagged": t["n_flagged"], "share": t["share"],
                             "flagged_doc_ids": t["flagged_doc_ids"]} for name, t in result["tasks"].items()}}


def annotate_results(results_path: Path, result: dict[str, Any]) -> None:
    """Add the check's per-task summary to an evaluation's results.json (under `tunescope.contamination`)."""
    from tunescope.store.fileio import write_json
    from tunescope.store.run_folder import read_json_object

    results = read_json_object(results_path)
    results.setdefault("tunescope", {})["contamination"] = results_summary(result)
    write_json(results_path, results)


def check_file(data: str, tasks: list[str], *, data_paths: dict[str, str] | None = None,
               limit: str | int | float | None = None, ngram: int | None = None,
               question_field: str = "question", answer_field: str = "answer") -> dict[str, Any]:
    """`tunescope contamination DATA --tasks ...`: a training file against tasks' items, with no model at all.
    `limit` and `ngram` mean what `eval.limit` and `report.contamination.ngram` mean in a run config."""
    from tunescope.config.loading import from_options
    from tunescope.data.sources import load_rows
    from tunescope.evaluate import load_tasks

    ev = from_options(EvalConfig, tasks=tasks, data_path=data_paths or {}, limit=limit)
    settings = from_options(ContaminationConfig, **({"ngram": ngram} if ngram is not None else {}))
    if not ev.tasks:
        raise UserError("name at least one task", where="--tasks")
    if data != "synthetic-math" and not Path(data).expanduser().exists():
        raise UserError("training data file not found", where=data)
    rows = load_rows(data, question_field=question_field, answer_field=answer_field)
    loaded, _ = load_tasks(ev.tasks, data_paths=ev.data_path, num_fewshot=0)
    result = check(rows, loaded, ev.limit, settings)
    result["data"] = data
    return result
