"""How to read an evaluation's scores: the keys of lm-evaluation-harness's ``results.json``.

A task entry in ``results.json`` holds ``"<metric>,<filter>"`` scores (``acc,none``,
``exact_match,strict-match``) beside ``"<metric>_stderr,<filter>"`` standard errors, an ``alias`` and
other bookkeeping. Per-sample records name the same metric without the ``none`` filter (``acc``) and
with any other filter kept (``exact_match,strict-match``). The report, the comparison and the run
registry all read scores through these functions, so they agree on which keys are scores, what each
is called and which one a task is judged by.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

METRIC_LABELS = {
    "exact_match,strict-match": "exact match (strict-match)",
    "exact_match,flexible-extract": "exact match (flexible-extract)",
    "acc,none": "accuracy",
    "acc_norm,none": "accuracy (length-normalised)",
}
# The metric a task is judged by (its headline), in order of preference.
PRIMARY_METRICS = ("exact_match,strict-match", "acc_norm,none", "acc,none")
_UNLISTED = len(METRIC_LABELS)


def finite_float(x: Any) -> float | None:
    """A finite Python float, or ``None`` for missing, non-numeric, NaN or infinite values."""
    if x is None:
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def metric_keys(entry: Mapping[str, Any]) -> list[str]:
    """The score keys (``"<metric>,<filter>"``) of one task's ``results.json`` entry, in file order.

    Standard errors, the alias and non-numeric values are not scores; neither is a boolean."""
    return [k for k, v in entry.items()
            if "," in k and "_stderr" not in k.split(",")[0] and isinstance(v, int | float)
            and not isinstance(v, bool)]


def stderr_key(key: str) -> str:
    """``acc,none`` -> ``acc_stderr,none``: where a score's standard error is stored."""
    metric, _, filt = key.partition(",")
    return f"{metric}_stderr,{filt}"


def sample_key(key: str) -> str:
    """``acc,none`` in results.json is ``acc`` in the per-sample records; filtered metrics keep their
    filter."""
    metric, _, filt = key.partition(",")
    return metric if filt in ("", "none") else key


def metric_label(key: str) -> str:
    """The readable name of a score key (the key itself when it has none)."""
    return METRIC_LABELS.get(key, key)


def display_order(key: str) -> tuple[int, str]:
    """Sort key for score keys: the labelled metrics in ``METRIC_LABELS`` order, then the rest by name."""
    order = list(METRIC_LABELS)
    return (order.index(key) if key in order else _UNLISTED, key)


def headline_metric(keys: Iterable[str]) -> str | None:
    """The key a task is judged by: the first of ``PRIMARY_METRICS`` it has, else the first in display
    order."""
    available = set(keys)
    if not available:
        return None
    return next((m for m in PRIMARY_METRICS if m in available), min(available, key=display_order))


def headline_rows(rows: Iterable[Mapping[str, Any]]) -> list:
    """One row per task, in first-seen order: the row of the task's headline metric. A row is any mapping
    with "task" and "metric" (a report row, a series of task scores during training)."""
    rows = list(rows)
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        pick = headline_metric(r["metric"] for r in task_rows)
        out.append(next(r for r in task_rows if r["metric"] == pick))
    return out


def task_n(results: Mapping[str, Any], task: str, samples: Sequence | None = None) -> int | None:
    """Items a task was scored on: ``n-samples.<task>.effective``, else the number of per-sample records."""
    n = ((results.get("n-samples") or {}).get(task)) or {}
    if isinstance(n, Mapping) and n.get("effective") is not None:
        return n["effective"]
    return len(samples) if samples else None
