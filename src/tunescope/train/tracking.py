"""Where training records go: always `metrics.jsonl`; TensorBoard and MLflow when asked.

`training.report_to: [tensorboard, mlflow]`. Both are imported only when named, and a missing
package is a one-line error naming what to install. The JSONL file is the source of truth the
report reads; the trackers get the same numbers under readable names.
"""

from __future__ import annotations

from pathlib import Path

from tunescope.core.errors import UserError
from tunescope.store.fileio import append_jsonl

# JSONL key → tracker name. Token accuracy is teacher-forced next-token accuracy, never task accuracy.
TRACKED = {
    "train": {"loss": "train/loss (per token)", "token_accuracy": "train/token accuracy (teacher-forced)",
              "lr": "train/learning rate", "grad_norm": "train/grad norm",
              "tokens_supervised": "tokens/supervised", "tokens_nonpad": "tokens/non-padding",
              "tokens_total": "tokens/all incl. padding"},
    "val": {"val_loss": "val/loss (per token)", "val_token_accuracy": "val/token accuracy (teacher-forced)"},
    "summary": {"throughput_supervised_tps": "summary/supervised tokens per s",
                "throughput_nonpad_tps": "summary/non-padding tokens per s", "mfu": "summary/MFU",
                "mfu_own_dtype": "summary/MFU vs the training dtype's own peak",
                "peak_rss_mb": "summary/peak RSS MB", "cost_usd": "summary/estimated cost USD"},
}


class _TensorBoard:
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("training.report_to includes tensorboard but it is not installed: "
                            "pip install tensorboard (or 'tunescope[tracking]')",
                            where="training.report_to") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, record: dict) -> None:
        step = record.get("step", record.get("steps", 0))
        for key, name in TRACKED.get(record["kind"], {}).items():
            if isinstance(record.get(key), int | float):
                self.writer.add_scalar(name, record[key], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, run_name: str, params: dict):
        try:
            import mlflow
        except ImportError:
            raise UserError("training.report_to includes mlflow but it is not installed: pip install mlflow "
                            "(or 'tunescope[tracking]')", where="training.report_to") from None
        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=run_name)
        mlflow.log_params(params)

    def log(self, record: dict) -> None:
        step = record.get("step", record.get("steps", 0))
        metrics = {name.replace(" ", "_").replace("(", "").replace(")", ""): float(record[key])
                   for key, name in TRACKED.get(record["kind"], {}).items()
                   if isinstance(record.get(key), int | float)}
        if metrics:
            self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


class MetricsLog:
    """A callable that writes one record everywhere; `close()` when training ends."""

    def __init__(self, path: Path, report_to: list[str] = (), run_name: str = "run",
                 params: dict | None = None):
        self.path = path
        self.sinks = []
        for name in report_to:
            if name == "tensorboard":
                self.sinks.append(_TensorBoard(path.parent / "tensorboard"))
            elif name == "mlflow":
                self.sinks.append(_MLflow(run_name, params or {}))

    def __call__(self, record: dict) -> None:
        append_jsonl(self.path, record)
        for sink in self.sinks:
            sink.log(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
