"""The two-step family set: short word problems with small numbers, each solved by exactly two
operations, such as `Liam has 7 apples. He buys 5 more and gives 3 to a friend.`

Why a second set: the grade-school families take two to six steps with two- and three-digit numbers,
which a model of about a hundred million parameters rarely solves before or after a short fine-tune.
On these problems such a model can learn within minutes on a CPU, so a demo can show an effect
that is larger than its noise. The set registers into `TWO_STEP_FAMILIES`, never into `FAMILIES`, so
the grade-school data of every seed stays as it was.
"""

from __future__ import annotations

import random

from tunescope.data.synthetic.core import (
    FOODS,
    TWO_STEP_FAMILIES,
    Solution,
    draw_people,
    register_family,
)

_THINGS = ["apples", "marbles", "stickers", "pencils", "shells", "cards", "balloons", "books"]
_PRICED = [("pen", "pens"), ("apple", "apples"), ("notebook", "notebooks"), ("toy car", "toy cars"),
           ("cupcake", "cupcakes"), ("ball", "balls"), ("comic", "comics")]
_EXTRAS = ["a bag", "a hat", "a book", "a lunch box", "a poster"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _two_step(name: str):
    return register_family(name, registry=TWO_STEP_FAMILIES)


@_two_step("buy_then_give")
def _buy_then_give(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    thing = rng.choice(_THINGS)
    have, bought = rng.randint(3, 30), rng.randint(2, 20)
    total = sol.step(rng.choice([f"After buying, {p.he} has @ {thing}.", f"{p.name} then has @ {thing}."]),
                     f"{have}+{bought}")
    given = rng.randint(1, total - 1)
    sol.step(rng.choice([f"{p.he.capitalize()} has @ {thing} left.", f"So {p.name} has @ {thing} now."]),
             f"{total}-{given}")
    return rng.choice([
        f"{p.name} has {have} {thing}. {p.he.capitalize()} buys {bought} more and then gives {given} to a "
        f"friend. How many {thing} does {p.he} have now?",
        f"{p.name} had {have} {thing} and got {bought} more. Then {p.he} gave away {given}. "
        f"How many {thing} does {p.name} have left?"])


@_two_step("rows_minus_taken")
def _rows_minus_taken(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    food = rng.choice(FOODS)
    rows, per_row = rng.randint(2, 9), rng.randint(2, 9)
    total = sol.step(rng.choice([f"The tray holds @ {food}.", f"There are @ {food} at first."]),
                     f"{rows}*{per_row}")
    eaten = rng.randint(1, total - 1)
    sol.step(rng.choice([f"@ {food} are left.", f"So there are @ {food} left."]), f"{total}-{eaten}")
    return (f"{p.name} puts {rows} rows of {per_row} {food} on a tray. {p.his.capitalize()} family eats "
            f"{eaten} of them. How many {food} are left on the tray?")


@_two_step("three_day_total")
def _three_day_total(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    days = rng.sample(_DAYS, 3)
    days.sort(key=_DAYS.index)
    a, b, c = (rng.randint(2, 30) for _ in range(3))
    verb, noun = rng.choice([("reads", "pages"), ("runs", "laps"), ("writes", "lines"), ("picks", "flowers")])
    first = sol.step(f"On {days[0]} and {days[1]} {p.he} {verb} @ {noun}.", f"{a}+{b}")
    sol.step(rng.choice([f"In all {p.he} {verb} @ {noun}.", f"Altogether that is @ {noun}."]), f"{first}+{c}")
    return (f"{p.name} {verb} {a} {noun} on {days[0]}, {b} on {days[1]} and {c} on {days[2]}. "
            f"How many {noun} does {p.he} {verb.removesuffix('s')} in all?")


@_two_step("items_plus_extra")
def _items_plus_extra(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    single, plural = rng.choice(_PRICED)
    count, price, extra_price = rng.randint(2, 9), rng.randint(1, 9), rng.randint(2, 20)
    extra = rng.choice(_EXTRAS)
    items = sol.step(f"The {plural} cost @.", f"{count}*{price}", money=True)
    sol.step(rng.choice([f"{p.he.capitalize()} spends @ in all.", "Altogether that is @."]),
             f"{items}+{extra_price}", money=True)
    return (f"{p.name} buys {count} {plural} for ${price} each and {extra} for ${extra_price}. "
            f"How much does {p.he} spend in all?")


@_two_step("share_after_adding")
def _share_after_adding(rng: random.Random, sol: Solution) -> str:
    a, b = draw_people(rng, 2)
    thing = rng.choice(_THINGS)
    friends = rng.randint(2, 6)
    total = friends * rng.randint(2, 10)
    have = rng.randint(1, total - 1)
    sol.step(f"Together they have @ {thing}.", f"{have}+{total - have}")
    sol.step(rng.choice([f"Each friend gets @ {thing}.", f"So each one gets @ {thing}."]),
             f"{total}/{friends}")
    return (f"{a.name} has {have} {thing} and {b.name} has {total - have}. They share all of them equally "
            f"among {friends} friends. How many {thing} does each friend get?")


@_two_step("spend_twice")
def _spend_twice(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    money = rng.choice([10, 20, 30, 40, 50])
    first = rng.randint(1, money - 2)
    second = rng.randint(1, money - first - 1)
    rest = sol.step(f"After lunch {p.he} has @.", f"{money}-{first}", money=True)
    sol.step(rng.choice([f"{p.he.capitalize()} has @ left.", f"So {p.name} has @ left."]), f"{rest}-{second}",
             money=True)
    return (f"{p.name} has ${money}. {p.he.capitalize()} spends ${first} on lunch and ${second} on a book. "
            f"How much money does {p.he} have left?")


@_two_step("bags_plus_loose")
def _bags_plus_loose(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    thing = rng.choice(_THINGS)
    bags, per_bag, loose = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 15)
    in_bags = sol.step(f"The bags hold @ {thing}.", f"{bags}*{per_bag}")
    sol.step(rng.choice([f"{p.he.capitalize()} has @ {thing} in all.", f"That makes @ {thing}."]),
             f"{in_bags}+{loose}")
    return (f"{p.name} has {bags} bags with {per_bag} {thing} in each bag and {loose} more {thing} on the "
            f"table. How many {thing} does {p.he} have?")


@_two_step("twice_as_many_plus")
def _twice_as_many_plus(rng: random.Random, sol: Solution) -> str:
    a, b = draw_people(rng, 2)
    thing = rng.choice(_THINGS)
    have, more = rng.randint(2, 20), rng.randint(1, 10)
    double = sol.step(f"Twice as many as {a.name} is @ {thing}.", f"{have}*2")
    sol.step(f"{b.name} has @ {thing}.", f"{double}+{more}")
    return (f"{a.name} has {have} {thing}. {b.name} has {more} more than twice as many as {a.name}. "
            f"How many {thing} does {b.name} have?")


@_two_step("groups_from_total")
def _groups_from_total(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    thing = rng.choice(_THINGS)
    kept = rng.randint(1, 9)
    boxes = rng.randint(2, 6)
    rest = boxes * rng.randint(2, 9)
    total = rest + kept
    left = sol.step(f"After keeping {kept}, {p.he} has @ {thing} to pack.", f"{total}-{kept}")
    sol.step(rng.choice([f"Each box gets @ {thing}.", f"So @ {thing} go in each box."]), f"{left}/{boxes}")
    return (f"{p.name} has {total} {thing}. {p.he.capitalize()} keeps {kept} and packs the rest equally into "
            f"{boxes} boxes. How many {thing} go in each box?")
