"""Aggregating per-sample metrics into lm-evaluation-harness's results layout, and its table.

`results.json` keys follow lm-eval 0.4.x: `results[task]["<metric>,<filter>"]` and
`"<metric>_stderr,<filter>"`, `alias`, plus `configs`, `versions`, `n-shot`, `higher_is_better`,
`n-samples` ({original, effective}). tunescope's own figures (truncated prompts, timing, limit
handling, engine) go under the separate top-level key `tunescope` so lm-eval readers are unaffected.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tunescope.evaluate.groups import display_order
from tunescope.evaluate.metrics import mean, stderr

HIGHER_IS_BETTER_SYMBOLS = {True: "↑", False: "↓"}


def prompt_hash(prompt: str) -> str:
    """sha256 of the full prompt text (lm-eval's `prompt_hash`)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def aggregate(per_sample: dict[tuple[str, str], list[float]]) -> dict[str, Any]:
    """{(metric, filter): values} -> {"metric,filter": mean, "metric_stderr,filter": stderr}."""
    out: dict[str, Any] = {}
    for (metric, filt), values in per_sample.items():
        out[f"{metric},{filt}"] = mean(values)
        out[f"{metric}_stderr,{filt}"] = stderr(values)
    return out


def task_entry(alias: str, per_sample: dict[tuple[str, str], list[float]]) -> dict[str, Any]:
    return {"alias": alias, **aggregate(per_sample)}


def _format_value(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def format_results_table(results: dict[str, Any]) -> str:
    """lm-eval's markdown tables: |Tasks|Version|Filter|n-shot|Metric| |Value| |Stderr|, each group
    followed by its members (indented), then, when groups were scored, the same for the groups alone."""
    text = _table(results, "results")
    if results.get("groups"):
        text += "\n" + _table(results, "groups")
    return text


def _table(results: dict[str, Any], column: str) -> str:
    headers = ["Groups" if column == "groups" else "Tasks", "Version", "Filter", "n-shot", "Metric", "",
               "Value", "", "Stderr"]
    rows: list[list[str]] = []
    n_shot = results.get("n-shot", {})
    versions = results.get("versions", {})
    hib_all = results.get("higher_is_better", {})
    for task, depth in display_order(results, column):
        entry = dict(results[column][task])
        name = entry.pop("alias", task)
        if depth:
            name = " " * depth + "- " + name
        for key in ("name", "sample_len", "sample_count"):
            entry.pop(key, None)
        version = versions.get(task, "    N/A")
        version = "" if version is None else str(version)
        shots = str(n_shot.get(task, " "))
        first = True
        for key, value in sorted(entry.items()):
            metric, _, filt = key.partition(",")
            if metric.endswith("_stderr"):
                continue
            arrow = HIGHER_IS_BETTER_SYMBOLS.get(hib_all.get(task, {}).get(metric), "")
            se_key = f"{metric}_stderr,{filt}"
            if se_key in entry:
                se = entry[se_key]
                se_text = "   N/A" if se == "N/A" else f"{se:.4f}"
                rows.append([name if first else "", version if first else "", filt, shots, metric, arrow,
                             _format_value(value), "±", se_text])
            else:
                rows.append([name if first else "", version if first else "", filt, shots, metric, arrow,
                             _format_value(value), "", ""])
            first = False
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    numeric = {1, 3, 6, 8}  # right-aligned, as pytablewriter does for numbers

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if i in numeric else c.ljust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "|" + "|".join(padded) + "|"

    sep = "|" + "|".join(("-" * (w - 1) + ":") if i in numeric else "-" * w
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)]) + "\n"
