"""Tests for tunescope.core.arith: the safe evaluator, annotation and equation extraction, number helpers."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from tunescope.core.arith import (
    MAX_EXPRESSION_CHARS,
    evaluate_expression,
    find_equations,
    numbers_equal,
    parse_annotations,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", Fraction(42)),
        ("2.5", Fraction(5, 2)),
        ("0.1+0.2", Fraction(3, 10)),  # exact, unlike floats
        (".5*4", Fraction(2)),
        ("1+2*3", Fraction(7)),
        ("(1+2)*3", Fraction(9)),
        ("10-4-3", Fraction(3)),  # left associative
        ("48/2", Fraction(24)),
        ("10/4", Fraction(5, 2)),
        ("1/3*3", Fraction(1)),
        ("-3+5", Fraction(2)),
        ("-(2+3)", Fraction(-5)),
        ("--4", Fraction(4)),
        ("+7", Fraction(7)),
        ("2*-3", Fraction(-6)),
        ("7//2", Fraction(3)),
        ("7%3", Fraction(1)),
        ("2**10", Fraction(1024)),
        ("2**-2", Fraction(1, 4)),
        ("2^3", Fraction(8)),
        ("  3 * 4  ", Fraction(12)),
    ],
)
def test_evaluate_plain_arithmetic(text: str, expected: Fraction) -> None:
    assert evaluate_expression(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234", Fraction(1234)),
        ("1,234,567+1", Fraction(1234568)),
        ("$1,200 - $300", Fraction(900)),
        ("$5 x 2", Fraction(10)),
        ("5x2", Fraction(10)),
        ("3 X 3", Fraction(9)),
        ("12 × 3", Fraction(36)),
        ("10 ÷ 4", Fraction(5, 2)),
        ("3 \\times 4", Fraction(12)),
        ("8 \\div 2", Fraction(4)),
        ("7 − 2", Fraction(5)),  # U+2212 minus sign
    ],
)
def test_evaluate_gsm8k_notations(text: str, expected: Fraction) -> None:
    assert evaluate_expression(text) == expected


def test_evaluate_returns_fraction() -> None:
    assert isinstance(evaluate_expression("3/4"), Fraction)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('echo hi')",
        "a+b",
        "x",
        "abs(-3)",
        "(1).real",
        "[1, 2]",
        "(1, 2)",
        "1 < 2",
        "1 if 2 else 3",
        "lambda: 1",
        "True + 1",
        "'3' * 3",
        "3j",
        "0b101",
        "1_000",
        "2 3",
        "",
        "   ",
        "50%",  # percent is not modulo
        "1,23",  # not a thousands separator
        "2**10000",
        "2**0.5",
        "9**10**10",
        "(10**100)**10",
        "1e400",
    ],
)
def test_evaluate_rejects_non_arithmetic(text: str) -> None:
    assert evaluate_expression(text) is None


@pytest.mark.parametrize("text", ["1/0", "5//0", "5%0", "3/(2-2)", "0**-1"])
def test_evaluate_division_by_zero_is_none(text: str) -> None:
    assert evaluate_expression(text) is None


def test_evaluate_length_limit() -> None:
    long_sum = "+".join(["1"] * 150)
    assert len(long_sum) > MAX_EXPRESSION_CHARS
    assert evaluate_expression(long_sum) is None
    assert evaluate_expression("+".join(["1"] * 100)) == 100


def test_evaluate_deep_nesting_does_not_crash() -> None:
    assert evaluate_expression("(" * 99 + "1" + ")" * 99) == 1
    assert evaluate_expression("(" * 150 + "1") is None


def test_evaluate_non_string_is_none() -> None:
    assert evaluate_expression(None) is None  # type: ignore[arg-type]
    assert evaluate_expression(12) is None  # type: ignore[arg-type]


def test_parse_annotations_gsm8k_solution() -> None:
    solution = (
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n"
        "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "#### 72"
    )
    assert parse_annotations(solution) == [("48/2", "24"), ("48+24", "72"), ("12/60", "0.2")]


def test_parse_annotations_none_and_malformed() -> None:
    assert parse_annotations("No calculator here.\n#### 5") == []
    assert parse_annotations("<<no equals sign>> and <<3*4=12") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She has 3 * 4 = 12 apples.", [("3 * 4 = 12", "3 * 4", "12")]),
        ("12/3=4", [("12/3=4", "12/3", "4")]),
        ("He pays $5 x 2 = $10 in total.", [("$5 x 2 = $10", "$5 x 2", "10")]),
        ("1,200 - 300 = 900 dollars remain.", [("1,200 - 300 = 900", "1,200 - 300", "900")]),
        ("Each gets 10/3 = 3.33 liters.", [("10/3 = 3.33", "10/3", "3.33")]),
        ("(3 + 4) * 2 = 14", [("(3 + 4) * 2 = 14", "(3 + 4) * 2", "14")]),
        ("That is (3 + 4 = 7) in all.", [("3 + 4 = 7", "3 + 4", "7")]),
        ("Total cost = 3 * 4 = 12 dollars.", [("3 * 4 = 12", "3 * 4", "12")]),
        ("Step 1: 5 + 3 = 8.", [("5 + 3 = 8", "5 + 3", "8")]),
        ("So 6 × 7 = 42 and 42 − 2 = 40.", [("6 × 7 = 42", "6 × 7", "42"), ("42 − 2 = 40", "42 − 2", "40")]),
        ("We get \\(3 \\times 4 = 12\\).", [("3 \\times 4 = 12", "3 \\times 4", "12")]),
        ("2^3 = 8", [("2^3 = 8", "2^3", "8")]),
    ],
)
def test_find_equations_in_model_text(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert find_equations(text) == expected


def test_find_equations_multi_line_answer_finds_the_slip() -> None:
    text = (
        "Natalia sold 48 / 2 = 24 clips in May.\n"
        "Altogether she sold 48 + 24 = 74 clips.\n"
        "The answer is 74."
    )
    found = find_equations(text)
    assert [(expr, claimed) for _, expr, claimed in found] == [("48 / 2", "24"), ("48 + 24", "74")]
    slips = [expr for _, expr, claimed in found if not numbers_equal(evaluate_expression(expr), claimed)]
    assert slips == ["48 + 24"]


@pytest.mark.parametrize(
    "text",
    [
        "On 2023-01-05 she bought 3 apples.",
        "The meeting was on 2023-01-05 = a Thursday.",
        "2023-01-05 = 2017",
        "She has 12 apples = 12 fruits.",  # no operator
        "x = 5",
        "The answer is 42.",
        "2x + 3 = 11",  # algebra, not arithmetic
        "x + 2 * 3 = 8",  # the expression starts before the numbers
        "y - 5 + 3 = 1",
        "5 times 3 + 2 = 17",
        "half of 10 + 2 = 7",
        "20% of 50 = 10",
        "50 * 20% = 10",
        "10/50 = 20%",
        "3 + 4 = 7x",
        "3 + 4 = 7,8",
        "4 + 3 >= 7",
        "4 + 3 == 7",
        "At 10:30 + 2 = 5 we left.",
        "v2+3=5",
        "5/0 = 0",  # cannot be checked
    ],
)
def test_find_equations_rejects_non_equations(text: str) -> None:
    assert find_equations(text) == []


def test_find_equations_chain_keeps_the_checkable_part() -> None:
    # "12 + 1" is not a number, so "3 * 4 = 12" is not reported as a claim; the tail is.
    assert find_equations("3 * 4 = 12 + 1 = 13") == [("12 + 1 = 13", "12 + 1", "13")]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Fraction(10, 3), "3.33"),
        (Fraction(10, 3), "3.3"),
        (Fraction(10, 3), "3.333"),
        (Fraction(2, 3), "0.67"),
        (Fraction(5, 2), "2.5"),
        (Fraction(5, 2), "2.50"),
        (Fraction(12), "12"),
        (12, "12.00"),
        ("$1,200", 1200),
        ("10/3", Fraction(10, 3)),
        (Decimal("0.25"), Fraction(1, 4)),
        (0.1 + 0.2, Fraction(3, 10)),
        ("-3", -3),
    ],
)
def test_numbers_equal_true(a: object, b: object) -> None:
    assert numbers_equal(a, b)
    assert numbers_equal(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Fraction(10, 3), "3.34"),
        (Fraction(10, 3), "3"),  # an integer claim gets no rounding tolerance
        (Fraction(2, 3), "0.6"),
        (Fraction(12), "13"),
        (Fraction(25, 2), "12"),
        ("abc", 3),
        (None, 3),
        (True, 1),
        ("", 0),
    ],
)
def test_numbers_equal_false(a: object, b: object) -> None:
    assert not numbers_equal(a, b)
    assert not numbers_equal(b, a)
