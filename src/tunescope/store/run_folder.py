"""The run directory as typed data: its layout and the one reader of its files.

`open_run(path)` reads a run folder into a `RunRecord`: the config as `RunConfig`, the manifest, the
`metrics.jsonl` records (setup / train / val / summary), the base and tuned evaluations, the training
examples and the report. `open_evaluation(path)` reads a `tunescope eval --output DIR` folder. The
report, compare, export, the registry and the CLI read runs only through here, so a damaged file
is reported the same way everywhere: a `UserError` naming the file (and line where known).

The file names are in `store.layout`, the record types in `store.schema`; `store.fileio` keeps the low-level
writing primitives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tunescope.config.loading import load_config
from tunescope.config.run_config import RunConfig
from tunescope.core.errors import UserError
from tunescope.store.fileio import iter_jsonl, read_jsonl, write_jsonl

# The file names are run_layout's; they are imported here too so that a reader of run folders needs one
# module.
from tunescope.store.layout import (  # noqa: F401
    ADAPTER,
    CHECKPOINTS,
    CONFIG,
    CONTAMINATION,
    EVAL_DIR,
    LABELS,
    MANIFEST,
    METRICS,
    REPORT_JSON,
    RESULTS,
    STEPS_DIR,
    TRAIN_EXAMPLES,
)
from tunescope.store.schema import (
    RECORD_OF_KIND,
    Manifest,
    MetricRecord,
    OtherRecord,
    SetupRecord,
    SummaryRecord,
    TrainExample,
)

# The records the training stage writes (a resumed run rewrites them from its checkpoint on).
TRAINING_KINDS = ("setup", "train", "val", "task_eval", "summary")
# The records of one optimizer step; a resumed run keeps those up to its checkpoint's step.
STEP_KINDS = ("train", "val", "task_eval")


# ---------------------------------------------------------------- reading files

M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"field '{'.'.join(map(str, x['loc'])) or '(record)'}': {x['msg']}"
                             for x in e.errors())
        raise UserError(f"unexpected content ({problems})", where=where) from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold one object; a truncated or wrong file names the file (and line)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON ({e.msg})", where=f"{path}:{e.lineno}") from None
    except UnicodeDecodeError:
        raise UserError("not a UTF-8 text file", where=str(path)) from None
    if not isinstance(data, dict):
        raise UserError(f"must be a JSON object, not {type(data).__name__}", where=str(path))
    return data


def _jsonl_objects(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file:line, object) for each record of a JSON Lines file."""
    out = []
    for lineno, rec in iter_jsonl(path):
        if not isinstance(rec, dict):
            raise UserError("each line must be a JSON object", where=f"{path}:{lineno}")
        out.append((f"{path}:{lineno}", rec))
    return out


def read_manifest(run_path: Path) -> Manifest:
    path = run_path / MANIFEST
    return _validated(Manifest, read_json_object(path), str(path))


def read_config(run_path: Path, overrides: list[str] | None = None) -> RunConfig:
    """The run's config.yaml as `RunConfig` (load_config names the file and line of a bad one)."""
    return load_config(run_path / CONFIG, overrides or [])


def read_metrics(path: Path) -> list[MetricRecord]:
    """The typed records of a metrics.jsonl file; [] when there is none."""
    if not path.is_file():
        return []
    out: list[MetricRecord] = []
    for where, rec in _jsonl_objects(path):
        kind = rec.get("kind")
        if not isinstance(kind, str):
            raise UserError("a metrics record needs a 'kind' (setup, train, val or summary)", where=where)
        out.append(_validated(RECORD_OF_KIND.get(kind, OtherRecord), rec, where))
    return out


def last_summary(run_path: Path) -> SummaryRecord | None:
    """The training summary a run recorded, if training finished."""
    return next((r for r in reversed(read_metrics(run_path / METRICS)) if isinstance(r, SummaryRecord)), None)


def rewind_metrics(run_path: Path, step: int) -> bool:
    """Drop the training records a killed run wrote after its last checkpoint, so the records follow on
    without duplicates. The first setup record stays where it was (first): the resumed run trains the
    same examples. Returns whether it is there, so the resumed run does not write another."""
    path = run_path / METRICS
    if not path.is_file():
        return False
    records = read_jsonl(path)
    setup = next((r for r in records if r.get("kind") == "setup"), None)
    write_jsonl(path, [r for r in records if r is setup or r.get("kind") not in TRAINING_KINDS
                       or (r["kind"] in STEP_KINDS and r.get("step", 0) <= step)])
    return setup is not None


# ---------------------------------------------------------------- evaluations


