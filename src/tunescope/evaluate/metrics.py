"""Per-sample metrics and their aggregation, as lm-eval computes them.

- exact_match: both strings pass through `regexes_to_ignore` (each `re.sub(.., "")` in order), then
  optional lower-casing / punctuation and digit removal, then equality.
- acc / acc_norm: argmax of the summed log-likelihoods, raw or divided by each choice's length in
  characters (first index wins ties, as numpy's argmax).
- aggregation: the mean; standard error = sample standard deviation (ddof=1) / sqrt(n).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence


def exact_match(
    prediction: str,
    reference: str,
    *,
    regexes_to_ignore: Sequence[str] | None = None,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
    ignore_numbers: bool = False,
) -> int:
    pred, ref = str(prediction), str(reference)
    for pattern in regexes_to_ignore or ():
        pred, ref = re.sub(pattern, "", pred), re.sub(pattern, "", ref)
    if ignore_case:
        pred, ref = pred.lower(), ref.lower()
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        pred, ref = pred.translate(table), ref.translate(table)
    if ignore_numbers:
        table = str.maketrans("", "", string.digits)
        pred, ref = pred.translate(table), ref.translate(table)
    return int(pred == ref)


def argmax(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def choice_metrics(loglikelihoods: Sequence[float], choices: Sequence[str], gold: int) -> dict[str, int]:
    """acc and acc_norm for one multiple-choice document."""
    norm = [ll / float(len(c)) for ll, c in zip(loglikelihoods, choices, strict=True)]
    return {"acc": int(argmax(loglikelihoods) == gold), "acc_norm": int(argmax(norm) == gold)}


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def stderr(values: Sequence[float]) -> float | str:
    """Standard error of the mean; "N/A" for fewer than two values (as lm-eval)."""
    n = len(values)
    if n < 2:
        return "N/A"
    mu = mean(values)
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)
