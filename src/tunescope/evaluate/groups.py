"""Task groups, as lm-evaluation-harness 0.4 defines them: `--tasks mmlu` runs every subject and adds
one score per group (`mmlu`, and its categories `mmlu_stem`, `mmlu_humanities`, ...).

A group's score is the mean over all the questions of its leaf tasks (lm-eval's `weight_by_size`), so
a subject with 500 questions counts five times one with 100. Its standard error pools the leaves'
sample variances s_i² = n_i · stderr_i²:

    pooled variance = Σ (n_i − 1) · s_i² / (N − k),    stderr = sqrt(pooled variance / N)

for k leaves with N questions in all. Nested groups (mmlu → categories → subjects) aggregate over their
leaf tasks directly rather than over the subgroup scores, as lm-eval 0.4.13 does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from tunescope.evaluate.spec import builtin_groups


def leaves(name: str) -> list[str]:
    """The tasks under `name` (itself when it is not a group), in the group's order."""
    group = builtin_groups().get(name)
    if group is None:
        return [name]
    return [leaf for member in group.members for leaf in leaves(member)]


def _with_subgroups(name: str) -> list[str]:
    group = builtin_groups().get(name)
    if group is None:
        return []
    return [name, *(g for member in group.members for g in _with_subgroups(member))]


def expand(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """(tasks to run, groups to score): each group replaced by its leaf tasks, each task once."""
    tasks: dict[str, None] = {}
    groups: dict[str, None] = {}
    for name in names:
        tasks.update(dict.fromkeys(leaves(name)))
        groups.update(dict.fromkeys(_with_subgroups(name)))
    return list(tasks), list(groups)


def data_path_for(task: str, paths: Mapping[str, str]) -> str | None:
    """A task's local data: its own entry, else that of the innermost group holding it (`mmlu=DIR`
    serves every subject; the folder holds `<subject>_test.csv` or `test/<subject>_test.csv`)."""
    if task in paths:
        return paths[task]
    holders = [g for g in builtin_groups() if task in leaves(g)]
    for group in sorted(holders, key=lambda g: len(leaves(g))):
        if group in paths:
            return paths[group]
    return None


def pooled_stderr(stderrs: list[float], sizes: list[int]) -> float:
    """Standard error of the size-weighted mean of several tasks (see the module docstring)."""
    total = sum(sizes)
    if total - len(sizes) <= 0:
        return float("nan")
    pooled_variance = (sum((n - 1) * (se * se * n) for se, n in zip(stderrs, sizes, strict=True))
                       / (total - len(sizes)))
    return math.sqrt(pooled_variance / total)


def add_group_results(results: dict[str, Any], groups: Iterable[str]) -> None:
    """Add each group's entry to `results` in lm-eval's layout: `results` and `groups` (the scores),
    `group_subtasks` (its members), `versions` and `higher_is_better`."""
    by_task = results["results"]
    sizes = {task: (results.get("n-samples", {}).get(task) or {}).get("effective") for task in by_task}
    for name in groups:
        group = builtin_groups()[name]
        members = leaves(name)
        missing = [t for t in members if t not in by_task or not sizes.get(t)]
        if missing:
            continue  # nothing to aggregate over honestly
        shared = set.intersection(*({k for k in by_task[t] if "," in k and "_stderr," not in k}
                                    for t in members))
        entry: dict[str, Any] = {"alias": group.alias, "name": name,
                                 "sample_len": sum(sizes[t] for t in members)}
        for key in sorted(shared):
            metric, _, filt = key.partition(",")
            n = [sizes[t] for t in members]
            values = [by_task[t][key] for t in members]
            entry[key] = sum(v * k for v, k in zip(values, n, strict=True)) / sum(n)
            stderrs = [by_task[t].get(f"{metric}_stderr,{filt}") for t in members]
            if all(isinstance(se, int | float) for se in stderrs):
                entry[f"{metric}_stderr,{filt}"] = pooled_stderr(stderrs, n)
            else:
                entry[f"{metric}_stderr,{filt}"] = "N/A"
        by_task[name] = entry
        results.setdefault("groups", {})[name] = entry
        results.setdefault("group_subtasks", {})[name] = list(group.members)
        results.setdefault("versions", {})[name] = group.version
        results.setdefault("higher_is_better", {})[name] = {
            k.split(",")[0]: True for k in shared
        }


def display_order(results: dict[str, Any], column: str = "results") -> list[tuple[str, int]]:
    """(name, depth) rows for lm-eval's table: each top-level group followed by its members, depth
    first, alphabetically at each level; then the tasks in no group, alphabetically."""
    present = set(results.get(column, {}))
    subtasks = results.get("group_subtasks", {}) or {}
    rows: list[tuple[str, int]] = []
    seen: set[str] = set()

    def visit(name: str, depth: int) -> None:
        seen.add(name)
        if name in present:
            rows.append((name, depth))
        for child in sorted(subtasks.get(name, [])):
            visit(child, depth + 1)

    children = {c for members in subtasks.values() for c in members}
    for root in sorted(n for n in subtasks if n not in children):
        visit(root, 0)
    rows += [(name, 0) for name in sorted(present - seen)]
    return rows
