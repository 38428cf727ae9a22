"""The built-in `synthetic-math` source: grade-school word problems in GSM8K's exact format.

Why a generator: it gives an offline, licence-free, reproducible data set whose arithmetic is known
to be right, so a demo or a test can fine-tune and evaluate without the hub. Each answer is a list of
worked steps such as `Natalia sold 48/2 = <<48/2=24>>24 clips in May.` and a final line `#### 72`.

Every calculation is written by `_Solution.step`, which evaluates the expression with the same safe
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

from tunescope.arith import evaluate_expression

CALC = "@"  # where a step sentence shows its calculation, e.g. "The pens cost @."
# Numbers a solution may use although the question does not write them as digits, because the
# question says them in words: a perimeter doubles, a dozen is 12, an hour has 60 minutes, a
# percentage is out of 100, and n classes have n-1 breaks between them.
IMPLIED_CONSTANTS = frozenset({1, 2, 12, 60, 100})


class _Solution:
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
    build: Callable[[random.Random, _Solution], str]


FAMILIES: list[Family] = []


def _family(name: str) -> Callable[[Callable[[random.Random, _Solution], str]], Callable]:
    def register(build: Callable[[random.Random, _Solution], str]) -> Callable:
        FAMILIES.append(Family(name, build))
        return build

    return register


# --- vocabulary ---------------------------------------------------------------------------------

_FEMALE = ["Natalia", "Maria", "Aisha", "Mei", "Sofia", "Priya", "Emma", "Fatima", "Yuki", "Olivia",
           "Chloe", "Amara", "Lucia", "Hannah", "Zara", "Ingrid", "Nadia", "Rosa", "Keiko", "Leila"]
_MALE = ["James", "Carlos", "Ahmed", "Kenji", "Liam", "Ravi", "Noah", "Mateo", "Tariq", "Lucas",
         "Samuel", "Diego", "Omar", "Felix", "Hiroshi", "Kwame", "Ivan", "Ethan", "Arjun", "Marco"]


@dataclass(frozen=True)
class _Person:
    name: str
    he: str
    his: str
    himself: str


def _people(rng: random.Random, k: int = 1) -> list[_Person]:
    """k people with distinct names and matching pronouns."""
    names = rng.sample([(n, True) for n in _FEMALE] + [(n, False) for n in _MALE], k)
    return [_Person(n, "she", "her", "herself") if f else _Person(n, "he", "his", "himself") for n, f in names]


def _join(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _divisors(n: int, lo: int, hi: int) -> list[int]:
    return [d for d in range(lo, min(hi, n) + 1) if n % d == 0]


def _payment_above(total: int) -> int:
    """A round amount someone would hand over for `total`: a $10/$20/$50 bill or whole hundreds."""
    return next(b for b in (10, 20, 50) if b > total) if total < 50 else (total // 100 + 1) * 100


def _sum_expr(values: Iterable[int]) -> str:
    return "+".join(str(v) for v in values)


# --- the families ---------------------------------------------------------------------------------
# Each family draws its parameters so that every intermediate value is a non-negative integer, and
# varies its wording and its number of steps so that no single sentence can be memorised.

_GOODS = [("notebook", "notebooks"), ("pencil", "pencils"), ("apple", "apples"), ("candle", "candles"),
          ("comic book", "comic books"), ("muffin", "muffins"), ("toy car", "toy cars"),
          ("bracelet", "bracelets"), ("water bottle", "water bottles"), ("puzzle", "puzzles"),
          ("sandwich", "sandwiches"), ("box of crayons", "boxes of crayons"), ("plant pot", "plant pots"),
          ("pair of socks", "pairs of socks"), ("mango", "mangoes"), ("scarf", "scarves")]


@_family("shopping_change")
def _shopping_change(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    goods = [(rng.randint(2, 9), rng.randint(1, 12), plural) for _, plural in rng.sample(_GOODS, rng.randint(1, 3))]
    costs = [sol.step(rng.choice([f"The {plural} cost @.", f"{p.name} spends @ on {plural}."]), f"{q}*{price}",
                      money=True) for q, price, plural in goods]
    total = costs[0]
    if len(costs) > 1:
        total = sol.step(rng.choice([f"In total {p.he} spends @.", "Altogether the items cost @."]),
                         _sum_expr(costs), money=True)
    bill = _payment_above(total)
    sol.step(rng.choice([f"{p.name} gets @ in change.", f"So {p.he} receives @ back."]), f"{bill}-{total}",
             money=True)
    bought = _join([f"{q} {plural} for ${price} each" for q, price, plural in goods])
    opening = rng.choice([f"{p.name} buys {bought}.", f"At the market, {p.name} buys {bought}."])
    ask = rng.choice([f"{p.he.capitalize()} pays with ${bill}. How much change does {p.he} get?",
                      f"If {p.he} hands the cashier ${bill}, how much change should {p.he} receive?"])
    return f"{opening} {ask}"


@_family("unit_rate")
def _unit_rate(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    single, plural = rng.choice(_GOODS)
    unit, n1 = rng.randint(2, 15), rng.randint(2, 10)
    n2 = rng.choice([n for n in range(2, 25) if n != n1])
    each = sol.step(rng.choice([f"Each {single} costs @.", f"One {single} costs @."]), f"{unit * n1}/{n1}",
                    money=True)
    cost = sol.step(f"{n2} {plural} cost @.", f"{each}*{n2}", money=True)
    price_fact = f"{n1} {plural} cost ${unit * n1}"
    if rng.random() < 0.5:
        return rng.choice([f"If {price_fact}, how much do {n2} {plural} cost?",
                           f"At {p.name}'s shop, {price_fact}. How much would {n2} {plural} cost?"])
    budget = cost + rng.randint(1, 60)
    sol.step(f"{p.name} has @ left.", f"{budget}-{cost}", money=True)
    return (f"{p.name} has ${budget} and wants to buy {n2} {plural}. If {price_fact}, how much money will "
            f"{p.he} have left?")


@_family("ages")
def _ages(rng: random.Random, sol: _Solution) -> str:
    a, b, c = _people(rng, 3)
    age_a, k, m = rng.randint(3, 15), rng.randint(2, 10), rng.randint(2, 3)
    age_b = sol.step(f"{b.name} is @ years old.", f"{age_a}+{k}")
    age_c = sol.step(f"{c.name} is @ years old.", f"{age_b}*{m}")
    facts = (f"{a.name} is {age_a} years old. {b.name} is {k} years older than {a.name}. "
             f"{c.name} is {m} times as old as {b.name}.")
    variant = rng.randrange(4)
    if variant == 0:
        return f"{facts} How old is {c.name}?"
    if variant == 1:
        sol.step("Together they are @ years old.", _sum_expr([age_a, age_b, age_c]))
        return f"{facts} What is the sum of their ages?"
    if variant == 2:
        years = rng.randint(2, 20)
        sol.step(f"In {years} years {c.name} will be @ years old.", f"{age_c}+{years}")
        return f"{facts} How old will {c.name} be in {years} years?"
    sol.step(f"{c.name} is @ years older than {a.name}.", f"{age_c}-{age_a}")
    return f"{facts} How many years older than {a.name} is {c.name}?"


_GROUPS = [  # (the whole, the part, a trait of some of the part, its negation)
    ("students in {name}'s class", "girls", "wear glasses", "do not wear glasses"),
    ("animals on {name}'s farm", "chickens", "are brown", "are not brown"),
    ("books on {name}'s shelf", "novels", "are hardcovers", "are paperbacks"),
    ("marbles in {name}'s jar", "glass marbles", "are blue", "are not blue"),
    ("people at {name}'s party", "children", "wear hats", "do not wear hats"),
    ("fish in {name}'s pond", "goldfish", "have spots", "have no spots"),
    ("cars in the parking lot at {name}'s work", "sedans", "are red", "are not red"),
]


def _proper_fraction(rng: random.Random, denominators: tuple[int, ...]) -> tuple[int, int]:
    d = rng.choice(denominators)
    return rng.choice([n for n in range(1, d) if math.gcd(n, d) == 1]), d


@_family("fraction_of_group")
def _fraction_of_group(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    whole, part, trait, not_trait = rng.choice(_GROUPS)
    n1, d1 = _proper_fraction(rng, (2, 3, 4, 5, 6, 8, 10))
    n2, d2 = _proper_fraction(rng, (2, 3, 4, 5))
    total = d1 * d2 * rng.randint(1, 4)  # both fractions then give whole numbers
    facts = (f"There are {total} {whole.format(name=p.name)}. {n1}/{d1} of them are {part}, and "
             f"{n2}/{d2} of the {part} {trait}.")
    count = sol.step(f"There are @ {part}.", f"{total}*{n1}/{d1}")
    variant = rng.randrange(3)
    if variant == 0:
        sol.step(f"The others, @, are not {part}.", f"{total}-{count}")
        return f"{facts} How many are not {part}?"
    with_trait = sol.step(f"Of them, @ {trait}.", f"{count}*{n2}/{d2}")
    if variant == 1:
        return f"{facts} How many {part} {trait}?"
    sol.step(f"So @ {part} {not_trait}.", f"{count}-{with_trait}")
    return f"{facts} How many {part} {not_trait}?"


_CLOTHES = [("jacket", "jackets"), ("pair of shoes", "pairs of shoes"), ("backpack", "backpacks"),
            ("lamp", "lamps"), ("board game", "board games"), ("sweater", "sweaters"), ("watch", "watches")]


@_family("percent_discount")
def _percent_discount(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    single, plural = rng.choice(_CLOTHES)
    pct = rng.choice([10, 15, 20, 25, 30, 40, 50, 75])
    grain = 100 // math.gcd(pct, 100)  # price must be a multiple of this for a whole-dollar discount
    price = grain * rng.randint(max(1, 10 // grain), 300 // grain)
    discount = sol.step(rng.choice(["The discount is @.", "The sale takes off @."]), f"{price}*{pct}/100",
                        money=True)
    sale = sol.step(f"So one {single} costs @ on sale.", f"{price}-{discount}", money=True)
    qty = rng.randint(1, 4)
    intro = rng.choice([f"A {single} normally costs ${price}. This week the store takes {pct}% off.",
                        f"{p.name} sees a {single} priced at ${price} with a {pct}% discount."])
    if qty == 1:
        return f"{intro} How much does {p.name} pay for it?"
    total = sol.step(f"{qty} {plural} cost @.", f"{sale}*{qty}", money=True)
    if rng.random() < 0.5:
        return f"{intro} How much does {p.name} pay for {qty} {plural}?"
    bill = _payment_above(total)
    sol.step(f"{p.name} gets @ in change.", f"{bill}-{total}", money=True)
    return f"{intro} {p.name} buys {qty} {plural} and pays with ${bill}. How much change does {p.he} get?"


@_family("travel_distance")
def _travel_distance(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    unit = rng.choice(["miles", "kilometers"])
    if rng.random() < 0.35:  # time from distance and speed, in minutes
        vehicle = rng.choice(["A train", "A bus", "A ferry", f"{p.name}'s car"])
        speed, hours = rng.randint(3, 16) * 5, rng.randint(2, 6)
        h = sol.step("The trip takes @ hours.", f"{speed * hours}/{speed}")
        sol.step("That is @ minutes.", f"{h}*60")
        return f"{vehicle} travels {speed * hours} {unit} at {speed} {unit} per hour. How many minutes does the trip take?"
    verb = rng.choice(["drives", "rides", "cycles"])
    s1, h1, s2, h2 = rng.randint(4, 14) * 5, rng.randint(1, 5), rng.randint(4, 14) * 5, rng.randint(1, 5)
    d1 = sol.step(f"First {p.he} covers @ {unit}.", f"{s1}*{h1}")
    d2 = sol.step(f"Then {p.he} covers @ {unit}.", f"{s2}*{h2}")
    total = sol.step(f"In total {p.he} travels @ {unit}.", f"{d1}+{d2}")
    legs = (f"{p.name} {verb} at {s1} {unit} per hour for {h1} hours, then at {s2} {unit} per hour for "
            f"{h2} hours.")
    if rng.random() < 0.5:
        return f"{legs} How many {unit} does {p.he} travel in total?"
    trip = total + rng.randint(5, 150)
    sol.step(f"{p.he.capitalize()} still has @ {unit} to go.", f"{trip}-{total}")
    return f"{p.name}'s trip is {trip} {unit} long. {legs} How many {unit} are left?"


_TREATS = ["candies", "stickers", "crayons", "cookies", "marbles", "trading cards", "seashells", "erasers"]


@_family("sharing_equally")
def _sharing_equally(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    item = rng.choice(_TREATS)
    container = rng.choice(["bags", "boxes", "jars", "packs"])
    bags, per = rng.randint(2, 12), rng.randint(3, 25)
    total = sol.step(f"{p.name} has @ {item}.", f"{bags}*{per}")
    have = f"{p.name} has {bags} {container} with {per} {item} in each."
    if rng.random() < 0.5:
        friends = rng.choice(_divisors(total, 2, 12))
        sol.step(f"Each friend gets @ {item}.", f"{total}/{friends}")
        return f"{have} {p.he.capitalize()} shares them equally among {friends} friends. How many {item} does each friend get?"
    friends = rng.randint(2, min(9, total // 2))
    keep = total % friends or friends
    rest = sol.step(f"After keeping {keep}, {p.he} has @ {item} to share.", f"{total}-{keep}")
    sol.step(f"Each friend gets @ {item}.", f"{rest}/{friends}")
    return (f"{have} {p.he.capitalize()} keeps {keep} {item} for {p.himself} and shares the rest equally among "
            f"{friends} friends. How many {item} does each friend get?")


@_family("garden_fence")
def _garden_fence(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    length, width = rng.randint(4, 30), rng.randint(3, 20)
    plot = rng.choice(["vegetable garden", "backyard", "flower bed", "playground"])
    intro = f"{p.name}'s rectangular {plot} is {length} meters long and {width} meters wide."
    fence_price, seed_price = rng.randint(2, 15), rng.randint(2, 5)
    variant = rng.randrange(3)
    if variant != 1:
        perimeter = sol.step("The perimeter is @ meters.", f"2*({length}+{width})")
        fence = sol.step("The fence costs @.", f"{perimeter}*{fence_price}", money=True)
        if variant == 0:
            return f"{intro} Fencing costs ${fence_price} per meter. How much does it cost to fence it all around?"
    area = sol.step("The area is @ square meters.", f"{length}*{width}")
    seed = sol.step("The grass seed costs @.", f"{area}*{seed_price}", money=True)
    if variant == 1:
        return f"{intro} Grass seed costs ${seed_price} per square meter. How much does it cost to seed it all?"
    sol.step("Altogether it costs @.", f"{fence}+{seed}", money=True)
    return (f"{intro} {p.he.capitalize()} puts a fence around it for ${fence_price} per meter and covers it with "
            f"grass seed for ${seed_price} per square meter. How much does {p.he} spend in total?")


@_family("savings_weeks")
def _savings_weeks(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    thing = rng.choice(["bike", "video game", "skateboard", "telescope", "guitar", "tablet", "tent"])
    weekly, weeks, saved = rng.randint(3, 30), rng.randint(2, 20), rng.randint(5, 80)
    price = saved + weekly * weeks
    goal = f"{p.name} wants to buy a {thing} that costs ${price}. {p.he.capitalize()} has already saved ${saved}"
    variant = rng.randrange(3)
    if variant == 1:
        chores = rng.randint(1, weekly - 1) if weekly > 2 else 1
        allowance = weekly - chores
        sol.step(f"{p.he.capitalize()} saves @ each week.", f"{allowance}+{chores}", money=True)
        income = f"gets ${allowance} allowance and earns ${chores} doing chores every week"
    elif variant == 2:
        snacks = rng.randint(1, 10)
        sol.step(f"{p.he.capitalize()} saves @ each week.", f"{weekly + snacks}-{snacks}", money=True)
        income = f"earns ${weekly + snacks} every week but spends ${snacks} of it on snacks"
    else:
        income = f"saves ${weekly} every week"
    missing = sol.step(f"{p.he.capitalize()} still needs @.", f"{price}-{saved}", money=True)
    sol.step(f"It will take {p.name} @ weeks.", f"{missing}/{weekly}")
    return f"{goal} and {income}. How many weeks will it take {p.name} to afford the {thing}?"


_FOODS = ["cookies", "muffins", "pancakes", "brownies", "cupcakes", "waffles"]


@_family("recipe_scaling")
def _recipe_scaling(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    food = rng.choice(_FOODS)
    batch, flour, sugar, factor = rng.randint(6, 36), rng.randint(2, 5), rng.randint(2, 4), rng.randint(2, 6)
    wanted = batch * factor
    recipe = f"A recipe for {batch} {food} uses {flour} cups of flour and {sugar} cups of sugar."
    batches = sol.step(f"{p.name} needs to make @ batches.", f"{wanted}/{batch}")
    variant = rng.randrange(3)
    if variant == 0:
        sol.step(f"{p.he.capitalize()} needs @ cups of flour.", f"{batches}*{flour}")
        return f"{recipe} How many cups of flour does {p.name} need to make {wanted} {food}?"
    if variant == 1:
        sol.step(f"{p.he.capitalize()} needs @ cups of sugar.", f"{batches}*{sugar}")
        return f"{recipe} {p.name} wants to bake {wanted} {food}. How many cups of sugar are needed?"
    cups_f = sol.step("That takes @ cups of flour.", f"{batches}*{flour}")
    cups_s = sol.step("It also takes @ cups of sugar.", f"{batches}*{sugar}")
    sol.step("Together that is @ cups.", f"{cups_f}+{cups_s}")
    return f"{recipe} {p.name} wants to bake {wanted} {food}. How many cups of flour and sugar does {p.he} need in all?"


@_family("hourly_wages")
def _hourly_wages(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    job = rng.choice(["a cafe", "a bookstore", "a bakery", "the library", "a garden center", "a pet shop"])
    rate, hours, days = rng.randint(8, 25), rng.randint(3, 10), rng.randint(2, 6)
    daily = sol.step(f"{p.name} earns @ per day.", f"{rate}*{hours}", money=True)
    weekly = sol.step(f"{p.he.capitalize()} earns @ per week.", f"{daily}*{days}", money=True)
    job_text = f"{p.name} works at {job} for ${rate} an hour, {hours} hours a day, {days} days a week."
    overtime = rng.random() < 0.5
    if overtime:
        extra_hours, extra_rate = rng.randint(1, 6), rate + rng.randint(2, 10)
        bonus = sol.step("The extra hours pay @.", f"{extra_hours}*{extra_rate}", money=True)
        weekly = sol.step("So a week pays @.", f"{weekly}+{bonus}", money=True)
        job_text += f" Each week {p.he} also works {extra_hours} extra hours at ${extra_rate} an hour."
    if rng.random() < 0.5:
        return f"{job_text} How much does {p.he} earn in a week?"
    weeks = rng.randint(2, 8)
    sol.step(f"In {weeks} weeks {p.he} earns @.", f"{weekly}*{weeks}", money=True)
    return f"{job_text} How much money does {p.he} earn in {weeks} weeks?"


@_family("dozens")
def _dozens(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    item = rng.choice(["eggs", "donuts", "roses", "bagels", "tennis balls"])
    dozens = rng.randint(2, 10)
    total = sol.step(f"{p.name} has @ {item}.", f"{dozens}*12")
    used = rng.randint(1, total - 1)
    bought = f"{p.name} buys {dozens} dozen {item} and uses {used} of them."
    variant = rng.randrange(3)
    if variant == 2:  # pack the rest into boxes: choose the boxes first so the division is exact
        size = rng.choice(_divisors(total, 2, 6))
        used = size * rng.randint(1, total // size - 1)
        bought = f"{p.name} buys {dozens} dozen {item} and uses {used} of them."
    left = sol.step(f"{p.he.capitalize()} has @ {item} left.", f"{total}-{used}")
    if variant == 0:
        return f"{bought} How many {item} are left?"
    if variant == 1:
        price = rng.randint(2, 4)
        sol.step("Selling them brings in @.", f"{left}*{price}", money=True)
        return f"{bought} {p.he.capitalize()} sells the rest for ${price} each. How much money does {p.he} make?"
    sol.step(f"{p.he.capitalize()} fills @ boxes.", f"{left}/{size}")
    return f"{bought} {p.he.capitalize()} packs the rest into boxes of {size}. How many boxes does {p.he} fill?"


@_family("reading_pages")
def _reading_pages(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    book = rng.choice(["novel", "history book", "science book", "fantasy book", "biography"])
    per_day, days, later_rate, later_days = rng.randint(5, 40), rng.randint(2, 9), rng.randint(5, 50), rng.randint(2, 10)
    pages = per_day * days + later_rate * later_days
    read = sol.step(f"{p.name} has read @ pages.", f"{per_day}*{days}")
    left = sol.step("There are @ pages left.", f"{pages}-{read}")
    intro = f"{p.name}'s {book} has {pages} pages. {p.he.capitalize()} reads {per_day} pages a day for {days} days."
    if rng.random() < 0.4:
        return f"{intro} How many pages are left to read?"
    sol.step("It takes @ more days.", f"{left}/{later_rate}")
    return (f"{intro} If {p.he} then reads {later_rate} pages a day, how many more days does {p.he} need to "
            f"finish the book?")


@_family("fuel_cost")
def _fuel_cost(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    unit, volume = rng.choice([("miles", "gallon"), ("kilometers", "liter")])
    efficiency, amount, price = rng.randint(4, 40), rng.randint(2, 15), rng.randint(2, 6)
    distance = efficiency * amount
    car = f"{p.name}'s car goes {efficiency} {unit} on one {volume} of fuel, which costs ${price}."
    if rng.random() < 0.5:
        used = sol.step(f"The trip uses @ {volume}s.", f"{distance}/{efficiency}")
        sol.step("The fuel costs @.", f"{used}*{price}", money=True)
        return f"{car} How much does fuel cost for a {distance}-{unit[:-1]} trip?"
    both = sol.step(f"The round trip is @ {unit}.", f"{distance}*2")
    used = sol.step(f"It uses @ {volume}s.", f"{both}/{efficiency}")
    sol.step("The fuel costs @.", f"{used}*{price}", money=True)
    return f"{car} {p.name} drives to a town {distance} {unit} away and back. How much does the fuel cost?"


@_family("store_inventory")
def _store_inventory(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    item = rng.choice(["loaves of bread", "apples", "newspapers", "balloons", "pies", "plants"])
    n, d = _proper_fraction(rng, (2, 3, 4, 5))
    remaining = d * rng.randint(2, 20)
    morning = rng.randint(3, 60)
    start = remaining + morning
    rest = sol.step(f"After the morning there are @ {item}.", f"{start}-{morning}")
    sold = sol.step("In the afternoon @ are sold.", f"{rest}*{n}/{d}")
    left = sol.step(f"That leaves @ {item}.", f"{rest}-{sold}")
    story = (f"{p.name}'s shop has {start} {item}. {p.he.capitalize()} sells {morning} in the morning and "
             f"{n}/{d} of the rest in the afternoon.")
    if rng.random() < 0.5:
        return f"{story} How many {item} are left?"
    delivery = rng.randint(5, 50)
    sol.step("After the delivery there are @.", f"{left}+{delivery}")
    return f"{story} In the evening a delivery brings {delivery} more. How many {item} are there now?"


@_family("ticket_prices")
def _ticket_prices(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    venue = rng.choice(["the zoo", "the museum", "a concert", "the aquarium", "the movies", "a water park"])
    adults, kids = rng.randint(1, 4), rng.randint(1, 6)
    adult_price = rng.randint(8, 30)
    kid_price = rng.randint(3, adult_price - 1)
    a = sol.step("The adult tickets cost @.", f"{adults}*{adult_price}", money=True)
    k = sol.step("The children's tickets cost @.", f"{kids}*{kid_price}", money=True)
    total = sol.step("The tickets cost @ in all.", f"{a}+{k}", money=True)
    story = (f"{p.name} takes {adults} adults and {kids} children to {venue}. Adult tickets cost ${adult_price} "
             f"and children's tickets cost ${kid_price}.")
    variant = rng.randrange(3)
    if variant == 0:
        return f"{story} How much do the tickets cost?"
    if variant == 2:
        snack = rng.randint(2, 8)
        people = sol.step("There are @ people.", f"{adults}+{kids}")
        snacks = sol.step("The snacks cost @.", f"{people}*{snack}", money=True)
        total = sol.step("The outing costs @.", f"{total}+{snacks}", money=True)
        return f"{story} Everyone also buys a ${snack} snack. How much does the outing cost in total?"
    bill = _payment_above(total)
    sol.step(f"{p.name} gets @ in change.", f"{bill}-{total}", money=True)
    return f"{story} {p.name} pays with ${bill}. How much change does {p.he} get?"


@_family("garden_harvest")
def _garden_harvest(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    crop = rng.choice(["tomato", "pepper", "strawberry", "cucumber", "bean"])
    fruit = {"tomato": "tomatoes", "pepper": "peppers", "strawberry": "strawberries", "cucumber": "cucumbers",
             "bean": "beans"}[crop]
    rows, per_row, yield_ = rng.randint(3, 12), rng.randint(4, 15), rng.randint(2, 10)
    plants = sol.step("There are @ plants.", f"{rows}*{per_row}")
    harvest = sol.step(f"They give @ {fruit}.", f"{plants}*{yield_}")
    story = (f"{p.name} plants {rows} rows of {crop} plants with {per_row} plants in each row. "
             f"Each plant gives {yield_} {fruit}.")
    variant = rng.randrange(3)
    if variant == 0:
        return f"{story} How many {fruit} does {p.name} harvest?"
    bag = rng.choice(_divisors(harvest, 2, 12))
    bags = sol.step("That fills @ bags.", f"{harvest}/{bag}")
    if variant == 1:
        return f"{story} {p.he.capitalize()} puts them in bags of {bag}. How many bags does {p.he} fill?"
    price = rng.randint(2, 9)
    sol.step("Selling the bags brings in @.", f"{bags}*{price}", money=True)
    return (f"{story} {p.he.capitalize()} packs them in bags of {bag} and sells each bag for ${price}. How much "
            f"money does {p.he} make?")


@_family("plant_growth")
def _plant_growth(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    plant = rng.choice(["sunflower", "bamboo shoot", "bean plant", "young tree", "cactus"])
    start, growth, weeks = rng.randint(2, 40), rng.randint(2, 9), rng.randint(2, 12)
    variant = rng.randrange(3)
    if variant == 0:
        grown = sol.step("It grows @ centimeters.", f"{growth}*{weeks}")
        sol.step("It is then @ centimeters tall.", f"{start}+{grown}")
        return (f"{p.name}'s {plant} is {start} centimeters tall and grows {growth} centimeters every week. "
                f"How tall is it after {weeks} weeks?")
    if variant == 1:
        target = start + growth * weeks
        to_grow = sol.step("It must grow @ centimeters.", f"{target}-{start}")
        sol.step("That takes @ weeks.", f"{to_grow}/{growth}")
        return (f"{p.name}'s {plant} is {start} centimeters tall and grows {growth} centimeters every week. "
                f"After how many weeks will it be {target} centimeters tall?")
    other_start, other_growth = rng.randint(1, start - 1), rng.randint(2, growth)  # the second stays shorter
    grown = sol.step(f"The {plant} grows @ centimeters.", f"{growth}*{weeks}")
    tall = sol.step("It reaches @ centimeters.", f"{start}+{grown}")
    other_grown = sol.step("The second plant grows @ centimeters.", f"{other_growth}*{weeks}")
    other_tall = sol.step("It reaches @ centimeters.", f"{other_start}+{other_grown}")
    sol.step(f"The {plant} is @ centimeters taller.", f"{tall}-{other_tall}")
    return (f"{p.name} has a {plant} that is {start} centimeters tall and grows {growth} centimeters a week, "
            f"and a second plant that is {other_start} centimeters tall and grows {other_growth} centimeters a "
            f"week. After {weeks} weeks, how many centimeters taller is the {plant}?")


@_family("basketball_points")
def _basketball_points(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    twos, threes, ones = rng.randint(2, 15), rng.randint(1, 8), rng.randint(0, 10)
    from_twos = sol.step("The 2-point shots give @ points.", f"{twos}*2")
    from_threes = sol.step("The 3-point shots give @ points.", f"{threes}*3")
    total = sol.step(f"{p.name} scores @ points.", _sum_expr([from_twos, from_threes, ones]))
    game = (f"In a basketball game {p.name} makes {twos} 2-point shots, {threes} 3-point shots and {ones} "
            f"free throws worth 1 point each.")
    if rng.random() < 0.5:
        return f"{game} How many points does {p.he} score?"
    teammate = rng.randint(0, total)
    sol.step(f"{p.he.capitalize()} scores @ more points.", f"{total}-{teammate}")
    return f"{game} {p.his.capitalize()} teammate scores {teammate} points. How many more points does {p.name} score?"


@_family("school_schedule")
def _school_schedule(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    classes, length, pause = rng.randint(3, 8), rng.randint(6, 12) * 5, rng.randint(1, 3) * 5
    lessons = sol.step("The classes take @ minutes.", f"{classes}*{length}")
    breaks = sol.step("There are @ breaks.", f"{classes}-1")
    break_time = sol.step("The breaks take @ minutes.", f"{breaks}*{pause}")
    total = sol.step("The school day lasts @ minutes.", f"{lessons}+{break_time}")
    day = (f"{p.name}'s school day has {classes} classes of {length} minutes each, with a {pause}-minute break "
           f"between each class and the next.")
    if rng.random() < 0.5:
        return f"{day} How many minutes long is the school day?"
    club = rng.randint(2, 12) * 5
    sol.step("With the club, the day lasts @ minutes.", f"{total}+{club}")
    return f"{day} After school {p.he} goes to a {club}-minute chess club. How many minutes does {p.his} day last?"


_COLLECTIONS = ["marbles", "stickers", "seashells", "stamps", "baseball cards", "postcards"]


@_family("comparison")
def _comparison(rng: random.Random, sol: _Solution) -> str:
    a, b, c = _people(rng, 3)
    item = rng.choice(_COLLECTIONS)
    base, times = rng.randint(4, 30), rng.randint(2, 5)
    fewer = rng.randint(1, base * times - 1)
    facts = f"{a.name} has {base} {item}. {b.name} has {times} times as many {item} as {a.name}."
    count_b = sol.step(f"{b.name} has @ {item}.", f"{base}*{times}")
    if rng.random() < 0.4:
        sol.step(f"{b.name} has @ more than {a.name}.", f"{count_b}-{base}")
        return f"{facts} How many more {item} does {b.name} have than {a.name}?"
    count_c = sol.step(f"{c.name} has @ {item}.", f"{count_b}-{fewer}")
    sol.step("Together they have @.", _sum_expr([base, count_b, count_c]))
    return f"{facts} {c.name} has {fewer} fewer {item} than {b.name}. How many {item} do they have altogether?"


@_family("test_average")
def _test_average(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    subject = rng.choice(["math", "spelling", "science", "history", "geography"])
    k = rng.randint(3, 5)
    scores = [rng.randint(60, 100) for _ in range(k - 1)]
    if rng.random() < 0.5:
        last = rng.randint(60, 95)
        last += -(sum(scores) + last) % k  # make the sum a multiple of k so the average is whole
        scores.append(last)
        total = sol.step(f"{p.his.capitalize()} scores add up to @.", _sum_expr(scores))
        sol.step(f"{p.his.capitalize()} average is @.", f"{total}/{k}")
        return (f"{p.name} scored {_join([str(s) for s in scores])} on {k} {subject} tests. "
                f"What is {p.his} average score?")
    scores.append(rng.randint(60, 100))
    needed = rng.randint(60, 90)
    needed += -(sum(scores) + needed) % (k + 1)
    target = (sum(scores) + needed) // (k + 1)
    goal = sol.step(f"{p.he.capitalize()} needs @ points over all tests.", f"{target}*{k + 1}")
    have = sol.step(f"{p.he.capitalize()} has @ points so far.", _sum_expr(scores))
    sol.step(f"{p.he.capitalize()} needs to score @ on the next test.", f"{goal}-{have}")
    return (f"{p.name} scored {_join([str(s) for s in scores])} on {k} {subject} tests. What score does {p.he} "
            f"need on the next test to average {target} over all {k + 1} tests?")


_COINS = [("quarters", "quarter", 25), ("dimes", "dime", 10), ("nickels", "nickel", 5)]


@_family("coin_counting")
def _coin_counting(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    coins = [(rng.randint(2, 20), plural, single, value) for plural, single, value in
             sorted(rng.sample(_COINS, rng.randint(2, 3)), key=lambda c: -c[2])]
    parts = [sol.step(f"The {plural} are worth @ cents.", f"{n}*{value}") for n, plural, _, value in coins]
    total = sol.step(f"{p.name} has @ cents.", _sum_expr(parts))
    worth = _join([f"a {single} is worth {value} cents" for _, _, single, value in coins])
    has = f"{p.name} has {_join([f'{n} {plural}' for n, plural, _, _ in coins])}. Remember that {worth}."
    if rng.random() < 0.5:
        return f"{has} How many cents does {p.he} have?"
    spent = rng.randint(1, min(total, 300))
    sol.step("@ cents are left.", f"{total}-{spent}")
    return f"{has} {p.he.capitalize()} spends {spent} cents on a snack. How many cents are left?"


@_family("bake_sale_profit")
def _bake_sale_profit(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    food = rng.choice(_FOODS)
    batches, per_batch, price = rng.randint(2, 8), rng.randint(6, 24), rng.randint(1, 4)
    made = sol.step(f"{p.name} bakes @ {food}.", f"{batches}*{per_batch}")
    unsold = rng.randint(0, made // 4)
    sold = made
    if unsold:
        sold = sol.step(f"{p.he.capitalize()} sells @ {food}.", f"{made}-{unsold}")
    revenue = sol.step("The sales bring in @.", f"{sold}*{price}", money=True)
    cost = rng.randint(max(1, revenue // 4), revenue)
    sol.step(f"{p.his.capitalize()} profit is @.", f"{revenue}-{cost}", money=True)
    left = f" and {unsold} are left over at the end" if unsold else " and sells every one"
    return (f"{p.name} bakes {batches} batches of {per_batch} {food} for a bake sale{left}. The ingredients cost "
            f"${cost} and each of the {food} sells for ${price}. What is {p.his} profit?")


@_family("tank_filling")
def _tank_filling(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    tank = rng.choice(["fish tank", "swimming pool", "rain barrel", "water tank", "bathtub"])
    unit = rng.choice(["liters", "gallons"])
    net, minutes, already = rng.randint(2, 30), rng.randint(3, 40), rng.randint(0, 200)
    capacity = already + net * minutes
    need = sol.step(f"It needs @ more {unit}.", f"{capacity}-{already}")
    intro = f"{p.name}'s {tank} holds {capacity} {unit} and already has {already} {unit} in it."
    if rng.random() < 0.5:
        sol.step("Filling it takes @ minutes.", f"{need}/{net}")
        return f"{intro} A hose adds {net} {unit} per minute. How many minutes does it take to fill it?"
    leak = rng.randint(2, 10)
    rate = sol.step(f"It fills at @ {unit} per minute.", f"{net + leak}-{leak}")
    sol.step("Filling it takes @ minutes.", f"{need}/{rate}")
    return (f"{intro} A hose adds {net + leak} {unit} per minute, but a leak loses {leak} {unit} per minute. "
            f"How many minutes does it take to fill it?")


@_family("running_laps")
def _running_laps(rng: random.Random, sol: _Solution) -> str:
    (p,) = _people(rng)
    track, laps, days = rng.choice([200, 250, 400, 500]), rng.randint(2, 12), rng.randint(2, 7)
    daily = sol.step(f"{p.name} runs @ meters a day.", f"{track}*{laps}")
    total = sol.step(f"{p.he.capitalize()} runs @ meters in all.", f"{daily}*{days}")
    story = f"A running track is {track} meters long. {p.name} runs {laps} laps a day for {days} days."
    if total % 1000 or rng.random() < 0.3:
        return f"{story} How many meters does {p.he} run?"
    sol.step("That is @ kilometers.", f"{total}/1000")
    return f"{story} If 1 kilometer is 1000 meters, how many kilometers does {p.he} run?"


# --- public API -----------------------------------------------------------------------------------

def _family_named(name: str) -> Family:
    for fam in FAMILIES:
        if fam.name == name:
            return fam
    raise ValueError(f"unknown synthetic-math family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")


def generate_problem(rng: random.Random, family: Family | str | None = None) -> dict:
    """One problem: `{"question", "answer", "family", "steps"}`, from `family` or a random one."""
    if family is None:
        fam = rng.choice(FAMILIES)
    else:
        fam = family if isinstance(family, Family) else _family_named(family)
    sol = _Solution()
    question = fam.build(rng, sol)
    return {"question": question, "answer": sol.answer(), "family": fam.name, "steps": len(sol.lines)}


def _stream(rng: random.Random) -> Iterator[dict]:
    """Endless problems; each round uses every family once, in a shuffled order."""
    while True:
        order = list(FAMILIES)
        rng.shuffle(order)
        for fam in order:
            yield generate_problem(rng, fam)


def _take_unique(stream: Iterator[dict], n: int, exclude: set[str] | frozenset[str] = frozenset()) -> list[dict]:
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


def generate_problems(n: int, seed: int) -> list[dict]:
    """n distinct problems, fully determined by `seed`; every family appears once n >= len(FAMILIES)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    return _take_unique(_stream(random.Random(seed)), n)


def generate_heldout(n: int, seed: int, exclude: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """n distinct problems from `seed`'s stream whose questions are not in `exclude` (the training set).

    Problems are drawn until there are n of them, so the held-out set always has the size asked
    for; a ValueError says when the families cannot produce that many new questions."""
    if n < 0:
        raise ValueError("n must be >= 0")
    return _take_unique(_stream(random.Random(seed)), n, exclude=exclude)
