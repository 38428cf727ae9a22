"""Whether training diverged: the first step whose train or validation loss is NaN or infinite.

The curve analysis keeps finite points only (a NaN has no place on a curve or in a slope), so a run
whose losses became NaN would otherwise read as a run with fewer records. This names the step and the
value instead, for the report to say that the run diverged and where.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

LOSS_KEYS = {"train": ("loss", "train loss"), "val": ("val_loss", "validation loss")}


def first_divergence(metrics: Sequence[Mapping[str, Any]]) -> dict | None:
    """{"step", "metric", "value", "text"} of the first non-finite loss in metrics.jsonl order, or None."""
    for rec in metrics:
        kind = rec.get("kind")
        if kind not in LOSS_KEYS:
            continue
        key, label = LOSS_KEYS[kind]
        value = rec.get(key)
        if isinstance(value, int | float) and not math.isfinite(value):
            step = rec.get("step")
            return {"step": step, "metric": key, "value": str(value),
                    "text": f"training diverged: the {label} became {value} at step {step}"}
    return None
