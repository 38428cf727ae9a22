"""The grid folder (`<output_dir>/<grid name>/`): the grid file, each run's status record, the run-name
rule and when a run counts as complete. The grid runner, the grid report and `tunescope compare` read
and write the folder only through here.

It holds `grid.yaml` (the grid file as given and its expansion), one run folder per cell and seed
(`<cell>-s<seed>/`), `_cells/<run>.json` (each run's status: attempts, host, error), `base_evals/` (the
shared base evaluations) and the grid report.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tunescope.core.errors import UserError
from tunescope.store.fileio import read_json, write_json, write_text_atomic
from tunescope.store.run_folder import MANIFEST, read_manifest

GRID_FILE = "grid.yaml"
STATUS_DIR = "_cells"
BASE_EVALS_DIR = "base_evals"


def run_name(cell: str, seed: int) -> str:
    """The run of one cell and seed: its name, and the name of its folder in the grid folder."""
    return f"{cell}-s{seed}"


def is_grid_folder(path: str | Path) -> bool:
    return (Path(path) / GRID_FILE).is_file()


def write_grid_file(folder: Path, description: dict) -> None:
    write_text_atomic(Path(folder) / GRID_FILE, yaml.safe_dump(description, sort_keys=False,
                                                               allow_unicode=True))


def read_grid_file(folder: str | Path) -> dict:
    """The grid file of a grid folder (`Grid.describe()`); a file that is not YAML is a `UserError`."""
    path = Path(folder) / GRID_FILE
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise UserError("grid.yaml is not valid YAML", where=str(path)) from None


def run_names(description: dict) -> list[str]:
    """The grid's runs in its order (cells, then seeds), from its grid file."""
    if description.get("runs") is not None:
        return list(description["runs"])
    return [run_name(cell, seed) for cell in description.get("cells") or {}
            for seed in description.get("seeds") or []]


def status_path(folder: str | Path, name: str) -> Path:
    return Path(folder) / STATUS_DIR / f"{name}.json"


def read_status(folder: str | Path, name: str) -> dict | None:
    """A run's status record, or None when there is none or it does not read."""
    path = status_path(folder, name)
    try:
        return read_json(path) if path.is_file() else None
    except ValueError:
        return None


def write_status(folder: str | Path, name: str, status: dict) -> None:
    write_json(status_path(folder, name), status)


def run_complete(run_folder: str | Path) -> bool:
    """Whether the run folder holds a complete run: its manifest says `complete`. A folder with no manifest
    is not complete; a manifest that does not read is a `UserError` naming it (callers decide: the runner
    runs such a run again, `compare` refuses it)."""
    folder = Path(run_folder)
    return (folder / MANIFEST).is_file() and read_manifest(folder).status == "complete"
