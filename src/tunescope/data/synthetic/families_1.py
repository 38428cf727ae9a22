"""Word-problem families, first run of the registration order: shopping and change, unit prices, ages,
fractions of a group, discounts, travel distances, sharing equally, fencing a garden, saving up.

The families are split over `families_1`, `families_2` and `families_3` in registration order rather
than by theme, because that order decides the random draws and so the generated data (see `FAMILIES`).

Each family draws its parameters so that every intermediate value is a non-negative integer, and
varies its wording and its number of steps so that no single sentence can be memorised.
"""

from __future__ import annotations

import math
import random

from tunescope.data.synthetic.core import (
    Solution,
    divisors_between,
    draw_people,
    join_with_and,
    payment_above,
    proper_fraction,
    register_family,
    sum_expression,
)

_GOODS = [("notebook", "notebooks"), ("pencil", "pencils"), ("apple", "apples"), ("candle", "candles"),
          ("comic book", "comic books"), ("muffin", "muffins"), ("toy car", "toy cars"),
          ("bracelet", "bracelets"), ("water bottle", "water bottles"), ("puzzle", "puzzles"),
          ("sandwich", "sandwiches"), ("box of crayons", "boxes of crayons"), ("plant pot", "plant pots"),
          ("pair of socks", "pairs of socks"), ("mango", "mangoes"), ("scarf", "scarves")]


