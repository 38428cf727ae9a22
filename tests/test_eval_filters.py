"""Answer extraction and exact-match normalisation, as lm-eval's gsm8k defines them."""

from __future__ import annotations

import re

import pytest

from tunescope.evaluate.filters import FALLBACK, build_pipelines, regex_extract
from tunescope.evaluate.metrics import choice_metrics, exact_match, stderr
from tunescope.evaluate.spec import builtin_spec

STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
GSM8K_EM = dict(ignore_case=True, ignore_punctuation=False,
                regexes_to_ignore=[",", "\\$", "(?s).*#### ", "\\.$"])


def pipelines():
    return {p.name: p for p in build_pipelines(builtin_spec("gsm8k").filter_list)}


@pytest.mark.parametrize(
    ("text", "strict", "flexible"),
    [
        ("She pays $1,234.00 in total.\n#### 1234", "1234", "1234"),
        ("The cost is $1,234.00", FALLBACK, "$1,234.00"),
        ("It drops to -5 degrees.\n#### -5", "-5", "-5"),
        ("no number at all", FALLBACK, FALLBACK),
        ("3 apples and 4 pears make 7", FALLBACK, "7"),  # flexible takes the last match
        ("#### 12\n#### 13", "12", "13"),  # strict takes the first
        ("x = 7.", FALLBACK, "7."),
        ("", FALLBACK, FALLBACK),
    ],
)
def test_gsm8k_filters(text, strict, flexible):
    p = pipelines()
    assert p["strict-match"]([text]) == strict
    assert p["flexible-extract"]([text]) == flexible


def test_regex_group_handling():
    # A tuple match uses its first non-empty group; "[invalid]" when all are empty.
    assert regex_extract("value 42", FLEX, -1) == "42"
    assert regex_extract("$5", FLEX, -1) == "$5"
    assert regex_extract("a 1 b 22 c", FLEX, 0) == "1"
    assert regex_extract(None, STRICT) == FALLBACK  # non-string responses count as empty


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        ("1234", "Janet pays <<2*617=1234>>1234\n#### 1,234", 1),
        ("$1,234.00", "#### 1234", 0),  # ".00" is not stripped: only a trailing "." is
        ("$18", "Some work\n#### 18", 1),
        ("18.", "#### 18", 1),
        ("[invalid]", "#### 18", 0),
        ("-5", "#### -5", 1),
        ("ABC", "#### abc", 1),  # ignore_case
    ],
)
def test_exact_match_normalisation(prediction, target, expected):
    assert exact_match(prediction, target, **GSM8K_EM) == expected


def test_exact_match_options():
    assert exact_match("a.b", "ab", ignore_punctuation=True) == 1
    assert exact_match("a1", "a2", ignore_numbers=True) == 1
    assert exact_match("A", "a") == 0


def test_majority_vote_and_take_first_k():
    spec = builtin_spec("gsm8k")
    from tunescope.evaluate.task import override_spec

    spec = override_spec(spec, {"samples": 4})
    maj = {p.name: p for p in build_pipelines(spec.filter_list)}["maj@4"]
    assert maj(["so 5", "it is 7", "answer 5", "7"]) == "5"  # tie: first seen wins, as Counter.most_common
    assert maj(["no", "nothing", "x 3", "none"]) == FALLBACK
    k2 = build_pipelines([{"name": "k", "filter": [{"function": "take_first_k", "k": 2},
                                                   {"function": "take_first"}]}])[0]
    assert k2(["a", "b", "c"]) == "a"


def test_choice_metrics_and_stderr():
    # acc_norm divides by the character length of each choice.
    m = choice_metrics([-4.0, -5.0], ["ab", "abcdefghij"], gold=1)
    assert m == {"acc": 0, "acc_norm": 1}
    assert choice_metrics([-1.0, -1.0], ["a", "b"], gold=0)["acc"] == 1  # ties go to the first index
    assert stderr([1, 0, 1, 0]) == pytest.approx((1 / 3) ** 0.5 / 2)
    assert stderr([1]) == "N/A"
