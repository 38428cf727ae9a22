"""Safe arithmetic for grade-school maths text.

GSM8K solutions carry calculator annotations (`<<48/2=24>>`) and model outputs are full of small
equations ("3 * 4 = 12"). Checking them needs an evaluator, but the text comes from a dataset or a
model, so it is never handed to `eval`: it is parsed with `ast` and only numeric literals, unary
+/- and the arithmetic operators are walked. Values are `Fraction`s so that `1/3*3` is exactly 1
and a decimal literal such as `0.1` means exactly one tenth.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

MAX_EXPRESSION_CHARS = 200
MAX_POWER_EXPONENT = 10
# About 10**308. Grade-school arithmetic never gets near it; the bound stops `9**10**10`-style
# inputs from eating memory and CPU.
MAX_RESULT_BITS = 1024

_BINARY_OPS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: lambda a, b: Fraction(a // b),
    ast.Mod: operator.mod,
}

# A literal as a person writes it. Stricter than Python's grammar on purpose: no hex, binary,
# underscores or complex numbers, which are not arithmetic notation in maths text.
_LITERAL_RE = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,3})?")
# A whole number with thousands separators ("1,234,567"); a comma in any other place is left alone
# so that "1,23" stays a syntax error instead of silently becoming 123.
_THOUSANDS_RE = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")
# "x"/"X" is multiplication only between operands ("5 x 2", "(3)x4"), never inside a word.
_LETTER_TIMES_RE = re.compile(r"(?<=[\d)])\s*[xX]\s*(?=[\d(.$])")
_SYMBOLS = (
    ("\\times", "*"),
    ("\\cdot", "*"),
    ("\\div", "/"),
    ("×", "*"),
    ("÷", "/"),
    ("−", "-"),  # U+2212 MINUS SIGN, common in typeset text
    ("^", "**"),  # people write powers with a caret; in Python it would be XOR
)


class _Rejected(Exception):
    """Raised inside the tree walk for anything that is not plain arithmetic."""


def _normalise(text: str) -> str:
    """Rewrite GSM8K / model notations into Python arithmetic syntax."""
    s = text.strip().replace("$", "")
    s = _THOUSANDS_RE.sub(lambda m: m.group(0).replace(",", ""), s)
    for old, new in _SYMBOLS:
        s = s.replace(old, new)
    return _LETTER_TIMES_RE.sub("*", s)


def _checked(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_RESULT_BITS or value.denominator.bit_length() > MAX_RESULT_BITS:
        raise _Rejected("result too large")
    return value


def _walk(node: ast.AST, source: str) -> Fraction:
    if isinstance(node, ast.Expression):
        return _walk(node.body, source)
    if isinstance(node, ast.Constant):
        # bool is an int subclass; `True + 1` is not arithmetic text.
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _Rejected("not a number")
        written = ast.get_source_segment(source, node) or ""
        if not _LITERAL_RE.fullmatch(written):
            raise _Rejected(f"unsupported literal {written!r}")
        # Convert from the text as written so that 0.1 is exactly 1/10, not the nearest float.
        return _checked(Fraction(written))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _walk(node.operand, source)
        return value if isinstance(node.op, ast.UAdd) else -value
    if isinstance(node, ast.BinOp):
        left = _walk(node.left, source)
        right = _walk(node.right, source)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        op = _BINARY_OPS.get(type(node.op))
        if op is None:
            raise _Rejected("operator not allowed")
        if right == 0 and isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod):
            raise _Rejected("division by zero")
        return _checked(op(left, right))
    raise _Rejected(f"{type(node).__name__} not allowed")


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1 or abs(exponent) > MAX_POWER_EXPONENT:
        raise _Rejected("exponent must be a small integer")
    if base == 0 and exponent < 0:
        raise _Rejected("division by zero")
    return base ** int(exponent)


def evaluate_expression(text: str) -> Fraction | None:
    """Evaluate an arithmetic expression exactly, or return None if it is not one.

    Accepts numeric literals, unary +/-, `+ - * / // % **` (integer exponents with |exp| <= 10) and
    parentheses, plus the notations found in GSM8K and model outputs: `$`, thousands separators
    (`1,234`), `x`/`×`/`\\times` for multiplication, `÷`/`\\div` for division and `^` for powers.
    `%` is modulo, not percent. Returns None for anything else (names, calls, attributes,
    comparisons), for division by zero, for results beyond `MAX_RESULT_BITS`, and for inputs longer
    than `MAX_EXPRESSION_CHARS`.
    """
    if not isinstance(text, str) or len(text) > MAX_EXPRESSION_CHARS:
        return None
    source = _normalise(text)
    try:
        tree = ast.parse(source, mode="eval")
        return _walk(tree, source)
    except (_Rejected, SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError,
            RecursionError, MemoryError):
        return None


_ANNOTATION_RE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")


def parse_annotations(solution: str) -> list[tuple[str, str]]:
    """All `<<expr=result>>` calculator annotations in a GSM8K-style solution, as (expr, result)."""
    return [(m.group(1).strip(), m.group(2).strip()) for m in _ANNOTATION_RE.finditer(solution)]


# --- equations in free text -------------------------------------------------------------------

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_OPERAND = rf"(?:\(\s*)*[-−]?\$?{_NUM}(?:\s*\))*"
_OP = r"(?:[-+*/×÷xX^−]|\\times|\\div|\\cdot)"
_EQUATION_RE = re.compile(
    # Not in the middle of a number, word, date, time or a longer expression.
    r"(?<![\w.,:;^$%/*+\-=×÷−)\]{}\\])"
    rf"(?P<expr>{_OPERAND}(?:\s*{_OP}\s*{_OPERAND})+)"
    r"\s*=\s*"
    rf"(?P<claimed>[-−]?\$?{_NUM})"
    # The claimed value must end there: not "12.5" cut to "12", not "20%", not "12x", and not a
    # chain "= 12 + 1" whose right-hand side is itself an expression.
    rf"(?!\w|[.,]\d|\s*%|\s*{_OP}\s*[-\d$(.])"
)
# Words after which a number is an operand of a longer, partly verbal expression: in
# "5 times 3 + 2 = 17" the equation is not "3 + 2 = 17".
_OPERATOR_WORDS = frozenset({"times", "plus", "minus", "by", "over", "x", "than", "per"})
_FRACTION_OF_RE = re.compile(
    r"(?:half|halves|twice|double|triple|thirds?|quarters?|fourths?|fifths?|sixths?|sevenths?|eighths?"
    r"|ninths?|tenths?|percent|%|\d+/\d+)\s+of\s*$",
    re.IGNORECASE,
)


def _continues_expression(before: str, expr: str) -> bool:
    """True if the text before `expr` shows it is only the tail of a longer expression."""
    stripped = before.rstrip()
    if not stripped:
        return False
    if stripped[-1] in "+-*/×÷^−%<>≤≥≈":
        return True
    if _FRACTION_OF_RE.search(stripped):  # "half of 10 + 2 = 7"
        return True
    last_word = re.search(r"([A-Za-z]+)$", stripped)
    if last_word and last_word.group(1).lower() in _OPERATOR_WORDS:
        return True
    # "y - 5 + 3 = 1": a leading minus after a word or a bracket is a binary minus.
    return expr[0] in "-−" and (stripped[-1].isalnum() or stripped[-1] == ")")


def find_equations(text: str) -> list[tuple[str, str, str]]:
    """Equations `<expr> = <number>` written in free text, as (full_match, expr, claimed).

    `expr` is made of numbers (optionally with `$` and thousands separators), parentheses and at
    least one operator; `claimed` is the number after `=` with `$` and thousands separators removed.
    Only equations whose left side `evaluate_expression` can evaluate are returned, so every result
    can be checked. The matcher errs towards missing an equation rather than inventing one: numbers
    glued to words, dates, times, percentages and expressions that continue beyond the match in
    words or symbols are skipped.
    """
    found: list[tuple[str, str, str]] = []
    for m in _EQUATION_RE.finditer(text):
        start, expr = m.start(), m.group("expr")
        # A leading "(" that is never closed belongs to the prose: "(3 + 4 = 7)".
        while expr.count("(") > expr.count(")") and expr.startswith("("):
            trimmed = expr[1:].lstrip()
            start += len(expr) - len(trimmed)
            expr = trimmed
        if expr.count("(") != expr.count(")"):
            continue
        if _continues_expression(text[:start], expr):
            continue
        if re.search(r"(?<![\d.,])0\d", expr):  # "2023-01-05": a leading zero marks a code, not a number
            continue
        if evaluate_expression(expr) is None:
            continue
        claimed = m.group("claimed").replace("$", "").replace(",", "").replace("−", "-")
        found.append((text[start:m.end()], expr, claimed))
    return found


# --- comparing and printing numbers ------------------------------------------------------------

def _as_number(value: object) -> tuple[Fraction, int | None] | None:
    """The exact value and, for a decimal as written, its number of decimal places."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Fraction):
        return Fraction(value), None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else None
        return Fraction(value), places
    if isinstance(value, float):
        return (Fraction(str(value)), None) if math.isfinite(value) else None
    if isinstance(value, str):
        s = value.strip().replace("$", "").replace("−", "-")
        s = _THOUSANDS_RE.sub(lambda m: m.group(0).replace(",", ""), s)
        try:
            number = Fraction(s)
        except (ValueError, ZeroDivisionError):
            return None
        decimals = re.fullmatch(r"[-+]?\d*\.(\d+)", s)
        return number, len(decimals.group(1)) if decimals else None
    return None


def numbers_equal(a: object, b: object) -> bool:
    """True if `a` and `b` are the same number, allowing a decimal to be a rounding of the other.

    Inputs may be `Fraction`, `int`, `Decimal`, `float` or strings ("3.33", "$1,200", "10/3"). A
    decimal written with d places counts as equal to a value it rounds to at d places, so "3.33" and
    "3.3" both equal 10/3 but "3.34" and "3" do not. Floats get a tiny relative tolerance because
    their last digits are binary noise. Unparseable inputs are never equal.
    """
    left, right = _as_number(a), _as_number(b)
    if left is None or right is None:
        return False
    diff = abs(left[0] - right[0])
    if diff == 0:
        return True
    for _, places in (left, right):
        if places is not None and places >= 1 and diff <= Fraction(1, 2 * 10**places):
            return True
    if isinstance(a, float) or isinstance(b, float):
        return diff <= Fraction(1, 10**9) * max(1, abs(left[0]), abs(right[0]))
    return False
