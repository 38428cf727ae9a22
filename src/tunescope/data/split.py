"""Seeded train/validation split."""

from __future__ import annotations

import random


def train_val_split(rows: list, val_fraction: float, seed: int) -> tuple[list, list, list[int]]:
    """Shuffle indices with a private RNG and cut; returns (train, val, val_indices).

    At least one row goes to each side when there are two or more rows, so validation loss exists.
    """
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = round(len(rows) * val_fraction)
    if len(rows) >= 2:
        n_val = min(max(n_val, 1), len(rows) - 1)
    val_idx = sorted(order[:n_val])
    val_set = set(val_idx)
    train = [rows[i] for i in order if i not in val_set]
    val = [rows[i] for i in val_idx]
    return train, val, val_idx