@dataclass
class Evaluation:
    """One evaluation folder: lm-eval's results.json and each task's per-sample records (read on first
    use)."""

    label: str  # base | tuned, or "eval" for a `tunescope eval --output` folder
    path: Path
    results: dict[str, Any]

    @cached_property
    def samples(self) -> dict[str, list[dict[str, Any]]]:
        return {p.stem: read_jsonl(p) for p in sorted(self.path.glob("*.jsonl"))}


def _evaluation(label: str, folder: Path) -> Evaluation | None:
    results = folder / RESULTS
    return Evaluation(label, folder, read_json_object(results)) if results.is_file() else None


@dataclass
class EvaluationRecord:
    """A `tunescope eval --output DIR` folder: one evaluation, no training."""

    path: Path
    evaluation: Evaluation
    kind: str = "eval"
    method: None = None
    dataset: None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> str | None:
        results = self.evaluation.results
        return (results.get("config") or {}).get("model") or results.get("model_name")

    @property
    def evaluations(self) -> dict[str, Evaluation]:
        return {self.evaluation.label: self.evaluation}


def open_evaluation(path: str | Path) -> EvaluationRecord:
    p = Path(path)
    ev = _evaluation("eval", p)
    if ev is None:
        raise UserError(f"not an evaluation folder (no {RESULTS})", where=str(p))
    return EvaluationRecord(p, ev)


# ---------------------------------------------------------------- the run


@dataclass
class RunRecord:
    path: Path
    config: RunConfig
    manifest: Manifest
    metrics: list[MetricRecord]
    evaluations: dict[str, Evaluation] = field(default_factory=dict)  # by label: base, tuned
    kind: str = "run"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> str:
        return self.config.model.name

    @property
    def method(self) -> str:
        return self.config.training.method

    @property
    def dataset(self) -> str:
        return self.config.data.source

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER

    def records(self, kind: type[M]) -> list[M]:
        return [r for r in self.metrics if isinstance(r, kind)]

    @property
    def setup(self) -> SetupRecord | None:
        return next(iter(self.records(SetupRecord)[-1:]), None)

    def task_item_records(self, step: int, task: str) -> list[dict[str, Any]] | None:
        """eval/steps/<step>/<task>.jsonl: the per-item results of a task scored during training."""
        path = self.path / EVAL_DIR / STEPS_DIR / str(step) / f"{task}.jsonl"
        return read_jsonl(path) if path.is_file() else None

    @property
    def summary(self) -> SummaryRecord | None:
        return next(iter(self.records(SummaryRecord)[-1:]), None)

    @cached_property
    def train_examples(self) -> list[TrainExample] | None:
        """train_examples.jsonl, or None for runs made before it was written."""
        path = self.path / TRAIN_EXAMPLES
        if not path.is_file():
            return None
        return [_validated(TrainExample, rec, where) for where, rec in _jsonl_objects(path)]

    @cached_property
    def contamination(self) -> dict[str, Any] | None:
        """contamination.json, or None for runs made before the check was written."""
        path = self.path / CONTAMINATION
        return read_json_object(path) if path.is_file() else None

    @cached_property
    def report(self) -> dict[str, Any] | None:
        """report.json, once a report has been written."""
        path = self.path / REPORT_JSON
        return read_json_object(path) if path.is_file() else None

    def reconfigured(self, overrides: list[str]) -> RunRecord:
        """The same run with `--set` overrides applied to its config (validated like the file)."""
        return replace(self, config=read_config(self.path, overrides))


def open_run(path: str | Path, require_complete: bool = True) -> RunRecord:
    """Read a run directory. With `require_complete`, a run whose manifest is not `complete` is refused."""
    p = Path(path)
    if not p.is_dir():
        raise UserError("run directory not found", where=str(p))
    missing = [f for f in (CONFIG, MANIFEST) if not (p / f).is_file()]
    if missing:
        raise UserError(f"not a tunescope run directory (missing {', '.join(missing)})", where=str(p))
    manifest = read_manifest(p)
    if require_complete and manifest.status != "complete":
        raise UserError(f"the run is not finished (status: {manifest.status or 'unknown'})",
                        where=str(p / MANIFEST))
    evaluations = {label: ev for label in LABELS
                   if (ev := _evaluation(label, p / EVAL_DIR / label)) is not None}
    return RunRecord(p, read_config(p), manifest, read_metrics(p / METRICS), evaluations)


def open_run_or_evaluation(path: str | Path) -> RunRecord | EvaluationRecord:
    """A finished run directory, or an evaluation-only folder (`tunescope eval --output DIR`)."""
    p = Path(path)
    if not p.is_dir():
        raise UserError("run directory not found", where=str(p))
    if (p / MANIFEST).is_file() or (p / CONFIG).is_file():
        return open_run(p)
    if (p / RESULTS).is_file():
        return open_evaluation(p)
    raise UserError(f"neither a run directory ({MANIFEST}) nor an evaluation folder ({RESULTS})",
                    where=str(p))
