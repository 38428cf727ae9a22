"""Task-accuracy verdicts on built curves: each of improving, flat, falling and inconclusive, and the
short run whose task went 0.0% → 3.1% on 32 items."""

from __future__ import annotations

import pytest

from tunescope.analysis import task_curves as tc

ALPHA, MARGIN = 0.05, 2.0


def curve(points: dict[int, list[int]]) -> tuple[dict, tc.Items]:
    """A series of the target task from per-step item outcomes (1 = right), and the items reader."""
    steps = sorted(points)
    s = {"task": "heldout", "metric": "exact_match,strict-match", "label": "exact match (strict-match)",
         "is_target": True, "steps": steps, "values": [sum(points[x]) / len(points[x]) for x in steps],
         "stderrs": [None] * len(steps), "n": [len(points[x]) for x in steps]}

    def items(step: int, task: str) -> list[dict]:
        return [{"doc_id": i, "metrics": {"exact_match,strict-match": v}} for i, v in enumerate(points[step])]

    return s, items


def right(n: int, first: int) -> list[int]:
    """n items, the first ``first`` of them right."""
    return [1] * first + [0] * (n - first)


@pytest.mark.parametrize(("last", "outcome", "helps"), [
    (right(200, 140), "improving", "yes"),     # 100 → 140 of 200: 40 gained, none lost
    (right(200, 60), "falling", "no"),         # 100 → 60 of 200
    (right(200, 100), "flat", "no"),           # the same 200 outcomes: the 90% CI is within ±2 points
    (right(200, 103), "inconclusive", "inconclusive"),  # 3 gained: neither significant nor within ±2 points
])
def test_end_of_training_outcomes(last, outcome, helps):
    s, items = curve({0: right(200, 20), 10: right(200, 100), 20: last})
    v = tc.further_training(s, items, tail_fraction=0.5, alpha=ALPHA, margin_points=MARGIN)
    assert v["outcome"] == outcome and v["further_training_would_likely_help"] == helps
    assert v["from_step"] == 10 and v["to_step"] == 20
    assert v["summary"].startswith(f"heldout exact match (strict-match) at the end of training: {outcome} — ")
    assert "CI of the change" in v["summary"] and "McNemar" in v["summary"]


def test_flat_needs_the_whole_interval_inside_the_margin():
    s, items = curve({0: right(200, 100), 10: right(200, 100)})
    test = tc.paired_steps(s, 0, 10, items)
    low, high = tc.change_interval(test, ALPHA)
    assert -MARGIN < low < 0 < high < MARGIN
    # The same unchanged outcomes on 32 items: the interval is wider than ±2 points, so not flat.
    small, small_items = curve({0: right(32, 10), 10: right(32, 10)})
    assert tc.trend(small, 0, 10, small_items, ALPHA, MARGIN)["outcome"] == "inconclusive"
    assert tc.trend(small, 0, 10, small_items, ALPHA, 20.0)["outcome"] == "flat"


def test_the_short_run_0_to_3_percent_on_32_items_is_inconclusive():
    # Steps 0, 9 and 18 at 0%, step 27 at 3.1% (1 of 32): one item gained, McNemar exact p = 1.
    s, items = curve({0: right(32, 0), 9: right(32, 0), 18: right(32, 0), 27: right(32, 1)})
    v = tc.further_training(s, items, tail_fraction=0.15, alpha=ALPHA, margin_points=MARGIN)
    assert v["outcome"] == "inconclusive" and v["further_training_would_likely_help"] == "inconclusive"
    assert v["summary"].startswith("heldout exact match (strict-match) at the end of training: "
                                   "inconclusive — 0.0% at step 18 → 3.1% at step 27 (+3.1 points; "
                                   "McNemar exact p=1.000, 0 items lost and 1 gained of n=32)")
    assert " no " not in v["summary"] and "yes" not in v["summary"]
    assert tc.overfitting(s, items, ALPHA, MARGIN)["summary"].endswith("so there is no fall to test")


@pytest.mark.parametrize(("last", "outcome", "over"), [
    (right(200, 60), "falling", True),
    (right(200, 100), "flat", False),
    (right(200, 97), "inconclusive", None),
])
def test_since_the_best_point_outcomes(last, outcome, over):
    s, items = curve({0: right(200, 20), 10: right(200, 100), 20: last})
    v = tc.overfitting(s, items, ALPHA, MARGIN)
    assert v["best_step"] == 10 and v["outcome"] == outcome and v["overfitting"] is over
    assert v["summary"].startswith(f"heldout exact match (strict-match) since its best point: {outcome} — ")
