"""Records of a local data file, each with the place it came from.

One reader for the training data and the evaluation tasks, so a file that one accepts the other
accepts too, and a bad record is named the same way in both (`file:line`, `file: record N`).

- `.jsonl`: one JSON object per line;
- `.json`: a list of objects, or an object holding exactly one list (`{"data": [...]}`, `{"rows": [...]}`);
- `.csv`: with `header=True`, objects keyed by the first line; with `header=False`, lists of values
  (MMLU's original files have no header, so the evaluation tasks decide per task);
- `.parquet`: one object per row.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunescope.core.errors import UserError
from tunescope.store.fileio import iter_jsonl, not_utf8

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass
class Record:
    data: dict[str, Any] | list[str]
    where: str  # "file:line" (JSON Lines, CSV) or "file: record N" (JSON, Parquet), 1-based


def read_records(path: Path, *, header: bool = True) -> list[Record]:
    """All records of `path`; a UserError naming the file (and line or record) for anything malformed."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [Record(_object(obj, f"{path}:{lineno}"), f"{path}:{lineno}")
                for lineno, obj in iter_jsonl(path)]
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path, header)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise UserError(f"unsupported file type '{suffix}' (use one of {', '.join(SUFFIXES)})", where=str(path))


def _read_parquet(path: Path) -> list[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"not a readable Parquet file ({str(e).splitlines()[0][:160]})",
                        where=str(path)) from None
    return [Record(x, f"{path}: record {i}") for i, x in enumerate(rows, start=1)]


def _object(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UserError(f"expected a JSON object, got {type(obj).__name__}", where=where)
    return obj


def _read_json(path: Path) -> list[Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except json.JSONDecodeError as err:
        raise UserError(f"not valid JSON ({err.msg})", where=f"{path}:{err.lineno}") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
    if not isinstance(data, list):
        raise UserError('expected a JSON list of objects, or an object holding one list such as '
                        '{"data": [...]}',
                        where=str(path))
    return [Record(_object(x, f"{path}: record {i}"), f"{path}: record {i}")
            for i, x in enumerate(data, start=1)]


def _read_csv(path: Path, header: bool) -> list[Record]:
    try:
        return _csv_records(path, header)
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except csv.Error as e:
        raise UserError(f"not valid CSV ({e})", where=str(path)) from None


def _csv_records(path: Path, header: bool) -> list[Record]:
    records: list[Record] = []
    # utf-8-sig: a byte-order mark (which spreadsheet programs write) is not part of the first column's name.
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        names: list[str] | None = None
        line = 1  # where the next record starts (a quoted field may span lines)
        for values in reader:
            if values:
                if header and names is None:
                    names = [name.strip() for name in values]
                elif header:
                    if len(values) != len(names):
                        # Extra values would be dropped, missing ones shift the rest: neither is the row
                        # meant.
                        raise UserError(f"{len(values)} fields where the header has {len(names)} (quote a "
                                        "field that contains a comma)", where=f"{path}:{line}")
                    records.append(Record(dict(zip(names, values, strict=True)), f"{path}:{line}"))
                else:
                    records.append(Record(values, f"{path}:{line}"))
            line = reader.line_num + 1
    return records
