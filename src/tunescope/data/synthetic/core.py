"""The generator's machinery: the checked step writer, the family registry, shared vocabulary, and the
functions that draw problems from the registered families.

Every calculation is written by `Solution.step`, which evaluates the expression with the same safe
evaluator the analysis uses and refuses anything that is not a non-negative integer. A family that
picks bad parameters therefore fails loudly instead of teaching a model a wrong sum. Families choose
their parameters so that every division is exact.

Only the `random.Random` passed in is used, never the global random state, so a seed fully
determines the problems.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from tunescope.core.arith import evaluate_expression

CALC = "@"  # where a step sentence shows its calculation, e.g. "The pens cost @."
# Numbers a solution may use although the question does not write them as digits, because the
# question says them in words: a perimeter doubles, a dozen is 12, an hour has 60 minutes, a
# percentage is out of 100, and n classes have n-1 breaks between them.
IMPLIED_CONSTANTS = frozenset({1, 2, 12, 60, 100})


class Solution:
    """Collects the worked steps of one answer; each step is checked as it is written."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.value: int | None = None

    def step(self, sentence: str, expr: str, money: bool = False) -> int:
        """Add a step: `sentence` with `CALC` replaced by `expr = <<expr=value>>value`. Returns value."""
        result = evaluate_expression(expr)
        if result is None or result.denominator != 1 or result < 0:
            # A bug in a family's parameter choice, never a user error.
            raise RuntimeError(f"synthetic step {expr!r} is not a non-negative integer: {result}")
        if sentence.count(CALC) != 1:
            raise RuntimeError(f"step sentence needs exactly one {CALC!r}: {sentence!r}")
        value = int(result)
        dollar = "$" if money else ""  # GSM8K writes money as "3*4 = $<<3*4=12>>12"
        self.lines.append(sentence.replace(CALC, f"{expr} = {dollar}<<{expr}={value}>>{value}"))
        self.value = value
        return value

    def answer(self) -> str:
        if len(self.lines) < 2 or self.value is None:
            raise RuntimeError("a synthetic problem needs at least 2 steps")
        return "\n".join([*self.lines, f"#### {self.value}"])


@dataclass(frozen=True)
class Family:
    """A kind of word problem. `build` writes the steps into the solution and returns the question."""

    name: str
    build: Callable[[random.Random, Solution], str]


# In registration order. The random draws depend on this list's order (and on its length), so
# reordering it changes every seed's generated data and the data hashes that runs record.
FAMILIES: list[Family] = []
# The two-step set (`families_two_step`): short problems with small numbers, each solved by two
# operations. Kept apart from `FAMILIES` so that adding it changes no seed's grade-school data.
TWO_STEP_FAMILIES: list[Family] = []


def register_family(name: str, registry: list[Family] = FAMILIES
                    ) -> Callable[[Callable[[random.Random, Solution], str]], Callable]:
    """Decorator: add the decorated `build` function to `registry`
    (`FAMILIES` by default) as the family `name`."""

    def register(build: Callable[[random.Random, Solution], str]) -> Callable:
        registry.append(Family(name, build))
        return build

    return register


# --- vocabulary and helpers shared by the families ----------------------------------------------

_FEMALE = ["Natalia", "Maria", "Aisha", "Mei", "Sofia", "Priya", "Emma", "Fatima", "Yuki", "Olivia",
           "Chloe", "Amara", "Lucia", "Hannah", "Zara", "Ingrid", "Nadia", "Rosa", "Keiko", "Leila"]
_MALE = ["James", "Carlos", "Ahmed", "Kenji", "Liam", "Ravi", "Noah", "Mateo", "Tariq", "Lucas",
         "Samuel", "Diego", "Omar", "Felix", "Hiroshi", "Kwame", "Ivan", "Ethan", "Arjun", "Marco"]

FOODS = ["cookies", "muffins", "pancakes", "brownies", "cupcakes", "waffles"]


@dataclass(frozen=True)
class Person:
    name: str
    he: str
    his: str
    himself: str


