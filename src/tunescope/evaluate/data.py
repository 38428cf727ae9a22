"""Reading a task's rows: from a local file or folder, or from the Hugging Face hub.

Every row is a `core.data_files.Record` carrying `where` ("file:line") so a processor can name the exact
place a field is missing. Local files may be .jsonl, .json, .csv or .parquet (`core/data_files.py`); a folder
is searched for a file per split (`test.jsonl`, `<name>_test.csv`, `test/<name>_test.csv`, ...).
"""

from __future__ import annotations

from pathlib import Path

from tunescope.core.data_files import SUFFIXES, Record, read_records
from tunescope.core.errors import UserError


def split_file_stems(split: str, dataset_name: str | None) -> list[str]:
    """The names a split's file may have in a folder (before the suffix), in the order they are tried."""
    stems = [split]
    if dataset_name:
        stems += [f"{dataset_name}_{split}", f"{split}/{dataset_name}_{split}", f"{dataset_name}/{split}"]
    return stems


def find_split_file(folder: Path, split: str, dataset_name: str | None) -> Path | None:
    """The file in `folder` that holds `split`, trying the common layouts in order."""
    for stem in split_file_stems(split, dataset_name):
        for ext in SUFFIXES:
            candidate = folder / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    # Hub exports: test-00000-of-00001.parquet and the like.
    matches = sorted(p for ext in SUFFIXES for p in folder.glob(f"{split}-*{ext}"))
    return matches[0] if len(matches) == 1 else None


def _read(path: Path) -> list[Record]:
    # CSV rows stay lists: MMLU's original files have no header, so each task's processor decides.
    return read_records(path, header=False)


def load_local_split(path: Path, split: str, *, eval_split: str | None,
                     dataset_name: str | None) -> list[Record] | None:
    """Rows of `split` from a local file or folder; None when that split is not there.

    A single file stands for the evaluated split only (there is nowhere to draw few-shot examples from).
    """
    if not path.exists():
        raise UserError(f"data path '{path}' does not exist", where="data_path")
    if path.is_file():
        return _read(path) if split == eval_split else None
    found = find_split_file(path, split, dataset_name)
    return _read(found) if found is not None else None


def load_hub_split(dataset_path: str, dataset_name: str | None, split: str, task: str) -> list[Record]:
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
    return [Record(dict(x), f"{dataset_path}[{split}]:{i}") for i, x in enumerate(ds)]
