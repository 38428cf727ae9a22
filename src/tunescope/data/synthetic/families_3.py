"""Word-problem families, last run of the registration order: basketball points, the school day,
comparing collections, test averages, counting coins, bake-sale profit, filling a tank, running laps.

Split from the other family modules in registration order; see `families_1` for why.
"""

from __future__ import annotations

import random

from tunescope.data.synthetic.core import (
    FOODS,
    Solution,
    draw_people,
    join_with_and,
    register_family,
    sum_expression,
)


@register_family("basketball_points")
def _basketball_points(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    twos, threes, ones = rng.randint(2, 15), rng.randint(1, 8), rng.randint(0, 10)
    from_twos = sol.step("The 2-point shots give @ points.", f"{twos}*2")
    from_threes = sol.step("The 3-point shots give @ points.", f"{threes}*3")
    total = sol.step(f"{p.name} scores @ points.", sum_expression([from_twos, from_threes, ones]))
    game = (f"In a basketball game {p.name} makes {twos} 2-point shots, {threes} 3-point shots and {ones} "
            f"free throws worth 1 point each.")
    if rng.random() < 0.5:
        return f"{game} How many points does {p.he} score?"
    teammate = rng.randint(0, total)
    sol.step(f"{p.he.capitalize()} scores @ more points.", f"{total}-{teammate}")
    return (f"{game} {p.his.capitalize()} teammate scores {teammate} points. How many more points does "
            f"{p.name} score?")


@register_family("school_schedule")
def _school_schedule(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    classes, length, pause = rng.randint(3, 8), rng.randint(6, 12) * 5, rng.randint(1, 3) * 5
    lessons = sol.step("The classes take @ minutes.", f"{classes}*{length}")
    breaks = sol.step("There are @ breaks.", f"{classes}-1")
    break_time = sol.step("The breaks take @ minutes.", f"{breaks}*{pause}")
    total = sol.step("The school day lasts @ minutes.", f"{lessons}+{break_time}")
    day = (f"{p.name}'s school day has {classes} classes of {length} minutes each, with a {pause}-minute "
           "break between each class and the next.")
    if rng.random() < 0.5:
        return f"{day} How many minutes long is the school day?"
    club = rng.randint(2, 12) * 5
    sol.step("With the club, the day lasts @ minutes.", f"{total}+{club}")
    return (f"{day} After school {p.he} goes to a {club}-minute chess club. How many minutes does {p.his} "
            "day last?")


_COLLECTIONS = ["marbles", "stickers", "seashells", "stamps", "baseball cards", "postcards"]


@register_family("comparison")
def _comparison(rng: random.Random, sol: Solution) -> str:
    a, b, c = draw_people(rng, 3)
    item = rng.choice(_COLLECTIONS)
    base, times = rng.randint(4, 30), rng.randint(2, 5)
    fewer = rng.randint(1, base * times - 1)
    facts = f"{a.name} has {base} {item}. {b.name} has {times} times as many {item} as {a.name}."
    count_b = sol.step(f"{b.name} has @ {item}.", f"{base}*{times}")
    if rng.random() < 0.4:
        sol.step(f"{b.name} has @ more than {a.name}.", f"{count_b}-{base}")
        return f"{facts} How many more {item} does {b.name} have than {a.name}?"
    count_c = sol.step(f"{c.name} has @ {item}.", f"{count_b}-{fewer}")
    sol.step("Together they have @.", sum_expression([base, count_b, count_c]))
    return (f"{facts} {c.name} has {fewer} fewer {item} than {b.name}. How many {item} do they have "
            "altogether?")


@register_family("test_average")
def _test_average(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    subject = rng.choice(["math", "spelling", "science", "history", "geography"])
    k = rng.randint(3, 5)
    scores = [rng.randint(60, 100) for _ in range(k - 1)]
    if rng.random() < 0.5:
        last = rng.randint(60, 95)
        last += -(sum(scores) + last) % k  # make the sum a multiple of k so the average is whole
        scores.append(last)
        total = sol.step(f"{p.his.capitalize()} scores add up to @.", sum_expression(scores))
        sol.step(f"{p.his.capitalize()} average is @.", f"{total}/{k}")
        return (f"{p.name} scored {join_with_and([str(s) for s in scores])} on {k} {subject} tests. "
                f"What is {p.his} average score?")
    scores.append(rng.randint(60, 100))
    needed = rng.randint(60, 90)
    needed += -(sum(scores) + needed) % (k + 1)
    target = (sum(scores) + needed) // (k + 1)
    goal = sol.step(f"{p.he.capitalize()} needs @ points over all tests.", f"{target}*{k + 1}")
    have = sol.step(f"{p.he.capitalize()} has @ points so far.", sum_expression(scores))
    sol.step(f"{p.he.capitalize()} needs to score @ on the next test.", f"{goal}-{have}")
    return (f"{p.name} scored {join_with_and([str(s) for s in scores])} on {k} {subject} tests. What score "
            f"does {p.he} need on the next test to average {target} over all {k + 1} tests?")


_COINS = [("quarters", "quarter", 25), ("dimes", "dime", 10), ("nickels", "nickel", 5)]


@register_family("coin_counting")
def _coin_counting(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    coins = [(rng.randint(2, 20), plural, single, value) for plural, single, value in
             sorted(rng.sample(_COINS, rng.randint(2, 3)), key=lambda c: -c[2])]
    parts = [sol.step(f"The {plural} are worth @ cents.", f"{n}*{value}") for n, plural, _, value in coins]
    total = sol.step(f"{p.name} has @ cents.", sum_expression(parts))
    worth = join_with_and([f"a {single} is worth {value} cents" for _, _, single, value in coins])
    has = (f"{p.name} has {join_with_and([f'{n} {plural}' for n, plural, _, _ in coins])}. Remember that "
           f"{worth}.")
    if rng.random() < 0.5:
        return f"{has} How many cents does {p.he} have?"
    spent = rng.randint(1, min(total, 300))
    sol.step("@ cents are left.", f"{total}-{spent}")
    return f"{has} {p.he.capitalize()} spends {spent} cents on a snack. How many cents are left?"


@register_family("bake_sale_profit")
def _bake_sale_profit(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    food = rng.choice(FOODS)
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
    return (f"{p.name} bakes {batches} batches of {per_batch} {food} for a bake sale{left}. The ingredients "
            f"cost ${cost} and each of the {food} sells for ${price}. What is {p.his} profit?")


@register_family("tank_filling")
def _tank_filling(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
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


@register_family("running_laps")
def _running_laps(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    track, laps, days = rng.choice([200, 250, 400, 500]), rng.randint(2, 12), rng.randint(2, 7)
    daily = sol.step(f"{p.name} runs @ meters a day.", f"{track}*{laps}")
    total = sol.step(f"{p.he.capitalize()} runs @ meters in all.", f"{daily}*{days}")
    story = f"A running track is {track} meters long. {p.name} runs {laps} laps a day for {days} days."
    if total % 1000 or rng.random() < 0.3:
        return f"{story} How many meters does {p.he} run?"
    sol.step("That is @ kilometers.", f"{total}/1000")
    return f"{story} If 1 kilometer is 1000 meters, how many kilometers does {p.he} run?"
