"""Reading a task's rows: from a local file or folder, or from the Hugging Face hub.

Every row carries `where` ("file:line") so a processor can name the exact place a field is
missing. Local files may be .jsonl, .json, .csv or .parquet; a folder is searched for a file per
split (`test.jsonl`, `<name>_test.csv`, `test/<name>_test.csv`, ...).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunescope.errors import UserError
from tunescope.runio import iter_jsonl

EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")


@dataclass
class Row:
    """One raw record and where it came from."""

    data: dict[str, Any] | list[str]
    where: str


def read_file(path: Path) -> list[Row]:
    """All rows of one local file. CSV rows stay lists (layouts without a header are common)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        for lineno, obj in iter_jsonl(path):
            if not isinstance(obj, dict):
                raise UserError("expected a JSON object per line", where=f"{path}:{lineno}")
            rows.append(Row(obj, f"{path}:{lineno}"))
        return rows
    if suffix == ".json":
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(f"invalid JSON: {err.msg}", where=f"{path}:{err.lineno}") from None
        if isinstance(obj, dict):  # {"data": [...]} or {"rows": [...]} wrappers
            lists = [v for v in obj.values() if isinstance(v, list)]
            obj = lists[0] if len(lists) == 1 else [obj]
        return [Row(x, f"{path}:record {i}") for i, x in enumerate(obj, start=1)]
    if suffix == ".csv":
        rows = []
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            start = 1
            for record in reader:
                if record:
                    rows.append(Row(record, f"{path}:{start}"))
                start = reader.line_num + 1
        return rows
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return [Row(x, f"{path}:row {i}") for i, x in enumerate(table.to_pylist(), start=1)]
    raise UserError(f"unsupported file type '{suffix}' (use one of {', '.join(EXTENSIONS)})", where=str(path))


def find_split_file(folder: Path, split: str, dataset_name: str | None) -> Path | None:
    """The file in `folder` that holds `split`, trying the common layouts in order."""
    stems = [split]
    if dataset_name:
        stems += [f"{dataset_name}_{split}", f"{split}/{dataset_name}_{split}", f"{dataset_name}/{split}"]
    for stem in stems:
        for ext in EXTENSIONS:
            candidate = folder / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    # Hub exports: test-00000-of-00001.parquet and the like.
    matches = sorted(p for ext in EXTENSIONS for p in folder.glob(f"{split}-*{ext}"))
    return matches[0] if len(matches) == 1 else None


def load_local_split(path: Path, split: str, *, eval_split: str | None, dataset_name: str | None) -> list[Row] | None:
    """Rows of `split` from a local file or folder; None when that split is not there.

    A single file stands for the evaluated split only (there is nowhere to draw few-shot examples from).
    """
    if not path.exists():
        raise UserError(f"data path '{path}' does not exist", where="data_path")
    if path.is_file():
        return read_file(path) if split == eval_split else None
    found = find_split_file(path, split, dataset_name)
    return read_file(found) if found is not None else None


def load_hub_split(dataset_path: str, dataset_name: str | None, split: str, task: str) -> list[Row]:
    """Rows of a hub dataset split via `datasets.load_dataset`; offline is a UserError with the fix."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset_path, dataset_name, split=split)
    except Exception as err:  # connection errors, offline mode, missing repo: all have one remedy
        raise UserError(
            f"could not download dataset {dataset_path}"
            f"{'/' + dataset_name if dataset_name else ''} ({type(err).__name__}); "
            f"pass a local copy with --data-path {task}=PATH",
            where=task,
        ) from None
    return [Row(dict(x), f"{dataset_path}[{split}]:{i}") for i, x in enumerate(ds)]
