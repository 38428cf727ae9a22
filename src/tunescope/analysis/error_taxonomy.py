"""GSM8K error taxonomy: why each wrong answer was wrong, in exactly one category.

Definitions (these decide every count in the report):

* **correct** — the answer earns *strict-match* credit (``exact_match,strict-match`` = 1): the
  right number, given in the task's ``#### n`` answer format. Strict-match is the headline metric, so
  everything it does not credit is an error to explain, including right numbers in the wrong format.
* **wrong** — every other answer. Each wrong answer goes into the *first* category that applies:

  1. ``format_failure`` — no usable final answer. Two kinds, reported separately:
     ``no_answer`` (the response contains no number at all) and ``misformatted_correct`` (strict
     failed but *flexible-extract* — the last number in the response — is right: correct reasoning,
     wrong format). The second kind is what separates a base model that solves the problem but never
     writes ``#### n`` from one that cannot solve it.
  2. ``arithmetic_slip`` — the response states an equation ``a op b = c`` (free text or a
     ``<<a op b=c>>`` annotation) whose left side does not evaluate to ``c``.
  3. ``stopped_early`` — the final answer equals an intermediate result of the gold solution's
     ``<<…>>`` chain (the model stopped a step or more short).
  4. ``misread_quantity`` — a quantity from the question that the gold solution uses never appears
     in the response (the model dropped or misread it). When the gold solution has no annotations,
     every number in the question counts.
  5. ``other`` — none of the above (wrong plan, wrong operation, unsupported claims, …).

From 2 on, "final answer" means the flexible-extract value: the last number in the response, which
is what the model ended on. Arithmetic is checked with ``tunescope.core.arith`` (an ``ast`` walker, never
``eval``). Limitations: numbers written as words ("three") are not recognised as quantities.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tunescope.core.arith import evaluate_expression, find_equations, numbers_equal, parse_annotations

from ._util import unavailable
from .stats import mean_stderr

STRICT = "exact_match,strict-match"
FLEXIBLE = "exact_match,flexible-extract"

FORMAT_FAILURE = "format_failure"
ARITHMETIC_SLIP = "arithmetic_slip"
STOPPED_EARLY = "stopped_early"
MISREAD_QUANTITY = "misread_quantity"
OTHER = "other"
CORRECT = "correct"
#: Categories in the priority order in which they are checked.
CATEGORIES = (FORMAT_FAILURE, ARITHMETIC_SLIP, STOPPED_EARLY, MISREAD_QUANTITY, OTHER)
DESCRIPTIONS = {
    FORMAT_FAILURE: "no usable '#### n' answer: no number at all, or the right number in the wrong format",
    ARITHMETIC_SLIP: "states an equation 'a op b = c' that is false",
    STOPPED_EARLY: "final answer is an intermediate result of the gold solution",
    MISREAD_QUANTITY: "a quantity from the question that the gold solution uses never appears in the "
                      "response",
    OTHER: "wrong for another reason (plan, operation, unsupported step)",
}
DEFINITION = (
    "correct = strict-match credit (right number in '#### n' format); every other answer is wrong and "
    "lands in the first matching category of: " + ", ".join(CATEGORIES)
)

# A number as written in maths text: thousands separators, decimals, optional leading minus.
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
# lm-evaluation-harness's gsm8k filters, used only when a record lacks its filtered values.
_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_SNIPPET = 160


def gold_answer(target: str) -> str | None:
    """The gold final answer: the text after the last ``####`` of a GSM8K solution."""
    if not target or "####" not in target:
        return None
    return target.rsplit("####", 1)[1].strip().replace(",", "") or None


def gold_steps(record: Mapping[str, Any]) -> int:
    """Number of ``<<expr=result>>`` annotations (calculator steps) in the gold solution."""
    return len(parse_annotations(record.get("target") or ""))


def _numbers(text: str) -> list[str]:
    return _NUMBER_RE.findall(text or "")


