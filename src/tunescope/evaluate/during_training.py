"""Task scores of the weights being trained: learning curves of accuracy, not only of loss.

`eval.during_training` names the tasks, how many items of each (a subset drawn once with a seed, so
every point scores the same items and two points can be compared item by item) and how often. The
training loop calls a `StepScorer` at step 0, every N steps and at the last step; it scores the
model as it is with this engine, exactly as the final evaluation scores it (same prompts, filters and
metrics; adapters folded into temporary copies of their weights, evaluate/folding.py, the trained
tensors untouched), and hands back one `task_eval` record per task × metric. Per-item results go to
`eval/steps/<step>/<task>.jsonl`.

Generation is greedy (one answer per question) whatever `eval.samples` says: a curve needs the
same, cheap measurement at every point.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from tunescope.config.run_config import VAL_LOSS, RunConfig
from tunescope.core.errors import UserError
from tunescope.evaluate.groups import expand
from tunescope.evaluate.spec import GENERATE
from tunescope.evaluate.task import Task, load_task
from tunescope.store.fileio import write_jsonl
from tunescope.store.scores import finite_float, metric_keys, stderr_key

KEY = "eval.during_training"


def produced_metrics(task: Task) -> list[str]:
    """The `<metric>,<filter>` scores a task reports (what `<task>:<metric>` may name), before running it."""
    spec = task.spec
    metrics = [m["metric"] for m in spec.metric_list]
    if spec.output_type == GENERATE:
        return [f"{m},{f['name']}" for f in spec.filter_list for m in metrics]
    return [f"{m},none" for m in metrics]


def _subset(task: Task, limit: int, seed: int) -> tuple[Task, list[int]]:
    """The same `limit` items at every point: a seeded draw, kept in the task's own order."""
    total = len(task.docs)
    if limit > total:
        raise UserError(f"{limit} items asked of task '{task.name}', which has {total}", where=f"{KEY}.limit")
    picked = sorted(random.Random(f"{seed}:{task.name}").sample(range(total), limit))
    return Task(spec=task.spec, docs=[task.docs[i] for i in picked], fewshot_pool=task.fewshot_pool,
                source=task.source), picked


def load_training_tasks(cfg: RunConfig, heldout: Task | None) -> list[tuple[Task, list[int]]]:
    """The tasks scored during training, each with the indices of its fixed item subset.

    Everything a user can get wrong is checked here, before the model loads: unknown tasks, groups,
    a subset larger than the task, and a `select_best_by` / `early_stopping_on` metric the task does
    not produce. `heldout` is the run's held-out task (greedy), built by the pipeline."""
    dt = cfg.eval.during_training
    seed = cfg.seed if dt.seed is None else dt.seed
    out = []
    for name in dt.tasks:
        if name == "heldout" and heldout is not None:
            task = heldout
        else:
            leaves, groups = expand([name])
            if groups or leaves != [name]:
                raise UserError(f"'{name}' is a group of {len(leaves)} tasks; name the tasks to score during "
                                "training", where=f"{KEY}.tasks")
            try:
                task = load_task(name, data_path=cfg.eval.data_path.get(name),
                                 num_fewshot=cfg.eval.num_fewshot)
            except UserError as e:
                raise UserError(f"task '{name}': {e}", where=f"{KEY}.tasks") from None
        out.append(_subset(task, dt.limit, seed))
    check_criteria(cfg, [t for t, _ in out])
    return out


def check_criteria(cfg: RunConfig, tasks: list[Task]) -> None:
    by_name = {t.name: t for t in tasks}
    for key in ("select_best_by", "early_stopping_on"):
        value = getattr(cfg.training, key)
        if value == VAL_LOSS:
            continue
        task, _, metric = value.partition(":")
        produced = produced_metrics(by_name[task])
        full = metric if "," in metric else f"{metric},none"
        if full not in produced:
            raise UserError(f"task '{task}' does not produce metric '{metric}' (it produces: "
                            f"{', '.join(produced)})", where=f"training.{key}")


@dataclass
class TrainingTimeScorer:
    """Scores the fixed subsets on the model as it is now; the training loop decides when (`due`)."""

    tasks: list[tuple[Task, list[int]]]
    tokenizer: object
    out_dir: Path  # <run>/eval/steps
    every: int
    batch_size: int | str = 16
    max_new_tokens: int | None = None
    engine: str = "auto"
    criteria: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.criteria = [f"{t.name}:{m}" for t, _ in self.tasks for m in produced_metrics(t)]

    def due(self, step: int, total_steps: int) -> bool:
        return step == 0 or step % self.every == 0 or step == total_steps

    def __call__(self, model, step: int) -> list[dict]:
        from tunescope.evaluate.runner import evaluate_native

        # The engine switches the model to eval mode (no dropout; gradient checkpointing only acts in
        # train mode) and restores the weight layout and malloc setting it changes; the mode is ours.
        was_training = model.training
        try:
            results = evaluate_native(model, self.tokenizer, [t for t, _ in self.tasks], limit=None,
                                      batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,
                                      engine=self.engine, records_out=(records := {}))
        finally:
            model.train(was_training)
        records_out: list[dict] = []
        for task, picked in self.tasks:
            # doc_id is the item's index in the whole task, so the files say which items were scored.
            items = [{**r, "doc_id": picked[r["doc_id"]]} for r in records[task.name]]
            write_jsonl(self.out_dir / str(step) / f"{task.name}.jsonl", items)
            entry = results["results"][task.name]
            seconds = results["tunescope"]["tasks"][task.name]["wall_s"]
            for key in metric_keys(entry):
                records_out.append({"kind": "task_eval", "step": step, "task": task.name, "metric": key,
                                    "value": finite_float(entry[key]),
                                    "stderr": finite_float(entry.get(stderr_key(key))), "n": len(items),
                                    "seconds": seconds})
        return records_out


def build_scorer(cfg: RunConfig, tasks: list[tuple[Task, list[int]]], tokenizer,
                 run_path: Path) -> TrainingTimeScorer:
    from tunescope.store.run_folder import EVAL_DIR, STEPS_DIR

    dt = cfg.eval.during_training
    return TrainingTimeScorer(tasks, tokenizer, run_path / EVAL_DIR / STEPS_DIR,
                              every=dt.every or cfg.training.eval_every,
                              batch_size=dt.batch_size or cfg.eval.batch_size,
                              max_new_tokens=dt.max_new_tokens or cfg.eval.max_new_tokens,
                              engine=cfg.eval.engine)
