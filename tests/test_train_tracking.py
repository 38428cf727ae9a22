"""Where training records go: metrics.jsonl always, TensorBoard / MLflow when asked; resume rewinding."""

from __future__ import annotations

import sys
import types

import pytest

from tunescope.config.run_config import TrainingConfig
from tunescope.core.errors import UserError
from tunescope.store.fileio import append_jsonl, read_jsonl
from tunescope.store.run_folder import rewind_metrics
from tunescope.train.tracking import MetricsLog

TRAIN = {"kind": "train", "step": 3, "loss": 1.5, "token_accuracy": 0.6, "lr": 1e-4, "grad_norm": 0.3,
         "tokens_supervised": 10, "tokens_nonpad": 20, "tokens_total": 22}


def test_report_to_is_validated():
    assert TrainingConfig(report_to=["tensorboard", "mlflow"]).report_to == ["tensorboard", "mlflow"]
    with pytest.raises(ValueError):
        TrainingConfig(report_to=["wandb"])


def test_tensorboard_gets_readable_names(tmp_path, monkeypatch):
    scalars = []

    class Writer:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, name, value, step):
            scalars.append((name, value, step))

        def flush(self):
            pass

        def close(self):
            scalars.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    log = MetricsLog(tmp_path / "metrics.jsonl", ["tensorboard"])
    log(TRAIN)
    log({"kind": "val", "step": 3, "val_loss": 1.7, "val_token_accuracy": 0.5})
    log.close()
    assert ("train/token accuracy (teacher-forced)", 0.6, 3) in scalars
    assert ("val/loss (per token)", 1.7, 3) in scalars and scalars[-1] == "closed"
    assert [r["kind"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == ["train", "val"]


def test_mlflow_gets_metrics_per_step(tmp_path, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(start_run=lambda run_name: calls.append(("start", run_name)),
                                 log_params=lambda p: calls.append(("params", p)),
                                 log_metrics=lambda m, step: calls.append(("metrics", m, step)),
                                 end_run=lambda: calls.append(("end",)))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    log = MetricsLog(tmp_path / "metrics.jsonl", ["mlflow"], run_name="r1", params={"lr": 1e-4})
    log(TRAIN)
    log.close()
    assert calls[0] == ("start", "r1") and calls[-1] == ("end",)
    metrics = next(c for c in calls if c[0] == "metrics")
    assert metrics[2] == 3 and metrics[1]["train/token_accuracy_teacher-forced"] == 0.6


def test_missing_tracker_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(UserError, match="pip install mlflow"):
        MetricsLog(tmp_path / "metrics.jsonl", ["mlflow"])


def test_rewind_drops_what_came_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for r in [{"kind": "setup"}, {"kind": "train", "step": 1}, {"kind": "val", "step": 2},
              {"kind": "train", "step": 2}, {"kind": "train", "step": 3}, {"kind": "val", "step": 4},
              {"kind": "other", "x": 1}]:
        append_jsonl(path, r)
    assert rewind_metrics(tmp_path, 2)  # the setup record stays, first
    assert read_jsonl(path) == [{"kind": "setup"}, {"kind": "train", "step": 1}, {"kind": "val", "step": 2},
                                {"kind": "train", "step": 2}, {"kind": "other", "x": 1}]
