"""Which step's weights ship, and when training stops: best-so-far bookkeeping for every criterion.

A criterion is `val_loss` (lower is better) or `<task>:<metric>`, a task score measured during
training (higher is better, as for every accuracy the evaluation engine reports). The best step
and value of every criterion seen are kept in `TrainState.best_by`, so the summary can say what
each criterion would have shipped, not only the one that chose. Ties go to the earliest step: a
later step that is only as good is no reason to ship more training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch

from tunescope.config.run_config import VAL_LOSS, TrainingConfig


def criterion_key(name: str) -> str:
    """`hellaswag:acc` -> `hellaswag:acc,none`: the metric as results.json and task_eval records name it."""
    if name == VAL_LOSS:
        return name
    task, _, metric = name.partition(":")
    return f"{task}:{metric if ',' in metric else metric + ',none'}"


def higher_is_better(name: str) -> bool:
    return name != VAL_LOSS


class StepScorer(Protocol):
    """Task scores of the weights being trained (built by the pipeline from the evaluation engine)."""

    criteria: list[str]  # every `<task>:<metric>` a call returns, the same list on every process

    def due(self, step: int, total_steps: int) -> bool: ...

    def __call__(self, model: torch.nn.Module, step: int) -> list[dict]: ...


class Selection:
    """Keeps the weights of the best step under `training.select_best_by` and decides early stopping
    under `training.early_stopping_on`; the state it needs lives in `TrainState` (checkpointed)."""

    def __init__(self, cfg: TrainingConfig, state, params: Mapping[str, torch.Tensor],
                 best: dict[str, torch.Tensor] | None = None):
        self.select = criterion_key(cfg.select_best_by)
        self.stop_on = criterion_key(cfg.early_stopping_on)
        self.patience = cfg.early_stopping_patience
        self.state = state
        self.params = params
        self.best = best  # the shipped candidate's trainable tensors, on the CPU

    def observe(self, step: int, scores: Mapping[str, float]) -> None:
        """Scores measured at `step` (criterion -> value)."""
        improved = {name for name, value in scores.items() if self._note(name, step, value)}
        if VAL_LOSS in scores:
            self.state.best_val_loss = min(self.state.best_val_loss, scores[VAL_LOSS])
        if self.select in improved:
            self.state.best_step = step
            self.best = {n: p.detach().to("cpu", copy=True) for n, p in self.params.items()}
        if self.stop_on in scores:
            if self.stop_on in improved:
                self.state.evals_without_improvement = 0
            else:
                self.state.evals_without_improvement += 1
                if self.patience and self.state.evals_without_improvement >= self.patience:
                    self.state.stopped_early = True

    def _note(self, name: str, step: int, value: float) -> bool:
        known = self.state.best_by.get(name)
        better: Callable[[float, float], bool] = ((lambda a, b: a > b) if higher_is_better(name)
                                                  else (lambda a, b: a < b))
        if known is None or better(value, known["value"]):
            self.state.best_by[name] = {"step": step, "value": value}
            return True
        return False

    def summary(self) -> dict:
        """The summary record's fields about the choice: what chose the shipped
        step, and every criterion's best."""
        return {"selected_by": self.select, "early_stopping_on": self.stop_on,
                "best_by": {name: dict(v) for name, v in self.state.best_by.items()}}
