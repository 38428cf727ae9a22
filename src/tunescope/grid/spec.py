"""The grid file: a typed, strict description of an experiment grid, and its expansion into runs.

```yaml
name: qwen-methods                   # default: the grid file's name without .yaml
base: ../qwen2-0.5b-gsm8k-lora.yaml  # a run config; relative to this file
set: {training.max_steps: 200}       # fixed overrides of the base (any config key)
axes:                                # every combination becomes a cell
  model.name: [qwen2-0.5b-instruct, llama-3.2-1b]
  training.method: [lora, qlora]
  data.limit: [500, 2000]
seeds: [1, 2, 3]                     # each cell runs once per seed
output_dir: ../../runs               # default: the base config's output_dir (relative to the current folder)
```

A cell is named by its axis values (`qwen2-0.5b-instruct_lora_500`) and each of its seeds is a run
`<output_dir>/<grid name>/<cell>-s<seed>`. Everything is validated before anything is written: an axis
key the run config does not have, an empty axis, a value the config rejects, or two cells that resolve
to one run name are each a `UserError` naming the grid file and the key.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tunescope.config.loading import dump_config
from tunescope.config.run_config import RUN_NAME_RE, RunConfig, has_key
from tunescope.config.safe_yaml import load_yaml
from tunescope.core.errors import UserError
from tunescope.store.fileio import not_utf8
from tunescope.store.grid_folder import run_name

# Keys the grid itself decides: the run's name and folder come from the cell, its seed from `seeds`.
RESERVED_KEYS = ("name", "output_dir", "seed")


class GridEstimate(BaseModel):
    """Figures for `--dry-run` when no finished run measured them."""

    model_config = ConfigDict(extra="forbid")
    train_tokens_per_s: float | None = Field(None, gt=0,
                                             description="Training throughput (non-padding tokens/s).")
    eval_items_per_s: float | None = Field(None, gt=0, description="Evaluation speed (items/s, all tasks).")
    price_per_hour: float | None = Field(None, ge=0,
                                         description="USD per device-hour (default: the device table).")


class GridFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    base: str = Field(description="The base run config, relative to the grid file.")
    set: dict[str, Any] = Field(default_factory=dict, description="Fixed overrides of the base config.")
    axes: dict[str, list[Any]] = Field(description="Config key -> the values it takes.")
    seeds: list[int] = Field(default_factory=lambda: [1], min_length=1)
    output_dir: str | None = None
    max_retries: int = Field(1, ge=0, description="Ray: times a cell is retried after its worker died.")
    alpha: float = Field(0.05, gt=0, lt=1,
                         description="Significance level of the grid report's tests (after Holm).")
    estimate: GridEstimate = GridEstimate()

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v


@dataclass(frozen=True)
class Run:
    """One seed of one cell: a run of the pipeline."""

    cell: str
    seed: int
    axes: dict[str, Any]
    config: RunConfig

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Grid:
    name: str
    source: Path
    folder: Path
    base: RunConfig
    axes: dict[str, list[Any]]
    seeds: list[int]
    runs: list[Run]
    file: GridFile

    @property
    def cells(self) -> list[str]:
        return list(dict.fromkeys(r.cell for r in self.runs))

    def cell_axes(self, cell: str) -> dict[str, Any]:
        return next(r.axes for r in self.runs if r.cell == cell)

    def describe(self) -> dict:
        """What grid.yaml in the grid folder records: the file as given and the expansion."""
        return {"name": self.name, "source": str(self.source), "file": self.file.model_dump(mode="json"),
                "base_config": yaml.safe_load(dump_config(self.base)),
                "cells": {c: self.cell_axes(c) for c in self.cells}, "seeds": self.seeds,
                "runs": [r.name for r in self.runs]}




def _slug(value: Any) -> str:
    """A value as part of a run name: a path keeps its last part, anything else its text."""
    text = str(value)
    if "/" in text or "\\" in text:
        text = re.split(r"[/\\]", text.rstrip("/\\"))[-1] or text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError("grid file not found" if not path.is_dir() else "is a folder, not a grid file",
                        where=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except OSError as e:
        raise UserError(f"cannot read the grid file ({e.strerror or e})", where=str(path)) from None
    raw = load_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise UserError("a grid file must be a mapping (base, axes, seeds, ...)", where=str(path))
    return raw


# Axis keys whose values may name a file or folder: like `base`, a relative one is read beside the grid file.
PATH_KEYS = ("data.source", "model.name", "model.cache_dir")


def _beside(source: Path, key: str, value: Any) -> Any:
    """An axis value naming a path relative to the grid file, as that path (other values as they are)."""
    if (key not in PATH_KEYS or not isinstance(value, str) or not value
            or Path(value).expanduser().is_absolute()):
        return value
    candidate = source.parent / value
    return os.path.normpath(candidate) if candidate.exists() else value


def _override(key: str, value: Any) -> str:
    return (
        f"{key}="
        f"{yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix('...').strip()}")


def load_grid(path: str | Path, overrides: list[str] | None = None) -> Grid:
    """Read, validate and expand a grid file. `overrides` (`key=value`) change the base config of every
    cell."""
    from tunescope.config.loading import load_config

    source = Path(path)
    raw = _read_yaml(source)
    try:
        gf = GridFile.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            problems.append(f"unknown key '{key}' (allowed: {', '.join(GridFile.model_fields)})"
                            if err["type"] == "extra_forbidden" else f"key '{key}': {err['msg']}")
        raise UserError("invalid grid: " + "; ".join(problems), where=str(source)) from None
    name = gf.name or source.stem
    if not RUN_NAME_RE.match(name):
        raise UserError("the grid name must be letters, digits, '.', '_' or '-'", where=f"{source}: name")
    if not gf.axes:
        raise UserError("a grid needs at least one axis", where=f"{source}: axes")
    for key, values in gf.axes.items():
        where = f"{source}: axes.{key}"
        if key in RESERVED_KEYS:
            raise UserError(f"'{key}' is set by the grid itself (cells name the runs, `seeds` sets the seed)",
                            where=where)
        if not has_key(key.split(".")):
            raise UserError(f"the run config has no key '{key}'", where=where)
        if not values:
            raise UserError("an axis needs at least one value", where=where)
    for key in gf.set:
        if not has_key(key.split(".")):
            raise UserError(f"the run config has no key '{key}'", where=f"{source}: set.{key}")

    base_path = (source.parent / gf.base)
    fixed = [_override(k, v) for k, v in gf.set.items()] + list(overrides or [])
    base = load_config(base_path, fixed)
    if gf.output_dir is not None:
        out_root = source.parent / gf.output_dir
    else:
        out_root = Path(base.output_dir)
    folder = Path(os.path.normpath(out_root / name))
    # Every cell trains and evaluates on the same data split and held-out items, so cells can be paired
    # item by item; the seeds vary what training draws (adapter initialisation, batch order, dropout).
    pinned = [] if base.data.seed is not None or "data.seed" in gf.axes else [f"data.seed={base.data_seed}"]

    keys = list(gf.axes)
    runs: list[Run] = []
    seen: dict[str, dict] = {}
    for combo in itertools.product(*(gf.axes[k] for k in keys)):
        axes = dict(zip(keys, combo, strict=True))
        cell = "_".join(_slug(v) for v in combo)
        if cell in seen:
            raise UserError(f"cells {seen[cell]} and {axes} both resolve to the run name '{cell}'; give the "
                            "values distinct last parts", where=f"{source}: axes")
        seen[cell] = axes
        values = {k: _beside(source, k, v) for k, v in axes.items()}
        for seed in gf.seeds:
            sets = fixed + pinned + [_override(k, v) for k, v in values.items()] + [
                f"name={run_name(cell, seed)}", f"seed={seed}", f"output_dir={folder}"]
            try:
                cfg = load_config(base_path, sets)
            except UserError as e:
                raise UserError(f"cell {axes}: {e}", where=f"{source}: axes") from None
            runs.append(Run(cell, seed, axes, cfg))
    return Grid(name, source, folder, base, dict(gf.axes), list(gf.seeds), runs, gf)
