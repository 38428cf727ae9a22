"""Answer-extraction filters, with lm-eval's semantics.

A filter pipeline maps the list of responses for one document (one per sample) to a list, and
ends with a step that picks a single answer. Steps:

- `regex`: `re.findall`; no match gives the fallback "[invalid]". `group_select` indexes the
  matches (-1: the last). When the pattern has several groups a match is a tuple and the first
  non-empty group is used ("[invalid]" if all are empty). The result is stripped.
- `take_first`: the first response. `take_first_k`: the first k responses.
- `majority_vote`: the most common response (first seen wins a tie, as `Counter.most_common`).
- `remove_whitespace`: strip each response.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunescope.core.errors import UserError

FALLBACK = "[invalid]"

Step = Callable[[list[Any]], list[Any]]


def regex_extract(text: str, pattern: re.Pattern[str], group_select: int = 0,
                  fallback: str = FALLBACK) -> str:
    """The answer `pattern` finds in `text` (lm-eval's RegexFilter on one response)."""
    if not isinstance(text, str):
        text = ""
    matches = pattern.findall(text)
    if not matches:
        return fallback
    match = matches[group_select]
    if isinstance(match, tuple):
        non_empty = [m for m in match if m]
        match = non_empty[0] if non_empty else fallback
    return match.strip()


def _regex(regex_pattern: str = r"#### (\-?[0-9\.\,]+)", group_select: int = 0,
           fallback: str = FALLBACK) -> Step:
    compiled = re.compile(regex_pattern)
    return lambda resps: [regex_extract(r, compiled, group_select, fallback) for r in resps]


def _take_first() -> Step:
    return lambda resps: resps[0]


def _take_first_k(k: int) -> Step:
    def step(resps: list[Any]) -> list[Any]:
        if len(resps) < k:
            raise UserError(f"take_first_k needs {k} responses per document, got {len(resps)}",
                            where="filter_list")
        return resps[:k]

    return step


def _majority_vote() -> Step:
    return lambda resps: [Counter(resps).most_common(1)[0][0]]


def _remove_whitespace() -> Step:
    return lambda resps: [r.strip() for r in resps]


STEPS: dict[str, Callable[..., Step]] = {
    "regex": _regex,
    "take_first": _take_first,
    "take_first_k": _take_first_k,
    "majority_vote": _majority_vote,
    "remove_whitespace": _remove_whitespace,
}


@dataclass
class FilterPipeline:
    """A named sequence of steps (lm-eval's FilterEnsemble for one document)."""

    name: str
    steps: list[Step]

    def __call__(self, responses: list[Any]) -> Any:
        out: Any = list(responses)
        for step in self.steps:
            out = step(out)
        return out


def build_pipeline(config: dict[str, Any]) -> FilterPipeline:
    steps = []
    for item in config["filter"]:
        kind = item["function"]
        if kind not in STEPS:
            raise UserError(f"unknown filter function '{kind}' (known: {sorted(STEPS)})", where="filter_list")
        steps.append(STEPS[kind](**{k: v for k, v in item.items() if k != "function"}))
    return FilterPipeline(config["name"], steps)


def build_pipelines(filter_list: list[dict[str, Any]]) -> list[FilterPipeline]:
    """The task's pipelines; without any, lm-eval's default "none" = take the first response."""
    if not filter_list:
        return [FilterPipeline("none", [_take_first()])]
    return [build_pipeline(cfg) for cfg in filter_list]