def _filtered(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(strict, flexible) extracted answers, recomputed with lm-eval's regexes if not recorded."""
    filt = record.get("filtered") or {}
    response = record.get("response") or ""
    strict = filt.get("strict-match")
    if strict is None:
        m = _STRICT_RE.search(response)
        strict = m.group(1) if m else None
    flexible = filt.get("flexible-extract")
    if flexible is None:
        found = [a or b for a, b in _FLEXIBLE_RE.findall(response)]
        flexible = found[-1] if found else None
    clean = [None if v in (None, "[invalid]") else str(v).strip().rstrip(".") for v in (strict, flexible)]
    return clean[0], clean[1]


def _credited(record: Mapping[str, Any], key: str, answer: str | None, gold: str | None) -> bool:
    """The recorded 0/1 metric if present (so counts match the reported accuracy), else a numeric check."""
    value = (record.get("metrics") or {}).get(key)
    if value is not None:
        return bool(value)
    return answer is not None and gold is not None and numbers_equal(answer, gold)


def _false_equation(response: str) -> dict[str, str] | None:
    """The first stated equation (free text or ``<<a=b>>``) whose claimed value is wrong."""
    candidates = [(full, expr, claimed) for full, expr, claimed in find_equations(response)]
    candidates += [(f"<<{expr}={res}>>", expr, res) for expr, res in parse_annotations(response)]
    for full, expr, claimed in candidates:
        value = evaluate_expression(expr)
        if value is not None and not numbers_equal(value, claimed):
            return {"equation": full, "expression": expr, "claimed": claimed, "actual": str(value)}
    return None


def _intermediate_match(final: str, target: str, gold: str | None) -> dict[str, Any] | None:
    """The gold step whose result equals ``final`` (the final gold result itself does not count)."""
    steps = parse_annotations(target)
    for i, (expr, result) in enumerate(steps, start=1):
        if gold is not None and numbers_equal(result, gold):
            continue
        if numbers_equal(final, result):
            return {"gold_step": i, "gold_steps": len(steps), "annotation": f"<<{expr}={result}>>"}
    return None


def _unused_quantities(question: str, target: str, response: str) -> list[str]:
    """Question numbers (those the gold solution uses, if it is annotated) absent from the response."""
    quantities = _numbers(question)
    annotations = parse_annotations(target)
    if annotations:
        used_by_gold = [n for expr, _ in annotations for n in _numbers(expr)]
        quantities = [q for q in quantities if any(numbers_equal(q, g) for g in used_by_gold)]
    in_response = _numbers(response)
    missing: list[str] = []
    for q in quantities:
        if not any(numbers_equal(q, r) for r in in_response) and q not in missing:
            missing.append(q)
    return missing


def diagnose(record: Mapping[str, Any]) -> dict[str, Any]:
    """Classify one generation record and return the evidence for the category.

    Returns ``{"category", "format_failure_kind", "correct_strict", "correct_flexible",
    "final_answer", "gold", "evidence"}``; ``category`` is ``"correct"`` or one of ``CATEGORIES``.
    """
    response = record.get("response") or ""
    target = record.get("target") or ""
    gold = gold_answer(target)
    strict, flexible = _filtered(record)
    ok_strict = _credited(record, STRICT, strict, gold)
    ok_flexible = _credited(record, FLEXIBLE, flexible, gold)
    out: dict[str, Any] = {"category": None, "format_failure_kind": None, "correct_strict": ok_strict,
                           "correct_flexible": ok_flexible, "final_answer": flexible, "gold": gold,
                           "evidence": None}
    if ok_strict:
        out["category"] = CORRECT
        return out
    if not re.search(r"\d", response):
        out.update(category=FORMAT_FAILURE, format_failure_kind="no_answer",
                   evidence={"reason": "the response contains no number"})
        return out
    if ok_flexible:
        out.update(category=FORMAT_FAILURE, format_failure_kind="misformatted_correct",
                   evidence={"reason": "right number, not given as '#### n'", "strict_extracted": strict})
        return out
    final = flexible if flexible is not None else (_numbers(response) or [None])[-1]
    out["final_answer"] = final
    if (slip := _false_equation(response)) is not None:
        out.update(category=ARITHMETIC_SLIP, evidence=slip)
    elif final is not None and (step := _intermediate_match(final, target, gold)) is not None:
        out.update(category=STOPPED_EARLY, evidence=step)
    elif (missing := _unused_quantities(record.get("question") or "", target, response)):
        out.update(category=MISREAD_QUANTITY, evidence={"unused_question_numbers": missing})
    else:
        out["category"] = OTHER
    return out


def _snippet(text: str) -> str:
    """Head and tail of a long text: the tail is where the final answer is."""
    text = text or ""
    if len(text) <= 2 * _SNIPPET:
        return text
    return text[:_SNIPPET] + " … " + text[-_SNIPPET:]


def taxonomy(records: Sequence[Mapping[str, Any]], examples_per_category: int = 2) -> dict[str, Any]:
    """Counts and example snippets of each error category over a list of generation records.

    Examples are the first ones in input order, so the output is deterministic. Returns
    ``{"available", "definition", "n", "n_correct", "n_wrong", "n_correct_flexible", "accuracy_strict",
    "accuracy_flexible", "counts", "format_failure_kinds", "categories": [{"category", "description",
    "count", "share_of_wrong", "share_of_all", "examples": [{"doc_id", "question", "response",
    "final_answer", "gold", "evidence"}]}]}``.
    """
    if not records:
        return unavailable("no generation records")
    diagnoses = [diagnose(r) for r in records]
    n = len(records)
    counts = {c: 0 for c in CATEGORIES}
    kinds = {"no_answer": 0, "misformatted_correct": 0}
    examples: dict[str, list[dict[str, Any]]] = {c: [] for c in CATEGORIES}
    for rec, d in zip(records, diagnoses, strict=True):
        cat = d["category"]
        if cat == CORRECT:
            continue
        counts[cat] += 1
        if d["format_failure_kind"]:
            kinds[d["format_failure_kind"]] += 1
        if len(examples[cat]) < examples_per_category:
            examples[cat].append({"doc_id": rec.get("doc_id"),
                                  "question": _snippet(rec.get("question") or ""),
                                  "response": _snippet(rec.get("response") or ""),
                                  "final_answer": d["final_answer"], "gold": d["gold"],
                                  "evidence": d["evidence"]})
    n_correct = sum(d["category"] == CORRECT for d in diagnoses)
    n_wrong = n - n_correct
    n_flex = sum(bool(d["correct_flexible"]) for d in diagnoses)
    return {
        "available": True,
        "definition": DEFINITION,
        "n": n,
        "n_correct": n_correct,
        "n_wrong": n_wrong,
        "n_correct_flexible": n_flex,
        "accuracy_strict": n_correct / n,
        "accuracy_flexible": n_flex / n,
        "counts": counts,
        "format_failure_kinds": kinds,
        "categories": [
            {"category": c, "description": DESCRIPTIONS[c], "count": counts[c],
             "share_of_wrong": counts[c] / n_wrong if n_wrong else None, "share_of_all": counts[c] / n,
             "examples": examples[c]}
            for c in CATEGORIES
        ],
    }


def _sort_key(key: Any) -> tuple[int, Any]:
    # Numbers in numeric order first, then everything else by its text, so mixed keys never raise.
    return (0, key) if isinstance(key, int | float) and not isinstance(key, bool) else (1, str(key))


def accuracy_by(
    records: Sequence[Mapping[str, Any]],
    key_fn: Callable[[Mapping[str, Any]], Any],
    metric: str = STRICT,
) -> dict[str, Any]:
    """Accuracy per group, e.g. per problem cluster or per number of gold steps (``key_fn=gold_steps``).

    Records whose key is ``None`` or that lack ``metrics[metric]`` are skipped and counted. Returns
    ``{"available", "metric", "n", "n_skipped", "groups": [{"key", "n", "n_correct", "accuracy",
    "stderr"}]}`` with groups sorted by key.
    """
    groups: dict[Any, list[float]] = {}
    skipped = 0
    for rec in records:
        key = key_fn(rec)
        value = (rec.get("metrics") or {}).get(metric)
        if key is None or value is None:
            skipped += 1
            continue
        groups.setdefault(key, []).append(float(value))
    if not groups:
        return unavailable(f"no records with a key and a '{metric}' value", n_skipped=skipped)
    rows = [
        {"key": key, "n": len(v), "n_correct": int(sum(v)), "accuracy": sum(v) / len(v),
         "stderr": mean_stderr(v)}
        for key, v in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))
    ]
    return {"available": True, "metric": metric, "n": sum(r["n"] for r in rows), "n_skipped": skipped,
            "groups": rows}
