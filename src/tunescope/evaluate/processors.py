"""Turning raw rows into the documents a task's templates read.

A task names its processor with `process_docs:` in YAML. Each processor accepts every shape the
data is published in and checks the fields it needs, naming `file:line` and the field when one is
missing.

HellaSwag shapes
- hub (`Rowan/hellaswag`): `activity_label, ctx_a, ctx_b, endings, label` (label a string). lm-eval
  builds `query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`.
- cleaned local file (`shared/data/hellaswag/validation.jsonl`): `activity_label, ctx, endings,
  label` (label an int), where `ctx` is already `ctx_a + " " + ctx_b` with ctx_b *not* capitalized.
  The query is `preprocess(activity_label + ": " + ctx)`: ctx_a and ctx_b can no longer be told
  apart, so the capital letter lm-eval puts at the start of ctx_b is missing. Scores on this file
  therefore differ slightly from lm-eval's `hellaswag` on the hub data (same items, a few prompts
  differ by the case of one letter).

MMLU shapes
- hub (`cais/mmlu`): `question, subject, choices[4], answer` (answer an int 0-3).
- original CSV, no header: `question, A, B, C, D, answer_letter`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tunescope.core.data_files import Record
from tunescope.core.errors import UserError

Doc = dict[str, Any]


def _require(row: Record, fields: list[str]) -> dict[str, Any]:
    if not isinstance(row.data, dict):
        raise UserError(f"expected named fields {fields}, got a row of {len(row.data)} unnamed values",
                        where=row.where)
    for name in fields:
        if name not in row.data or row.data[name] is None:
            raise UserError(f"missing field '{name}' (this task needs {', '.join(fields)})", where=row.where)
    return row.data


def _csv_with_header(rows: list[Record], fields: list[str]) -> list[Record]:
    """CSV rows with a header line become dict rows; rows of other files pass through."""
    if not rows or not isinstance(rows[0].data, list):
        return rows
    header = [h.strip() for h in rows[0].data]
    if not set(fields) <= set(header):
        missing = sorted(set(fields) - set(header))
        raise UserError(f"CSV header lacks field(s) {missing} (this task needs {', '.join(fields)})",
                        where=rows[0].where)
    return [Record(dict(zip(header, r.data, strict=False)), r.where) for r in rows[1:]]


def plain(rows: list[Record], required: list[str]) -> list[Doc]:
    """Rows used as they are, after checking the task's required fields."""
    rows = _csv_with_header(rows, required)
    return [dict(_require(r, required)) for r in rows]


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag text cleaning (the brackets are WikiHow markup)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag(rows: list[Record], required: list[str]) -> list[Doc]:
    rows = _csv_with_header(rows, ["activity_label", "endings", "label"])
    docs = []
    for row in rows:
        data = row.data if isinstance(row.data, dict) else {}
        if "ctx_a" in data:  # raw hub shape
            _require(row, ["activity_label", "ctx_a", "ctx_b", "endings", "label"])
            ctx = data["ctx_a"] + " " + data["ctx_b"].capitalize()
        else:  # cleaned shape: ctx already joined, ctx_b not capitalized
            _require(row, ["activity_label", "ctx", "endings", "label"])
            ctx = data["ctx"]
        endings = data["endings"]
        if not isinstance(endings, list) or not endings:
            raise UserError("field 'endings' must be a non-empty list of strings", where=row.where)
        label = data["label"]
        if isinstance(label, str) and not label.strip().isdigit():
            raise UserError(f"field 'label' must be an integer index, got {label!r}", where=row.where)
        doc = dict(data)
        doc.update(
            query=hellaswag_preprocess(data["activity_label"] + ": " + ctx),
            choices=[hellaswag_preprocess(e) for e in endings],
            gold=int(label),
        )
        docs.append(doc)
    return docs


_LETTERS = "ABCD"


def mmlu(rows: list[Record], required: list[str]) -> list[Doc]:
    docs = []
    for row in rows:
        if isinstance(row.data, list):  # original CSV layout
            if len(row.data) != 6:
                raise UserError(
                    f"expected 6 columns (question,A,B,C,D,answer_letter), got {len(row.data)}",
                    where=row.where
                )
            question, a, b, c, d, letter = row.data
            letter = letter.strip().upper()
            if letter not in _LETTERS:
                raise UserError(f"field 'answer' must be one of A-D, got {letter!r}", where=row.where)
            docs.append({"question": question, "choices": [a, b, c, d], "answer": _LETTERS.index(letter)})
            continue
        data = _require(row, ["question", "choices", "answer"])
        answer = data["answer"]
        if isinstance(answer, str):
            answer = (_LETTERS.index(answer.strip().upper()) if answer.strip().upper() in _LETTERS
                      else int(answer))
        docs.append({**data, "answer": answer})
    return docs


PROCESSORS: dict[str | None, Callable[[list[Record], list[str]], list[Doc]]] = {
    None: plain,
    "hellaswag": hellaswag,
    "mmlu": mmlu,
}


def process(name: str | None, rows: list[Record], required: list[str]) -> list[Doc]:
    if name not in PROCESSORS:
        raise UserError(f"unknown process_docs '{name}' (known: {[k for k in PROCESSORS if k]})",
                        where="task")
    return PROCESSORS[name](rows, required)
