"""Training data sources: `gsm8k` (hub), local files, hub datasets, and the built-in `synthetic-math`.

Every source yields rows `{"question": str, "answer": str}` (plus optional extra fields). Problems
with a row are reported as `file:line: field` so the user can fix the file.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from tunescope.core.data_files import SUFFIXES, read_records
from tunescope.core.errors import UserError

HUB_ALIASES = {"gsm8k": ("openai/gsm8k", "main")}


def _check_row(row: object, where: str, qf: str, af: str) -> dict:
    if not isinstance(row, dict):
        raise UserError("row is not a JSON object", where=where)
    for field in (qf, af):
        if field not in row:
            raise UserError(f"missing field '{field}' (row has: {', '.join(map(str, row)) or 'nothing'})",
                            where=where)
        value = row[field]
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            # A missing value in a table (null, NaN) would otherwise train on the text "None" or "nan".
            raise UserError(f"field '{field}' has no value ({'null' if value is None else value}); every row "
                            "needs text", where=where)
        if not isinstance(value, str | int | float) or not str(value).strip():
            raise UserError(f"field '{field}' is empty or not text", where=where)
    out = {k: v for k, v in row.items() if k not in (qf, af)}
    out["question"], out["answer"] = str(row[qf]), str(row[af])
    return out


def _load_hub(dataset_id: str, config: str | None, split: str) -> list[tuple[str, dict]]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as e:  # datasets raises many types for network/missing-repo problems
        raise UserError(
            f"could not load dataset '{dataset_id}' split '{split}' from the Hugging Face hub "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160]}); pass a local file instead "
            "(--set data.source=/path/to/train.jsonl)",
            where="data.source",
        ) from None
    return [(f"{dataset_id}[{split}][{i}]", row) for i, row in enumerate(ds)]


def load_rows(
    source: str,
    *,
    split: str = "train",
    question_field: str = "question",
    answer_field: str = "answer",
    limit: int | None = None,
    synthetic_size: int = 400,
    seed: int = 0,
    synthetic_families: str = "grade-school",
) -> list[dict]:
    """Load and validate rows from any supported source."""
    if source == "synthetic-math":
        from tunescope.data.synthetic import generate_problems

        rows = generate_problems(synthetic_size, seed=seed, families=synthetic_families)
        return rows[:limit] if limit else rows
    path = Path(source).expanduser()
    if path.suffix.lower() in SUFFIXES or path.exists():
        if path.is_dir():
            candidates = [p for p in sorted(path.iterdir()) if p.suffix.lower() in SUFFIXES
                          and split in p.stem]
            if not candidates:
                raise UserError(f"no {split} file (*{split}*.jsonl/json/csv/parquet) in directory",
                                where=str(path))
            path = candidates[0]
        if not path.is_file():
            raise UserError("data file not found", where=str(path))
        located = [(r.where, r.data) for r in read_records(path, header=True)]
    else:
        dataset_id, config = HUB_ALIASES.get(source, (source, None))
        located = _load_hub(dataset_id, config, split)
    if limit:
        located = located[:limit]
    if not located:
        raise UserError("the dataset is empty", where=str(source))
    return [_check_row(row, where, question_field, answer_field) for where, row in located]


def rows_hash(rows: list[dict]) -> str:
    """A content hash of the rows, recorded in the run manifest so a run names its exact data."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["question"], r["answer"]], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]
