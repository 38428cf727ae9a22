"""Tiny grids for the grid tests: a base run config of a few steps and items, and a grid file over it."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY_BASE = {
    "name": "tiny", "data": {"synthetic_size": 24}, "prompt": {"max_length": 128},
    "training": {"max_steps": 3, "batch_size": 4, "eval_every": 3, "threads": 1,
                 "early_stopping_patience": None},
    "eval": {"heldout_size": 6, "limit": 6, "max_new_tokens": 8, "batch_size": 6},
}


def second_tiny_model(root: Path, tokenizer) -> Path:
    """Another tiny random Llama (other weights) in a folder with another name."""
    from conftest import build_tiny_llama

    path = root / "tiny-llama-b"
    if not (path / "config.json").is_file():
        build_tiny_llama(len(tokenizer), seed=1).save_pretrained(path)
        tokenizer.save_pretrained(path)
    return path


def write_grid(folder: Path, axes: dict, seeds=(1, 2), base_extra: dict | None = None, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(yaml.safe_dump(TINY_BASE))
    for key, value in (base_extra or {}).items():
        node = base
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    grid = {"name": "g", "base": "base.yaml", "axes": axes, "seeds": list(seeds), "output_dir": "out",
            **extra}
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def synthetic_grid(folder: Path) -> Path:
    """A grid folder as `tunescope grid` leaves it, with run folders from build_run (no model): two cells
    (lora, dora) × seeds 1 and 2."""
    from synthetic_run import build_run

    folder.mkdir(parents=True, exist_ok=True)
    cells = {"lora": {"training.method": "lora"}, "dora": {"training.method": "dora"}}
    for i, cell in enumerate(cells):
        for seed in (1, 2):
            build_run(folder, f"{cell}-s{seed}", n_train=10, n_heldout=30, n_mc=30, seed=seed,
                      heldout_tuned_acc=0.3 + 0.3 * i)
    grid = {"name": "pages", "file": {"axes": {"training.method": ["lora", "dora"]}, "alpha": 0.05},
            "cells": cells, "seeds": [1, 2], "runs": [f"{c}-s{s}" for c in cells for s in (1, 2)]}
    (folder / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    return folder
