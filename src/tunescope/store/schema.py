"""The typed contents of a run folder's files: manifest.json (`Manifest`), the metrics.jsonl records
(`SetupRecord`, `TrainRecord`, `ValRecord`, `TaskEvalRecord`, `SummaryRecord`, `OtherRecord`) and the
lines of train_examples.jsonl (`TrainExample`).

The record types are documented in ARCHITECTURE.md; each accepts fields it does not name, so runs
written by other versions still load. `store.run_folder` reads the files into them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# int | float keeps each number as the file has it, so a record dumped back is the record that was read.
Number = int | float


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")

    def as_dict(self) -> dict[str, Any]:
        """The fields the file had (defaults not added), extra ones included, under the file's names."""
        return self.model_dump(exclude_unset=True, by_alias=True)


# ---------------------------------------------------------------- manifest.json


class ManifestModel(_Open):
    name: str | None = None
    source: str | None = None  # where the weights were read: a directory or a hub id


class ManifestGrid(_Open):
    """`grid`: the grid a grid run belongs to (`grid/scheduler.py` writes it)."""

    id: str | None = None
    folder: str | None = None
    cell: str | None = None
    seed: int | None = None
    axes: dict[str, Any] = {}


class ManifestBaseEval(_Open):
    """`base_eval`: the base evaluation's cache key, and whether it was copied from the cache (`from`:
    where)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    reused: bool | None = None
    key: str | None = None
    copied_from: str | None = Field(None, alias="from")


class Manifest(_Open):
    name: str | None = None
    status: str | None = None  # running | complete | failed | interrupted (Ctrl-C, SIGTERM)
    started: str | None = None
    finished: str | None = None
    resumed: list[str] = []
    seed: int | None = None
    versions: dict[str, Any] = {}
    git_sha: str | None = None
    device: str | None = None
    dtype: str | None = None
    # how `auto` chose the dtype: figures and reason (models/dtype_choice.py)
    dtype_choice: dict[str, Any] | None = None
    model: ManifestModel = ManifestModel()
    data: dict[str, Any] = {}  # source, split sizes and seed, data hash (run_inputs.prepare_data)
    timings: dict[str, Number] = {}
    wall_s: Number | None = None
    grid: ManifestGrid | None = None  # a grid run's place in its grid
    base_eval: ManifestBaseEval | None = None  # runs that evaluated (or copied) the base model


# ---------------------------------------------------------------- metrics.jsonl


class SetupRecord(_Open):
    kind: Literal["setup"] = "setup"
    trainable_params: int | None = None
    total_params: int | None = None
    train_examples: int | None = None
    val_examples: int | None = None
    truncated: int | None = None
    dropped: int | None = None
    overflow: str | None = None
    total_steps_planned: int | None = None  # optimizer steps the schedule is built for (absent in older runs)


class TrainRecord(_Open):
    kind: Literal["train"] = "train"
    step: int
    epoch: Number | None = None
    loss: Number | None = None
    token_accuracy: Number | None = None
    lr: Number | None = None
    grad_norm: Number | None = None
    tokens_supervised: int | None = None
    tokens_nonpad: int | None = None
    tokens_total: int | None = None
    elapsed_s: Number | None = None


class ValRecord(_Open):
    kind: Literal["val"] = "val"
    step: int
    val_loss: Number | None = None
    val_token_accuracy: Number | None = None


class TaskEvalRecord(_Open):
    """One task × metric scored on the weights of `step` during training (eval.during_training)."""

    kind: Literal["task_eval"] = "task_eval"
    step: int
    task: str
    metric: str  # results.json's "<metric>,<filter>" key, e.g. "exact_match,flexible-extract", "acc,none"
    value: Number | None = None
    stderr: Number | None = None
    n: int | None = None
    seconds: Number | None = None  # time to score the task at this step

    @property
    def criterion(self) -> str:
        """The name `training.select_best_by` gives this score: `<task>:<metric>`."""
        return f"{self.task}:{self.metric}"


class SummaryRecord(_Open):
    # Fields in the order train/loop.py writes them, which is the order they are dumped back in.
    kind: Literal["summary"] = "summary"
    steps: int | None = None
    total_steps_planned: int | None = None
    epochs: Number | None = None
    best_step: int | None = None
    best_val_loss: Number | None = None
    # Runs that score tasks during training: the criterion that chose best_step, early stopping's,
    # and every criterion's best step ({"val_loss": {"step", "value"}, "<task>:<metric>": ...}).
    selected_by: str | None = None
    early_stopping_on: str | None = None
    best_by: dict[str, dict[str, Number]] | None = None
    task_eval_s: Number | None = None  # scoring tasks during training: inside wall_s, not in train_s
    stopped_early: bool | None = None
    resumed_from_step: int | None = None
    tokens_supervised: int | None = None
    tokens_nonpad: int | None = None
    tokens_total: int | None = None
    padding_fraction: Number | None = None
    wall_s: Number | None = None
    train_s: Number | None = None
    throughput_supervised_tps: Number | None = None
    throughput_nonpad_tps: Number | None = None
    flops_per_token: Number | None = None
    flops_per_supervised_token_head: Number | None = None
    peak_flops: Number | None = None
    mfu: Number | None = None
    peak_rss_mb: Number | None = None
    cuda_max_allocated_mb: Number | None = None
    device: str | None = None
    dtype: str | None = None
    processes: int | None = None
    threads: int | None = None
    micro_batch_tokens: int | None = None
    # How the loss applied the output layer: train/head_check.py's BY_HAND or MODEL_FORWARD, and why.
    loss_path: str | None = None
    loss_path_reason: str | None = None
    trainable_params: int | None = None
    cost_usd: Number | None = None
    price_per_hour: Number | None = None
    price_source: str | None = None


class OtherRecord(_Open):
    """A record of a kind this version does not know; kept as it is."""

    kind: str


MetricRecord = SetupRecord | TrainRecord | ValRecord | TaskEvalRecord | SummaryRecord | OtherRecord
# The record type of each kind this version knows; any other kind reads as an OtherRecord.
RECORD_OF_KIND: dict[str, type[BaseModel]] = {"setup": SetupRecord, "train": TrainRecord, "val": ValRecord,
                                              "task_eval": TaskEvalRecord, "summary": SummaryRecord}


class TrainExample(_Open):
    """A line of train_examples.jsonl: a training example and the final model's loss on it."""

    index: int | None = None
    question: str | None = None
    answer: str | None = None
    loss: Number | None = None