def draw_people(rng: random.Random, k: int = 1) -> list[Person]:
    """k people with distinct names and matching pronouns."""
    names = rng.sample([(n, True) for n in _FEMALE] + [(n, False) for n in _MALE], k)
    return [Person(n, "she", "her", "herself") if f else Person(n, "he", "his", "himself") for n, f in names]


def join_with_and(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def divisors_between(n: int, lo: int, hi: int) -> list[int]:
    return [d for d in range(lo, min(hi, n) + 1) if n % d == 0]


def payment_above(total: int) -> int:
    """A round amount someone would hand over for `total`: a $10/$20/$50 bill or whole hundreds."""
    return next(b for b in (10, 20, 50) if b > total) if total < 50 else (total // 100 + 1) * 100


def sum_expression(values: Iterable[int]) -> str:
    return "+".join(str(v) for v in values)


def proper_fraction(rng: random.Random, denominators: tuple[int, ...]) -> tuple[int, int]:
    """A fraction n/d in lowest terms with 0 < n < d and d drawn from `denominators`."""
    d = rng.choice(denominators)
    return rng.choice([n for n in range(1, d) if math.gcd(n, d) == 1]), d


# --- drawing problems -----------------------------------------------------------------------------

def _family_named(name: str) -> Family:
    for fam in FAMILIES + TWO_STEP_FAMILIES:
        if fam.name == name:
            return fam
    raise ValueError(f"unknown synthetic-math family {name!r}; known: "
                     f"{', '.join(f.name for f in FAMILIES + TWO_STEP_FAMILIES)}")


def generate_problem(rng: random.Random, family: Family | str | None = None) -> dict:
    """One problem: `{"question", "answer", "family", "steps"}`, from `family` or a random one."""
    if family is None:
        fam = rng.choice(FAMILIES)
    else:
        fam = family if isinstance(family, Family) else _family_named(family)
    sol = Solution()
    question = fam.build(rng, sol)
    return {"question": question, "answer": sol.answer(), "family": fam.name, "steps": len(sol.lines)}


def _stream(rng: random.Random, families: list[Family]) -> Iterator[dict]:
    """Endless problems; each round uses every family once, in a shuffled order."""
    while True:
        order = list(families)
        rng.shuffle(order)
        for fam in order:
            yield generate_problem(rng, fam)


def _take_unique(stream: Iterator[dict], n: int,
                 exclude: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """The first n problems whose question text is new (not in `exclude`, not seen before)."""
    seen = set(exclude)
    out: list[dict] = []
    rejected = 0
    while len(out) < n:
        problem = next(stream)
        if problem["question"] in seen:
            rejected += 1
            if rejected > 1000 + 10 * n:  # the families cannot produce that many distinct problems
                raise ValueError(f"could not generate {n} distinct synthetic problems")
            continue
        seen.add(problem["question"])
        out.append(problem)
    return out


def family_set(name: str) -> list[Family]:
    """The families of a named set: "grade-school" (`FAMILIES`) or "two-step" (`TWO_STEP_FAMILIES`)."""
    sets = {"grade-school": FAMILIES, "two-step": TWO_STEP_FAMILIES}
    if name not in sets:
        raise ValueError(f"unknown synthetic-math family set {name!r}; known: {', '.join(sets)}")
    return sets[name]


def generate_problems(n: int, seed: int, families: str = "grade-school") -> list[dict]:
    """n distinct problems from the family set `families`, fully determined by `seed`; every family of
    the set appears once n >= its number of families."""
    if n < 0:
        raise ValueError("n must be >= 0")
    return _take_unique(_stream(random.Random(seed), family_set(families)), n)


def generate_heldout(n: int, seed: int, exclude: set[str] | frozenset[str] = frozenset(),
                     families: str = "grade-school") -> list[dict]:
    """n distinct problems from `seed`'s stream whose questions are not in `exclude` (the training set).

    Problems are drawn until there are n of them, so the held-out set always has the size asked
    for; a ValueError says when the families cannot produce that many new questions."""
    if n < 0:
        raise ValueError("n must be >= 0")
    return _take_unique(_stream(random.Random(seed), family_set(families)), n, exclude=exclude)
