"""Tests for the synthetic-math generator: format, arithmetic consistency, determinism, splits."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from tunescope.core.arith import evaluate_expression, parse_annotations
from tunescope.data.synthetic import (
    FAMILIES,
    IMPLIED_CONSTANTS,
    TWO_STEP_FAMILIES,
    generate_heldout,
    generate_problem,
    generate_problems,
)

# A step line: text, "expr = ", optional "$", the annotation, then the value it announces.
_STEP_RE = re.compile(r"(?P<shown>[\d+\-*/()]+) = \$?<<(?P<expr>[^<>=]+)=(?P<result>[^<>]+)>>(?P<after>\d+)")


@pytest.fixture(scope="module")
def many() -> list[dict]:
    return generate_problems(2000, seed=1234)


def _check_problem(problem: dict) -> None:
    """Every structural and arithmetic promise of one generated problem."""
    assert set(problem) == {"question", "answer", "family", "steps"}
    question, answer = problem["question"], problem["answer"]
    assert question.strip() == question and question.endswith("?")
    lines = answer.split("\n")
    steps, final = lines[:-1], lines[-1]
    assert 2 <= problem["steps"] <= 6
    assert len(steps) == problem["steps"]
    assert re.fullmatch(r"#### \d+", final), final

    results: list[int] = []
    for line in steps:
        annotations = parse_annotations(line)
        assert len(annotations) == 1, line
        expr, result = annotations[0]
        assert re.fullmatch(r"\d+", result), line  # non-negative integer
        assert evaluate_expression(expr) == Fraction(int(result)), line
        match = _STEP_RE.search(line)
        assert match, line
        # The value follows the annotation and the same expression is shown before it.
        assert match.group("after") == result and match.group("shown") == expr, line
        assert line.endswith("."), line
        results.append(int(result))
    assert int(final.removeprefix("#### ")) == results[-1]

    # Numbers in the question, as written there (digits only; no thousands separators are used).
    given = {int(n) for n in re.findall(r"\d+", question)}
    earlier: set[int] = set()
    for line, value in zip(steps, results, strict=True):
        expr = parse_annotations(line)[0][0]
        for operand in map(int, re.findall(r"\d+", expr)):
            assert operand in given | earlier | IMPLIED_CONSTANTS, (operand, question, line)
        earlier.add(value)


def test_at_least_twenty_families_with_unique_names() -> None:
    names = [f.name for f in FAMILIES]
    assert len(names) >= 20
    assert len(set(names)) == len(names)


def test_family_order_and_drawn_problems_are_unchanged() -> None:
    """The registration order decides the random draws, so reordering the families (or the imports of
    their modules) would silently change every seed's data and the data hashes that runs record. A
    change meant to alter the data (a new family, say) updates this test."""
    assert [f.name for f in FAMILIES] == [
        "shopping_change", "unit_rate", "ages", "fraction_of_group", "percent_discount", "travel_distance",
        "sharing_equally", "garden_fence", "savings_weeks", "recipe_scaling", "hourly_wages", "dozens",
        "reading_pages", "fuel_cost", "store_inventory", "ticket_prices", "garden_harvest", "plant_growth",
        "basketball_points", "school_schedule", "comparison", "test_average", "coin_counting",
        "bake_sale_profit", "tank_filling", "running_laps"]
    digest = hashlib.sha256(json.dumps(generate_problems(200, seed=0), sort_keys=True).encode()).hexdigest()
    assert digest == "ba189db15e1a814a05cc71940f80151336672eec4ec7da9816a4ed0d75862fba"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_family_generates_valid_problems(family) -> None:
    rng = random.Random(f"family-{family.name}")
    problems = [generate_problem(rng, family) for _ in range(40)]
    for problem in problems:
        assert problem["family"] == family.name
        _check_problem(problem)
    # Parameters and wording vary: 40 draws are not a handful of repeats.
    assert len({p["question"] for p in problems}) >= 38


def test_generate_problem_by_name_and_random_family() -> None:
    rng = random.Random(0)
    assert generate_problem(rng, FAMILIES[3].name)["family"] == FAMILIES[3].name
    assert generate_problem(rng)["family"] in {f.name for f in FAMILIES}
    with pytest.raises(ValueError, match="unknown"):
        generate_problem(rng, "no-such-family")


def test_two_thousand_problems_are_all_consistent(many: list[dict]) -> None:
    assert len(many) == 2000
    for problem in many:
        _check_problem(problem)


def test_step_counts_span_the_range(many: list[dict]) -> None:
    counts = Counter(p["steps"] for p in many)
    assert set(counts) <= {2, 3, 4, 5, 6}
    assert {2, 3, 4, 5, 6} <= set(counts)


def test_families_vary_their_step_counts(many: list[dict]) -> None:
    per_family: dict[str, set[int]] = {}
    for p in many:
        per_family.setdefault(p["family"], set()).add(p["steps"])
    varied = [name for name, steps in per_family.items() if len(steps) > 1]
    assert len(varied) >= len(FAMILIES) // 2


def test_deterministic_by_seed() -> None:
    assert generate_problems(60, seed=7) == generate_problems(60, seed=7)


def test_no_global_random_state() -> None:
    random.seed(1)
    first = generate_problems(30, seed=3)
    random.seed(2)
    state = random.getstate()
    second = generate_problems(30, seed=3)
    assert first == second
    assert random.getstate() == state  # the generator did not draw from the global stream


def test_different_seeds_differ() -> None:
    a = {p["question"] for p in generate_problems(50, seed=1)}
    b = {p["question"] for p in generate_problems(50, seed=2)}
    assert a != b
    assert len(a & b) <= 1


def test_every_family_appears_once_n_reaches_family_count() -> None:
    k = len(FAMILIES)
    for seed in (0, 1, 2):
        assert {p["family"] for p in generate_problems(k, seed=seed)} == {f.name for f in FAMILIES}
    counts = Counter(p["family"] for p in generate_problems(3 * k, seed=5))
    assert set(counts.values()) == {3}  # balanced rounds


def test_small_n_and_prefix_stability() -> None:
    assert generate_problems(0, seed=1) == []
    assert generate_problems(5, seed=9) == generate_problems(40, seed=9)[:5]
    with pytest.raises(ValueError):
        generate_problems(-1, seed=0)


def test_questions_are_unique(many: list[dict]) -> None:
    assert len({p["question"] for p in many}) == len(many)


def test_heldout_is_disjoint_from_training_and_has_the_size_asked_for() -> None:
    train = generate_problems(300, seed=11)
    seen = {p["question"] for p in train}
    heldout = generate_heldout(100, seed=11, exclude=seen)
    # The same seed draws the training problems first: every one of them is skipped, none is short.
    assert len(heldout) == 100 and len({p["question"] for p in heldout}) == 100
    assert not seen & {p["question"] for p in heldout}
    for problem in heldout[:50]:
        _check_problem(problem)


def test_heldout_is_the_stream_minus_training_in_order() -> None:
    stream = generate_problems(60, seed=4)
    exclude = {p["question"] for p in stream[::2]}
    assert generate_heldout(30, seed=4, exclude=exclude) == stream[1::2]
    assert generate_heldout(30, seed=4) == stream[:30]
    with pytest.raises(ValueError):
        generate_heldout(-1, seed=0)


def test_answer_format_matches_gsm8k_example() -> None:
    problem = generate_problems(1, seed=0)[0]
    first_line = problem["answer"].split("\n")[0]
    # e.g. "Natalia sold 48/2 = <<48/2=24>>24 clips in May."
    assert re.search(r"\S+ = \$?<<[^=<>]+=\d+>>\d+", first_line)


# --- the two-step set ------------------------------------------------------------------------------

@pytest.mark.parametrize("family", TWO_STEP_FAMILIES, ids=lambda f: f.name)
def test_each_two_step_family_generates_valid_two_step_problems(family) -> None:
    rng = random.Random(f"two-step-{family.name}")
    problems = [generate_problem(rng, family.name) for _ in range(40)]
    for problem in problems:
        assert problem["family"] == family.name and problem["steps"] == 2
        _check_problem(problem)
        # Small numbers: nothing in the question or the answer above 200.
        assert max(map(int, re.findall(r"\d+", problem["question"] + problem["answer"]))) <= 200
    assert len({p["question"] for p in problems}) >= 36


def test_two_step_set_is_its_own_stream_and_leaves_grade_school_draws_alone() -> None:
    names = {f.name for f in TWO_STEP_FAMILIES}
    assert len(names) == len(TWO_STEP_FAMILIES) >= 6 and not names & {f.name for f in FAMILIES}
    drawn = generate_problems(4 * len(TWO_STEP_FAMILIES), seed=3, families="two-step")
    assert set(Counter(p["family"] for p in drawn).values()) == {4}
    assert drawn == generate_problems(len(drawn), seed=3, families="two-step")
    assert generate_problems(30, seed=3, families="grade-school") == generate_problems(30, seed=3)
    with pytest.raises(ValueError, match="unknown synthetic-math family set 'easy'"):
        generate_problems(3, seed=3, families="easy")


def test_two_step_heldout_is_disjoint_from_two_step_training() -> None:
    train = generate_problems(400, seed=1234, families="two-step")
    seen = {p["question"] for p in train}
    heldout = generate_heldout(128, seed=1234 + 1_000_003, exclude=seen, families="two-step")
    assert len(heldout) == 128 and not seen & {p["question"] for p in heldout}
    assert {p["family"] for p in heldout} == {f.name for f in TWO_STEP_FAMILIES}