@register_family("shopping_change")
def _shopping_change(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    goods = [(rng.randint(2, 9), rng.randint(1, 12), plural)
             for _, plural in rng.sample(_GOODS, rng.randint(1, 3))]
    costs = [sol.step(rng.choice([f"The {plural} cost @.", f"{p.name} spends @ on {plural}."]),
                      f"{q}*{price}", money=True) for q, price, plural in goods]
    total = costs[0]
    if len(costs) > 1:
        total = sol.step(rng.choice([f"In total {p.he} spends @.", "Altogether the items cost @."]),
                         sum_expression(costs), money=True)
    bill = payment_above(total)
    sol.step(rng.choice([f"{p.name} gets @ in change.", f"So {p.he} receives @ back."]), f"{bill}-{total}",
             money=True)
    bought = join_with_and([f"{q} {plural} for ${price} each" for q, price, plural in goods])
    opening = rng.choice([f"{p.name} buys {bought}.", f"At the market, {p.name} buys {bought}."])
    ask = rng.choice([f"{p.he.capitalize()} pays with ${bill}. How much change does {p.he} get?",
                      f"If {p.he} hands the cashier ${bill}, how much change should {p.he} receive?"])
    return f"{opening} {ask}"


@register_family("unit_rate")
def _unit_rate(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
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


@register_family("ages")
def _ages(rng: random.Random, sol: Solution) -> str:
    a, b, c = draw_people(rng, 3)
    age_a, k, m = rng.randint(3, 15), rng.randint(2, 10), rng.randint(2, 3)
    age_b = sol.step(f"{b.name} is @ years old.", f"{age_a}+{k}")
    age_c = sol.step(f"{c.name} is @ years old.", f"{age_b}*{m}")
    facts = (f"{a.name} is {age_a} years old. {b.name} is {k} years older than {a.name}. "
             f"{c.name} is {m} times as old as {b.name}.")
    variant = rng.randrange(4)
    if variant == 0:
        return f"{facts} How old is {c.name}?"
    if variant == 1:
        sol.step("Together they are @ years old.", sum_expression([age_a, age_b, age_c]))
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


@register_family("fraction_of_group")
def _fraction_of_group(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    whole, part, trait, not_trait = rng.choice(_GROUPS)
    n1, d1 = proper_fraction(rng, (2, 3, 4, 5, 6, 8, 10))
    n2, d2 = proper_fraction(rng, (2, 3, 4, 5))
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


@register_family("percent_discount")
def _percent_discount(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
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
    bill = payment_above(total)
    sol.step(f"{p.name} gets @ in change.", f"{bill}-{total}", money=True)
    return f"{intro} {p.name} buys {qty} {plural} and pays with ${bill}. How much change does {p.he} get?"


@register_family("travel_distance")
def _travel_distance(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    unit = rng.choice(["miles", "kilometers"])
    if rng.random() < 0.35:  # time from distance and speed, in minutes
        vehicle = rng.choice(["A train", "A bus", "A ferry", f"{p.name}'s car"])
        speed, hours = rng.randint(3, 16) * 5, rng.randint(2, 6)
        h = sol.step("The trip takes @ hours.", f"{speed * hours}/{speed}")
        sol.step("That is @ minutes.", f"{h}*60")
        return (f"{vehicle} travels {speed * hours} {unit} at {speed} {unit} per hour. How many minutes does "
                "the trip take?")
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


@register_family("sharing_equally")
def _sharing_equally(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    item = rng.choice(_TREATS)
    container = rng.choice(["bags", "boxes", "jars", "packs"])
    bags, per = rng.randint(2, 12), rng.randint(3, 25)
    total = sol.step(f"{p.name} has @ {item}.", f"{bags}*{per}")
    have = f"{p.name} has {bags} {container} with {per} {item} in each."
    if rng.random() < 0.5:
        friends = rng.choice(divisors_between(total, 2, 12))
        sol.step(f"Each friend gets @ {item}.", f"{total}/{friends}")
        return (f"{have} {p.he.capitalize()} shares them equally among {friends} friends. How many {item} "
                "does each friend get?")
    friends = rng.randint(2, min(9, total // 2))
    keep = total % friends or friends
    rest = sol.step(f"After keeping {keep}, {p.he} has @ {item} to share.", f"{total}-{keep}")
    sol.step(f"Each friend gets @ {item}.", f"{rest}/{friends}")
    return (f"{have} {p.he.capitalize()} keeps {keep} {item} for {p.himself} and shares the rest equally "
            f"among {friends} friends. How many {item} does each friend get?")


@register_family("garden_fence")
def _garden_fence(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    length, width = rng.randint(4, 30), rng.randint(3, 20)
    plot = rng.choice(["vegetable garden", "backyard", "flower bed", "playground"])
    intro = f"{p.name}'s rectangular {plot} is {length} meters long and {width} meters wide."
    fence_price, seed_price = rng.randint(2, 15), rng.randint(2, 5)
    variant = rng.randrange(3)
    if variant != 1:
        perimeter = sol.step("The perimeter is @ meters.", f"2*({length}+{width})")
        fence = sol.step("The fence costs @.", f"{perimeter}*{fence_price}", money=True)
        if variant == 0:
            return (f"{intro} Fencing costs ${fence_price} per meter. How much does it cost to fence it all "
                    "around?")
    area = sol.step("The area is @ square meters.", f"{length}*{width}")
    seed = sol.step("The grass seed costs @.", f"{area}*{seed_price}", money=True)
    if variant == 1:
        return (f"{intro} Grass seed costs ${seed_price} per square meter. How much does it cost to seed it "
                "all?")
    sol.step("Altogether it costs @.", f"{fence}+{seed}", money=True)
    return (f"{intro} {p.he.capitalize()} puts a fence around it for ${fence_price} per meter and covers it "
            f"with grass seed for ${seed_price} per square meter. How much does {p.he} spend in total?")


@register_family("savings_weeks")
def _savings_weeks(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    thing = rng.choice(["bike", "video game", "skateboard", "telescope", "guitar", "tablet", "tent"])
    weekly, weeks, saved = rng.randint(3, 30), rng.randint(2, 20), rng.randint(5, 80)
    price = saved + weekly * weeks
    goal = (f"{p.name} wants to buy a {thing} that costs ${price}. {p.he.capitalize()} has already saved "
            f"${saved}")
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

