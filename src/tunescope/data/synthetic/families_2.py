"""Word-problem families, second run of the registration order: recipes, hourly wages, dozens, reading
pages, fuel costs, shop stock, ticket prices, a garden harvest, plant growth.

Split from the other family modules in registration order; see `families_1` for why.
"""

from __future__ import annotations

import random

from tunescope.data.synthetic.core import (
    FOODS,
    Solution,
    divisors_between,
    draw_people,
    payment_above,
    proper_fraction,
    register_family,
)


@register_family("recipe_scaling")
def _recipe_scaling(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    food = rng.choice(FOODS)
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
    return (f"{recipe} {p.name} wants to bake {wanted} {food}. How many cups of flour and sugar does {p.he} "
            "need in all?")


@register_family("hourly_wages")
def _hourly_wages(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
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


@register_family("dozens")
def _dozens(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    item = rng.choice(["eggs", "donuts", "roses", "bagels", "tennis balls"])
    dozens = rng.randint(2, 10)
    total = sol.step(f"{p.name} has @ {item}.", f"{dozens}*12")
    used = rng.randint(1, total - 1)
    bought = f"{p.name} buys {dozens} dozen {item} and uses {used} of them."
    variant = rng.randrange(3)
    if variant == 2:  # pack the rest into boxes: choose the boxes first so the division is exact
        size = rng.choice(divisors_between(total, 2, 6))
        used = size * rng.randint(1, total // size - 1)
        bought = f"{p.name} buys {dozens} dozen {item} and uses {used} of them."
    left = sol.step(f"{p.he.capitalize()} has @ {item} left.", f"{total}-{used}")
    if variant == 0:
        return f"{bought} How many {item} are left?"
    if variant == 1:
        price = rng.randint(2, 4)
        sol.step("Selling them brings in @.", f"{left}*{price}", money=True)
        return (f"{bought} {p.he.capitalize()} sells the rest for ${price} each. How much money does {p.he} "
                "make?")
    sol.step(f"{p.he.capitalize()} fills @ boxes.", f"{left}/{size}")
    return (f"{bought} {p.he.capitalize()} packs the rest into boxes of {size}. How many boxes does {p.he} "
            "fill?")


@register_family("reading_pages")
def _reading_pages(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    book = rng.choice(["novel", "history book", "science book", "fantasy book", "biography"])
    per_day, days, later_rate, later_days = (rng.randint(5, 40), rng.randint(2, 9), rng.randint(5, 50),
                                             rng.randint(2, 10))
    pages = per_day * days + later_rate * later_days
    read = sol.step(f"{p.name} has read @ pages.", f"{per_day}*{days}")
    left = sol.step("There are @ pages left.", f"{pages}-{read}")
    intro = (f"{p.name}'s {book} has {pages} pages. {p.he.capitalize()} reads {per_day} pages a day for "
             f"{days} days.")
    if rng.random() < 0.4:
        return f"{intro} How many pages are left to read?"
    sol.step("It takes @ more days.", f"{left}/{later_rate}")
    return (f"{intro} If {p.he} then reads {later_rate} pages a day, how many more days does {p.he} need to "
            f"finish the book?")


@register_family("fuel_cost")
def _fuel_cost(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
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


@register_family("store_inventory")
def _store_inventory(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    item = rng.choice(["loaves of bread", "apples", "newspapers", "balloons", "pies", "plants"])
    n, d = proper_fraction(rng, (2, 3, 4, 5))
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


@register_family("ticket_prices")
def _ticket_prices(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
    venue = rng.choice(["the zoo", "the museum", "a concert", "the aquarium", "the movies", "a water park"])
    adults, kids = rng.randint(1, 4), rng.randint(1, 6)
    adult_price = rng.randint(8, 30)
    kid_price = rng.randint(3, adult_price - 1)
    a = sol.step("The adult tickets cost @.", f"{adults}*{adult_price}", money=True)
    k = sol.step("The children's tickets cost @.", f"{kids}*{kid_price}", money=True)
    total = sol.step("The tickets cost @ in all.", f"{a}+{k}", money=True)
    story = (f"{p.name} takes {adults} adults and {kids} children to {venue}. Adult tickets cost "
             f"${adult_price} and children's tickets cost ${kid_price}.")
    variant = rng.randrange(3)
    if variant == 0:
        return f"{story} How much do the tickets cost?"
    if variant == 2:
        snack = rng.randint(2, 8)
        people = sol.step("There are @ people.", f"{adults}+{kids}")
        snacks = sol.step("The snacks cost @.", f"{people}*{snack}", money=True)
        total = sol.step("The outing costs @.", f"{total}+{snacks}", money=True)
        return f"{story} Everyone also buys a ${snack} snack. How much does the outing cost in total?"
    bill = payment_above(total)
    sol.step(f"{p.name} gets @ in change.", f"{bill}-{total}", money=True)
    return f"{story} {p.name} pays with ${bill}. How much change does {p.he} get?"


@register_family("garden_harvest")
def _garden_harvest(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
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
    bag = rng.choice(divisors_between(harvest, 2, 12))
    bags = sol.step("That fills @ bags.", f"{harvest}/{bag}")
    if variant == 1:
        return f"{story} {p.he.capitalize()} puts them in bags of {bag}. How many bags does {p.he} fill?"
    price = rng.randint(2, 9)
    sol.step("Selling the bags brings in @.", f"{bags}*{price}", money=True)
    return (f"{story} {p.he.capitalize()} packs them in bags of {bag} and sells each bag for ${price}. How "
            f"much money does {p.he} make?")


@register_family("plant_growth")
def _plant_growth(rng: random.Random, sol: Solution) -> str:
    (p,) = draw_people(rng)
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
            f"and a second plant that is {other_start} centimeters tall and grows {other_growth} centimeters "
            f"a week. After {weeks} weeks, how many centimeters taller is the {plant}?")

