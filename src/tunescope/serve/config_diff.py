"""Two runs' configs side by side: the keys whose values differ, as dotted paths."""

from __future__ import annotations

import json
from typing import Any

MISSING = "(not set)"


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """`{"training": {"epochs": 3}}` → `{"training.epochs": 3}`; lists stay whole values."""
    if not isinstance(config, dict):
        return {prefix: config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def shown(value: Any) -> str:
    if value is MISSING:
        return MISSING
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def config_diff(this: dict, other: dict) -> tuple[list[dict[str, str]], int]:
    """(rows of key / this run's value / the other run's value where they differ, how many keys are equal)."""
    a, b = flatten(this), flatten(other)
    rows, same = [], 0
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, MISSING), b.get(key, MISSING)
        if va == vb:
            same += 1
        else:
            rows.append({"key": key, "this": shown(va), "other": shown(vb)})
    return rows, same
