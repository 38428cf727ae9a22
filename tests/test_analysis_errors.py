"""GSM8K error taxonomy on hand-written answers: each wrong answer lands in exactly one category."""

from __future__ import annotations

import json

import pytest

from tunescope.analysis.error_taxonomy import (
    ARITHMETIC_SLIP,
    CATEGORIES,
    CORRECT,
    FORMAT_FAILURE,
    MISREAD_QUANTITY,
    OTHER,
    STOPPED_EARLY,
    accuracy_by,
    diagnose,
    gold_answer,
    gold_steps,
    taxonomy,
)

QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?")
TARGET = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
          "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")

QUESTION_3 = "A shop sells 12 pens for $3 each and 5 notebooks for $4 each. How much do they cost in total?"
TARGET_3 = ("Pens cost 12*3 = <<12*3=36>>36.\nNotebooks cost 5*4 = <<5*4=20>>20.\n"
            "Total 36+20 = <<36+20=56>>56.\n#### 56")


def record(response: str, question: str = QUESTION, target: str = TARGET, doc_id: int = 0, **kw) -> dict:
    """A generation record without recorded metrics: correctness is recomputed from the response."""
    return {"doc_id": doc_id, "question": question, "target": target, "response": response, **kw}


# One hand-written answer per outcome. Comments say why the earlier categories do not apply.
CASES = {
    CORRECT: "In May she sold 48/2 = 24 clips. Altogether 48 + 24 = 72.\n#### 72",
    # No number at all.
    "format_failure/no_answer": "She sold a lot of clips in both months.",
    # Right number, but no '#### n': strict-match fails, flexible-extract is right (base-model style).
    "format_failure/misformatted_correct": "In May she sold 24 clips, so 48 + 24 = 72. The answer is 72.",
    # '48 + 24 = 82' is false.
    ARITHMETIC_SLIP: "In May she sold 48/2 = 24 clips. Altogether 48 + 24 = 82.\n#### 82",
    # Arithmetic is right, but it ends on the first gold step (24).
    STOPPED_EARLY: "In May she sold 48/2 = 24 clips.\n#### 24",
    # No false equation, 30 is no gold step, and the question's 48 is never used.
    MISREAD_QUANTITY: "She sold 30 clips in May, and in April twice that, 60 + 30 = 90.\n#### 90",
    # Uses 48, equations true, 73 is not a gold step: just wrong.
    OTHER: "In May she sold 48/2 = 24 clips. Then 48 + 24 + 1 = 73.\n#### 73",
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_hand_written_answer_lands_in_its_category(case):
    d = diagnose(record(CASES[case]))
    category, _, kind = case.partition("/")
    assert d["category"] == category
    if kind:
        assert d["format_failure_kind"] == kind
    assert d["gold"] == "72"


def test_categories_are_checked_in_priority_order():
    # False arithmetic AND an intermediate final answer AND an unused quantity: arithmetic wins.
    slip_and_early = "So 40 / 2 = 24 in May.\n#### 24"
    d = diagnose(record(slip_and_early))
    assert d["category"] == ARITHMETIC_SLIP
    assert d["evidence"] == {"equation": "40 / 2 = 24", "expression": "40 / 2", "claimed": "24",
                             "actual": "20"}
    # Intermediate final answer AND an unused quantity: stopped_early wins over misread_quantity.
    d = diagnose(record("In May she sold 24.\n#### 24", question=QUESTION))
    assert d["category"] == STOPPED_EARLY and d["evidence"]["gold_step"] == 1


def test_evidence_for_reasoning_categories():
    early = diagnose(record("Pens cost 12*3 = 36 and notebooks 5*4 = 20.\n#### 20", QUESTION_3, TARGET_3))
    assert early["category"] == STOPPED_EARLY
    assert early["evidence"] == {"gold_step": 2, "gold_steps": 3, "annotation": "<<5*4=20>>"}
    misread = diagnose(record("Pens cost 12*3 = 36 and notebooks cost 5 each, 36 + 25 = 61.\n#### 61",
                              QUESTION_3, TARGET_3))
    assert misread["category"] == MISREAD_QUANTITY
    assert misread["evidence"] == {"unused_question_numbers": ["4"]}
    # A false <<a=b>> annotation in the response is an arithmetic slip too.
    annotated = diagnose(record("Pens <<12*3=38>>38, notebooks <<5*4=20>>20, total <<38+20=58>>58\n#### 58",
                                QUESTION_3, TARGET_3))
    assert annotated["category"] == ARITHMETIC_SLIP and annotated["evidence"]["actual"] == "36"


def test_recorded_metrics_and_filters_take_precedence():
    # The run's own 0/1 metrics decide correctness, so taxonomy counts match the reported accuracy.
    rec = record("The answer is 72.", filtered={"strict-match": "[invalid]", "flexible-extract": "72"},
                 metrics={"exact_match,strict-match": 0, "exact_match,flexible-extract": 1})
    d = diagnose(rec)
    assert d["category"] == FORMAT_FAILURE and d["format_failure_kind"] == "misformatted_correct"
    assert d["correct_flexible"] is True and d["correct_strict"] is False
    rec = record("#### 72", metrics={"exact_match,strict-match": 1, "exact_match,flexible-extract": 1})
    assert diagnose(rec)["category"] == CORRECT


def test_taxonomy_partitions_wrong_answers_with_examples():
    records = [record(text, doc_id=i) for i, text in enumerate(CASES.values())]
    records += [record(CASES[OTHER], doc_id=99), record(CASES[OTHER], doc_id=100)]
    out = taxonomy(records, examples_per_category=2)
    json.dumps(out)
    assert out["n"] == 9 and out["n_correct"] == 1 and out["n_wrong"] == 8
    assert out["counts"] == {FORMAT_FAILURE: 2, ARITHMETIC_SLIP: 1, STOPPED_EARLY: 1, MISREAD_QUANTITY: 1,
                             OTHER: 3}
    assert sum(out["counts"].values()) == out["n_wrong"]  # every wrong answer in exactly one bucket
    assert out["format_failure_kinds"] == {"no_answer": 1, "misformatted_correct": 1}
    assert [c["category"] for c in out["categories"]] == list(CATEGORIES)
    other = out["categories"][-1]
    assert [e["doc_id"] for e in other["examples"]] == [6, 99]  # first ones, capped at 2
    assert other["share_of_wrong"] == pytest.approx(3 / 8)
    assert out["accuracy_strict"] == pytest.approx(1 / 9)
    assert out["accuracy_flexible"] == pytest.approx(2 / 9)  # + the misformatted correct answer
    assert taxonomy([])["available"] is False


def test_gold_helpers_and_accuracy_by_gold_steps():
    assert (gold_answer(TARGET) == "72" and gold_answer("#### 1,234") == "1234"
            and gold_answer("no answer") is None)
    assert gold_steps(record("", target=TARGET)) == 2 and gold_steps(record("", target=TARGET_3)) == 3
    recs = [
        {"target": TARGET, "metrics": {"exact_match,strict-match": 1}},
        {"target": TARGET, "metrics": {"exact_match,strict-match": 0}},
        {"target": TARGET_3, "metrics": {"exact_match,strict-match": 0}},
        {"target": TARGET_3},  # no metric: skipped
    ]
    out = accuracy_by(recs, gold_steps)
    json.dumps(out)
    assert out["n_skipped"] == 1
    assert ([(g["key"], g["n"], g["n_correct"], g["accuracy"]) for g in out["groups"]]
            == [(2, 2, 1, 0.5), (3, 1, 0, 0.0)])
    assert out["groups"][0]["stderr"] == pytest.approx(0.5)
    assert out["groups"][1]["stderr"] is None
    assert accuracy_by([], gold_steps)["available"] is False
